import Addressing
import Testing
@testable import DNS

/// Golden messages captured from dig 9.18 asking dnsmasq 2.89 (in a test
/// namespace; `--addn-hosts` with web.example.test → 10.1.0.1, 10.1.0.2).
enum Golden {
    static func bytes(_ hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while index < hex.endIndex {
            let next = hex.index(index, offsetBy: 2)
            bytes.append(UInt8(hex[index..<next], radix: 16)!)
            index = next
        }
        return bytes
    }

    /// `dig web.example.test A +noedns +norecurse`.
    static let plainQuery = bytes(
        "cc9f" + "0020" + "0001" + "0000" + "0000" + "0000"              // header: ID, flags (AD), QD 1
        + "03776562076578616d706c650474657374" + "00" + "0001" + "0001") // web.example.test A IN
    /// dnsmasq's answer to it: two A records owned by a pointer to the question.
    static let plainAnswer = bytes(
        "cc9f" + "8480" + "0001" + "0002" + "0000" + "0000"              // QR AA RA, AN 2
        + "03776562076578616d706c650474657374" + "00" + "0001" + "0001"
        + "c00c" + "0001" + "0001" + "00000000" + "0004" + "0a010002"   // ptr→12, A, IN, TTL 0, 10.1.0.2
        + "c00c" + "0001" + "0001" + "00000000" + "0004" + "0a010001")
    /// `dig web.example.test A` (EDNS, payload 1232, RD AD).
    static let ednsQuery = bytes(
        "62fa" + "0120" + "0001" + "0000" + "0000" + "0001"
        + "03776562076578616d706c650474657374" + "00" + "0001" + "0001"
        + "00" + "0029" + "04d0" + "00000000" + "0000")                   // OPT: root, 41, 1232, flags 0, no options
    static let ednsAnswer = bytes(
        "62fa" + "8580" + "0001" + "0002" + "0000" + "0001"
        + "03776562076578616d706c650474657374" + "00" + "0001" + "0001"
        + "c00c" + "0001" + "0001" + "00000000" + "0004" + "0a010001"
        + "c00c" + "0001" + "0001" + "00000000" + "0004" + "0a010002"
        + "00" + "0029" + "04d0" + "00000000" + "0000")
    /// `dig Other.Example.Test AAAA`: mixed case; dnsmasq with no upstream
    /// answers REFUSED with an Extended DNS Error option (15) in OPT.
    static let refusedAnswer = bytes(
        "f8d5" + "8185" + "0001" + "0000" + "0000" + "0001"
        + "054f74686572074578616d706c6504546573740000" + "1c" + "0001"
        + "00" + "0029" + "04d0" + "00000000" + "0006" + "000f" + "0002" + "000e")
    /// `dig -x 10.1.0.1` and its PTR answer (target uncompressed).
    static let ptrQuery = bytes(
        "c0c8" + "0120" + "0001" + "0000" + "0000" + "0001"
        + "013101300131023130" + "07696e2d61646472" + "0461727061" + "00" + "000c" + "0001"
        + "00" + "0029" + "04d0" + "00000000" + "0000")
    static let ptrAnswer = bytes(
        "c0c8" + "8580" + "0001" + "0001" + "0000" + "0001"
        + "013101300131023130" + "07696e2d61646472" + "0461727061" + "00" + "000c" + "0001"
        + "c00c" + "000c" + "0001" + "00000000" + "0012" + "03776562076578616d706c650474657374" + "00"
        + "00" + "0029" + "04d0" + "00000000" + "0000")
}

@Suite("DNS codec")
struct CodecTests {
    @Test("dig's plain query decodes field by field and encodes back to the same bytes")
    func plainQuery() throws {
        let message = try DNSMessage(decoding: Golden.plainQuery)
        #expect(message.header.id == 0xcc9f)
        #expect(!message.header.isResponse)
        #expect(message.header.opcode == .query)
        #expect(!message.header.recursionDesired)
        #expect(message.header.authenticData)
        #expect(message.questions == [DNSQuestion(name: try DNSName("web.example.test."), type: .A)])
        #expect(message.edns == nil)
        #expect(try message.encoded() == Golden.plainQuery)
    }

    @Test("dnsmasq's answers decode, pointers followed, and re-encode byte for byte")
    func answers() throws {
        let plain = try DNSMessage(decoding: Golden.plainAnswer)
        #expect(plain.header.isResponse && plain.header.authoritative && plain.header.recursionAvailable)
        #expect(plain.answers.map(\.data) == [.a(IPv4Address(10, 1, 0, 2)), .a(IPv4Address(10, 1, 0, 1))])
        #expect(plain.answers.allSatisfy { $0.name == (try! DNSName("web.example.test")) && $0.ttl == 0 })
        #expect(try plain.encoded() == Golden.plainAnswer)

        let edns = try DNSMessage(decoding: Golden.ednsAnswer)
        #expect(edns.edns == EDNS(udpPayloadSize: 1232))
        #expect(edns.additionals.isEmpty)
        #expect(try edns.encoded() == Golden.ednsAnswer)
        #expect(try DNSMessage(decoding: Golden.ednsQuery).encoded() == Golden.ednsQuery)

        let ptr = try DNSMessage(decoding: Golden.ptrAnswer)
        #expect(ptr.answers.map(\.data) == [.ptr(try DNSName("web.example.test"))])
        #expect(DNSResolverPolicy.address(reverse: ptr.questions[0].name) == .v4(IPv4Address(10, 1, 0, 1)))
        // Our encoder compresses the PTR target where dnsmasq did not; the
        // meaning is the same.
        #expect(try DNSMessage(decoding: try ptr.encoded()) == ptr)
    }

    @Test("an EDNS option and an extended error survive; case is kept and ignored")
    func ednsOptionAndCase() throws {
        let refused = try DNSMessage(decoding: Golden.refusedAnswer)
        #expect(refused.responseCode == .refused)
        #expect(refused.edns?.options == [EDNS.Option(code: 15, data: [0x00, 0x0e])])
        #expect(refused.questions[0].name.description == "Other.Example.Test.")
        #expect(refused.questions[0].name == (try DNSName("other.example.test")))
        #expect(refused.questions[0].name.lookupKey == "other.example.test")
        #expect(try refused.encoded() == Golden.refusedAnswer)
    }

    @Test("the encoder compresses repeated names and suffixes")
    func compression() throws {
        var message = DNSMessage(header: DNSHeader(id: 7), questions: [DNSQuestion(name: try DNSName("tasks.web"), type: .A)])
        message.answers = [
            DNSResourceRecord(name: try DNSName("TASKS.web"), ttl: 600, data: .a(IPv4Address(10, 0, 0, 5))),
            DNSResourceRecord(name: try DNSName("web"), ttl: 600, data: .cname(try DNSName("x.web"))),
        ]
        let bytes = try message.encoded()
        #expect(Array(bytes[12..<23]) == [5] + Array("tasks".utf8) + [3] + Array("web".utf8) + [0])
        #expect(Array(bytes[27..<29]) == [0xc0, 12])     // TASKS.web → the question's name
        #expect(Array(bytes[43..<45]) == [0xc0, 18])     // web → the suffix inside it
        #expect(Array(bytes[55..<59]) == [1, UInt8(ascii: "x"), 0xc0, 18])   // x.web in RDATA
        #expect(try DNSMessage(decoding: bytes) == message)
    }

    @Test("compression loops and forward pointers are errors, not hangs")
    func loops() throws {
        let header: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        // A pointer to itself.
        #expect(throws: DNSError.badPointer(target: 12, offset: 12)) {
            try DNSMessage(decoding: header + [0xc0, 12, 0, 1, 0, 1])
        }
        // A label then a pointer back to that label: a two-step loop.
        #expect(throws: DNSError.badPointer(target: 12, offset: 14)) {
            try DNSMessage(decoding: header + [1, 0x61, 0xc0, 12, 0, 1, 0, 1])
        }
        // A pointer forward, past the name.
        #expect(throws: DNSError.badPointer(target: 20, offset: 12)) {
            try DNSMessage(decoding: header + [0xc0, 20, 0, 1, 0, 1, 0, 0, 1, 0x61, 0])
        }
        // Two names pointing at each other (answer owner → question, question → answer).
        var crossed = [UInt8](header)
        crossed[7] = 1
        crossed += [0xc0, 18, 0, 1, 0, 1] + [0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0]
        #expect(throws: DNSError.self) { try DNSMessage(decoding: crossed) }
        // The reserved label types 01 and 10.
        #expect(throws: DNSError.badLabelType(byte: 0x41, offset: 12)) {
            try DNSMessage(decoding: header + [0x41, 0, 0, 1, 0, 1])
        }
    }

    @Test("a long chain of backward pointers stops at the hop limit")
    func pointerChain() throws {
        // After the header: "a", then 100 names each the label "a" and a
        // pointer to the name before. Every hop goes back (legal), but the
        // last name takes 100 hops, more than the limit of 64.
        var bytes: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0]
        var offsets = [12]
        for _ in 0..<100 {
            let previous = offsets.last!
            offsets.append(bytes.count)
            bytes += [1, 0x61, 0xc0 | UInt8(previous >> 8), UInt8(previous & 0xff)]
        }
        var reader = DNSReader(bytes)
        reader.offset = offsets[100]
        #expect(throws: DNSError.badPointer(target: offsets[35], offset: offsets[36] + 2)) { try reader.name() }
        reader.offset = offsets[40]
        #expect(try reader.name().labels.count == 41)
        #expect(reader.offset == offsets[40] + 4)
    }

    @Test("every truncation of real messages is a typed error, never a crash")
    func truncations() throws {
        for message in [Golden.plainQuery, Golden.plainAnswer, Golden.ednsAnswer, Golden.refusedAnswer, Golden.ptrAnswer] {
            for length in 0..<message.count {
                #expect(throws: DNSError.self) { try DNSMessage(decoding: Array(message.prefix(length))) }
            }
            #expect(throws: DNSError.trailingBytes(count: 1)) { try DNSMessage(decoding: message + [0]) }
        }
        #expect(DNSMessage.header(of: Array(Golden.plainQuery.prefix(11))) == nil)
        #expect(DNSMessage.header(of: Array(Golden.plainQuery.prefix(12)))?.id == 0xcc9f)
    }

    @Test("random garbage and single-byte corruptions never crash the decoder")
    func garbage() throws {
        var generator = SplitMix64(seed: 42)
        for _ in 0..<20_000 {
            let count = Int(generator.next() % 80)
            let bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            _ = try? DNSMessage(decoding: bytes)
        }
        for message in [Golden.plainAnswer, Golden.ednsAnswer, Golden.refusedAnswer, Golden.ptrAnswer] {
            for index in message.indices {
                for value: UInt8 in [0x00, 0x3f, 0x40, 0xc0, 0xff] {
                    var corrupted = message
                    corrupted[index] = value
                    if let decoded = try? DNSMessage(decoding: corrupted) {
                        // Whatever decodes must encode again.
                        _ = try decoded.encoded()
                    }
                }
            }
        }
    }

    @Test("a second OPT, an OPT in the answers, or an OPT not owned by the root is refused")
    func badOPT() throws {
        var twice = Golden.ednsQuery
        twice[11] = 2
        twice += [0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]
        #expect(throws: DNSError.badOPT(reason: "more than one")) { try DNSMessage(decoding: twice) }
        var notRoot = Array(Golden.ednsQuery.dropLast(11))
        notRoot += [1, 0x61, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]
        #expect(throws: DNSError.self) { try DNSMessage(decoding: notRoot) }
    }

    @Test("names: lengths checked, text round trip, escapes in keys")
    func names() throws {
        #expect(throws: DNSError.self) { try DNSName(String(repeating: "a", count: 64)) }
        #expect(throws: DNSError.self) { try DNSName(Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: ".")) }
        #expect(throws: DNSError.self) { try DNSName("a..b") }
        #expect(try DNSName(Array(repeating: String(repeating: "a", count: 62), count: 4).joined(separator: ".")).wireLength == 253)
        #expect(try DNSName(".").isRoot)
        #expect(try DNSName("Web.").description == "Web.")
        #expect(DNSName(uncheckedLabels: [[0x61, 0x2e, 0x62], [0x00]]).lookupKey == "a\\.b.\\000")
    }

    @Test("encoding within a limit drops records from the end and sets TC")
    func truncatedEncoding() throws {
        var message = DNSMessage.reply(to: try DNSMessage(decoding: Golden.plainQuery))
        for index in 0..<100 {
            message.answers.append(DNSResourceRecord(name: message.questions[0].name, ttl: 600,
                                                     data: .a(IPv4Address(10, 0, UInt8(index / 250), UInt8(index % 250 + 1)))))
        }
        let whole = try message.encoded()
        #expect(whole.count == 12 + 22 + 100 * 16)
        let limited = try message.encoded(limit: 512)
        #expect(limited.count <= 512)
        let decoded = try DNSMessage(decoding: limited)
        #expect(decoded.header.truncated)
        #expect(decoded.answers.count == (512 - 34) / 16)
        #expect(decoded.answers == Array(message.answers.prefix(decoded.answers.count)))
    }
}

/// A small seeded generator for repeatable tests.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

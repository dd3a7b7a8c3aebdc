import Addressing

extension DNSMessage {
    /// Decodes a whole message; any defect is a thrown `DNSError`, never a trap.
    public init(decoding bytes: [UInt8]) throws(DNSError) {
        var reader = DNSReader(bytes)
        let header = try reader.header()
        let questionCount = try reader.u16("QDCOUNT")
        let answerCount = try reader.u16("ANCOUNT")
        let authorityCount = try reader.u16("NSCOUNT")
        let additionalCount = try reader.u16("ARCOUNT")
        var message = DNSMessage(header: header)
        // Counts come from the sender: reserve nothing on their word.
        for _ in 0..<questionCount { message.questions.append(try reader.question()) }
        for _ in 0..<answerCount {
            guard case .record(let record) = try reader.record() else { throw DNSError.badOPT(reason: "in the answer section") }
            message.answers.append(record)
        }
        for _ in 0..<authorityCount {
            guard case .record(let record) = try reader.record() else { throw DNSError.badOPT(reason: "in the authority section") }
            message.authorities.append(record)
        }
        for _ in 0..<additionalCount {
            switch try reader.record() {
            case .record(let record): message.additionals.append(record)
            case .opt(let edns):
                guard message.edns == nil else { throw DNSError.badOPT(reason: "more than one") }
                message.edns = edns
            }
        }
        guard reader.offset == bytes.count else { throw DNSError.trailingBytes(count: bytes.count - reader.offset) }
        self = message
    }

    /// Reads only the header, for answering FORMERR to a query whose header
    /// is readable but whose rest is not; nil for fewer than twelve bytes.
    public static func header(of bytes: [UInt8]) -> DNSHeader? {
        guard bytes.count >= DNSHeader.length else { return nil }
        var reader = DNSReader(bytes)
        return try? reader.header()
    }
}

/// A cursor over a received message.
struct DNSReader {
    /// Pointers may chain (a name ending in a pointer to a name that ends in
    /// a pointer); every hop must go strictly backwards, which already rules
    /// out loops, and this bounds the work besides.
    static let maxPointerHops = 64

    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    enum Record {
        case record(DNSResourceRecord)
        case opt(EDNS)
    }

    mutating func header() throws(DNSError) -> DNSHeader {
        var header = DNSHeader(id: try u16("ID"))
        header.flags = try u16("flags")
        return header
    }

    mutating func question() throws(DNSError) -> DNSQuestion {
        let name = try name()
        return DNSQuestion(name: name, type: DNSRecordType(rawValue: try u16("QTYPE")),
                           recordClass: DNSRecordClass(rawValue: try u16("QCLASS")))
    }

    mutating func record() throws(DNSError) -> Record {
        let name = try name()
        let type = DNSRecordType(rawValue: try u16("TYPE"))
        let rawClass = try u16("CLASS")
        let ttl = try u32("TTL")
        let length = Int(try u16("RDLENGTH"))
        let start = offset
        guard bytes.count - start >= length else { throw DNSError.truncated(field: "\(type) RDATA", offset: start) }
        let end = start + length
        if type == .OPT {
            guard name.isRoot else { throw DNSError.badOPT(reason: "owner \(name) is not the root") }
            let edns = EDNS(udpPayloadSize: rawClass, extendedResponseCode: UInt8(ttl >> 24), version: UInt8(ttl >> 16 & 0xff),
                            dnssecOK: ttl & 0x8000 != 0, otherFlags: UInt16(ttl & 0x7fff), options: try options(end: end))
            return .opt(edns)
        }
        let data = try recordData(type: type, end: end)
        guard offset == end else {
            throw DNSError.badRecordData(type: type, offset: start, reason: "RDLENGTH \(length) but contents of \(offset - start) bytes")
        }
        return .record(DNSResourceRecord(name: name, recordClass: DNSRecordClass(rawValue: rawClass), ttl: ttl, data: data))
    }

    private mutating func recordData(type: DNSRecordType, end: Int) throws(DNSError) -> DNSRecordData {
        let start = offset
        switch type {
        case .A:
            guard end - start == 4 else { throw DNSError.badRecordData(type: type, offset: start, reason: "\(end - start) bytes, not 4") }
            offset = end
            return .a(IPv4Address(bytes: bytes[start..<end])!)
        case .AAAA:
            guard end - start == 16 else { throw DNSError.badRecordData(type: type, offset: start, reason: "\(end - start) bytes, not 16") }
            offset = end
            return .aaaa(IPv6Address(bytes: bytes[start..<end])!)
        case .NS: return .ns(try name(end: end))
        case .CNAME: return .cname(try name(end: end))
        case .PTR: return .ptr(try name(end: end))
        case .MX:
            let preference = try u16("MX preference", end: end)
            return .mx(preference: preference, exchange: try name(end: end))
        case .SOA:
            let primary = try name(end: end)
            let mailbox = try name(end: end)
            return .soa(DNSSOA(primary: primary, mailbox: mailbox, serial: try u32("SOA serial", end: end),
                               refresh: try u32("SOA refresh", end: end), retry: try u32("SOA retry", end: end),
                               expire: try u32("SOA expire", end: end), minimum: try u32("SOA minimum", end: end)))
        case .SRV:
            return .srv(DNSSRV(priority: try u16("SRV priority", end: end), weight: try u16("SRV weight", end: end),
                               port: try u16("SRV port", end: end), target: try name(end: end)))
        case .TXT:
            var strings: [[UInt8]] = []
            while offset < end {
                let count = Int(bytes[offset])
                guard end - offset - 1 >= count else { throw DNSError.truncated(field: "TXT string", offset: offset) }
                strings.append(Array(bytes[offset + 1..<offset + 1 + count]))
                offset += 1 + count
            }
            return .txt(strings)
        default:
            offset = end
            return .other(type: type, bytes: Array(bytes[start..<end]))
        }
    }

    private mutating func options(end: Int) throws(DNSError) -> [EDNS.Option] {
        var options: [EDNS.Option] = []
        while offset < end {
            let code = try u16("OPT option code", end: end)
            let length = Int(try u16("OPT option length", end: end))
            guard end - offset >= length else { throw DNSError.truncated(field: "OPT option \(code)", offset: offset) }
            options.append(EDNS.Option(code: code, data: Array(bytes[offset..<offset + length])))
            offset += length
        }
        return options
    }

    /// Reads a possibly compressed name (RFC 1035 §4.1.4). The cursor moves
    /// past the name's bytes here, not past what its pointers reach.
    mutating func name(end: Int? = nil) throws(DNSError) -> DNSName {
        let limit = end ?? bytes.count
        var labels: [[UInt8]] = []
        var wireLength = 1
        var position = offset
        // The start of the name or label sequence being read: a pointer must
        // lead before it, so each hop goes back and no chain can cycle.
        var floor = offset
        var jumped = false
        var hops = 0
        while true {
            guard position < (jumped ? bytes.count : limit) else { throw DNSError.truncated(field: "name", offset: position) }
            let length = bytes[position]
            switch length & 0xc0 {
            case 0x00:
                if length == 0 {
                    if !jumped { offset = position + 1 }
                    return DNSName(uncheckedLabels: labels)
                }
                let start = position + 1
                guard (jumped ? bytes.count : limit) - start >= Int(length) else {
                    throw DNSError.truncated(field: "label", offset: start)
                }
                wireLength += 1 + Int(length)
                guard wireLength <= DNSName.maxWireLength else {
                    throw DNSError.badName(reason: "longer than \(DNSName.maxWireLength) bytes at byte \(offset)")
                }
                labels.append(Array(bytes[start..<start + Int(length)]))
                position = start + Int(length)
            case 0xc0:
                guard (jumped ? bytes.count : limit) - position >= 2 else { throw DNSError.truncated(field: "pointer", offset: position) }
                let target = Int(length & 0x3f) << 8 | Int(bytes[position + 1])
                hops += 1
                guard target < floor, hops <= Self.maxPointerHops else { throw DNSError.badPointer(target: target, offset: position) }
                if !jumped { offset = position + 2 }
                jumped = true
                floor = target
                position = target
            default:
                throw DNSError.badLabelType(byte: length, offset: position)
            }
        }
    }

    mutating func u16(_ field: String, end: Int? = nil) throws(DNSError) -> UInt16 {
        guard (end ?? bytes.count) - offset >= 2 else { throw DNSError.truncated(field: field, offset: offset) }
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func u32(_ field: String, end: Int? = nil) throws(DNSError) -> UInt32 {
        guard (end ?? bytes.count) - offset >= 4 else { throw DNSError.truncated(field: field, offset: offset) }
        defer { offset += 4 }
        return bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) }
    }
}

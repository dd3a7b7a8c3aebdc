import Gossip
import Testing

@Suite("Wire format")
struct CodecTests {
    static let address = NodeAddress(host: "10.0.0.1", port: 7946)
    static let messages: [GossipMessage] = [
        .ping(Ping(sequence: 7, target: "node-1")),
        .indirectPing(IndirectPing(sequence: .max, target: "node-2", targetAddress: NodeAddress(host: "fd00::2", port: 1), wantsNack: true)),
        .ack(sequence: 0),
        .nack(sequence: 300),
        .alive(Alive(incarnation: .max, node: "ñødé", address: address)),
        .suspect(Suspect(incarnation: 1, node: "a", from: "b")),
        .dead(Dead(incarnation: 2, node: "a", from: "a")),
        .network(NetworkEvent(time: 1 << 40, node: "a", network: "net", leaving: true)),
        .table(TableEvent(time: 9, owner: "a", network: "net", table: "endpoints", key: "k",
                          value: Array(0...255), deleting: false, residualReapMilliseconds: 0)),
        .table(TableEvent(time: 10, owner: "a", network: "net", table: "endpoints", key: "",
                          value: [], deleting: true, residualReapMilliseconds: .max)),
    ]

    static let state = PushPull(
        sender: "a", isJoin: true, isResponse: false,
        members: [MemberState(name: "a", address: address, incarnation: 3, status: .suspect),
                  MemberState(name: "b", address: address, incarnation: 0, status: .left)],
        networks: [NetworkEvent(time: 2, node: "b", network: "n", leaving: false)],
        entries: [TableEvent(time: 4, owner: "b", network: "n", table: "t", key: "k", value: [1, 2], deleting: false, residualReapMilliseconds: 5)])

    @Test("every message survives a round trip", arguments: messages)
    func messageRoundTrip(_ message: GossipMessage) throws {
        #expect(try GossipCodec.decodeMessage(GossipCodec.encode(message)) == message)
    }

    @Test func compoundPacketRoundTrip() throws {
        let packet = GossipCodec.packet(Self.messages.map(GossipCodec.encode))
        #expect(packet[0] == GossipCodec.version)
        #expect(packet[1] == UInt8(Self.messages.count))
        #expect(try GossipCodec.decodePacket(packet) == Self.messages)
    }

    @Test func ackIsCompact() {
        // version, count, u16 length, type, one-byte varint sequence.
        #expect(GossipCodec.packet([GossipCodec.encode(.ack(sequence: 5))]) == [1, 1, 0, 2, 3, 5])
    }

    @Test func streamRoundTrip() throws {
        let bytes = GossipCodec.encodeStream(Self.state)
        #expect(try GossipCodec.decodeStream(bytes) == Self.state)
    }

    @Test func everyTruncationIsRejected() throws {
        let packet = GossipCodec.packet(Self.messages.map(GossipCodec.encode))
        for length in 0..<packet.count {
            #expect(throws: GossipCodecError.self) { try GossipCodec.decodePacket(Array(packet[0..<length])) }
        }
        let stream = GossipCodec.encodeStream(Self.state)
        for length in 0..<stream.count {
            #expect(throws: GossipCodecError.self) { try GossipCodec.decodeStream(Array(stream[0..<length])) }
        }
    }

    @Test func wrongVersionIsRejected() {
        var packet = GossipCodec.packet([GossipCodec.encode(.ack(sequence: 1))])
        packet[0] = 2
        #expect(throws: GossipCodecError.unsupportedVersion(2)) { try GossipCodec.decodePacket(packet) }
        var stream = GossipCodec.encodeStream(Self.state)
        stream[0] = 0
        #expect(throws: GossipCodecError.unsupportedVersion(0)) { try GossipCodec.decodeStream(stream) }
    }

    @Test func structuralErrorsAreRejected() {
        #expect(throws: GossipCodecError.emptyPacket) { try GossipCodec.decodePacket([1, 0]) }
        #expect(throws: GossipCodecError.unknownMessageType(0xEE)) { try GossipCodec.decodePacket([1, 1, 0, 1, 0xEE]) }
        // Trailing bytes after the last message, and inside a message's declared length.
        #expect(throws: GossipCodecError.trailingBytes(count: 1)) { try GossipCodec.decodePacket([1, 1, 0, 2, 3, 5, 9]) }
        #expect(throws: GossipCodecError.trailingBytes(count: 1)) { try GossipCodec.decodePacket([1, 1, 0, 3, 3, 5, 9]) }
        // A bool that is neither 0 nor 1.
        let dead = GossipCodec.encode(.network(NetworkEvent(time: 1, node: "a", network: "n", leaving: true)))
        var bad = dead
        bad[bad.count - 1] = 2
        #expect(throws: GossipCodecError.invalidField(name: "network.leaving", value: 2)) { try GossipCodec.decodeMessage(bad) }
        #expect(throws: GossipCodecError.unknownStreamKind(9)) { try GossipCodec.decodeStream([1, 9, 0, 0, 0, 0]) }
    }

    @Test func oversizeLengthsAreRejected() {
        // A ping whose target claims 2^63 - 1 bytes, and one longer than the name limit.
        #expect(throws: GossipCodecError.lengthTooLarge(length: UInt64(Int64.max), limit: WireLimits.name)) {
            try GossipCodec.decodeMessage([1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F])
        }
        var long = WireBytes.ping(targetLength: 300)
        #expect(throws: GossipCodecError.lengthTooLarge(length: 300, limit: WireLimits.name)) { try GossipCodec.decodeMessage(long) }
        long = WireBytes.ping(targetLength: 100)  // claims 100, carries none
        #expect(throws: GossipCodecError.truncated(needed: 100, available: 0)) { try GossipCodec.decodeMessage(long) }
        // A message length beyond the packet, a stream length beyond the input.
        #expect(throws: GossipCodecError.truncated(needed: 500, available: 2)) { try GossipCodec.decodePacket([1, 1, 0x01, 0xF4, 3, 5]) }
        #expect(throws: GossipCodecError.truncated(needed: Int(UInt32.max), available: 1)) {
            try GossipCodec.decodeStream([1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0])
        }
        // A member count far beyond what the bytes could hold must fail before allocating.
        #expect(throws: GossipCodecError.self) { try GossipCodec.decodeStream([1, 1, 0, 0, 0, 6, 0, 0, 0xFF, 0xFF, 0xFF, 0x7F]) }
        #expect(throws: GossipCodecError.oversizeInput(size: 70_000, limit: GossipCodec.maxDecodedPacketSize)) {
            try GossipCodec.decodePacket([UInt8](repeating: 1, count: 70_000))
        }
    }

    @Test func varintOverflowIsRejected() {
        // ack with an 11-byte varint, then with a 10th byte carrying bits past 64, then > UInt32.
        #expect(throws: GossipCodecError.varintOverflow) { try GossipCodec.decodeMessage([3] + [UInt8](repeating: 0x80, count: 10) + [0]) }
        #expect(throws: GossipCodecError.varintOverflow) { try GossipCodec.decodeMessage([3] + [UInt8](repeating: 0xFF, count: 9) + [0x02]) }
        #expect(throws: GossipCodecError.invalidField(name: "ack.sequence", value: 1 << 32)) {
            try GossipCodec.decodeMessage([3, 0x80, 0x80, 0x80, 0x80, 0x10])
        }
    }

    @Test func invalidUTF8IsRejected() {
        #expect(throws: GossipCodecError.invalidUTF8) { try GossipCodec.decodeMessage([1, 1, 2, 0xC3, 0x28]) }
    }

    @Test("random bytes never trap", arguments: [UInt64(1), 2, 3])
    func randomBytes(seed: UInt64) {
        var random = GossipRandom(seed: seed)
        for _ in 0..<3_000 {
            let length = Int.random(in: 0..<64, using: &random)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &random) }
            // Half the inputs start with a valid header, so the fuzzing reaches the message decoders.
            if random.next() & 1 == 0, bytes.count >= 2 {
                bytes[0] = GossipCodec.version
                bytes[1] = min(bytes[1], 3)
            }
            // Failing is fine; failing with anything but a codec error, or trapping, is not.
            do { _ = try GossipCodec.decodePacket(bytes) } catch is GossipCodecError {} catch {
                Issue.record("seed \(seed): unexpected error \(error) for \(bytes)")
            }
            do { _ = try GossipCodec.decodeStream(bytes) } catch is GossipCodecError {} catch {
                Issue.record("seed \(seed): unexpected error \(error) for \(bytes)")
            }
            bytes.withUnsafeBytes { fuzzDecode($0) }
        }
    }

    @Test("mutated valid packets never trap", arguments: [UInt64(11), 12])
    func mutations(seed: UInt64) {
        var random = GossipRandom(seed: seed)
        let valid = GossipCodec.packet(Self.messages.map(GossipCodec.encode))
        let stream = GossipCodec.encodeStream(Self.state)
        for _ in 0..<2_000 {
            for original in [valid, stream] {
                var bytes = original
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    let i = Int.random(in: 0..<bytes.count, using: &random)
                    bytes[i] = UInt8.random(in: 0...255, using: &random)
                }
                bytes.withUnsafeBytes { fuzzDecode($0) }
            }
        }
    }
}

/// Hand-built byte sequences for rejection tests.
enum WireBytes {
    /// A ping (type 1, sequence 1) whose target claims `targetLength` bytes but carries none.
    static func ping(targetLength: Int) -> [UInt8] {
        var bytes: [UInt8] = [1, 1]
        var v = targetLength
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
        return bytes
    }
}

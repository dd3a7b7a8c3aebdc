/// The versioned binary wire format.
///
/// Packet (UDP, at most `maxPacketSize` bytes): `version u8 | count u8 | count × (length u16 | message)`;
/// every packet is compound, so piggy-backed broadcasts ride along with a ping or ack.
/// Message: `type u8 | fields`; integers are LEB128 varints, strings and bytes varint-length-prefixed.
/// Stream (TCP push-pull): `version u8 | kind u8 | length u32 | body`.
public enum GossipCodec {
    public static let version: UInt8 = 1
    /// Version and count.
    public static let packetHeaderSize = 2
    /// The u16 length in front of each message of a packet.
    public static let messageOverhead = 2
    public static let streamHeaderSize = 6
    /// Largest packet the decoder looks at, whatever the configuration: a UDP datagram cannot be longer.
    public static let maxDecodedPacketSize = 65_535
    static let maxMessagesPerPacket = 255

    enum MessageType: UInt8 {
        case ping = 1
        case indirectPing = 2
        case ack = 3
        case nack = 4
        case alive = 5
        case suspect = 6
        case dead = 7
        case network = 8
        case table = 9
    }

    enum StreamKind: UInt8 {
        case pushPull = 1
    }

    // MARK: messages

    public static func encode(_ message: GossipMessage) -> [UInt8] {
        var w = WireWriter()
        switch message {
        case .ping(let p):
            w.u8(MessageType.ping.rawValue)
            w.varint(UInt64(p.sequence))
            w.string(p.target)
        case .indirectPing(let p):
            w.u8(MessageType.indirectPing.rawValue)
            w.varint(UInt64(p.sequence))
            w.string(p.target)
            w.address(p.targetAddress)
            w.bool(p.wantsNack)
        case .ack(let sequence):
            w.u8(MessageType.ack.rawValue)
            w.varint(UInt64(sequence))
        case .nack(let sequence):
            w.u8(MessageType.nack.rawValue)
            w.varint(UInt64(sequence))
        case .alive(let a):
            w.u8(MessageType.alive.rawValue)
            w.varint(a.incarnation)
            w.string(a.node)
            w.address(a.address)
        case .suspect(let s):
            w.u8(MessageType.suspect.rawValue)
            w.varint(s.incarnation)
            w.string(s.node)
            w.string(s.from)
        case .dead(let d):
            w.u8(MessageType.dead.rawValue)
            w.varint(d.incarnation)
            w.string(d.node)
            w.string(d.from)
        case .network(let n):
            w.u8(MessageType.network.rawValue)
            encodeNetworkEvent(n, into: &w)
        case .table(let t):
            w.u8(MessageType.table.rawValue)
            encodeTableEvent(t, into: &w)
        }
        return w.bytes
    }

    public static func decodeMessage(_ bytes: [UInt8]) throws -> GossipMessage {
        var r = WireReader(bytes)
        let message = try decodeMessage(&r)
        try r.expectEnd()
        return message
    }

    static func decodeMessage(_ r: inout WireReader) throws -> GossipMessage {
        let rawType = try r.u8()
        guard let type = MessageType(rawValue: rawType) else { throw GossipCodecError.unknownMessageType(rawType) }
        switch type {
        case .ping:
            return .ping(Ping(sequence: try r.u32Varint("ping.sequence"), target: try r.string()))
        case .indirectPing:
            return .indirectPing(IndirectPing(
                sequence: try r.u32Varint("indirectPing.sequence"), target: try r.string(),
                targetAddress: try r.address(), wantsNack: try r.bool("indirectPing.wantsNack")))
        case .ack:
            return .ack(sequence: try r.u32Varint("ack.sequence"))
        case .nack:
            return .nack(sequence: try r.u32Varint("nack.sequence"))
        case .alive:
            return .alive(Alive(incarnation: try r.varint(), node: try r.string(), address: try r.address()))
        case .suspect:
            return .suspect(Suspect(incarnation: try r.varint(), node: try r.string(), from: try r.string()))
        case .dead:
            return .dead(Dead(incarnation: try r.varint(), node: try r.string(), from: try r.string()))
        case .network:
            return .network(try decodeNetworkEvent(&r))
        case .table:
            return .table(try decodeTableEvent(&r))
        }
    }

    static func encodeNetworkEvent(_ n: NetworkEvent, into w: inout WireWriter) {
        w.varint(n.time)
        w.string(n.node)
        w.string(n.network)
        w.bool(n.leaving)
    }

    static func decodeNetworkEvent(_ r: inout WireReader) throws -> NetworkEvent {
        NetworkEvent(time: try r.varint(), node: try r.string(), network: try r.string(), leaving: try r.bool("network.leaving"))
    }

    static func encodeTableEvent(_ t: TableEvent, into w: inout WireWriter) {
        w.varint(t.time)
        w.string(t.owner)
        w.string(t.network)
        w.string(t.table)
        w.string(t.key)
        w.blob(t.value)
        w.bool(t.deleting)
        w.varint(UInt64(t.residualReapMilliseconds))
    }

    static func decodeTableEvent(_ r: inout WireReader) throws -> TableEvent {
        TableEvent(
            time: try r.varint(), owner: try r.string(), network: try r.string(), table: try r.string(),
            key: try r.string(limit: WireLimits.key), value: try r.blob(limit: WireLimits.value),
            deleting: try r.bool("table.deleting"),
            residualReapMilliseconds: try r.u32Varint("table.residualReapMilliseconds"))
    }

    // MARK: packets

    /// Packs already-encoded messages into one packet. The caller keeps the total within its
    /// packet size; each message must be shorter than 64 KiB and there may be at most 255.
    public static func packet(_ messages: [[UInt8]]) -> [UInt8] {
        precondition(!messages.isEmpty && messages.count <= maxMessagesPerPacket, "a packet holds 1...255 messages")
        var w = WireWriter(capacity: messages.reduce(packetHeaderSize) { $0 + messageOverhead + $1.count })
        w.u8(version)
        w.u8(UInt8(messages.count))
        for message in messages {
            precondition(message.count <= Int(UInt16.max), "message too long for a packet")
            w.u16(UInt16(message.count))
            w.append(message)
        }
        return w.bytes
    }

    public static func decodePacket(_ bytes: [UInt8]) throws -> [GossipMessage] {
        guard bytes.count <= maxDecodedPacketSize else {
            throw GossipCodecError.oversizeInput(size: bytes.count, limit: maxDecodedPacketSize)
        }
        var r = WireReader(bytes)
        let packetVersion = try r.u8()
        guard packetVersion == version else { throw GossipCodecError.unsupportedVersion(packetVersion) }
        let count = Int(try r.u8())
        guard count > 0 else { throw GossipCodecError.emptyPacket }
        var messages: [GossipMessage] = []
        messages.reserveCapacity(count)
        for _ in 0..<count {
            let length = Int(try r.u16())
            var body = try r.sub(length)
            messages.append(try decodeMessage(&body))
            try body.expectEnd()
        }
        try r.expectEnd()
        return messages
    }

    // MARK: streams

    public static func encodeStream(_ state: PushPull) -> [UInt8] {
        var body = WireWriter(capacity: 64 + state.members.count * 40 + state.entries.count * 64)
        body.u8((state.isJoin ? 1 : 0) | (state.isResponse ? 2 : 0))
        body.string(state.sender)
        body.varint(UInt64(state.members.count))
        for m in state.members {
            body.string(m.name)
            body.address(m.address)
            body.varint(m.incarnation)
            body.u8(m.status.rawValue)
        }
        body.varint(UInt64(state.networks.count))
        for n in state.networks { encodeNetworkEvent(n, into: &body) }
        body.varint(UInt64(state.entries.count))
        for t in state.entries { encodeTableEvent(t, into: &body) }

        var w = WireWriter(capacity: streamHeaderSize + body.bytes.count)
        w.u8(version)
        w.u8(StreamKind.pushPull.rawValue)
        w.u32(UInt32(clamping: body.bytes.count))
        w.append(body.bytes)
        return w.bytes
    }

    public static func decodeStream(_ bytes: [UInt8], maxSize: Int = GossipConfiguration.lan.maxStreamSize) throws -> PushPull {
        guard bytes.count <= maxSize else { throw GossipCodecError.oversizeInput(size: bytes.count, limit: maxSize) }
        var outer = WireReader(bytes)
        let streamVersion = try outer.u8()
        guard streamVersion == version else { throw GossipCodecError.unsupportedVersion(streamVersion) }
        let rawKind = try outer.u8()
        guard StreamKind(rawValue: rawKind) != nil else { throw GossipCodecError.unknownStreamKind(rawKind) }
        let length = try outer.u32()
        guard UInt64(length) <= UInt64(outer.remaining) else {
            throw GossipCodecError.truncated(needed: Int(length), available: outer.remaining)
        }
        var r = try outer.sub(Int(length))
        try outer.expectEnd()

        let flags = try r.u8()
        guard flags & ~3 == 0 else { throw GossipCodecError.invalidField(name: "pushPull.flags", value: UInt64(flags)) }
        let sender = try r.string()
        // Minimum encodings: member = 1+0 name, 1+0 host, 2 port, 1 incarnation, 1 status.
        let memberCount = try r.count(minimumItemSize: 6)
        var members: [MemberState] = []
        members.reserveCapacity(memberCount)
        for _ in 0..<memberCount {
            let name = try r.string()
            let address = try r.address()
            let incarnation = try r.varint()
            let rawStatus = try r.u8()
            guard let status = MemberStatus(rawValue: rawStatus) else {
                throw GossipCodecError.invalidField(name: "member.status", value: UInt64(rawStatus))
            }
            members.append(MemberState(name: name, address: address, incarnation: incarnation, status: status))
        }
        let networkCount = try r.count(minimumItemSize: 4)
        var networks: [NetworkEvent] = []
        networks.reserveCapacity(networkCount)
        for _ in 0..<networkCount { networks.append(try decodeNetworkEvent(&r)) }
        let entryCount = try r.count(minimumItemSize: 8)
        var entries: [TableEvent] = []
        entries.reserveCapacity(entryCount)
        for _ in 0..<entryCount { entries.append(try decodeTableEvent(&r)) }
        try r.expectEnd()
        return PushPull(sender: sender, isJoin: flags & 1 != 0, isResponse: flags & 2 != 0, members: members, networks: networks, entries: entries)
    }
}

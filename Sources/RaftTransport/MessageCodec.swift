import NIOCore
import Raft

/// The binary encoding of Raft messages between members: little-endian integers, lengths before
/// every variable part, a version byte first so the format can change without guessing.
///
/// Decoding never trusts a length: every count is checked against the bytes left, so a malformed
/// message is rejected with the field it broke on and never makes the node allocate for it.
public enum RaftMessageCodec {
    public static let version: UInt8 = 1

    /// Why bytes are not a valid message.
    public enum Error: Swift.Error, Sendable, Hashable, CustomStringConvertible {
        case truncated(field: String)
        case badVersion(UInt8)
        case badMessageType(UInt8)
        case localMessageType(String)
        case badEntryKind(UInt8)
        case badLength(field: String, length: Int, remaining: Int)
        case trailingBytes(Int)

        public var description: String {
            switch self {
            case let .truncated(field): "message truncated at \(field)"
            case let .badVersion(v): "unknown message format version \(v) (this node speaks \(RaftMessageCodec.version))"
            case let .badMessageType(t): "unknown message type \(t)"
            case let .localMessageType(t): "message type \(t) is local to a node and never sent"
            case let .badEntryKind(k): "unknown entry kind \(k)"
            case let .badLength(field, length, remaining): "\(field) claims \(length) items or bytes but only \(remaining) bytes remain"
            case let .trailingBytes(n): "\(n) bytes after the end of the message"
            }
        }
    }

    /// Appends the encoding of `m` to `buffer`.
    public static func encode(_ m: Message, into buffer: inout ByteBuffer) {
        buffer.writeInteger(version)
        buffer.writeInteger(m.type.rawValue)
        for v in [m.from, m.to, m.term, m.logTerm, m.index, m.commit, m.rejectHint] {
            buffer.writeInteger(v, endianness: .little)
        }
        var flags: UInt8 = 0
        if m.reject { flags |= 1 }
        if m.snapshot != nil { flags |= 2 }
        buffer.writeInteger(flags)
        writeBlob(m.context, into: &buffer)
        buffer.writeInteger(UInt32(m.entries.count), endianness: .little)
        for e in m.entries {
            buffer.writeInteger(e.term, endianness: .little)
            buffer.writeInteger(e.index, endianness: .little)
            buffer.writeInteger(e.kind.rawValue)
            writeBlob(e.data, into: &buffer)
        }
        if let s = m.snapshot {
            buffer.writeInteger(s.metadata.index, endianness: .little)
            buffer.writeInteger(s.metadata.term, endianness: .little)
            writeIDs(s.metadata.confState.voters, into: &buffer)
            writeIDs(s.metadata.confState.learners, into: &buffer)
            writeBlob(s.data, into: &buffer)
        }
    }

    public static func encode(_ m: Message) -> [UInt8] {
        var b = ByteBufferAllocator().buffer(capacity: encodedSizeHint(m))
        encode(m, into: &b)
        return Array(b.readableBytesView)
    }

    static func encodedSizeHint(_ m: Message) -> Int {
        64 + m.context.count + m.entries.reduce(0) { $0 + 21 + $1.data.count } + (m.snapshot.map { 32 + $0.data.count } ?? 0)
    }

    /// Decodes one message that fills `buffer` exactly.
    public static func decode(_ buffer: ByteBuffer) throws(Error) -> Message {
        var b = buffer
        let v: UInt8 = try read(&b, "version")
        guard v == version else { throw .badVersion(v) }
        let rawType: UInt8 = try read(&b, "type")
        guard let type = MessageType(rawValue: rawType) else { throw .badMessageType(rawType) }
        var m = Message(type: type)
        guard !m.isLocal else { throw .localMessageType("\(type)") }
        m.from = try read(&b, "from")
        m.to = try read(&b, "to")
        m.term = try read(&b, "term")
        m.logTerm = try read(&b, "logTerm")
        m.index = try read(&b, "index")
        m.commit = try read(&b, "commit")
        m.rejectHint = try read(&b, "rejectHint")
        let flags: UInt8 = try read(&b, "flags")
        m.reject = flags & 1 != 0
        m.context = try readBlob(&b, "context")
        let count: UInt32 = try read(&b, "entry count")
        // An entry takes at least 21 bytes, so a count the rest cannot hold is a lie.
        guard Int(count) * 21 <= b.readableBytes else {
            throw .badLength(field: "entry count", length: Int(count), remaining: b.readableBytes)
        }
        m.entries.reserveCapacity(Int(count))
        for _ in 0..<count {
            let term: UInt64 = try read(&b, "entry term")
            let index: UInt64 = try read(&b, "entry index")
            let rawKind: UInt8 = try read(&b, "entry kind")
            guard let kind = EntryKind(rawValue: rawKind) else { throw .badEntryKind(rawKind) }
            m.entries.append(Entry(term: term, index: index, kind: kind, data: try readBlob(&b, "entry data")))
        }
        if flags & 2 != 0 {
            let index: UInt64 = try read(&b, "snapshot index")
            let term: UInt64 = try read(&b, "snapshot term")
            let voters = try readIDs(&b, "snapshot voters")
            let learners = try readIDs(&b, "snapshot learners")
            let data = try readBlob(&b, "snapshot data")
            m.snapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: term,
                                                             confState: ConfState(voters: voters, learners: learners)),
                                  data: data)
        }
        guard b.readableBytes == 0 else { throw .trailingBytes(b.readableBytes) }
        return m
    }

    public static func decode(_ bytes: [UInt8]) throws(Error) -> Message {
        var b = ByteBufferAllocator().buffer(capacity: bytes.count)
        b.writeBytes(bytes)
        return try decode(b)
    }

    // MARK: - Parts

    private static func writeBlob(_ bytes: [UInt8], into b: inout ByteBuffer) {
        b.writeInteger(UInt32(bytes.count), endianness: .little)
        b.writeBytes(bytes)
    }

    private static func writeIDs(_ ids: Set<NodeID>, into b: inout ByteBuffer) {
        b.writeInteger(UInt32(ids.count), endianness: .little)
        for id in ids.sorted() { b.writeInteger(id, endianness: .little) }
    }

    private static func read<T: FixedWidthInteger>(_ b: inout ByteBuffer, _ field: String) throws(Error) -> T {
        guard let v = b.readInteger(endianness: .little, as: T.self) else { throw .truncated(field: field) }
        return v
    }

    private static func readBlob(_ b: inout ByteBuffer, _ field: String) throws(Error) -> [UInt8] {
        let n: UInt32 = try read(&b, field + " length")
        guard Int(n) <= b.readableBytes else { throw .badLength(field: field, length: Int(n), remaining: b.readableBytes) }
        return b.readBytes(length: Int(n))!
    }

    private static func readIDs(_ b: inout ByteBuffer, _ field: String) throws(Error) -> Set<NodeID> {
        let n: UInt32 = try read(&b, field + " count")
        guard Int(n) * 8 <= b.readableBytes else { throw .badLength(field: field, length: Int(n), remaining: b.readableBytes) }
        var ids = Set<NodeID>()
        for _ in 0..<n { ids.insert(try read(&b, field)) }
        return ids
    }
}

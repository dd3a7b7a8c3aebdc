import Raft

/// Names a proposal so its result can be handed back to whoever proposed it: the proposing node
/// and a sequence number it never reuses.
public struct RequestID: Sendable, Hashable, CustomStringConvertible {
    public var node: NodeID
    public var sequence: UInt64

    public init(node: NodeID, sequence: UInt64) {
        self.node = node
        self.sequence = sequence
    }

    public var description: String { "\(node).\(sequence)" }
}

/// One change to the store, checked against the state when it is applied (never when proposed).
public indirect enum StoreOperation: Sendable, Hashable {
    /// Fails with `alreadyExists` if the key is present.
    case create(collection: String, key: String, value: [UInt8])
    /// Fails with `notFound` if the key is absent; with `expectedVersion`, a compare-and-swap that
    /// fails with `versionMismatch` unless the object is at that version.
    case update(collection: String, key: String, value: [UInt8], expectedVersion: UInt64?)
    /// Fails with `notFound` if absent; `expectedVersion` as for `update`.
    case delete(collection: String, key: String, expectedVersion: UInt64?)
    /// All of the operations or none: the first failure aborts the whole transaction.
    case transaction([StoreOperation])

    /// Compare-and-swap on version: replace the value only if the object is at `version`.
    public static func compareAndSwap(collection: String, key: String, version: UInt64, value: [UInt8]) -> StoreOperation {
        .update(collection: collection, key: key, value: value, expectedVersion: version)
    }

    fileprivate func encode(into e: inout Encoder) {
        switch self {
        case let .create(c, k, v):
            e.u8(1); e.string(c); e.string(k); e.blob(v)
        case let .update(c, k, v, ver):
            e.u8(2); e.string(c); e.string(k); e.blob(v); Self.encode(ver, into: &e)
        case let .delete(c, k, ver):
            e.u8(3); e.string(c); e.string(k); Self.encode(ver, into: &e)
        case let .transaction(ops):
            e.u8(4); e.u32(UInt32(ops.count))
            for op in ops { op.encode(into: &e) }
        }
    }

    private static func encode(_ v: UInt64?, into e: inout Encoder) {
        if let v { e.u8(1); e.u64(v) } else { e.u8(0) }
    }

    fileprivate static func decode(_ d: inout Decoder, depth: Int = 0) throws(StoreError) -> StoreOperation {
        func version(_ d: inout Decoder) throws(StoreError) -> UInt64? {
            switch try d.u8() {
            case 0: return nil
            case 1: return try d.u64()
            case let t: throw .malformed("bad optional tag \(t)")
            }
        }
        switch try d.u8() {
        case 1: return .create(collection: try d.string(), key: try d.string(), value: try d.blob())
        case 2:
            return .update(collection: try d.string(), key: try d.string(), value: try d.blob(), expectedVersion: try version(&d))
        case 3: return .delete(collection: try d.string(), key: try d.string(), expectedVersion: try version(&d))
        case 4:
            guard depth == 0 else { throw .malformed("nested transaction") }
            let n = Int(try d.u32())
            var ops: [StoreOperation] = []
            for _ in 0..<n { ops.append(try decode(&d, depth: depth + 1)) }
            return .transaction(ops)
        case let t: throw .malformed("unknown operation tag \(t)")
        }
    }
}

/// A proposal: what to do, and who waits for the answer. Its encoding is the entry data, so it
/// must stay stable: a tag byte leads, and a new format takes a new tag.
public struct StoreCommand: Sendable, Hashable {
    public var id: RequestID
    public var operation: StoreOperation

    public init(id: RequestID, operation: StoreOperation) {
        self.id = id
        self.operation = operation
    }

    static let formatTag: UInt8 = 0x53 // "S", format 1

    public var encoded: [UInt8] {
        var e = Encoder()
        e.u8(Self.formatTag)
        e.u64(id.node)
        e.u64(id.sequence)
        operation.encode(into: &e)
        return e.bytes
    }

    public init(decoding bytes: [UInt8]) throws(StoreError) {
        var d = Decoder(bytes)
        guard try d.u8() == Self.formatTag else { throw .malformed("not a store command") }
        id = RequestID(node: try d.u64(), sequence: try d.u64())
        operation = try StoreOperation.decode(&d)
        guard d.atEnd else { throw .malformed("trailing bytes") }
    }
}

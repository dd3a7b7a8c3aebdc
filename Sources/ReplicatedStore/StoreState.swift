import Raft

/// Why a command failed, or why bytes could not be decoded. Failures are results, decided the same
/// way on every replica.
public enum StoreError: Swift.Error, Sendable, Hashable, CustomStringConvertible {
    case alreadyExists(collection: String, key: String)
    case notFound(collection: String, key: String)
    case versionMismatch(collection: String, key: String, expected: UInt64, actual: UInt64)
    /// An empty collection or key name.
    case invalid(String)
    /// Bytes that are not a command or a snapshot of this format.
    case malformed(String)
    /// A watch asked for changes older than the history kept.
    case compacted(requested: Index, oldest: Index)
    /// The proposal's result will not come (the caller cancelled, or the store was closed).
    case cancelled(RequestID)

    public var description: String {
        switch self {
        case let .alreadyExists(c, k): "\(c)/\(k) already exists"
        case let .notFound(c, k): "\(c)/\(k) not found"
        case let .versionMismatch(c, k, expected, actual): "\(c)/\(k) is at version \(actual), expected \(expected)"
        case let .invalid(why): "invalid command: \(why)"
        case let .malformed(why): "malformed data: \(why)"
        case let .compacted(requested, oldest): "changes from index \(requested) are gone; history starts at \(oldest)"
        case let .cancelled(id): "request \(id) cancelled"
        }
    }
}

/// One stored object: an opaque value with its version and the log indexes that created and last
/// modified it (as etcd's create/mod revisions).
public struct StoredObject: Sendable, Hashable {
    public var collection: String
    public var key: String
    public var value: [UInt8]
    /// 1 when created, +1 on every update; a deleted and re-created key starts again at 1.
    public var version: UInt64
    public var createIndex: Index
    public var modifyIndex: Index

    public init(collection: String, key: String, value: [UInt8], version: UInt64, createIndex: Index, modifyIndex: Index) {
        self.collection = collection
        self.key = key
        self.value = value
        self.version = version
        self.createIndex = createIndex
        self.modifyIndex = modifyIndex
    }
}

/// One effect of an applied command.
public struct Change: Sendable, Hashable {
    public enum Kind: UInt8, Sendable, Hashable { case created = 1, updated, deleted }

    public var kind: Kind
    /// The log index of the command.
    public var index: Index
    /// The object after the change; for a delete, the object as it was when deleted.
    public var object: StoredObject
}

/// The outcome of one applied command, handed back to its proposer by request id.
public struct AppliedCommand: Sendable, Hashable {
    public var id: RequestID
    public var index: Index
    public var result: Result<[Change], StoreError>
}

/// The store's contents as a pure, deterministic state machine: the same entries in the same order
/// give the same state on every replica. No clocks, no randomness, no I/O.
public struct StoreState: Sendable, Hashable {
    public private(set) var appliedIndex: Index = 0
    private(set) var collections: [String: [String: StoredObject]] = [:]

    public init() {}

    public func get(_ collection: String, _ key: String) -> StoredObject? { collections[collection]?[key] }

    /// The objects of a collection in key order.
    public func list(_ collection: String) -> [StoredObject] {
        (collections[collection] ?? [:]).values.sorted { $0.key < $1.key }
    }

    /// Collection names in order.
    public var collectionNames: [String] { collections.keys.sorted() }

    public var objectCount: Int { collections.values.reduce(0) { $0 + $1.count } }

    /// Applies one committed entry. Entries that are not store commands (the leader's empty entry,
    /// conf changes, undecodable data) change nothing but the applied index; entries at or below the
    /// applied index were applied before (a restart replays them) and are skipped.
    public mutating func apply(_ e: Entry) -> AppliedCommand? {
        guard e.index > appliedIndex else { return nil }
        precondition(e.index == appliedIndex + 1, "applying entry \(e.index) after \(appliedIndex)")
        appliedIndex = e.index
        guard e.kind == .normal, !e.data.isEmpty, let cmd = try? StoreCommand(decoding: e.data) else { return nil }
        var next = self
        var changes: [Change] = []
        do {
            try next.execute(cmd.operation, index: e.index, changes: &changes)
        } catch {
            return AppliedCommand(id: cmd.id, index: e.index, result: .failure(error))
        }
        self = next
        return AppliedCommand(id: cmd.id, index: e.index, result: .success(changes))
    }

    private mutating func execute(_ op: StoreOperation, index: Index, changes: inout [Change]) throws(StoreError) {
        switch op {
        case let .create(c, k, v):
            try Self.validate(c, k)
            if collections[c]?[k] != nil { throw .alreadyExists(collection: c, key: k) }
            let o = StoredObject(collection: c, key: k, value: v, version: 1, createIndex: index, modifyIndex: index)
            collections[c, default: [:]][k] = o
            changes.append(Change(kind: .created, index: index, object: o))
        case let .update(c, k, v, expected):
            try Self.validate(c, k)
            guard var o = collections[c]?[k] else { throw .notFound(collection: c, key: k) }
            if let expected, expected != o.version {
                throw .versionMismatch(collection: c, key: k, expected: expected, actual: o.version)
            }
            o.value = v
            o.version += 1
            o.modifyIndex = index
            collections[c]![k] = o
            changes.append(Change(kind: .updated, index: index, object: o))
        case let .delete(c, k, expected):
            try Self.validate(c, k)
            guard let o = collections[c]?[k] else { throw .notFound(collection: c, key: k) }
            if let expected, expected != o.version {
                throw .versionMismatch(collection: c, key: k, expected: expected, actual: o.version)
            }
            collections[c]![k] = nil
            if collections[c]!.isEmpty { collections[c] = nil }
            changes.append(Change(kind: .deleted, index: index, object: o))
        case let .transaction(ops):
            // `apply` works on a copy, so a failure here leaves the store untouched.
            for op in ops { try execute(op, index: index, changes: &changes) }
        }
    }

    private static func validate(_ c: String, _ k: String) throws(StoreError) {
        if c.isEmpty || k.isEmpty { throw .invalid("empty collection or key") }
    }

    // MARK: - Snapshots

    static let snapshotTag: UInt8 = 0x73 // "s", format 1

    /// The whole store as bytes, for a Raft snapshot: collections and keys in order, so two equal
    /// stores encode to the same bytes.
    public var encoded: [UInt8] {
        var e = Encoder()
        e.u8(Self.snapshotTag)
        e.u64(appliedIndex)
        let names = collectionNames
        e.u32(UInt32(names.count))
        for c in names {
            let objs = list(c)
            e.string(c)
            e.u32(UInt32(objs.count))
            for o in objs {
                e.string(o.key)
                e.blob(o.value)
                e.u64(o.version)
                e.u64(o.createIndex)
                e.u64(o.modifyIndex)
            }
        }
        return e.bytes
    }

    public init(decoding bytes: [UInt8]) throws(StoreError) {
        var d = Decoder(bytes)
        guard try d.u8() == Self.snapshotTag else { throw .malformed("not a store snapshot") }
        appliedIndex = try d.u64()
        for _ in 0..<(try d.u32()) {
            let c = try d.string()
            var objs: [String: StoredObject] = [:]
            for _ in 0..<(try d.u32()) {
                let k = try d.string()
                objs[k] = StoredObject(collection: c, key: k, value: try d.blob(), version: try d.u64(),
                                       createIndex: try d.u64(), modifyIndex: try d.u64())
            }
            collections[c] = objs
        }
        guard d.atEnd else { throw .malformed("trailing bytes in snapshot") }
    }
}

import FoundationEssentials

/// A named collection whose values are one Codable type, stored as JSON with sorted keys so equal
/// values encode to equal bytes on every replica.
public struct TypedCollection<Value: Codable & Sendable>: Sendable {
    public let name: String

    public init(_ name: String) { self.name = name }

    /// A typed object with its store metadata.
    public struct Object: Sendable {
        public var key: String
        public var value: Value
        public var version: UInt64
        public var createIndex: UInt64
        public var modifyIndex: UInt64
    }

    public func encode(_ value: Value) throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return Array(try enc.encode(value))
    }

    public func decode(_ o: StoredObject) throws -> Object {
        Object(key: o.key, value: try JSONDecoder().decode(Value.self, from: Data(o.value)), version: o.version,
               createIndex: o.createIndex, modifyIndex: o.modifyIndex)
    }

    public func create(_ key: String, _ value: Value) throws -> StoreOperation {
        .create(collection: name, key: key, value: try encode(value))
    }

    /// An update; with `ifVersion`, a compare-and-swap.
    public func update(_ key: String, _ value: Value, ifVersion: UInt64? = nil) throws -> StoreOperation {
        .update(collection: name, key: key, value: try encode(value), expectedVersion: ifVersion)
    }

    public func delete(_ key: String, ifVersion: UInt64? = nil) -> StoreOperation {
        .delete(collection: name, key: key, expectedVersion: ifVersion)
    }

    public func get(_ key: String, in state: StoreState) throws -> Object? {
        try state.get(name, key).map(decode)
    }

    public func list(in state: StoreState) throws -> [Object] {
        try state.list(name).map(decode)
    }
}

/// Identifies one entry: a key in a named table of a network.
public struct EntryKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var network: String
    public var table: String
    public var key: String

    public init(network: String, table: String, key: String) {
        self.network = network
        self.table = table
        self.key = key
    }

    public static func < (lhs: EntryKey, rhs: EntryKey) -> Bool {
        (lhs.network, lhs.table, lhs.key) < (rhs.network, rhs.table, rhs.key)
    }

    public var description: String { "\(network)/\(table)/\(key)" }
}

/// The version of an entry this node holds, live or a tombstone.
public struct StoredEntry: Sendable, Hashable {
    public var owner: String
    public var time: UInt64
    public var value: [UInt8]
    public var deleting: Bool
    /// When a tombstone is forgotten; nil for a live entry.
    public var reapAt: GossipInstant?
}

/// Which node is in which network, keyed for the membership map.
struct NetworkMemberKey: Hashable, Comparable, Sendable {
    var node: String
    var network: String

    static func < (lhs: NetworkMemberKey, rhs: NetworkMemberKey) -> Bool {
        (lhs.network, lhs.node) < (rhs.network, rhs.node)
    }
}

/// The latest join or leave of a node for a network; a leave is kept until `reapAt` so that an
/// older join arriving late cannot re-add the node.
struct NetworkRecord: Sendable, Hashable {
    var time: UInt64
    var leaving: Bool
    var reapAt: GossipInstant?
}

/// Errors of the table API.
public enum GossipTableError: Error, Sendable, Hashable, CustomStringConvertible {
    case notJoined(network: String)
    case entryExists(EntryKey)
    case entryNotFound(EntryKey)
    case notOwner(EntryKey, owner: String)
    case tooLarge(EntryKey, encodedSize: Int, limit: Int)
    case nameTooLong(String)
    case leaving

    public var description: String {
        switch self {
        case .notJoined(let network): "this node has not joined network \(network)"
        case .entryExists(let key): "entry \(key) already exists"
        case .entryNotFound(let key): "entry \(key) does not exist"
        case .notOwner(let key, let owner): "entry \(key) is owned by \(owner)"
        case .tooLarge(let key, let size, let limit): "entry \(key) encodes to \(size) bytes, more than \(limit)"
        case .nameTooLong(let name): "name longer than \(WireLimits.name) bytes: \(name.prefix(32))…"
        case .leaving: "this node is leaving the cluster"
        }
    }
}

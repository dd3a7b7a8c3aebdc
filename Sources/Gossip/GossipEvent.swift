/// A change of the consumer-visible view of one table entry.
public struct TableChange: Sendable, Hashable, CustomStringConvertible {
    /// Why the visible value changed; `.deleted` also covers an owner that failed (its entry is
    /// suspended) and `.created` one that came back.
    public enum Kind: Sendable, Hashable {
        case created
        case updated
        case deleted
    }

    public var kind: Kind
    public var network: String
    public var table: String
    public var key: String
    public var owner: String
    /// The new value; the last visible value for `.deleted`.
    public var value: [UInt8]

    public init(kind: Kind, network: String, table: String, key: String, owner: String, value: [UInt8]) {
        self.kind = kind
        self.network = network
        self.table = table
        self.key = key
        self.owner = owner
        self.value = value
    }

    public var description: String {
        "\(kind) \(network)/\(table)/\(key) by \(owner) (\(value.count) B)"
    }
}

/// Something a consumer of the gossip layer may react to; drained with `GossipNode.drainEvents()`.
public enum GossipEvent: Sendable, Hashable {
    case memberJoined(Member)
    case memberSuspected(Member)
    /// A suspected or failed member is alive again (it refuted, or rejoined).
    case memberAlive(Member)
    case memberFailed(Member)
    case memberLeft(Member)
    case memberReaped(name: String)
    case table(TableChange)
}

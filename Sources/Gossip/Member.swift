/// What this node believes about a member: SWIM's alive → suspect → dead, or left after a graceful leave.
public enum MemberStatus: UInt8, Sendable, Hashable, CustomStringConvertible {
    case alive = 0
    case suspect = 1
    case dead = 2
    case left = 3

    /// Alive and suspect members still count: a suspect may refute, and its table entries stay visible.
    public var isActive: Bool { self == .alive || self == .suspect }

    public var description: String {
        switch self {
        case .alive: "alive"
        case .suspect: "suspect"
        case .dead: "dead"
        case .left: "left"
        }
    }
}

/// One entry of the member list, as this node currently sees it.
public struct Member: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var address: NodeAddress
    public var incarnation: UInt64
    public var status: MemberStatus
    /// When `status` last changed, on this node's clock; drives gossip-to-the-dead and reaping.
    public var statusChangedAt: GossipInstant

    public init(name: String, address: NodeAddress, incarnation: UInt64, status: MemberStatus, statusChangedAt: GossipInstant) {
        self.name = name
        self.address = address
        self.incarnation = incarnation
        self.status = status
        self.statusChangedAt = statusChangedAt
    }

    public var description: String {
        "\(name)@\(address) #\(incarnation) \(status)"
    }
}

/// A direct probe; `target` lets a node that reuses an address ignore probes meant for its predecessor.
public struct Ping: Sendable, Hashable {
    public var sequence: UInt32
    public var target: String
    public init(sequence: UInt32, target: String) {
        self.sequence = sequence
        self.target = target
    }
}

/// A request to probe `target` on the sender's behalf (SWIM's ping-req).
public struct IndirectPing: Sendable, Hashable {
    public var sequence: UInt32
    public var target: String
    public var targetAddress: NodeAddress
    /// Lifeguard: the relay answers with a nack if the target stays silent, so the requester can tell
    /// "the target is down" from "my own network is lossy".
    public var wantsNack: Bool
    public init(sequence: UInt32, target: String, targetAddress: NodeAddress, wantsNack: Bool) {
        self.sequence = sequence
        self.target = target
        self.targetAddress = targetAddress
        self.wantsNack = wantsNack
    }
}

/// `node` is alive at `incarnation`; also the refutation of a suspicion.
public struct Alive: Sendable, Hashable {
    public var incarnation: UInt64
    public var node: String
    public var address: NodeAddress
    public init(incarnation: UInt64, node: String, address: NodeAddress) {
        self.incarnation = incarnation
        self.node = node
        self.address = address
    }
}

/// `from` suspects `node` at `incarnation`.
public struct Suspect: Sendable, Hashable {
    public var incarnation: UInt64
    public var node: String
    public var from: String
    public init(incarnation: UInt64, node: String, from: String) {
        self.incarnation = incarnation
        self.node = node
        self.from = from
    }
}

/// `from` declares `node` dead at `incarnation`; when `from == node` it is a graceful leave.
public struct Dead: Sendable, Hashable {
    public var incarnation: UInt64
    public var node: String
    public var from: String
    public init(incarnation: UInt64, node: String, from: String) {
        self.incarnation = incarnation
        self.node = node
        self.from = from
    }
}

/// `node` joined (or left) `network` at Lamport time `time` of the network clock.
public struct NetworkEvent: Sendable, Hashable {
    public var time: UInt64
    public var node: String
    public var network: String
    public var leaving: Bool
    public init(time: UInt64, node: String, network: String, leaving: Bool) {
        self.time = time
        self.node = node
        self.network = network
        self.leaving = leaving
    }
}

/// One version of a table entry, as gossiped and as carried in push-pull.
public struct TableEvent: Sendable, Hashable {
    public var time: UInt64
    public var owner: String
    public var network: String
    public var table: String
    public var key: String
    public var value: [UInt8]
    public var deleting: Bool
    /// For a tombstone, how long the sender will still keep it; the receiver keeps it no longer, so a
    /// late copy of a delete does not outlive the original (NetworkDB's ResidualReapTime).
    public var residualReapMilliseconds: UInt32
    public init(time: UInt64, owner: String, network: String, table: String, key: String,
                value: [UInt8], deleting: Bool, residualReapMilliseconds: UInt32) {
        self.time = time
        self.owner = owner
        self.network = network
        self.table = table
        self.key = key
        self.value = value
        self.deleting = deleting
        self.residualReapMilliseconds = residualReapMilliseconds
    }
}

/// Every message that travels in a UDP packet.
public enum GossipMessage: Sendable, Hashable {
    case ping(Ping)
    case indirectPing(IndirectPing)
    case ack(sequence: UInt32)
    case nack(sequence: UInt32)
    case alive(Alive)
    case suspect(Suspect)
    case dead(Dead)
    case network(NetworkEvent)
    case table(TableEvent)
}

/// A member as carried in push-pull state.
public struct MemberState: Sendable, Hashable {
    public var name: String
    public var address: NodeAddress
    public var incarnation: UInt64
    public var status: MemberStatus
    public init(name: String, address: NodeAddress, incarnation: UInt64, status: MemberStatus) {
        self.name = name
        self.address = address
        self.incarnation = incarnation
        self.status = status
    }
}

/// The full state exchanged over a stream (TCP) in anti-entropy: members, network membership and
/// the entries of the sender's networks, so neither kind of state can drift (moby#53437).
public struct PushPull: Sendable, Hashable {
    /// The sender's node name: a stream's source address says nothing (TCP uses an ephemeral port).
    public var sender: String
    public var isJoin: Bool
    public var isResponse: Bool
    public var members: [MemberState]
    public var networks: [NetworkEvent]
    public var entries: [TableEvent]
    public init(sender: String, isJoin: Bool, isResponse: Bool, members: [MemberState], networks: [NetworkEvent], entries: [TableEvent]) {
        self.sender = sender
        self.isJoin = isJoin
        self.isResponse = isResponse
        self.members = members
        self.networks = networks
        self.entries = entries
    }
}

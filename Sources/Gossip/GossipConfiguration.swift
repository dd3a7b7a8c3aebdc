/// Every timing and size of the gossip layer, in one place, so tests can shrink them all at once.
///
/// The `.lan` defaults follow hashicorp/memberlist's `DefaultLANConfig` for membership and
/// libnetwork's NetworkDB for tables; `.fast` scales them down for simulators and live tests.
public struct GossipConfiguration: Sendable, Equatable {
    /// How often this node probes one member (scaled up by local health).
    public var probeInterval: Duration
    /// How long a direct ping waits for its ack before asking others to probe indirectly.
    public var probeTimeout: Duration
    /// How many members are asked to probe a target indirectly.
    public var indirectChecks: Int
    /// Suspicion lasts `suspicionMultiplier * max(1, log10(n)) * probeInterval` at least.
    public var suspicionMultiplier: Int
    /// The suspicion timeout starts at this multiple of its minimum and shrinks with confirmations.
    public var suspicionMaxTimeoutMultiplier: Int
    /// Upper bound of the local-health multiplier (Lifeguard's "LHM"); 1 disables it.
    public var awarenessMaxMultiplier: Int
    /// A broadcast is retransmitted `retransmitMultiplier * ceil(log10(n + 1))` times.
    public var retransmitMultiplier: Int
    /// How often piggy-backed broadcasts are pushed to random members.
    public var gossipInterval: Duration
    /// How many members each gossip round sends to.
    public var gossipNodes: Int
    /// Dead members still receive gossip for this long, so they can learn of it and refute.
    public var gossipToTheDeadTime: Duration
    /// How often the full state is exchanged with one random member (anti-entropy).
    public var pushPullInterval: Duration
    /// How often a push-pull is tried with one random failed member, so both sides of a healed
    /// partition find each other again (NetworkDB's reconnect loop; memberlist alone never would).
    public var reconnectInterval: Duration
    /// A failed (not left) member, and its suspended table entries, are forgotten after this long.
    public var deadMemberReapTime: Duration
    /// A deleted table entry stays as a tombstone this long, so the delete outruns stale copies.
    public var tombstoneReapTime: Duration
    /// A node's "left network" record is kept this long before it is forgotten.
    public var networkLeaveReapTime: Duration
    /// How often tombstones and dead members are checked for reaping.
    public var reapCheckInterval: Duration
    /// Largest UDP payload this node sends (memberlist and NetworkDB use 1400 to avoid fragmentation).
    public var maxPacketSize: Int
    /// Largest push-pull stream accepted or produced.
    public var maxStreamSize: Int

    public init(
        probeInterval: Duration, probeTimeout: Duration, indirectChecks: Int,
        suspicionMultiplier: Int, suspicionMaxTimeoutMultiplier: Int, awarenessMaxMultiplier: Int,
        retransmitMultiplier: Int, gossipInterval: Duration, gossipNodes: Int,
        gossipToTheDeadTime: Duration, pushPullInterval: Duration, reconnectInterval: Duration, deadMemberReapTime: Duration,
        tombstoneReapTime: Duration, networkLeaveReapTime: Duration, reapCheckInterval: Duration,
        maxPacketSize: Int = 1400, maxStreamSize: Int = 32 << 20
    ) {
        self.probeInterval = probeInterval
        self.probeTimeout = probeTimeout
        self.indirectChecks = indirectChecks
        self.suspicionMultiplier = suspicionMultiplier
        self.suspicionMaxTimeoutMultiplier = suspicionMaxTimeoutMultiplier
        self.awarenessMaxMultiplier = awarenessMaxMultiplier
        self.retransmitMultiplier = retransmitMultiplier
        self.gossipInterval = gossipInterval
        self.gossipNodes = gossipNodes
        self.gossipToTheDeadTime = gossipToTheDeadTime
        self.pushPullInterval = pushPullInterval
        self.reconnectInterval = reconnectInterval
        self.deadMemberReapTime = deadMemberReapTime
        self.tombstoneReapTime = tombstoneReapTime
        self.networkLeaveReapTime = networkLeaveReapTime
        self.reapCheckInterval = reapCheckInterval
        self.maxPacketSize = maxPacketSize
        self.maxStreamSize = maxStreamSize
    }

    /// memberlist's LAN profile; table reaping as NetworkDB (30 min tombstones, 24 h failed nodes).
    public static let lan = GossipConfiguration(
        probeInterval: .seconds(1), probeTimeout: .milliseconds(500), indirectChecks: 3,
        suspicionMultiplier: 4, suspicionMaxTimeoutMultiplier: 6, awarenessMaxMultiplier: 8,
        retransmitMultiplier: 4, gossipInterval: .milliseconds(200), gossipNodes: 3,
        gossipToTheDeadTime: .seconds(30), pushPullInterval: .seconds(30), reconnectInterval: .seconds(60),
        deadMemberReapTime: .seconds(24 * 3600), tombstoneReapTime: .seconds(30 * 60),
        networkLeaveReapTime: .seconds(30 * 60), reapCheckInterval: .seconds(5)
    )

    /// Ten times faster detection and gossip than `.lan`, with reaping in seconds, for tests.
    public static let fast = GossipConfiguration(
        probeInterval: .milliseconds(100), probeTimeout: .milliseconds(50), indirectChecks: 3,
        suspicionMultiplier: 4, suspicionMaxTimeoutMultiplier: 6, awarenessMaxMultiplier: 8,
        retransmitMultiplier: 4, gossipInterval: .milliseconds(20), gossipNodes: 3,
        gossipToTheDeadTime: .seconds(3), pushPullInterval: .seconds(1), reconnectInterval: .seconds(1),
        deadMemberReapTime: .seconds(30), tombstoneReapTime: .seconds(3),
        networkLeaveReapTime: .seconds(3), reapCheckInterval: .milliseconds(100)
    )
}

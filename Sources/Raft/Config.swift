/// Tunables of one node; every timing is in ticks, so the caller decides how long a tick is.
public struct Config: Sendable {
    /// This node's id; must not be `noNode`.
    public var id: NodeID
    /// A follower that hears nothing for a random time in [electionTick, 2*electionTick) ticks campaigns.
    public var electionTick: Int
    /// A leader sends heartbeats every `heartbeatTick` ticks; must be below `electionTick`.
    public var heartbeatTick: Int
    /// Payload bytes per append message (at least one entry is always sent).
    public var maxSizePerMessage: Int
    /// Appends in flight to one follower in replicate state before the leader waits for acknowledgements.
    public var maxInflightMessages: Int
    /// Payload bytes in flight to one follower before the leader waits.
    public var maxInflightBytes: Int
    /// Run a pre-election first, so a node that was cut off cannot raise the term and depose a healthy leader.
    public var preVote: Bool
    /// A leader that has not heard from a quorum within an election timeout steps down, and followers that
    /// heard from a leader within the timeout ignore vote requests (the leader lease).
    public var checkQuorum: Bool
    /// Seeds the generator that randomizes election timeouts; inject it so runs are reproducible.
    public var randomSeed: UInt64

    public init(
        id: NodeID, electionTick: Int = 10, heartbeatTick: Int = 1, maxSizePerMessage: Int = 1 << 20,
        maxInflightMessages: Int = 256, maxInflightBytes: Int = 32 << 20, preVote: Bool = true,
        checkQuorum: Bool = true, randomSeed: UInt64
    ) {
        self.id = id
        self.electionTick = electionTick
        self.heartbeatTick = heartbeatTick
        self.maxSizePerMessage = maxSizePerMessage
        self.maxInflightMessages = maxInflightMessages
        self.maxInflightBytes = maxInflightBytes
        self.preVote = preVote
        self.checkQuorum = checkQuorum
        self.randomSeed = randomSeed
    }

    func validate() {
        precondition(id != noNode, "a node id must not be 0")
        precondition(heartbeatTick > 0 && electionTick > heartbeatTick, "need 0 < heartbeatTick < electionTick")
        precondition(maxInflightMessages > 0 && maxInflightBytes > 0 && maxSizePerMessage > 0)
    }
}

import Raft

/// What `GET /debug/raft` returns and `swarmnet debug raft` prints: one member's view of the group.
public struct RaftStatusReport: Codable, Sendable, Hashable {
    /// One member as this node sees it; replication progress is known only on the leader.
    public struct Member: Codable, Sendable, Hashable {
        public var id: UInt64
        public var address: String?
        /// "voter" or "learner".
        public var suffrage: String
        public var match: UInt64?
        public var next: UInt64?
        /// probe, replicate or snapshot.
        public var state: String?
        public var recentActive: Bool?

        public init(id: UInt64, address: String?, suffrage: String, match: UInt64? = nil, next: UInt64? = nil,
                    state: String? = nil, recentActive: Bool? = nil) {
            self.id = id
            self.address = address
            self.suffrage = suffrage
            self.match = match
            self.next = next
            self.state = state
            self.recentActive = recentActive
        }
    }

    public var id: UInt64
    public var role: String
    public var term: UInt64
    public var vote: UInt64
    public var leader: UInt64
    public var commit: UInt64
    public var applied: UInt64
    public var firstIndex: UInt64
    public var lastIndex: UInt64
    public var snapshotIndex: UInt64
    public var members: [Member]
    public var transport: RaftTransport.Counters?

    public init(status: Status, snapshotIndex: Index, addresses: [NodeID: PeerAddress], transport: RaftTransport.Counters?) {
        id = status.id
        role = status.role.rawValue
        term = status.term
        vote = status.vote
        leader = status.leader
        commit = status.commit
        applied = status.applied
        firstIndex = status.firstIndex
        lastIndex = status.lastIndex
        self.snapshotIndex = snapshotIndex
        self.transport = transport
        let ids = status.conf.voters.union(status.conf.learners).sorted()
        members = ids.map { mid in
            let pr = status.progress[mid]
            return Member(id: mid, address: addresses[mid]?.description,
                          suffrage: status.conf.learners.contains(mid) ? "learner" : "voter",
                          match: pr?.match, next: pr?.next, state: pr?.state.rawValue, recentActive: pr?.recentActive)
        }
    }
}

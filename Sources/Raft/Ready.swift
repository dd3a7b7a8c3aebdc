/// Work the caller must do, in this order: persist `hardState`, `snapshot` and `entries`
/// (syncing them), then send `messages`, then apply `snapshot` and `committedEntries`,
/// then call `RaftNode.advance(_:)` with this value.
///
/// Sending only after syncing is what makes an acknowledgement mean "stored": a vote or an
/// append response must never reach a peer before the state it vouches for is durable.
public struct Ready: Sendable {
    /// Term, vote and commit, if they changed since the last `advance`.
    public var hardState: HardState?
    /// Entries to append; they may replace persisted entries from `entries[0].index` on.
    public var entries: [Entry]
    /// A snapshot from the leader to persist and load into the application.
    public var snapshot: Snapshot?
    public var messages: [Message]
    /// Entries committed and not yet applied, in order.
    public var committedEntries: [Entry]
    /// ReadIndex requests that can be answered once `index` is applied.
    public var readStates: [ReadState]
    /// Soft state, never persisted.
    public var leader: NodeID
    public var role: Role

    public var mustSync: Bool { hardState != nil || !entries.isEmpty || snapshot != nil }

    public var isEmpty: Bool {
        hardState == nil && entries.isEmpty && snapshot == nil && messages.isEmpty
            && committedEntries.isEmpty && readStates.isEmpty
    }
}

/// A summary of one node for debugging (`swarmnet debug raft`) and tests.
public struct Status: Sendable, Hashable {
    public var id: NodeID
    public var term: Term
    public var vote: NodeID
    public var leader: NodeID
    public var role: Role
    public var commit: Index
    public var applied: Index
    public var firstIndex: Index
    public var lastIndex: Index
    public var conf: ConfState
    /// Only filled on the leader.
    public var progress: [NodeID: Progress]
    public var leadTransferee: NodeID
}

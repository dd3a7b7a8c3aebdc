/// One Raft member as a pure state machine: feed it messages (`step`), time (`tick`) and
/// proposals; collect what to persist, send and apply with `ready()`; confirm with `advance(_:)`;
/// compact with `compact(to:data:)`, periodically and whenever `snapshotRequest` asks.
///
/// It does no I/O and reads no clock; with the same inputs and seed it makes the same outputs.
public struct RaftNode: Sendable {
    public let id: NodeID
    let config: Config
    var rng: SplitMix64

    public internal(set) var term: Term = 0
    public internal(set) var vote: NodeID = noNode
    /// The leader this node believes in for `term`, or `noNode`.
    public internal(set) var leader: NodeID = noNode
    public internal(set) var role: Role = .follower

    var log: RaftLog
    var tracker: ProgressTracker

    var electionElapsed = 0
    var heartbeatElapsed = 0
    var randomizedElectionTimeout = 0

    /// The member a leader transfer is handing over to, or `noNode`.
    var leadTransferee: NodeID = noNode
    /// A leader proposes no conf change until it has applied this index, so at most one is pending.
    var pendingConfIndex: Index = 0
    /// Conf changes up to here are in `tracker`; guards against applying one twice after a restart.
    var confAppliedIndex: Index = 0
    /// Configurations after each applied change, to label snapshots taken below the newest one.
    var confHistory: [(index: Index, conf: ConfState)] = []
    /// Members a leader must send a snapshot to, but whose configuration its newest snapshot predates.
    var membersAwaitingSnapshot: Set<NodeID> = []

    var readOnly = ReadOnly()
    /// ReadIndex requests that arrived before this leader committed an entry of its own term.
    var pendingReadIndex: [Message] = []
    var readStates: [ReadState] = []
    var outbox: [Message] = []
    var persistedHardState: HardState

    /// Starts (or restarts) a node from what the caller persisted.
    public init(config: Config, persisted: PersistentState) {
        config.validate()
        id = config.id
        self.config = config
        rng = SplitMix64(seed: config.randomSeed ^ (config.id &* 0x9E37_79B9_7F4A_7C15))
        log = RaftLog(snapshot: persisted.snapshot, entries: persisted.entries, commit: persisted.hardState.commit)
        persistedHardState = persisted.hardState
        let snapConf = persisted.snapshot.metadata.confState
        tracker = ProgressTracker(conf: snapConf, maxInflight: config.maxInflightMessages,
                                  maxInflightBytes: config.maxInflightBytes)
        confAppliedIndex = log.snapshotIndex
        confHistory = [(log.snapshotIndex, snapConf)]
        // Committed conf changes are facts; load them now so the node knows its group before the
        // application replays them.
        for e in log.slice(log.firstIndex, log.committed) where e.kind == .confChange {
            applyConfChange(e)
        }
        term = persisted.hardState.term
        vote = persisted.hardState.vote
        becomeFollower(term: term, leader: noNode)
    }

    // MARK: - Public API

    /// Advances logical time by one tick.
    public mutating func tick() {
        switch role {
        case .leader: tickHeartbeat()
        default: tickElection()
        }
    }

    /// Starts an election now (the caller's "campaign"), as if the election timeout had passed.
    public mutating func campaign() {
        try? step(Message(type: .hup))
    }

    /// Proposes application data; forwarded to the leader when this node follows one.
    public mutating func propose(_ data: [UInt8]) throws {
        try step(Message(type: .propose, entries: [Entry(term: 0, index: 0, data: data)]))
    }

    /// Proposes a membership change; it takes effect on each node when the entry is applied.
    public mutating func proposeConfChange(_ cc: ConfChange) throws {
        try step(Message(type: .propose, entries: [Entry(term: 0, index: 0, kind: .confChange, data: cc.encoded)]))
    }

    /// Asks for a linearizable read; the answer comes back as a `ReadState` with the same context.
    public mutating func readIndex(context: [UInt8]) throws {
        try step(Message(type: .readIndex, context: context))
    }

    /// Asks the leader to hand leadership to `transferee`.
    public mutating func transferLeadership(to transferee: NodeID) {
        try? step(Message(type: .transferLeader, from: transferee))
    }

    /// Tells the leader the transport could not reach `peer`, so it stops pipelining to it.
    public mutating func reportUnreachable(_ peer: NodeID) {
        try? step(Message(type: .unreachable, from: peer))
    }

    /// Tells the leader whether a snapshot reached `peer`.
    public mutating func reportSnapshot(_ peer: NodeID, success: Bool) {
        try? step(Message(type: .snapshotStatus, from: peer, reject: !success))
    }

    public var hasReady: Bool {
        !outbox.isEmpty || !readStates.isEmpty || currentHardState != persistedHardState
            || !log.unstableEntries.isEmpty || log.hasPendingSnapshot || !log.committedUnapplied.isEmpty
    }

    /// Collects pending work; messages and read states are handed over (not repeated), the rest
    /// is repeated until `advance(_:)` confirms it.
    public mutating func ready() -> Ready {
        let hs = currentHardState
        let rd = Ready(
            hardState: hs == persistedHardState ? nil : hs,
            entries: log.unstableEntries,
            snapshot: log.pendingSnapshot,
            messages: outbox,
            committedEntries: log.committedUnapplied,
            readStates: readStates,
            leader: leader,
            role: role
        )
        outbox = []
        readStates = []
        return rd
    }

    /// Confirms that `rd` was persisted, sent and applied.
    public mutating func advance(_ rd: Ready) {
        if let hs = rd.hardState { persistedHardState = hs }
        if let s = rd.snapshot {
            log.snapshotPersisted(s.metadata)
            log.applied(to: s.metadata.index)
        }
        if let last = rd.entries.last { log.stable(to: last.index, term: last.term) }
        for e in rd.committedEntries where e.kind == .confChange && e.index > confAppliedIndex {
            applyConfChange(e)
        }
        if let last = rd.committedEntries.last { log.applied(to: last.index) }
        if role == .leader {
            // The leader counts its own copy only once it is on disk, like any follower's.
            let stableLast = log.unstableFrom - 1
            if tracker.progress[id]?.maybeUpdate(stableLast) == true, maybeCommit() {
                bcastAppend()
            }
        }
    }

    /// Folds the log up to `index` (applied) into a snapshot holding `data`, the application's
    /// state at that index; the caller persists the returned snapshot with `PersistentState.install`.
    public mutating func compact(to index: Index, data: [UInt8]) throws -> Snapshot {
        guard index <= log.applied else { throw RaftError.notApplied(requested: index, applied: log.applied) }
        guard index > log.snapshotIndex else { throw RaftError.compacted(requested: index, firstIndex: log.firstIndex) }
        let keep = confHistory.lastIndex(where: { $0.index <= index })!
        let s = log.compact(to: index, data: data, confState: confHistory[keep].conf)
        confHistory.removeFirst(keep)
        sendSnapshotToAwaitingMembers()
        return s
    }

    /// Non-nil when this leader asks the caller for a new snapshot: compact (`compact(to:data:)`)
    /// at an applied index at or above this one.
    ///
    /// A snapshot carries the configuration as of its index, and a member refuses one that does not
    /// list it (it would come from a configuration it is not part of). So a member added after the
    /// leader's newest snapshot, and too far behind for appends, cannot be sent that snapshot;
    /// waiting for the next periodic compaction could take thousands of entries. etcd's server
    /// solves it by building a "merged" snapshot of its current state when it sends one; here the
    /// core stays free of application data and asks instead. A snapshot at or above the index of
    /// the newest applied configuration change lists every member the leader replicates to.
    public var snapshotRequest: Index? {
        guard role == .leader else { return nil }
        let snapshotConf = log.snapshot.metadata.confState
        let unlisted = membersAwaitingSnapshot.contains { tracker.progress[$0] != nil && !snapshotConf.contains($0) }
        return unlisted ? max(confAppliedIndex, log.snapshotIndex + 1) : nil
    }

    public var status: Status {
        Status(id: id, term: term, vote: vote, leader: leader, role: role, commit: log.committed,
               applied: log.applied, firstIndex: log.firstIndex, lastIndex: log.lastIndex, conf: tracker.conf,
               progress: role == .leader ? tracker.progress : [:], leadTransferee: leadTransferee)
    }

    /// The entries currently held in memory (after the snapshot), for inspection by tests and tools.
    public var logEntries: [Entry] { log.entries }
    public var snapshot: Snapshot { log.snapshot }

    var currentHardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }

    // MARK: - Role changes

    mutating func reset(term newTerm: Term) {
        if term != newTerm {
            term = newTerm
            vote = noNode
        }
        leader = noNode
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout = config.electionTick + Int(rng.next() % UInt64(config.electionTick))
        leadTransferee = noNode
        tracker.reset(lastIndex: log.lastIndex, selfID: id)
        // Only what is on disk counts for our own match.
        tracker.progress[id]?.match = min(log.lastIndex, log.unstableFrom - 1)
        pendingConfIndex = 0
        readOnly.reset()
        pendingReadIndex = []
        // A new term starts with fresh progress; a new leader finds out again who needs a snapshot.
        membersAwaitingSnapshot = []
    }

    mutating func becomeFollower(term newTerm: Term, leader newLeader: NodeID) {
        reset(term: newTerm)
        leader = newLeader
        role = .follower
    }

    mutating func becomePreCandidate() {
        precondition(role != .leader, "leader cannot become pre-candidate")
        // A pre-candidate changes neither term nor vote: losing the pre-vote must leave no trace.
        tracker.votes = [:]
        leader = noNode
        role = .preCandidate
    }

    mutating func becomeCandidate() {
        precondition(role != .leader, "leader cannot become candidate")
        reset(term: term + 1)
        vote = id
        role = .candidate
    }

    mutating func becomeLeader() {
        precondition(role != .follower, "follower cannot become leader")
        reset(term: term)
        leader = id
        role = .leader
        tracker.progress[id]?.becomeReplicate()
        tracker.progress[id]?.recentActive = true
        // Entries of earlier terms may hold a conf change not yet applied; wait for them first.
        pendingConfIndex = log.lastIndex
        // An empty entry of our own term lets us commit (and learn the commit index) at once (§8).
        appendEntries([Entry(term: 0, index: 0)])
    }

    // MARK: - Ticks

    var promotable: Bool {
        tracker.conf.voters.contains(id) && !log.hasPendingSnapshot
    }

    var pastElectionTimeout: Bool { electionElapsed >= randomizedElectionTimeout }

    mutating func tickElection() {
        electionElapsed += 1
        if promotable && pastElectionTimeout {
            electionElapsed = 0
            try? step(Message(type: .hup))
        }
    }

    mutating func tickHeartbeat() {
        heartbeatElapsed += 1
        electionElapsed += 1
        if electionElapsed >= config.electionTick {
            electionElapsed = 0
            if config.checkQuorum {
                try? step(Message(type: .checkQuorum))
            }
            // A transfer that did not finish within an election timeout is abandoned.
            if role == .leader, leadTransferee != noNode { leadTransferee = noNode }
        }
        guard role == .leader else { return }
        for (pid, pr) in tracker.progress where pr.state == .snapshot {
            // The transport may drop a snapshot without telling us; retry after an election timeout.
            tracker.progress[pid]!.snapshotTicks += 1
            if tracker.progress[pid]!.snapshotTicks >= config.electionTick {
                tracker.progress[pid]!.pendingSnapshot = 0
                tracker.progress[pid]!.becomeProbe()
            }
        }
        if heartbeatElapsed >= config.heartbeatTick {
            heartbeatElapsed = 0
            try? step(Message(type: .beat))
        }
    }

    // MARK: - Sending

    mutating func send(_ m: Message) {
        var m = m
        if m.from == noNode { m.from = id }
        switch m.type {
        case .vote, .voteResponse, .preVote, .preVoteResponse:
            // The caller sets these terms: a pre-vote asks for term+1 and a grant echoes the request's term.
            precondition(m.term != 0, "\(m.type) must carry a term")
        case .propose, .readIndex:
            // Forwarded requests are not bound to a term; the leader serves them in whatever term it is.
            break
        default:
            m.term = term
        }
        outbox.append(m)
    }

    /// Sends an append (or a snapshot) to `to`; with `sendIfEmpty` false, only if there are entries.
    @discardableResult
    mutating func maybeSendAppend(to: NodeID, sendIfEmpty: Bool = true) -> Bool {
        guard var pr = tracker.progress[to], to != id else { return false }
        if pr.isPaused { return false }
        if pr.next > log.lastIndex + 1 { pr.next = log.lastIndex + 1 }
        let prevIndex = pr.next - 1
        guard let prevTerm = log.term(at: prevIndex),
              let ents = log.entries(from: pr.next, maxBytes: config.maxSizePerMessage)
        else {
            return maybeSendSnapshot(to: to)
        }
        if ents.isEmpty && !sendIfEmpty { return false }
        send(Message(type: .append, to: to, logTerm: prevTerm, index: prevIndex, entries: ents, commit: log.committed))
        pr.sentEntries(last: ents.last?.index, bytes: ents.reduce(0) { $0 + $1.payloadSize })
        tracker.progress[to] = pr
        return true
    }

    mutating func maybeSendSnapshot(to: NodeID) -> Bool {
        guard let pr = tracker.progress[to], pr.recentActive else { return false }
        let s = log.snapshot
        precondition(!s.isEmpty, "a compacted prefix implies a snapshot")
        guard s.metadata.confState.contains(to) else {
            // The member joined after this snapshot was taken and would refuse it (`restore`). Stay
            // in probe and ask the caller for a newer snapshot (`snapshotRequest`); `compact` sends it.
            membersAwaitingSnapshot.insert(to)
            return false
        }
        send(Message(type: .snapshot, to: to, snapshot: s))
        tracker.progress[to]!.becomeSnapshot(s.metadata.index)
        return true
    }

    /// After a compaction, sends the new snapshot to the members that were waiting for one listing them.
    mutating func sendSnapshotToAwaitingMembers() {
        let listed = membersAwaitingSnapshot.filter { log.snapshot.metadata.confState.contains($0) }
        membersAwaitingSnapshot.subtract(listed)
        guard role == .leader else { return }
        for pid in listed.sorted() { maybeSendAppend(to: pid) }
    }

    mutating func bcastAppend() {
        for pid in tracker.progress.keys.sorted() where pid != id {
            maybeSendAppend(to: pid)
        }
    }

    mutating func bcastHeartbeat(context: [UInt8]? = nil) {
        let ctx = context ?? readOnly.lastContext ?? []
        for pid in tracker.progress.keys.sorted() where pid != id {
            // Never tell a follower to commit past what it is known to hold.
            let commit = min(tracker.progress[pid]!.match, log.committed)
            send(Message(type: .heartbeat, to: pid, commit: commit, context: ctx))
        }
    }

    mutating func sendTimeoutNow(to: NodeID) {
        send(Message(type: .timeoutNow, to: to))
    }

    // MARK: - Log

    mutating func appendEntries(_ es: [Entry]) {
        var es = es
        let last = log.lastIndex
        for i in es.indices {
            es[i].term = term
            es[i].index = last + Index(i) + 1
        }
        log.append(es)
    }

    /// Advances the commit index to what a quorum holds; true if it moved.
    @discardableResult
    mutating func maybeCommit() -> Bool {
        guard log.maybeCommit(tracker.committedIndex(), term: term) else { return false }
        releasePendingReadIndex()
        return true
    }

    var committedEntryInCurrentTerm: Bool { log.term(at: log.committed) == term }

    // MARK: - Membership

    mutating func applyConfChange(_ e: Entry) {
        guard let cc = ConfChange(decoding: e.data) else {
            preconditionFailure("committed conf change at \(e.index) is malformed")
        }
        let newConf = cc.applied(to: tracker.conf)
        confAppliedIndex = e.index
        confHistory.append((e.index, newConf))
        let added = newConf.voters.union(newConf.learners).subtracting(tracker.conf.voters.union(tracker.conf.learners))
        tracker.apply(newConf, next: log.lastIndex + 1)
        guard role == .leader else { return }
        if !newConf.voters.contains(id) {
            // A leader that is no longer a voter steps down; the remaining voters elect a new one.
            becomeFollower(term: term, leader: noNode)
            return
        }
        if leadTransferee != noNode, !newConf.voters.contains(leadTransferee) { leadTransferee = noNode }
        // A smaller quorum may already hold newer entries.
        if maybeCommit() { bcastAppend() }
        for pid in added.sorted() { maybeSendAppend(to: pid) }
    }

    /// True while a membership change is in this node's log (committed or not) and not yet applied
    /// here. On the leader a new change would be refused until it is; elsewhere it is a hint.
    public var hasPendingConfChange: Bool {
        let lo = max(log.applied + 1, log.firstIndex)
        guard lo <= log.lastIndex else { return false }
        return log.slice(lo, log.lastIndex).contains { $0.kind == .confChange }
    }

    var hasUnappliedConfChanges: Bool {
        guard log.applied < log.committed else { return false }
        let lo = max(log.applied + 1, log.firstIndex)
        return log.slice(lo, log.committed).contains { $0.kind == .confChange }
    }
}

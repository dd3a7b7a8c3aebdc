/// How the leader is currently replicating to one follower (etcd-io/raft's progress states).
public enum ReplicationState: String, Sendable, Hashable, CustomStringConvertible {
    /// One append at a time until the follower's match index is found.
    case probe
    /// Optimistic pipelining: appends are sent ahead of acknowledgements, bounded by `Inflights`.
    case replicate
    /// A snapshot is on its way; appends wait until the follower reports it.
    case snapshot

    public var description: String { rawValue }
}

/// A bounded window of appends sent but not acknowledged, limited by count and by bytes.
struct Inflights: Sendable, Hashable {
    /// Last index and payload bytes of each append in flight, oldest first.
    private var window: [(index: Index, bytes: Int)] = []
    private var head = 0
    private(set) var bytes = 0
    let maxCount: Int
    let maxBytes: Int

    init(maxCount: Int, maxBytes: Int) {
        self.maxCount = maxCount
        self.maxBytes = maxBytes
    }

    static func == (a: Inflights, b: Inflights) -> Bool {
        a.count == b.count && a.bytes == b.bytes && a.maxCount == b.maxCount && a.maxBytes == b.maxBytes
    }

    func hash(into h: inout Hasher) {
        h.combine(count)
        h.combine(bytes)
    }

    var count: Int { window.count - head }
    var isFull: Bool { count >= maxCount || bytes >= maxBytes }

    mutating func add(_ index: Index, bytes b: Int) {
        window.append((index, b))
        bytes += b
    }

    /// Frees every append whose last index is at or below `index` (they are acknowledged).
    mutating func free(upTo index: Index) {
        while head < window.count, window[head].index <= index {
            bytes -= window[head].bytes
            head += 1
        }
        compactStorage()
    }

    /// Frees the oldest append; a heartbeat response shows the follower is alive, so let one more through.
    mutating func freeFirst() {
        guard head < window.count else { return }
        bytes -= window[head].bytes
        head += 1
        compactStorage()
    }

    mutating func reset() {
        window.removeAll(keepingCapacity: true)
        head = 0
        bytes = 0
    }

    private mutating func compactStorage() {
        if head == window.count {
            window.removeAll(keepingCapacity: true)
            head = 0
        } else if head > 64, head * 2 > window.count {
            window.removeFirst(head)
            head = 0
        }
    }
}

/// The leader's view of one member: how far its log matches and what to send next.
public struct Progress: Sendable, Hashable {
    /// Highest index known to match the leader's log.
    public internal(set) var match: Index
    /// Next index to send.
    public internal(set) var next: Index
    public internal(set) var state: ReplicationState
    /// In probe state: an append was sent and we wait for its answer or a heartbeat response.
    var probeSent = false
    /// In snapshot state: the index of the snapshot sent.
    public internal(set) var pendingSnapshot: Index = 0
    /// Heard from since the last CheckQuorum round.
    public internal(set) var recentActive = false
    /// Ticks spent in snapshot state; past the election timeout we assume the snapshot was lost.
    var snapshotTicks = 0
    public internal(set) var isLearner: Bool
    var inflights: Inflights

    init(next: Index, isLearner: Bool, maxInflight: Int, maxInflightBytes: Int) {
        match = 0
        self.next = next
        state = .probe
        self.isLearner = isLearner
        inflights = Inflights(maxCount: maxInflight, maxBytes: maxInflightBytes)
    }

    private mutating func reset(_ s: ReplicationState) {
        probeSent = false
        pendingSnapshot = 0
        snapshotTicks = 0
        state = s
        inflights.reset()
    }

    mutating func becomeProbe() {
        // After a snapshot the follower has at least the snapshot's entries.
        if state == .snapshot {
            let ps = pendingSnapshot
            reset(.probe)
            next = max(match + 1, ps + 1)
        } else {
            reset(.probe)
            next = match + 1
        }
    }

    mutating func becomeReplicate() {
        reset(.replicate)
        next = match + 1
    }

    mutating func becomeSnapshot(_ index: Index) {
        reset(.snapshot)
        pendingSnapshot = index
    }

    /// Called when the follower acknowledged `index`; true if this was news.
    mutating func maybeUpdate(_ index: Index) -> Bool {
        var updated = false
        if match < index {
            match = index
            updated = true
            probeSent = false
        }
        next = max(next, index + 1)
        return updated
    }

    /// Called on a rejected append for `rejected`; `hint` is the highest index that may match.
    /// Returns false if the rejection is stale (answers an append we already moved past).
    mutating func maybeDecrease(rejected: Index, hint: Index) -> Bool {
        if state == .replicate {
            // In pipelining, a rejection below match is an old duplicate.
            if rejected <= match { return false }
            next = match + 1
            return true
        }
        // In probe state only the latest probe (at next-1) counts.
        if next == 0 || next - 1 != rejected { return false }
        next = max(min(rejected, hint + 1), match + 1)
        probeSent = false
        return true
    }

    /// Records that entries up to `last` (with `bytes` of payload) were sent.
    mutating func sentEntries(last: Index?, bytes: Int) {
        switch state {
        case .replicate:
            if let last {
                next = last + 1
                inflights.add(last, bytes: bytes)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            preconditionFailure("sending entries in snapshot state")
        }
    }

    /// Whether the leader should hold back further appends to this member.
    var isPaused: Bool {
        switch state {
        case .probe: probeSent
        case .replicate: inflights.isFull
        case .snapshot: true
        }
    }
}

/// Membership and per-member progress, kept by every node but used only while leading.
struct ProgressTracker: Sendable {
    private(set) var conf: ConfState
    var progress: [NodeID: Progress] = [:]
    /// Votes received in the current (pre-)election.
    var votes: [NodeID: Bool] = [:]
    let maxInflight: Int
    let maxInflightBytes: Int

    init(conf: ConfState, maxInflight: Int, maxInflightBytes: Int) {
        self.conf = conf
        self.maxInflight = maxInflight
        self.maxInflightBytes = maxInflightBytes
    }

    var quorum: Int { conf.voters.count / 2 + 1 }

    /// Switches to `newConf`, keeping progress of members that stay; new members start probing at `next`.
    mutating func apply(_ newConf: ConfState, next: Index) {
        conf = newConf
        for id in progress.keys where !newConf.contains(id) { progress[id] = nil }
        for id in newConf.voters.union(newConf.learners) {
            if progress[id] == nil {
                var pr = Progress(next: next, isLearner: false, maxInflight: maxInflight, maxInflightBytes: maxInflightBytes)
                // A new member has not had a chance to answer yet; don't let CheckQuorum count it as dead at once.
                pr.recentActive = true
                progress[id] = pr
            }
            progress[id]!.isLearner = newConf.learners.contains(id)
        }
    }

    /// Fresh progress for every member, as after a change of term.
    mutating func reset(lastIndex: Index, selfID: NodeID) {
        progress = [:]
        for id in conf.voters.union(conf.learners) {
            var pr = Progress(next: lastIndex + 1, isLearner: conf.learners.contains(id),
                              maxInflight: maxInflight, maxInflightBytes: maxInflightBytes)
            if id == selfID { pr.match = lastIndex }
            progress[id] = pr
        }
        votes = [:]
    }

    /// The highest index stored on a quorum of voters (learners do not count).
    func committedIndex() -> Index {
        let matches = conf.voters.map { progress[$0]?.match ?? 0 }.sorted(by: >)
        guard !matches.isEmpty else { return 0 }
        return matches[quorum - 1]
    }

    /// Whether a quorum of voters was heard from recently; `selfID` always counts as active.
    func quorumActive(selfID: NodeID) -> Bool {
        let active = conf.voters.filter { $0 == selfID || progress[$0]?.recentActive == true }.count
        return active >= quorum
    }

    enum VoteResult { case pending, won, lost }

    /// Records a vote (the first one from each voter counts) and tallies the election.
    mutating func recordVote(_ id: NodeID, granted: Bool) -> VoteResult {
        if votes[id] == nil { votes[id] = granted }
        var yes = 0
        var no = 0
        for v in conf.voters {
            switch votes[v] {
            case true?: yes += 1
            case false?: no += 1
            case nil: break
            }
        }
        if yes >= quorum { return .won }
        if no > conf.voters.count - quorum { return .lost }
        return .pending
    }

    /// True if `acks` holds a quorum of voters.
    func isQuorum(_ acks: Set<NodeID>) -> Bool {
        conf.voters.filter { acks.contains($0) }.count >= quorum
    }
}

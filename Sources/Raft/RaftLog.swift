/// The in-memory log of one node: a snapshot boundary, the entries after it, and how far they are
/// committed, applied and persisted.
///
/// The node keeps every entry after the last snapshot in memory; the caller keeps a durable copy.
/// `unstableFrom` marks the first entry the caller has not yet persisted, so a `Ready` can hand out
/// exactly the suffix to write (which may start below the caller's last index after a conflict:
/// the caller must then drop its entries from that index on).
struct RaftLog: Sendable {
    /// Index and term of the last entry folded into the snapshot; entries start right after it.
    private(set) var snapshotIndex: Index
    private(set) var snapshotTerm: Term
    private(set) var entries: [Entry]
    private(set) var committed: Index
    /// Highest index the application has been handed and confirmed through `advance`.
    private(set) var applied: Index
    /// First index not yet persisted by the caller.
    private(set) var unstableFrom: Index
    /// A snapshot received from the leader that the caller has not persisted yet.
    private(set) var pendingSnapshot: Snapshot?
    /// The newest snapshot we hold (received or made by compaction), sent to followers that are too far behind.
    private(set) var snapshot: Snapshot

    /// Rebuilds the log from what the caller persisted.
    init(snapshot: Snapshot, entries: [Entry], commit: Index) {
        precondition(entries.first.map { $0.index == snapshot.metadata.index + 1 } ?? true,
                     "persisted entries must start right after the snapshot")
        self.snapshot = snapshot
        snapshotIndex = snapshot.metadata.index
        snapshotTerm = snapshot.metadata.term
        self.entries = entries
        let last = snapshotIndex + UInt64(entries.count)
        precondition(commit <= last, "persisted commit \(commit) is beyond the persisted log (last \(last))")
        committed = max(commit, snapshotIndex)
        applied = snapshotIndex
        unstableFrom = last + 1
        pendingSnapshot = nil
    }

    var firstIndex: Index { snapshotIndex + 1 }
    var lastIndex: Index { snapshotIndex + UInt64(entries.count) }
    var lastTerm: Term { term(at: lastIndex) ?? 0 }

    /// The term at `index`, or nil if compacted or not yet written.
    func term(at index: Index) -> Term? {
        if index == snapshotIndex { return snapshotTerm }
        guard index > snapshotIndex, index <= lastIndex else { return nil }
        return entries[Int(index - snapshotIndex - 1)].term
    }

    func matchTerm(_ index: Index, _ term: Term) -> Bool {
        self.term(at: index) == term
    }

    /// Raft's up-to-date rule for granting votes (§5.4.1).
    func isUpToDate(lastIndex otherIndex: Index, lastTerm otherTerm: Term) -> Bool {
        otherTerm > lastTerm || (otherTerm == lastTerm && otherIndex >= lastIndex)
    }

    /// Entries in `lo...`, at least one if any, then as many as fit in `maxBytes`; nil if `lo` is compacted.
    func entries(from lo: Index, maxBytes: Int, maxCount: Int = .max) -> [Entry]? {
        guard lo > snapshotIndex else { return nil }
        guard lo <= lastIndex else { return [] }
        var out: [Entry] = []
        var size = 0
        var i = Int(lo - snapshotIndex - 1)
        while i < entries.count, out.count < maxCount {
            let e = entries[i]
            if !out.isEmpty && size + e.payloadSize > maxBytes { break }
            size += e.payloadSize
            out.append(e)
            i += 1
        }
        return out
    }

    /// Entries in `lo...hi`, both inclusive, which must be in memory.
    func slice(_ lo: Index, _ hi: Index) -> [Entry] {
        guard lo <= hi else { return [] }
        precondition(lo > snapshotIndex && hi <= lastIndex, "slice \(lo)...\(hi) out of \(firstIndex)...\(lastIndex)")
        return Array(entries[Int(lo - snapshotIndex - 1)...Int(hi - snapshotIndex - 1)])
    }

    /// The follower side of AppendEntries: if our log has `prevTerm` at `prevIndex`, merges `newEntries`
    /// and returns the index of the last entry the leader sent; otherwise nil.
    mutating func maybeAppend(prevIndex: Index, prevTerm: Term, leaderCommit: Index, newEntries: [Entry]) -> Index? {
        guard matchTerm(prevIndex, prevTerm) else { return nil }
        let lastNew = prevIndex + UInt64(newEntries.count)
        // Only a real conflict may truncate: a delayed, shorter append must not cut off entries
        // that a newer append of the same leader already added.
        if let conflict = findConflict(newEntries) {
            precondition(conflict > committed, "conflict at \(conflict) would overwrite committed entry (commit \(committed))")
            append(Array(newEntries[Int(conflict - prevIndex - 1)...]))
        }
        commit(to: min(leaderCommit, lastNew))
        return lastNew
    }

    /// The index of the first entry in `es` that is missing or has another term in our log.
    private func findConflict(_ es: [Entry]) -> Index? {
        for e in es where !matchTerm(e.index, e.term) {
            // An entry at or below the snapshot is committed, so it cannot conflict.
            if e.index <= snapshotIndex { continue }
            return e.index
        }
        return nil
    }

    /// Appends `es`, dropping any entries of ours from `es[0].index` on.
    mutating func append(_ es: [Entry]) {
        guard let first = es.first else { return }
        precondition(first.index > committed, "append at \(first.index) below commit \(committed)")
        precondition(first.index <= lastIndex + 1, "gap: append at \(first.index) after last \(lastIndex)")
        entries.removeLast(Int(lastIndex - (first.index - 1)))
        entries.append(contentsOf: es)
        unstableFrom = min(unstableFrom, first.index)
    }

    /// For the fast back-off: the largest index at or below `index` whose term is at most `term`.
    /// Returns the index and its term (0 if that term is compacted away).
    func findConflictByTerm(_ index: Index, _ term: Term) -> (index: Index, term: Term) {
        var i = index
        while i > 0 {
            guard let t = self.term(at: i) else { return (i, 0) }
            if t <= term { return (i, t) }
            i -= 1
        }
        return (0, 0)
    }

    mutating func commit(to index: Index) {
        guard index > committed else { return }
        precondition(index <= lastIndex, "commit \(index) beyond last index \(lastIndex)")
        committed = index
    }

    /// The leader's commit rule: only an entry of the current term is committed by counting (§5.4.2).
    mutating func maybeCommit(_ index: Index, term: Term) -> Bool {
        guard index > committed, self.term(at: index) == term else { return false }
        commit(to: index)
        return true
    }

    /// Entries the caller must persist next.
    var unstableEntries: [Entry] {
        unstableFrom <= lastIndex ? slice(unstableFrom, lastIndex) : []
    }

    /// Committed entries not yet handed to the application; none while a snapshot waits to be applied.
    var committedUnapplied: [Entry] {
        guard pendingSnapshot == nil, applied < committed else { return [] }
        return slice(max(applied + 1, firstIndex), committed)
    }

    /// Records that the caller persisted entries up to `index` with `term`; ignored if the log changed since.
    mutating func stable(to index: Index, term: Term) {
        guard self.term(at: index) == term, index >= unstableFrom else { return }
        unstableFrom = index + 1
    }

    mutating func snapshotPersisted(_ s: SnapshotMetadata) {
        if pendingSnapshot?.metadata == s { pendingSnapshot = nil }
    }

    mutating func applied(to index: Index) {
        guard index > applied else { return }
        precondition(index <= committed, "applied \(index) beyond commit \(committed)")
        applied = index
    }

    /// Replaces the log by a snapshot from the leader.
    mutating func restore(_ s: Snapshot) {
        snapshot = s
        pendingSnapshot = s
        snapshotIndex = s.metadata.index
        snapshotTerm = s.metadata.term
        entries = []
        committed = s.metadata.index
        unstableFrom = s.metadata.index + 1
    }

    /// Drops entries up to `index`, which the application has applied and captured in `data`.
    mutating func compact(to index: Index, data: [UInt8], confState: ConfState) -> Snapshot {
        precondition(index > snapshotIndex && index <= applied && index < unstableFrom)
        let t = term(at: index)!
        entries.removeFirst(Int(index - snapshotIndex))
        snapshotIndex = index
        snapshotTerm = t
        snapshot = Snapshot(metadata: SnapshotMetadata(index: index, term: t, confState: confState), data: data)
        return snapshot
    }

    var hasPendingSnapshot: Bool { pendingSnapshot != nil }
}

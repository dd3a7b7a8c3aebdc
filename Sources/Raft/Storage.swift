/// Everything a node needs to restart: exactly what earlier `Ready` values told the caller to persist.
public struct PersistentState: Sendable, Hashable {
    public var hardState: HardState
    /// The last snapshot; `entries` start right after it.
    public var snapshot: Snapshot
    public var entries: [Entry]

    public init(hardState: HardState = .empty, snapshot: Snapshot = Snapshot(), entries: [Entry] = []) {
        self.hardState = hardState
        self.snapshot = snapshot
        self.entries = entries
    }

    /// The state of a member of a brand-new group: one committed conf-change entry per initial voter,
    /// so that members added later learn the initial configuration from the log like any other change.
    public static func bootstrap(voters: [NodeID]) -> PersistentState {
        let entries = voters.enumerated().map { i, id in
            Entry(term: 1, index: Index(i + 1), kind: .confChange, data: ConfChange.addVoter(id).encoded)
        }
        return PersistentState(hardState: HardState(term: 1, vote: noNode, commit: Index(entries.count)),
                               snapshot: Snapshot(), entries: entries)
    }

    public var lastIndex: Index { snapshot.metadata.index + Index(entries.count) }

    /// Writes a `Ready` the way a write-ahead log would: snapshot, then entries (replacing any
    /// from the first new index on), then the hard state last.
    public mutating func persist(_ rd: Ready) {
        if let s = rd.snapshot { install(s) }
        append(rd.entries)
        if let hs = rd.hardState { hardState = hs }
    }

    /// Records a snapshot, dropping the entries it covers; later entries are kept only if they follow it.
    public mutating func install(_ s: Snapshot) {
        let idx = s.metadata.index
        guard idx > snapshot.metadata.index else { return }
        let first = snapshot.metadata.index + 1
        if idx < lastIndex, entries[Int(idx - first)].term == s.metadata.term {
            entries.removeFirst(Int(idx - first + 1))
        } else {
            entries = []
        }
        snapshot = s
        if hardState.commit < idx { hardState.commit = idx }
    }

    /// Appends entries, truncating ours from the first new index on.
    public mutating func append(_ es: [Entry]) {
        guard let first = es.first else { return }
        precondition(first.index > snapshot.metadata.index && first.index <= lastIndex + 1,
                     "persisting \(first.index) after \(lastIndex)")
        entries.removeLast(Int(lastIndex + 1 - first.index))
        entries.append(contentsOf: es)
    }
}

extension PersistentState {
    /// The persisted term at `index`, or nil if it is not on disk (compacted or beyond the end).
    public func term(at index: Index) -> Term? {
        let si = snapshot.metadata.index
        if index == si { return snapshot.metadata.term }
        guard index > si, index <= lastIndex else { return nil }
        return entries[Int(index - si - 1)].term
    }
}

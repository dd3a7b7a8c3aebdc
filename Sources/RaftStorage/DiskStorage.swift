import Raft

/// Durable storage for one `RaftNode`: a write-ahead log plus snapshot files under one directory
/// (`wal/` and `snap/`).
///
/// Use: `let (storage, persisted) = try DiskStorage.open(directory:)`, start the node with
/// `RaftNode(config:persisted:)`, then for every `Ready` call `save(_:)` before sending its
/// messages; after `RaftNode.compact(to:data:)` call `compact(_:)` with the snapshot it returned.
/// Everything `save` and `compact` wrote is durable when they return.
///
/// Not thread-safe: one owner drives it, as one owner drives the node.
public final class DiskStorage {
    public struct Options: Sendable {
        /// A segment that reaches this size is closed and a new one started.
        public var segmentSizeLimit: Int
        /// Snapshot files kept; with two, a corrupt newest snapshot can fall back to the one before,
        /// because WAL segments are only deleted once the oldest kept snapshot covers them.
        public var retainedSnapshots: Int

        public init(segmentSizeLimit: Int = 64 << 20, retainedSnapshots: Int = 2) {
            precondition(segmentSizeLimit > 0 && retainedSnapshots >= 1)
            self.segmentSizeLimit = segmentSizeLimit
            self.retainedSnapshots = retainedSnapshots
        }
    }

    /// What recovery had to do to open the directory.
    public struct RecoveryReport: Sendable, Hashable {
        /// The torn tail cut from the last segment, if any: file, offset, bytes dropped, why.
        public var truncatedTail: (file: String, offset: Int, droppedBytes: Int, reason: String)? {
            tail.map { ($0.file, $0.offset, $0.droppedBytes, $0.reason) }
        }
        /// Snapshot files that failed verification, renamed to `*.corrupt` and skipped.
        public var corruptSnapshots: [String]
        /// The snapshot recovery started from (index 0 if none).
        public var snapshotIndex: Index
        var tail: WAL.TailRepair?
    }

    public let directory: String
    public let options: Options
    public private(set) var recovery: RecoveryReport
    let wal: WAL
    let snapDirectory: String

    private init(directory: String, options: Options, wal: WAL, recovery: RecoveryReport) {
        self.directory = directory
        self.options = options
        self.wal = wal
        self.recovery = recovery
        snapDirectory = directory + "/snap"
    }

    /// Opens or creates the storage in `directory` and returns what the node must restart from.
    /// Throws if the files are damaged beyond a torn last write: a node must not start on a corrupt log.
    public static func open(directory: String, options: Options = Options()) throws -> (DiskStorage, PersistentState) {
        let snapDir = directory + "/snap"
        try FileIO.mkdirs(snapDir)
        var corrupt: [String] = []
        var snapshot = Snapshot()
        // Newest valid snapshot first; damaged ones are set aside, not deleted, for inspection.
        let snapNames = try FileIO.list(snapDir)
        for n in snapNames where n.hasSuffix(".tmp") { try FileIO.unlink(snapDir + "/" + n) }
        let candidates = snapNames.compactMap { n in SnapshotFile.parseName(n).map { (n, $0.index) } }
            .sorted { $0.1 > $1.1 }
        for (name, _) in candidates {
            let path = snapDir + "/" + name
            do {
                snapshot = try SnapshotFile.read(path: path)
                break
            } catch let e as StorageError {
                guard case .corruptSnapshot = e else { throw e }
                corrupt.append("\(e)")
                try FileIO.rename(path, path + ".corrupt")
                try FileIO.fsyncDirectory(snapDir)
            }
        }

        var replay = Replay()
        let (wal, repair) = try WAL.open(directory: directory + "/wal", segmentSizeLimit: options.segmentSizeLimit) {
            rec, file, offset in try replay.apply(rec, file: file, offset: offset)
        }
        let state: PersistentState
        do {
            state = try replay.assemble(snapshot: snapshot)
        } catch let StorageError.inconsistent(why) where !corrupt.isEmpty {
            throw StorageError.inconsistent(why + "; corrupt snapshots were skipped: " + corrupt.joined(separator: "; "))
        }
        let report = RecoveryReport(corruptSnapshots: corrupt, snapshotIndex: snapshot.metadata.index, tail: repair)
        return (DiskStorage(directory: directory, options: options, wal: wal, recovery: report), state)
    }

    /// Persists what a `Ready` asks for, in the order of `PersistentState.persist`: snapshot, entries,
    /// hard state. Returns once all of it is durable.
    public func save(_ rd: Ready) throws {
        try save(hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot)
    }

    /// The same as `save(_:)` with the parts given one by one (for bootstrapping and tools).
    /// Entries replace any persisted ones from `entries[0].index` on.
    public func save(hardState: HardState?, entries: [Entry], snapshot: Snapshot?) throws {
        var records: [Record] = []
        if let s = snapshot {
            // The file first: a marker in the log must never point at a snapshot that is not on disk.
            try SnapshotFile.write(s, directory: snapDirectory)
            records.append(.snapshotMarker(index: s.metadata.index, term: s.metadata.term))
        }
        for (a, b) in zip(entries, entries.dropFirst()) {
            precondition(b.index == a.index + 1, "entries to save are not contiguous: \(a.index) then \(b.index)")
        }
        records += entries.map(Record.entry)
        if let hs = hardState { records.append(.hardState(hs)) }
        try wal.append(records)
        if snapshot != nil { try pruneSnapshots() }
    }

    /// Persists a snapshot made by `RaftNode.compact(to:data:)` and deletes what it makes obsolete:
    /// older snapshot files beyond `retainedSnapshots`, and WAL segments the oldest kept one covers.
    public func compact(_ snapshot: Snapshot) throws {
        try SnapshotFile.write(snapshot, directory: snapDirectory)
        try wal.append([.snapshotMarker(index: snapshot.metadata.index, term: snapshot.metadata.term)])
        try pruneSnapshots()
    }

    private func pruneSnapshots() throws {
        let snaps = try FileIO.list(snapDirectory)
            .compactMap { n in SnapshotFile.parseName(n).map { (name: n, index: $0.index) } }
            .sorted { $0.index > $1.index }
        let keep = snaps.prefix(options.retainedSnapshots)
        // Until there are enough snapshots to fall back on, the log stays whole.
        guard keep.count == options.retainedSnapshots else { return }
        var removed = false
        for old in snaps.dropFirst(options.retainedSnapshots) {
            try FileIO.unlink(snapDirectory + "/" + old.name)
            removed = true
        }
        if removed { try FileIO.fsyncDirectory(snapDirectory) }
        try wal.removeSegments(coveredBy: keep.last!.index)
    }

    /// The WAL segment files, oldest first (for tests and `swarmnet debug raft`).
    public var segmentFiles: [String] { wal.segments.map(\.path) }

    /// The snapshot files on disk, oldest first.
    public func snapshotFiles() throws -> [String] {
        try FileIO.list(snapDirectory).filter { SnapshotFile.parseName($0) != nil }.map { snapDirectory + "/" + $0 }
    }
}

/// Rebuilds the log from WAL records with the semantics of `PersistentState.persist`, without
/// knowing in advance which snapshot recovery will start from: the entries seen are kept from the
/// first one in the surviving segments, and the snapshot is applied at the end.
struct Replay {
    /// Entries in log order; `entries[0]` has index `first`.
    var entries: [Entry] = []
    var first: Index = 0
    /// The last snapshot marker seen; entries after it start right after its index.
    var marker: (index: Index, term: Term)?
    /// The highest snapshot index a marker recorded: as `PersistentState.append` requires, no entry
    /// written after that marker can be at or below it.
    var floor: Index = 0
    var hardState = HardState.empty

    var last: Index { first + Index(entries.count) - 1 }

    func term(at i: Index) -> Term? {
        guard !entries.isEmpty, i >= first, i <= last else { return nil }
        return entries[Int(i - first)].term
    }

    mutating func apply(_ rec: Record, file: String, offset: Int) throws {
        switch rec {
        case .segmentHeader:
            break
        case let .hardState(hs):
            hardState = hs
        case let .snapshotMarker(mIndex, mTerm):
            marker = (mIndex, mTerm)
            floor = max(floor, mIndex)
            if entries.isEmpty {
                first = mIndex + 1
            } else if let t = term(at: mIndex) {
                // As `PersistentState.install`: a snapshot that agrees with the log keeps it (the
                // entries it covers are kept too, in case recovery must start from an older
                // snapshot); one that disagrees came from a leader and replaces the log.
                if t != mTerm {
                    entries = []
                    first = mIndex + 1
                }
            } else if mIndex > last {
                entries = []
                first = mIndex + 1
            }
            // Below `first`: the snapshot covers entries whose segments are gone; what follows stands.
        case let .entry(e):
            if e.index <= floor {
                // Never written by the core: entries after a snapshot start above it.
                throw StorageError.inconsistent(
                    "\(file) at offset \(offset): entry \(e.index) rewrites the log at or below snapshot \(floor) recorded before it")
            }
            if entries.isEmpty || e.index < first {
                // Nothing to continue: segments before this one may be gone (a snapshot covered
                // them) or a snapshot cleared the log. Below `first`, the entry rewrites the log
                // from an index whose earlier records were in deleted segments (a conflict that
                // replaced the uncommitted suffix, e.g. `803` written after a segment that starts
                // with `804`): it replaces everything we hold, as `PersistentState.append` does.
                // Either way `assemble` checks that the snapshot reaches the new start.
                entries = [e]
                first = e.index
            } else if e.index > last + 1 {
                throw StorageError.inconsistent(
                    "\(file) at offset \(offset): entry \(e.index) does not continue the log \(first)...\(last)")
            } else {
                if e.index <= last { entries.removeLast(Int(last - e.index + 1)) }
                entries.append(e)
            }
        }
    }

    /// The persistent state starting from `snapshot` (the newest valid snapshot file).
    func assemble(snapshot: Snapshot) throws -> PersistentState {
        let si = snapshot.metadata.index
        if let m = marker, m.index > si, term(at: m.index) != m.term {
            throw StorageError.inconsistent(
                "the WAL records snapshot \(m.index) (term \(m.term)) but no valid snapshot file holds it, and the log does not cover it")
        }
        var kept: [Entry] = []
        if !entries.isEmpty {
            if first > si + 1 {
                throw StorageError.inconsistent(
                    "the WAL starts at entry \(first) but the newest valid snapshot ends at \(si): entries \(si + 1)...\(first - 1) are missing")
            }
            if si == 0 || first == si + 1 {
                kept = entries
            } else if term(at: si) == snapshot.metadata.term {
                kept = Array(entries[Int(si - first + 1)...])
            }
            // Otherwise the snapshot came from a leader and replaced a log that disagreed with it.
        }
        var hs = hardState
        if hs.commit < si { hs.commit = si }
        let lastIndex = si + Index(kept.count)
        guard hs.commit <= lastIndex else {
            throw StorageError.inconsistent("the hard state commits \(hs.commit) but the log ends at \(lastIndex)")
        }
        return PersistentState(hardState: hs, snapshot: snapshot, entries: kept)
    }
}

import Raft

/// A toy replicated state machine: the applied values in order, and a running hash of them so
/// two replicas can be compared at any index in O(1).
public struct KVStateMachine: Sendable, Hashable {
    public private(set) var appliedIndex: Index = 0
    public private(set) var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    public private(set) var values: [String] = []

    public init() {}

    /// FNV-1a over the previous hash, the index and the data, so order and position both count.
    public mutating func apply(_ e: Entry) {
        precondition(e.index == appliedIndex + 1, "applying \(e.index) after \(appliedIndex)")
        appliedIndex = e.index
        var h = hash
        func mix(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        for i in 0..<8 { mix(UInt8(truncatingIfNeeded: e.index >> (8 * UInt64(i)))) }
        mix(e.kind.rawValue)
        for b in e.data { mix(b) }
        hash = h
        if e.kind == .normal, !e.data.isEmpty { values.append(String(decoding: e.data, as: UTF8.self)) }
    }

    /// Snapshot payload: index, hash, then the values, one per line.
    public var encoded: [UInt8] {
        Array(([String(appliedIndex), String(hash)] + values).joined(separator: "\n").utf8)
    }

    public init?(decoding bytes: [UInt8]) {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 2, let idx = Index(lines[0]), let h = UInt64(lines[1]) else { return nil }
        appliedIndex = idx
        hash = h
        values = lines.dropFirst(2).map(String.init)
    }
}

/// One member with its "disk" and application, driven the way a real runtime drives `RaftNode`.
public struct SimNode: Sendable {
    public private(set) var raft: RaftNode
    /// What survives a crash.
    public private(set) var disk: PersistentState
    public private(set) var state = KVStateMachine()
    /// Read states returned by the node, oldest first, until the caller takes them.
    public var readStates: [ReadState] = []
    public let config: Config

    public init(config: Config, disk: PersistentState) {
        self.config = config
        self.disk = disk
        raft = RaftNode(config: config, persisted: disk)
        // The application restarts from the persisted snapshot and replays committed entries.
        if !disk.snapshot.isEmpty, let sm = KVStateMachine(decoding: disk.snapshot.data) { state = sm }
    }

    /// A node restarted from its disk alone, as after `kill -9`.
    public func restarted() -> SimNode { SimNode(config: config, disk: disk) }

    /// What one pass over a `Ready` did.
    public struct Outcome: Sendable {
        public var messages: [Message] = []
        public var applied: [Entry] = []
        public var snapshot: Snapshot?
        /// Entries written to disk, each with the term of the entry before it on disk (for log-matching checks).
        public var persisted: [(entry: Entry, prevTerm: Term?)] = []
        /// True if the pass was cut short by a crash in the middle of the write.
        public var crashed = false
        /// A snapshot this leader made because it asked for one (`RaftNode.snapshotRequest`).
        public var requestedSnapshot: Snapshot?
    }

    /// Handles every pending `Ready`: persist, then send, then apply, then advance.
    ///
    /// `tear`, when set, crashes the node while writing the first `Ready`: only a prefix of its
    /// records (snapshot, each entry, hard state, in write order), chosen by `tear`, reaches the
    /// disk, and nothing is sent or applied. That is a torn write of the unsynced tail.
    ///
    /// A leader that asks for a fresh snapshot gets one as soon as it has applied far enough, as
    /// the runtime does; the messages that send it are collected in the same pass.
    public mutating func process(tear: UInt64? = nil) -> Outcome {
        var out = Outcome()
        repeat {
            if processReadies(tear: tear, into: &out) { return out }
        } while serveSnapshotRequest(into: &out)
        return out
    }

    /// Handles every pending `Ready`; true if the node crashed doing it.
    private mutating func processReadies(tear: UInt64?, into out: inout Outcome) -> Bool {
        while raft.hasReady {
            let rd = raft.ready()
            if let tear {
                let records = (rd.snapshot == nil ? 0 : 1) + rd.entries.count + (rd.hardState == nil ? 0 : 1)
                persistTorn(rd, keep: Int(tear % UInt64(records + 1)))
                out.crashed = true
                return true
            }
            disk.persist(rd)
            for e in rd.entries { out.persisted.append((e, disk.term(at: e.index - 1))) }
            out.messages += rd.messages
            if let s = rd.snapshot {
                guard let sm = KVStateMachine(decoding: s.data) else { preconditionFailure("bad snapshot payload") }
                state = sm
                out.snapshot = s
            }
            for e in rd.committedEntries where e.index > state.appliedIndex {
                state.apply(e)
                out.applied.append(e)
            }
            readStates += rd.readStates
            raft.advance(rd)
        }
        return false
    }

    /// Compacts at the applied index if the leader asked for a snapshot and has applied far enough.
    private mutating func serveSnapshotRequest(into out: inout Outcome) -> Bool {
        guard let wanted = raft.snapshotRequest, state.appliedIndex >= wanted,
              let s = try? compact() else { return false }
        out.requestedSnapshot = s
        return true
    }

    private mutating func persistTorn(_ rd: Ready, keep: Int) {
        var left = keep
        if let s = rd.snapshot {
            guard left > 0 else { return }
            disk.install(s)
            left -= 1
        }
        let n = min(left, rd.entries.count)
        disk.append(Array(rd.entries.prefix(n)))
        left -= n
        if left > 0, let hs = rd.hardState { disk.hardState = hs }
    }

    public mutating func step(_ m: Message) throws { try raft.step(m) }
    public mutating func tick() { raft.tick() }
    public mutating func campaign() { raft.campaign() }
    public mutating func propose(_ data: String) throws { try raft.propose(Array(data.utf8)) }
    public mutating func proposeConfChange(_ cc: ConfChange) throws { try raft.proposeConfChange(cc) }
    public mutating func readIndex(_ ctx: String) throws { try raft.readIndex(context: Array(ctx.utf8)) }
    public mutating func transferLeadership(to id: NodeID) { raft.transferLeadership(to: id) }

    /// Compacts the log at the applied index (or `index`) and persists the snapshot.
    @discardableResult
    public mutating func compact(to index: Index? = nil) throws -> Snapshot {
        let idx = index ?? state.appliedIndex
        // Only the current applied state can be captured; compacting below it would need history.
        guard idx == state.appliedIndex else { throw RaftError.notApplied(requested: idx, applied: state.appliedIndex) }
        let s = try raft.compact(to: idx, data: state.encoded)
        disk.install(s)
        return s
    }
}

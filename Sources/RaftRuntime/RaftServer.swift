import FoundationEssentials
import SystemBasics
import Logging
import Raft
import RaftStorage
import RaftTransport
import ReplicatedStore
import Synchronization

/// Runs one member: drives the pure `RaftNode` core on a thread of its own, with a tick timer,
/// `DiskStorage` (fsync before anything the Ready caused leaves the node), a `RaftTransport`, and a
/// `ReplicatedStore` it applies committed entries to.
///
/// Proposals complete when their entry is applied here; reads are linearizable through ReadIndex.
/// Work from callers and the network is batched: everything that arrives while the thread is
/// writing is stepped together, so one fsync covers many proposals.
public final class RaftServer: @unchecked Sendable {
    /// Every timing of the runtime; the defaults suit a LAN (failover well under 1.5 s).
    public struct Options: Sendable {
        public var tick: Duration = .milliseconds(50)
        /// In ticks: a follower campaigns after [electionTick, 2*electionTick) silent ticks.
        public var electionTick = 10
        public var heartbeatTick = 1
        public var proposalTimeout: Duration = .seconds(5)
        public var readTimeout: Duration = .seconds(3)
        /// Compact the log into a snapshot after this many applied entries.
        public var compactEvery: Index = 10_000
        public var maxSizePerMessage = 1 << 20
        public var maxInflightMessages = 256
        /// A leader sends its appends before its own fsync of the same entries, as etcd-io/raft
        /// allows (Raft thesis §10.2.1): the leader counts its own copy toward a quorum only once
        /// it is on disk (`RaftNode.advance`), so nothing commits on an unsynced copy, and the two
        /// fsyncs of a commit overlap instead of adding up. Votes, responses and any message of a
        /// Ready that changes term or vote still wait for the fsync. False: every message waits.
        public var leaderAppendsBeforeFsync = true
        /// A fresh data directory starts with no configuration and waits for a leader to send it the
        /// log or a snapshot (etcd's `--initial-cluster-state existing`), instead of bootstrapping a
        /// group whose voters are the given peers. The member must have been added first.
        public var joinExisting = false
        public var storage = DiskStorage.Options()
        public var transport = RaftTransport.Options()

        public init() {}
    }

    /// Why a proposal or read did not complete.
    public enum Failure: Swift.Error, Sendable, Hashable, CustomStringConvertible {
        /// Refused before it entered the log (no leader known, transfer in progress): it never applies.
        case dropped
        /// The term changed while it was pending: it may or may not have been applied.
        case leadershipLost
        /// No outcome within the timeout: it may or may not have been applied.
        case timeout
        /// The server is stopping.
        case stopped

        /// True when the operation certainly had no effect.
        public var isDefinite: Bool { self == .dropped }

        public var description: String {
            switch self {
            case .dropped: "not accepted: no leader is known or leadership is being transferred"
            case .leadershipLost: "leadership changed while the request was pending; its outcome is unknown"
            case .timeout: "timed out; the outcome is unknown"
            case .stopped: "the server is stopping"
            }
        }
    }

    public let id: NodeID
    public let options: Options
    public let store: ReplicatedStore
    public private(set) var transport: RaftTransport!
    let storage: DiskStorage
    let logger: Logger
    /// The addresses given at start; members added later have theirs in `memberAddresses`.
    let configuredPeers: [NodeID: PeerAddress]

    // Owned by the driver thread.
    /// `campaign()` was asked for and has not taken effect yet.
    private var campaignPending = false
    private var core: RaftNode
    private var lastHardState: HardState
    private var savedHardState: HardState
    private var pending: [RequestID: ContinuousClock.Instant] = [:]
    private var readsByContext: [[UInt8]: [Waiter]] = [:]
    private var readsAwaitingApply: [(index: Index, waiters: [Waiter])] = []
    private var readSequence: UInt64 = 0
    private var term: Term = 0
    private var roleSeen: Role = .follower

    private typealias Waiter = (deadline: ContinuousClock.Instant, continuation: CheckedContinuation<Void, any Error>)

    // Shared with callers and the transport, under `cond`.
    private let cond = Condition()
    private var inbox = Inbox()
    private var started = false

    private let sequence: Atomic<UInt64>
    private let failures = Mutex<[RequestID: Failure]>([:])

    private struct Inbox {
        var messages: [Message] = []
        var proposals: [(id: RequestID, data: [UInt8])] = []
        var confChanges: [(cc: ConfChange, reply: @Sendable (Result<Void, Failure>) -> Void)] = []
        var reads: [Waiter] = []
        var unreachable: Set<NodeID> = []
        var snapshotStatus: [(NodeID, Bool)] = []
        var queries: [@Sendable (RaftNode) -> Void] = []
        var campaign = false
        var stop = false
        var stopped: [CheckedContinuation<Void, Never>] = []

        var isEmpty: Bool {
            messages.isEmpty && proposals.isEmpty && confChanges.isEmpty && reads.isEmpty && unreachable.isEmpty
                && snapshotStatus.isEmpty && queries.isEmpty && !campaign && !stop
        }
    }

    /// Opens (or bootstraps with `peers` as the initial voters) the storage in `dataDirectory`.
    public init(id: NodeID, peers: [NodeID: PeerAddress], dataDirectory: String, options: Options = Options(),
                logger: Logger) throws {
        self.id = id
        self.options = options
        self.logger = logger
        configuredPeers = peers
        let (storage, persisted) = try DiskStorage.open(directory: dataDirectory, options: options.storage)
        self.storage = storage
        if let tail = storage.recovery.truncatedTail {
            logger.warning("raft: recovery cut a torn write from \(tail.file) at offset \(tail.offset) (\(tail.droppedBytes) bytes: \(tail.reason))")
        }
        for c in storage.recovery.corruptSnapshots { logger.error("raft: skipped \(c)") }
        var ps = persisted
        if ps == PersistentState() {
            if options.joinExisting {
                logger.info("raft: empty data directory; waiting for the group's leader to send the log")
            } else {
                ps = .bootstrap(voters: peers.keys.sorted())
                try storage.save(hardState: ps.hardState, entries: ps.entries, snapshot: nil)
                logger.info("raft: bootstrapped a new group with voters \(peers.keys.sorted())")
            }
        }
        let state = ps.snapshot.isEmpty ? StoreState() : try StoreState(decoding: ps.snapshot.data)
        store = ReplicatedStore(state: state)
        let seed = UInt64(truncatingIfNeeded: Date().timeIntervalSince1970.bitPattern) ^ id
        core = RaftNode(config: Config(id: id, electionTick: options.electionTick, heartbeatTick: options.heartbeatTick,
                                       maxSizePerMessage: options.maxSizePerMessage,
                                       maxInflightMessages: options.maxInflightMessages, randomSeed: seed),
                        persisted: ps)
        lastHardState = ps.hardState
        savedHardState = ps.hardState
        term = ps.hardState.term
        // Request ids must not repeat across restarts: an entry proposed before a crash may still
        // be applied after it, and must not complete a new request.
        sequence = Atomic(UInt64(Date().timeIntervalSince1970 * 1_000_000) << 8)
        // Read contexts too: a late answer to a read of an earlier life must not match a new one.
        readSequence = UInt64(Date().timeIntervalSince1970 * 1_000_000) << 8
        transport = RaftTransport(
            id: id, peers: peers, options: options.transport,
            handlers: .init(
                message: { [weak self] m in self?.enqueue { $0.messages.append(m) } },
                delivery: { [weak self] to, type, sent in
                    if type == .snapshot {
                        self?.enqueue { $0.snapshotStatus.append((to, sent)) }
                    } else if !sent {
                        self?.enqueue { $0.unreachable.insert(to) }
                    }
                }),
            logger: logger)
        syncPeerAddresses()
    }

    /// Binds the Raft listener and starts the driver thread.
    public func start(listenHost: String, listenPort: Int) async throws {
        try await transport.listen(host: listenHost, port: listenPort)
        started = true
        startThread(named: "raft-\(id)") { [self] in run() }
    }

    /// Stops the driver and closes the transport; pending requests fail with `stopped`.
    public func stop() async {
        if started {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                enqueue {
                    $0.stop = true
                    $0.stopped.append(c)
                }
            }
        }
        await transport.shutdown()
        store.close()
    }

    private func enqueue(_ change: (inout Inbox) -> Void) {
        cond.lock()
        change(&inbox)
        cond.signal()
        cond.unlock()
    }

    // MARK: - Client API

    /// Proposes a store operation; returns its result once applied on this member.
    public func propose(_ operation: StoreOperation) async throws -> AppliedCommand {
        let rid = RequestID(node: id, sequence: sequence.add(1, ordering: .relaxed).newValue)
        store.expect(rid)
        let data = StoreCommand(id: rid, operation: operation).encoded
        enqueue { $0.proposals.append((rid, data)) }
        do {
            return try await store.result(for: rid)
        } catch StoreError.cancelled {
            throw failures.withLock { $0.removeValue(forKey: rid) } ?? .stopped
        }
    }

    /// Writes `value` at `key` of `collection` whether or not it exists (an update, or a create if absent).
    public func put(collection: String, key: String, value: [UInt8]) async throws -> AppliedCommand {
        var create = store.get(collection, key) == nil
        for _ in 0..<4 {
            let op: StoreOperation = create
                ? .create(collection: collection, key: key, value: value)
                : .update(collection: collection, key: key, value: value, expectedVersion: nil)
            let r = try await propose(op)
            switch r.result {
            case .failure(.notFound) where !create: create = true
            case .failure(.alreadyExists) where create: create = false
            default: return r
            }
        }
        return try await propose(.update(collection: collection, key: key, value: value, expectedVersion: nil))
    }

    /// Returns once this member has applied everything committed before the call (ReadIndex); a
    /// read of `store` afterwards is linearizable.
    public func linearizableBarrier() async throws {
        let deadline = ContinuousClock.now + options.readTimeout
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            enqueue { $0.reads.append((deadline, c)) }
        }
    }

    /// A linearizable read of one object.
    public func get(collection: String, key: String) async throws -> StoredObject? {
        try await linearizableBarrier()
        return store.get(collection, key)
    }

    /// Starts an election now instead of after the election timeout: a
    /// group just bootstrapped with this member as its only voter has no
    /// one else to wait for (`swarm init`). A member that cannot stand yet
    /// (its bootstrap configuration not applied) stands as soon as it can.
    public func campaign() {
        enqueue { $0.campaign = true }
    }

    /// The leader this member knows of, or `noNode`: cheaper than
    /// `statusReport()` for the many callers that only need this.
    public func leader() async -> NodeID {
        await query { $0.leader }
    }

    /// Proposes a membership change; returns once it is accepted into the log (not applied).
    public func proposeConfChange(_ cc: ConfChange) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            enqueue { $0.confChanges.append((cc, { c.resume(with: $0.mapError { $0 as any Error }) })) }
        }
    }

    /// The member's state for `debug raft`.
    public func statusReport() async -> RaftStatusReport {
        let addresses = transport.peers
        let counters = transport.counterValues
        return await query { core in
            RaftStatusReport(status: core.status, snapshotIndex: core.snapshot.metadata.index,
                             addresses: addresses, transport: counters)
        }
    }

    /// Runs `body` on the driver thread, between two steps of the core, and returns its result.
    func query<T: Sendable>(_ body: @escaping @Sendable (RaftNode) -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            enqueue { $0.queries.append { core in c.resume(returning: body(core)) } }
        }
    }

    // MARK: - The driver

    private func run() {
        let clock = ContinuousClock()
        var nextTick = clock.now + options.tick
        while true {
            cond.lock()
            while inbox.isEmpty && clock.now < nextTick {
                let wait = clock.now.duration(to: nextTick)
                cond.wait(for: wait)
            }
            let work = inbox
            inbox = Inbox()
            cond.unlock()
            if work.stop {
                shutdownRequests()
                for c in work.stopped { c.resume() }
                return
            }
            step(work)
            let now = clock.now
            if now >= nextTick {
                core.tick()
                nextTick += options.tick
                // After a stall (a slow disk), do not fire a burst of ticks to catch up.
                if nextTick < now { nextTick = now + options.tick }
            }
            do {
                try handleReady()
                // A snapshot made for a new member is sent at once, not a tick later.
                if try maybeCompact() { try handleReady() }
                // After handleReady: a member just bootstrapped cannot stand
                // before its configuration entries are applied.
                if campaignPending {
                    if core.role != .follower || core.leader != noNode {
                        campaignPending = false
                    } else {
                        core.campaign()
                        try handleReady()
                    }
                }
            } catch {
                // A node that cannot write must not go on: it could acknowledge what is not stored.
                logger.critical("raft: storage failed, stopping: \(error)")
                fatalError("raft storage failed: \(error)")
            }
            expire(now: now)
        }
    }

    private func step(_ work: Inbox) {
        if work.campaign { campaignPending = true }
        for m in work.messages { try? core.step(m) }
        for p in work.unreachable { core.reportUnreachable(p) }
        for (p, ok) in work.snapshotStatus { core.reportSnapshot(p, success: ok) }
        if !work.proposals.isEmpty {
            let deadline = ContinuousClock.now + options.proposalTimeout
            // One propose message for the whole batch: one append to each follower, one fsync.
            let entries = work.proposals.map { Entry(term: 0, index: 0, data: $0.data) }
            do {
                try core.step(Message(type: .propose, entries: entries))
                for p in work.proposals { pending[p.id] = deadline }
            } catch {
                for p in work.proposals { fail(p.id, .dropped) }
            }
        }
        for c in work.confChanges {
            do {
                try core.proposeConfChange(c.cc)
                c.reply(.success(()))
            } catch {
                c.reply(.failure(.dropped))
            }
        }
        if !work.reads.isEmpty {
            // One ReadIndex round serves every read that arrived together.
            readSequence += 1
            var ctx = withUnsafeBytes(of: id.littleEndian) { Array($0) }
            ctx += withUnsafeBytes(of: readSequence.littleEndian) { Array($0) }
            do {
                try core.readIndex(context: ctx)
                readsByContext[ctx, default: []] += work.reads
            } catch {
                for r in work.reads { r.continuation.resume(throwing: Failure.dropped) }
            }
        }
        for q in work.queries { q(core) }
    }

    private func fail(_ rid: RequestID, _ why: Failure) {
        pending[rid] = nil
        failures.withLock { $0[rid] = why }
        store.cancel(rid)
    }

    private func handleReady() throws {
        while core.hasReady {
            let rd = core.ready()
            if let hs = rd.hardState { lastHardState = hs }
            let onlyCommit = rd.entries.isEmpty && rd.snapshot == nil
                && lastHardState.term == savedHardState.term && lastHardState.vote == savedHardState.vote
            var messages = rd.messages
            if options.leaderAppendsBeforeFsync, rd.role == .leader, !messages.isEmpty,
               lastHardState.term == savedHardState.term, lastHardState.vote == savedHardState.vote {
                let early = messages.filter { $0.type == .append || $0.type == .heartbeat }
                messages.removeAll { $0.type == .append || $0.type == .heartbeat }
                transport.send(early)
            }
            if rd.mustSync && !onlyCommit {
                // A commit index alone need not be synced (it is learnt again from the leader), as in
                // etcd; everything else is durable before any message it caused is sent.
                try storage.save(hardState: lastHardState, entries: rd.entries, snapshot: rd.snapshot)
                savedHardState = lastHardState
            }
            transport.send(messages)
            if let s = rd.snapshot {
                do {
                    try store.restore(snapshot: s.data)
                } catch {
                    fatalError("raft: snapshot \(s.metadata.index) from the leader does not decode: \(error)")
                }
            }
            let results = store.apply(rd.committedEntries)
            for r in results { pending[r.id] = nil }
            if rd.snapshot != nil || results.contains(where: Self.changesMemberAddresses) { syncPeerAddresses() }
            if !rd.readStates.isEmpty {
                for rs in rd.readStates {
                    guard let ws = readsByContext.removeValue(forKey: rs.context) else { continue }
                    readsAwaitingApply.append((rs.index, ws))
                }
            }
            core.advance(rd)
            if rd.role != roleSeen || core.term != term {
                if roleSeen == .leader || core.term != term {
                    // Entries we proposed may have been overwritten; say so rather than wait.
                    for rid in Array(pending.keys) { fail(rid, .leadershipLost) }
                }
                if rd.role != roleSeen { logger.info("raft: member \(id) is now \(rd.role) in term \(core.term) (leader \(rd.leader))") }
                roleSeen = rd.role
                term = core.term
                // Reads pending on a leader that lost its term will never be answered.
                for ws in readsByContext.values { for w in ws { w.continuation.resume(throwing: Failure.leadershipLost) } }
                readsByContext = [:]
            }
        }
        if !readsAwaitingApply.isEmpty {
            let applied = store.appliedIndex
            readsAwaitingApply.removeAll { r in
                guard r.index <= applied else { return false }
                for w in r.waiters { w.continuation.resume() }
                return true
            }
        }
    }

    /// Compacts every `compactEvery` applied entries, and when the core asks for a snapshot that
    /// lists a member added since the last one (`RaftNode.snapshotRequest`); true if it did.
    private func maybeCompact() throws -> Bool {
        let snapIndex = core.snapshot.metadata.index
        let applied = store.appliedIndex
        let periodic = options.compactEvery > 0 && applied >= snapIndex + options.compactEvery
        let requested = core.snapshotRequest.map { applied >= $0 } ?? false
        guard periodic || requested else { return false }
        let (index, data) = store.snapshot()
        let s = try core.compact(to: index, data: data)
        try storage.compact(s)
        if requested {
            logger.info("raft: compacted the log through \(index) for a member the previous snapshot did not list")
        } else {
            logger.debug("raft: compacted the log through \(index)")
        }
        return true
    }

    private func expire(now: ContinuousClock.Instant) {
        for (rid, deadline) in pending where deadline <= now { fail(rid, .timeout) }
        for (ctx, ws) in readsByContext {
            let (late, ok) = (ws.filter { $0.deadline <= now }, ws.filter { $0.deadline > now })
            guard !late.isEmpty else { continue }
            for w in late { w.continuation.resume(throwing: Failure.timeout) }
            readsByContext[ctx] = ok.isEmpty ? nil : ok
        }
        for i in readsAwaitingApply.indices {
            let late = readsAwaitingApply[i].waiters.filter { $0.deadline <= now }
            guard !late.isEmpty else { continue }
            for w in late { w.continuation.resume(throwing: Failure.timeout) }
            readsAwaitingApply[i].waiters.removeAll { $0.deadline <= now }
        }
        readsAwaitingApply.removeAll { $0.waiters.isEmpty }
    }

    private func shutdownRequests() {
        for rid in Array(pending.keys) { fail(rid, .stopped) }
        for ws in readsByContext.values { for w in ws { w.continuation.resume(throwing: Failure.stopped) } }
        for r in readsAwaitingApply { for w in r.waiters { w.continuation.resume(throwing: Failure.stopped) } }
        readsByContext = [:]
        readsAwaitingApply = []
        cond.lock()
        let left = inbox
        inbox = Inbox()
        cond.unlock()
        for r in left.reads { r.continuation.resume(throwing: Failure.stopped) }
        for p in left.proposals { fail(p.id, .stopped) }
        for c in left.confChanges { c.reply(.failure(.stopped)) }
        for q in left.queries { q(core) }
        for c in left.stopped { c.resume() }
    }
}

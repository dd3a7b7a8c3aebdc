import Raft

/// Knobs of one simulated run; the defaults are hostile on purpose.
public struct SimulationOptions: Sendable {
    public var nodes: Int = 3
    /// Random actions before the final healing phase.
    public var steps: Int = 1000
    public var dropRate: Double = 0.05
    public var duplicateRate: Double = 0.03
    /// Messages wait up to this many steps; different delays reorder them.
    public var maxDelay: UInt64 = 12
    /// Chance that writing a Ready crashes the node half way (a torn write).
    public var tearRate: Double = 0.01
    public var electionTick = 10
    /// Add, remove, promote and demote one member at a time (a spare node starts outside the group).
    public var membershipChanges = true

    public init(nodes: Int = 3) { self.nodes = nodes }
}

/// A safety (or final liveness) violation, with the seed that reproduces it.
public struct SimulationFailure: Error, CustomStringConvertible, Sendable {
    public var seed: UInt64
    public var nodes: Int
    public var step: Int
    public var message: String
    /// The last actions before the failure, oldest first.
    public var trace: [String]

    public var description: String {
        """
        raft simulation failed: seed=\(seed) nodes=\(nodes) step=\(step): \(message)
        reproduce: RAFT_SIM_SEED=\(seed) RAFT_SIM_NODES=\(nodes) scripts/raft-sim
        last actions:
        \(trace.joined(separator: "\n"))
        """
    }
}

/// What a successful run did, to show the run was not vacuous.
public struct SimulationStats: Sendable {
    public var committed: Index = 0
    public var elections = 0
    public var crashes = 0
    public var tornWrites = 0
    public var snapshotsSent = 0
    public var readsServed = 0
    /// Membership changes committed after the bootstrap configuration.
    public var confChangesApplied = 0
    /// Snapshots a leader made on request, for a member its previous snapshot did not list.
    public var requestedSnapshots = 0

    public init() {}
}

/// A seeded, deterministic simulation of a Raft group over a faulty network with crashing nodes.
///
/// Every random choice comes from one generator seeded by `seed`, and nodes are driven in a fixed
/// order, so a seed replays exactly. After every step it checks election safety, log matching,
/// leader completeness, state-machine safety, durability of acknowledged entries and linearizable
/// reads; at the end it heals everything and requires the group to converge.
public struct Simulator {
    struct InFlight {
        var message: Message
        var deliverAt: UInt64
    }

    public let seed: UInt64
    let options: SimulationOptions
    var rng: SplitMix64
    var now: UInt64 = 0
    var step = 0
    /// Every node, the spare (outside the initial group) last.
    let ids: [NodeID]
    let initialVoters: [NodeID]
    var nodes: [NodeID: SimNode] = [:]
    var crashed: Set<NodeID> = []
    var network: [InFlight] = []
    /// Directed links that currently drop everything.
    var cut: Set<[NodeID]> = []
    var proposals = 0
    var trace: [String] = []
    public private(set) var stats = SimulationStats()

    // Checker state.
    var leaderOfTerm: [Term: NodeID] = [:]
    /// (index, term) → (payload, kind, term of the previous entry): if every pair maps to one value,
    /// log matching holds by induction.
    var entryAt: [Key: EntryFact] = [:]
    /// Index → state-machine hash after applying it, as first seen on any node.
    var hashAt: [Index: UInt64] = [:]
    /// Acknowledged entries (applied somewhere, so committed), by index.
    var acked: [Index: Entry] = [:]
    var maxAcked: Index = 0
    /// A read issued when `maxAcked` was this value must return at least it.
    var readFloor: [[UInt8]: Index] = [:]
    var reads = 0

    struct Key: Hashable { var index: Index; var term: Term }
    struct EntryFact: Equatable { var data: [UInt8]; var kind: EntryKind; var prevTerm: Term? }

    public init(seed: UInt64, options: SimulationOptions = SimulationOptions()) {
        self.seed = seed
        self.options = options
        rng = SplitMix64(seed: seed)
        initialVoters = (1...options.nodes).map { NodeID($0) }
        ids = options.membershipChanges ? initialVoters + [NodeID(options.nodes + 1)] : initialVoters
        // Vary batching and pipelining per seed: one entry per append makes partial replication,
        // and so the interleavings of the commit rule (Raft paper, figure 8), far more likely.
        let maxBytes = [1, 1, 8, 64][Int(rng.next() % 4)]
        let inflight = [1, 2, 4, 64][Int(rng.next() % 4)]
        for id in ids {
            let cfg = Config(id: id, electionTick: options.electionTick, heartbeatTick: 1,
                             maxSizePerMessage: maxBytes, maxInflightMessages: inflight, randomSeed: seed &+ id)
            // The spare starts empty, as a new member does: it learns the log from the leader.
            nodes[id] = SimNode(config: cfg, disk: initialVoters.contains(id) ? .bootstrap(voters: initialVoters) : PersistentState())
        }
    }

    var quorum: Int { options.nodes / 2 + 1 }

    // MARK: - Running

    /// Runs the whole scenario; throws the first violation.
    public mutating func run() throws(SimulationFailure) -> SimulationStats {
        for id in ids { try settle(id) }
        while step < options.steps {
            step += 1
            now += 1
            try randomAction()
            try checkLeaders()
        }
        try converge()
        return stats
    }

    private mutating func chance(_ p: Double) -> Bool {
        Double(rng.next() % 1_000_000) < p * 1_000_000
    }

    private mutating func pick<T>(_ xs: [T]) -> T? {
        xs.isEmpty ? nil : xs[Int(rng.next() % UInt64(xs.count))]
    }

    private var live: [NodeID] { ids.filter { !crashed.contains($0) } }

    private mutating func note(_ s: String) {
        trace.append("\(step): \(s)")
        if trace.count > 40 { trace.removeFirst(trace.count - 40) }
    }

    func fail(_ msg: String) -> SimulationFailure {
        SimulationFailure(seed: seed, nodes: options.nodes, step: step, message: msg, trace: trace)
    }

    private mutating func randomAction() throws(SimulationFailure) {
        let roll = rng.next() % 100
        switch roll {
        case 0..<50:
            try deliverOne()
        case 50..<75:
            if let id = pick(live) {
                try act(id, "tick") { $0.tick() }
            }
        case 75..<87:
            if let id = pick(live) {
                proposals += 1
                let data = "p\(proposals)"
                try act(id, "propose \(data)") { try? $0.propose(data) }
            }
        case 87..<90:
            if let id = pick(live) {
                reads += 1
                let ctx = "r\(reads)"
                readFloor[Array(ctx.utf8)] = maxAcked
                try act(id, "read \(ctx) floor=\(maxAcked)") { try? $0.readIndex(ctx) }
            }
        case 90..<93:
            changeNetwork()
        case 93..<94:
            if let id = pick(live) {
                crash(id)
                note("crash \(id)")
                try checkDurability()
            }
        case 94..<97:
            if let id = pick(Array(crashed).sorted()) {
                crashed.remove(id)
                nodes[id] = nodes[id]!.restarted()
                note("restart \(id)")
                try settle(id)
            }
        case 97..<98:
            if let id = pick(live) {
                if (try? nodes[id]!.compact()) != nil { note("compact \(id)") }
            }
        case 98:
            if options.membershipChanges { try changeMembership() }
        default:
            if let id = pick(live), nodes[id]!.raft.role == .leader, let to = pick(ids.filter { $0 != id }) {
                try act(id, "transfer \(id)->\(to)") { $0.transferLeadership(to: to) }
            }
        }
    }

    /// Proposes one single-member change on a leader, keeping between nodes-1 and nodes+1 voters so
    /// any committed entry still sits on at least a quorum of the initial size (the durability check).
    private mutating func changeMembership() throws(SimulationFailure) {
        guard let l = pick(live.filter { nodes[$0]!.raft.role == .leader }) else { return }
        let conf = nodes[l]!.raft.status.conf
        var choices: [ConfChange] = []
        let canGrow = conf.voters.count < options.nodes + 1
        let canShrink = conf.voters.count > options.nodes - 1
        for id in ids {
            if conf.voters.contains(id) {
                if canShrink { choices += [.remove(id), .addLearner(id)] }
            } else if conf.learners.contains(id) {
                choices.append(.remove(id))
                if canGrow { choices.append(.addVoter(id)) }
            } else {
                choices.append(.addLearner(id))
                if canGrow { choices.append(.addVoter(id)) }
            }
        }
        guard let cc = pick(choices) else { return }
        if !conf.contains(cc.node), chance(0.5), (try? nodes[l]!.compact()) != nil {
            // A member added right after a compaction can only be sent a snapshot that predates it;
            // the leader must ask for a newer one that lists it (`RaftNode.snapshotRequest`).
            note("compact \(l) before adding \(cc.node)")
        }
        try act(l, "propose \(cc)") { try? $0.proposeConfChange(cc) }
    }

    private mutating func changeNetwork() {
        switch rng.next() % 4 {
        case 0:
            cut = []
            note("heal")
        case 1:
            // Symmetric split into two sides.
            cut = []
            var side: [NodeID: Bool] = [:]
            for id in ids { side[id] = rng.next() % 2 == 0 }
            for a in ids { for b in ids where side[a] != side[b] { cut.insert([a, b]) } }
            note("partition \(ids.filter { side[$0]! }) | \(ids.filter { !side[$0]! })")
        default:
            // Asymmetric: some directed links fail, their reverse keeps working.
            if let a = pick(ids), let b = pick(ids.filter { $0 != a }) {
                cut.insert([a, b])
                note("cut \(a)->\(b)")
            }
        }
    }

    private mutating func crash(_ id: NodeID) {
        crashed.insert(id)
        stats.crashes += 1
        // Whatever was not persisted is gone: the in-memory node is dropped and rebuilt from disk on restart.
    }

    private mutating func deliverOne() throws(SimulationFailure) {
        let due = network.indices.filter { network[$0].deliverAt <= now }
        guard let i = pick(due) else { return }
        let m = network.remove(at: i).message
        if crashed.contains(m.to) || cut.contains([m.from, m.to]) { return }
        if m.type == .snapshot { stats.snapshotsSent += 1 }
        try act(m.to, "deliver \(m)") { try? $0.step(m) }
    }

    /// Runs `body` on a live node, then handles its Ready (possibly tearing the write).
    private mutating func act(_ id: NodeID, _ what: String, _ body: (inout SimNode) -> Void) throws(SimulationFailure) {
        guard !crashed.contains(id) else { return }
        note("\(id): \(what)")
        body(&nodes[id]!)
        try settle(id)
    }

    private mutating func settle(_ id: NodeID) throws(SimulationFailure) {
        let tear: UInt64? = chance(options.tearRate) ? rng.next() : nil
        let out = nodes[id]!.process(tear: tear)
        if out.crashed {
            stats.tornWrites += 1
            note("torn write on \(id)")
            crash(id)
        }
        try check(id, out)
        for m in out.messages {
            if chance(options.dropRate) { continue }
            let copies = chance(options.duplicateRate) ? 2 : 1
            for _ in 0..<copies {
                network.append(InFlight(message: m, deliverAt: now + rng.next() % (options.maxDelay + 1)))
            }
        }
        if out.crashed { try checkDurability() }
    }

    // MARK: - Checks

    private mutating func check(_ id: NodeID, _ out: SimNode.Outcome) throws(SimulationFailure) {
        if out.requestedSnapshot != nil { stats.requestedSnapshots += 1 }
        for (e, prev) in out.persisted {
            let fact = EntryFact(data: e.data, kind: e.kind, prevTerm: prev)
            let key = Key(index: e.index, term: e.term)
            if let seen = entryAt[key] {
                if seen != fact {
                    throw fail("log matching: node \(id) wrote \(Message.describe(e)) after term \(prev.map(String.init) ?? "?"), another node has \(seen)")
                }
            } else {
                entryAt[key] = fact
            }
        }
        if let s = out.snapshot, let h = hashAt[s.metadata.index], KVStateMachine(decoding: s.data)?.hash != h {
            throw fail("state machine safety: node \(id) installed a snapshot at \(s.metadata.index) whose state differs")
        }
        for e in out.applied {
            if let prev = acked[e.index], prev != e {
                throw fail("state machine safety: node \(id) applied \(Message.describe(e)) at \(e.index), others applied \(Message.describe(prev))")
            }
            if acked[e.index] == nil {
                if e.kind == .confChange && e.index > Index(options.nodes) { stats.confChangesApplied += 1 }
                acked[e.index] = e
                maxAcked = max(maxAcked, e.index)
                stats.committed = max(stats.committed, e.index)
            }
        }
        let sm = nodes[id]!.state
        if let h = hashAt[sm.appliedIndex] {
            if h != sm.hash { throw fail("state machine safety: node \(id) state at \(sm.appliedIndex) differs") }
        } else if sm.appliedIndex > 0 {
            hashAt[sm.appliedIndex] = sm.hash
        }
        for r in nodes[id]!.readStates {
            guard let floor = readFloor[r.context] else { continue }
            if r.index < floor {
                throw fail("linearizability: read \(String(decoding: r.context, as: UTF8.self)) on \(id) returned index \(r.index) but \(floor) was acknowledged before it was issued")
            }
            stats.readsServed += 1
        }
        nodes[id]!.readStates = []
    }

    /// Election safety and leader completeness.
    private mutating func checkLeaders() throws(SimulationFailure) {
        for id in live {
            let r = nodes[id]!.raft
            guard r.role == .leader else { continue }
            if let other = leaderOfTerm[r.term] {
                if other != id { throw fail("election safety: \(other) and \(id) both lead term \(r.term)") }
                continue
            }
            leaderOfTerm[r.term] = id
            stats.elections += 1
            // A new leader must hold every acknowledged entry (leader completeness).
            let snap = r.snapshot.metadata.index
            let entries = r.logEntries
            for (idx, e) in acked where idx > snap {
                let pos = Int(idx - snap - 1)
                if pos >= entries.count || entries[pos].term != e.term {
                    throw fail("leader completeness: leader \(id) of term \(r.term) lacks acknowledged \(Message.describe(e))")
                }
            }
        }
    }

    /// Every acknowledged entry must still be on the disks of a quorum.
    private func checkDurability() throws(SimulationFailure) {
        for (idx, e) in acked {
            var copies = 0
            for id in ids {
                let d = nodes[id]!.disk
                if idx <= d.snapshot.metadata.index || d.term(at: idx) == e.term { copies += 1 }
            }
            if copies < quorum {
                throw fail("durability: acknowledged \(Message.describe(e)) is on only \(copies) disks")
            }
        }
    }

    /// Heals the network, restarts everyone and requires the group to apply every acknowledged entry.
    private mutating func converge() throws(SimulationFailure) {
        cut = []
        note("final: heal and restart all")
        for id in crashed.sorted() {
            nodes[id] = nodes[id]!.restarted()
            try settle(id)
        }
        crashed = []
        for round in 0..<600 {
            step += 1
            now += 1
            for id in ids { try actNoTear(id) { $0.tick() } }
            // Deliver everything due, in random order, with the usual drops but no new crashes.
            while true {
                let due = network.indices.filter { network[$0].deliverAt <= now }
                guard let i = pick(due) else { break }
                let m = network.remove(at: i).message
                try actNoTear(m.to) { try? $0.step(m) }
            }
            try checkLeaders()
            let leaders = ids.filter { nodes[$0]!.raft.role == .leader }
            // Only the members of the leader's configuration must converge; a removed node stops
            // hearing from the group where it was removed.
            let members = leaders.count == 1 ? nodes[leaders[0]]!.raft.status.conf : ConfState()
            let applied = ids.filter { members.contains($0) }.map { nodes[$0]!.state.appliedIndex }
            if round > 0, leaders.count == 1, applied.allSatisfy({ $0 >= maxAcked && $0 == applied[0] }) {
                return
            }
        }
        let summary = ids.map { id -> String in
            let st = nodes[id]!.raft.status
            return "\(id): \(st.role) term=\(st.term) vote=\(st.vote) leader=\(st.leader) last=\(st.lastIndex) commit=\(st.commit) applied=\(nodes[id]!.state.appliedIndex) voters=\(st.conf.voters.sorted()) learners=\(st.conf.learners.sorted())"
        }
        throw fail("liveness: no convergence after healing (max acknowledged \(maxAcked)); \(summary.joined(separator: ", "))")
    }

    private mutating func actNoTear(_ id: NodeID, _ body: (inout SimNode) -> Void) throws(SimulationFailure) {
        body(&nodes[id]!)
        let out = nodes[id]!.process()
        try check(id, out)
        for m in out.messages {
            if chance(options.dropRate) { continue }
            // Healed means timely: Raft promises progress only when a round trip is well below the
            // election timeout (§5.6). With the fault phase's delays (up to 12 steps each way
            // against a 10-tick CheckQuorum) a new leader of 4 voters can lose its lease before two
            // followers answer, term after term (seed 17036).
            let healedDelay = min(options.maxDelay, UInt64(options.electionTick / 3))
            network.append(InFlight(message: m, deliverAt: now + rng.next() % (healedDelay + 1)))
        }
    }
}

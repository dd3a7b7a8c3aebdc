import Raft
import RaftSimulation

/// A small cluster driven by script commands: nodes, a message queue, and partitions.
/// Messages move only when a script says `deliver`, so every interleaving in a script is explicit.
struct InteractionEnv {
    struct ScriptError: Error, CustomStringConvertible {
        var description: String
    }

    var nodes: [NodeID: SimNode] = [:]
    var crashed: Set<NodeID> = []
    var queue: [Message] = []
    /// Directed links that drop everything.
    var cut: Set<[NodeID]> = []
    var defaults = Config(id: 1, electionTick: 10, heartbeatTick: 1, randomSeed: 1)

    // MARK: command dispatch

    mutating func run(_ cmd: String, _ args: [String]) throws -> [String] {
        var out: [String] = []
        switch cmd {
        case "nodes":
            guard let n = args.first.flatMap({ Int($0) }) else { throw ScriptError(description: "nodes N [options]") }
            try configure(args.dropFirst())
            let ids = (1...n).map { NodeID($0) }
            for id in ids { addNode(id, disk: .bootstrap(voters: ids)) }
        case "add-node":
            guard let id = args.first.flatMap({ NodeID($0) }) else { throw ScriptError(description: "add-node ID") }
            addNode(id, disk: PersistentState())
        case "campaign":
            for id in try ids(args) { try with(id) { $0.campaign() } }
        case "tick":
            // `tick 2 3 x25 settle` delivers all messages after each round of ticks, like a network
            // much faster than a tick; without `settle` messages wait for `deliver`.
            let settleEach = args.last == "settle"
            let (targets, times) = try repeated(settleEach ? Array(args.dropLast()) : args)
            for _ in 0..<times {
                for id in targets.isEmpty ? liveIDs : targets { try with(id) { $0.tick() } }
                if settleEach { _ = try deliver(only: nil, rounds: .max, verbose: false) }
            }
        case "deliver", "stabilize":
            var only: Set<NodeID>? = nil
            var rounds = Int.max
            for a in args {
                if a.hasPrefix("rounds=") { rounds = Int(a.dropFirst(7)) ?? 1 } else if let id = NodeID(a) { only = (only ?? []).union([id]) }
            }
            out = try deliver(only: only, rounds: rounds, verbose: cmd == "deliver")
        case "queue":
            out = queue.map { "\($0)" }
        case "propose":
            guard args.count >= 2, let id = NodeID(args[0]) else { throw ScriptError(description: "propose ID DATA") }
            try tryOrReport(&out) { try with(id) { try $0.propose(args[1]) } }
        case "propose-conf":
            guard args.count == 3, let id = NodeID(args[0]), let target = NodeID(args[2]) else {
                throw ScriptError(description: "propose-conf ID add-voter|add-learner|remove ID")
            }
            let cc: ConfChange
            switch args[1] {
            case "add-voter": cc = .addVoter(target)
            case "add-learner": cc = .addLearner(target)
            case "remove": cc = .remove(target)
            default: throw ScriptError(description: "unknown conf change \(args[1])")
            }
            try tryOrReport(&out) { try with(id) { try $0.proposeConfChange(cc) } }
        case "read-index":
            guard args.count == 2, let id = NodeID(args[0]) else { throw ScriptError(description: "read-index ID CTX") }
            try tryOrReport(&out) { try with(id) { try $0.readIndex(args[1]) } }
        case "reads":
            for id in try ids(args) {
                for r in nodes[id]!.readStates {
                    out.append("\(id): read ctx=\(String(decoding: r.context, as: UTF8.self)) index=\(r.index)")
                }
                nodes[id]!.readStates = []
            }
        case "transfer-leader":
            guard args.count == 2, let from = NodeID(args[0]), let to = NodeID(args[1]) else {
                throw ScriptError(description: "transfer-leader LEADER TRANSFEREE")
            }
            try with(from) { $0.transferLeadership(to: to) }
        case "compact":
            guard let id = args.first.flatMap({ NodeID($0) }) else { throw ScriptError(description: "compact ID") }
            var made: Snapshot?
            try tryOrReport(&out) { try with(id) { made = try $0.compact() } }
            if let s = made { out.append("\(id): snapshot at \(s.metadata.term)/\(s.metadata.index)") }
        case "partition":
            // partition 1 | 2 3 : cut every link between the groups, both ways.
            let groups = args.split(separator: "|").map { $0.compactMap { NodeID($0) } }
            guard groups.count >= 2 else { throw ScriptError(description: "partition A.. | B..") }
            for (i, g) in groups.enumerated() {
                for (j, h) in groups.enumerated() where i != j {
                    for a in g { for b in h { cut.insert([a, b]) } }
                }
            }
        case "cut":
            // cut 1 -> 2 : an asymmetric fault, 1's messages to 2 are lost.
            guard args.count == 3, args[1] == "->", let a = NodeID(args[0]), let b = NodeID(args[2]) else {
                throw ScriptError(description: "cut A -> B")
            }
            cut.insert([a, b])
        case "heal":
            cut = []
        case "crash":
            for id in try ids(args) { crashed.insert(id) }
            queue.removeAll { crashed.contains($0.to) || crashed.contains($0.from) }
        case "restart":
            for id in try ids(args) {
                crashed.remove(id)
                nodes[id] = nodes[id]!.restarted()
                try settle(id)
            }
        case "status":
            for id in args.isEmpty ? nodes.keys.sorted() : try ids(args) { out.append(statusLine(id)) }
        case "progress":
            for id in try ids(args) {
                let st = nodes[id]!.raft.status
                for (pid, pr) in st.progress.sorted(by: { $0.key < $1.key }) where pid != id {
                    var line = "\(pid): \(pr.state) match=\(pr.match) next=\(pr.next)"
                    if pr.isLearner { line += " learner" }
                    if pr.state == .snapshot { line += " pending-snapshot=\(pr.pendingSnapshot)" }
                    out.append(line)
                }
            }
        case "log":
            for id in try ids(args) {
                let r = nodes[id]!.raft
                if !r.snapshot.isEmpty {
                    out.append("\(id): snapshot \(r.snapshot.metadata.term)/\(r.snapshot.metadata.index) conf=\(conf(r.snapshot.metadata.confState))")
                }
                for e in r.logEntries { out.append("\(id): \(Message.describe(e))") }
            }
        case "applied":
            for id in try ids(args) {
                let sm = nodes[id]!.state
                out.append("\(id): index=\(sm.appliedIndex) values=[\(sm.values.joined(separator: " "))]")
            }
        default:
            throw ScriptError(description: "unknown command \(cmd)")
        }
        return out
    }

    // MARK: helpers

    private mutating func configure(_ opts: ArraySlice<String>) throws {
        for o in opts {
            let kv = o.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw ScriptError(description: "option \(o) is not key=value") }
            switch kv[0] {
            case "prevote": defaults.preVote = kv[1] == "true"
            case "checkquorum": defaults.checkQuorum = kv[1] == "true"
            case "election": defaults.electionTick = Int(kv[1])!
            case "heartbeat": defaults.heartbeatTick = Int(kv[1])!
            case "max-bytes": defaults.maxSizePerMessage = Int(kv[1])!
            case "inflight": defaults.maxInflightMessages = Int(kv[1])!
            case "seed": defaults.randomSeed = UInt64(kv[1])!
            default: throw ScriptError(description: "unknown option \(kv[0])")
            }
        }
    }

    private mutating func addNode(_ id: NodeID, disk: PersistentState) {
        var cfg = defaults
        cfg.id = id
        nodes[id] = SimNode(config: cfg, disk: disk)
        _ = nodes[id]!.process()
    }

    private var liveIDs: [NodeID] { nodes.keys.sorted().filter { !crashed.contains($0) } }

    private func ids(_ args: [String]) throws -> [NodeID] {
        try args.map {
            guard let id = NodeID($0), nodes[id] != nil else { throw ScriptError(description: "no node \($0)") }
            return id
        }
    }

    /// `tick 1 2 x10` → ([1, 2], 10); no ids means every live node.
    private func repeated(_ args: [String]) throws -> ([NodeID], Int) {
        var times = 1
        var rest = args
        if let last = rest.last, last.hasPrefix("x"), let n = Int(last.dropFirst()) {
            times = n
            rest.removeLast()
        }
        return (rest == ["all"] ? [] : try ids(rest), times)
    }

    private mutating func with(_ id: NodeID, _ body: (inout SimNode) throws -> Void) throws {
        guard nodes[id] != nil else { throw ScriptError(description: "no node \(id)") }
        guard !crashed.contains(id) else { throw ScriptError(description: "node \(id) is crashed") }
        try body(&nodes[id]!)
        try settle(id)
    }

    private func tryOrReport(_ out: inout [String], _ body: () throws -> Void) throws {
        do {
            try body()
        } catch let e as RaftError {
            out.append("error: \(e)")
        }
    }

    private mutating func settle(_ id: NodeID) throws {
        let o = nodes[id]!.process()
        queue += o.messages
    }

    private mutating func deliver(only: Set<NodeID>?, rounds: Int, verbose: Bool) throws -> [String] {
        var out: [String] = []
        var round = 0
        while round < rounds {
            let (now, later) = queue.reduce(into: ([Message](), [Message]())) { acc, m in
                if only == nil || only!.contains(m.to) { acc.0.append(m) } else { acc.1.append(m) }
            }
            if now.isEmpty { break }
            queue = later
            for m in now {
                if cut.contains([m.from, m.to]) || crashed.contains(m.to) || nodes[m.to] == nil {
                    if verbose { out.append("dropped: \(m)") }
                    continue
                }
                if verbose { out.append("\(m)") }
                do {
                    try with(m.to) { try $0.step(m) }
                } catch let e as RaftError {
                    // A forwarded proposal the receiver could not take is simply lost, as on a network.
                    if verbose { out.append("  \(m.to) dropped it: \(e)") }
                }
            }
            round += 1
        }
        return out
    }

    private func conf(_ cs: ConfState) -> String {
        var s = "v" + cs.voters.sorted().map(String.init).joined(separator: ",")
        if !cs.learners.isEmpty { s += " l" + cs.learners.sorted().map(String.init).joined(separator: ",") }
        return s
    }

    private func statusLine(_ id: NodeID) -> String {
        if crashed.contains(id) { return "\(id): crashed" }
        let st = nodes[id]!.raft.status
        return "\(id): \(st.role) term=\(st.term) lead=\(st.leader) commit=\(st.commit) applied=\(st.applied) last=\(st.lastIndex) conf=\(conf(st.conf))"
    }
}

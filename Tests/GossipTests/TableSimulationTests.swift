import Gossip
import Testing

/// NetworkDB-style tables in the simulator. Rerun a failing seed with `GOSSIP_SEED=<seed>`.
@Suite("Tables in the simulator")
struct TableSimulationTests {
    static let network = "overlay-1"
    static let table = "endpoints"

    /// A converged cluster in which every node joined `network`.
    static func cluster(seed: UInt64, nodes: Int, faults: SimulationFaults = SimulationFaults(),
                        configuration: GossipConfiguration = .fast) throws -> Simulation {
        let sim = Simulation(seed: seed, nodes: nodes, configuration: configuration, faults: faults)
        sim.startAll()
        let limit: Duration = nodes > 50 ? .seconds(10) : .seconds(6)
        try #require(sim.run(until: limit, checkingEvery: .milliseconds(200)) { $0.membershipConverged() }, "seed \(seed): \(sim.describe(0))")
        try sim.joinEveryone(network)
        return sim
    }

    static func create(_ sim: Simulation, on index: Int, key: String, value: [UInt8]) throws {
        try sim.with(index) { node, now in try node.createEntry(network: network, table: table, key: key, value: value, now: now) }
    }

    @Test("an entry reaches all 10 nodes", arguments: Seeds.list([21, 22, 23]))
    func tenNodes(seed: UInt64) throws {
        let sim = try Self.cluster(seed: seed, nodes: 10)
        try Self.create(sim, on: 3, key: "ep1", value: [10, 0, 0, 3])
        #expect(sim.run(until: .seconds(2)) { $0.everyone(shows: [10, 0, 0, 3], network: Self.network, table: Self.table, key: "ep1") },
                "seed \(seed): \(sim.holders(network: Self.network, table: Self.table, key: "ep1")) of 10")
    }

    @Test("an entry reaches all 100 nodes", arguments: Seeds.list([24]))
    func hundredNodes(seed: UInt64) throws {
        let sim = try Self.cluster(seed: seed, nodes: 100)
        sim.run(for: .seconds(1))  // let the network joins spread
        try Self.create(sim, on: 42, key: "ep", value: [1, 2, 3])
        #expect(sim.run(until: .seconds(3), checkingEvery: .milliseconds(100)) {
            $0.everyone(shows: [1, 2, 3], network: Self.network, table: Self.table, key: "ep")
        }, "seed \(seed): \(sim.holders(network: Self.network, table: Self.table, key: "ep")) of 100")
    }

    @Test("20% loss: updates and deletes converge", arguments: Seeds.list([25, 26]))
    func lossy(seed: UInt64) throws {
        let sim = try Self.cluster(seed: seed, nodes: 20, faults: SimulationFaults(loss: 0.2, duplication: 0.05, maximumDelayMilliseconds: 20))
        for i in 0..<5 { try Self.create(sim, on: i, key: "k\(i)", value: [UInt8(i)]) }
        sim.run(for: .milliseconds(100))
        try sim.with(1) { node, now in try node.updateEntry(network: Self.network, table: Self.table, key: "k1", value: [99], now: now) }
        try sim.with(2) { node, now in try node.deleteEntry(network: Self.network, table: Self.table, key: "k2", now: now) }
        #expect(sim.run(until: .seconds(5)) { s in
            s.everyone(shows: [0], network: Self.network, table: Self.table, key: "k0")
                && s.everyone(shows: [99], network: Self.network, table: Self.table, key: "k1")
                && s.everyone(shows: nil, network: Self.network, table: Self.table, key: "k2")
                && s.everyone(shows: [4], network: Self.network, table: Self.table, key: "k4")
        }, "seed \(seed)")
    }

    @Test("entries stay among the members of their network", arguments: Seeds.list([27]))
    func scopedToNetwork(seed: UInt64) throws {
        let sim = Simulation(seed: seed, nodes: 10)
        sim.startAll()
        try #require(sim.run(until: .seconds(5)) { $0.membershipConverged() }, "seed \(seed)")
        let members = [0, 2, 4, 6, 8]
        for index in members {
            let outputs = try sim.with(index) { node, now in try node.joinNetwork("blue", now: now) }
            sim.send(outputs, from: index)
        }
        sim.run(for: .milliseconds(500))
        try sim.with(2) { node, now in try node.createEntry(network: "blue", table: "t", key: "k", value: [7], now: now) }
        #expect(sim.run(until: .seconds(3)) { $0.everyone(members, shows: [7], network: "blue", table: "t", key: "k") }, "seed \(seed)")
        for index in [1, 3, 5, 7, 9] {
            #expect(sim.node(index)!.storedEntries.isEmpty, "seed \(seed): node \(index) is not in the network")
            #expect(sim.node(index)!.members(ofNetwork: "blue").count == 5, "seed \(seed): but it knows who is")
        }
    }

    @Test("partition then heal: a failed owner's entries are suspended, then come back", arguments: Seeds.list([28, 29]))
    func suspendedEntriesReturn(seed: UInt64) throws {
        let sim = try Self.cluster(seed: seed, nodes: 10)
        try Self.create(sim, on: 0, key: "left-side", value: [0])
        try Self.create(sim, on: 9, key: "right-side", value: [9])
        #expect(sim.run(until: .seconds(2)) {
            $0.everyone(shows: [0], network: Self.network, table: Self.table, key: "left-side")
                && $0.everyone(shows: [9], network: Self.network, table: Self.table, key: "right-side")
        }, "seed \(seed)")
        let left = Array(0..<5), right = Array(5..<10)
        sim.partition([left, right])
        #expect(sim.run(until: .seconds(10)) { $0.membershipConverged(among: left) && $0.membershipConverged(among: right) }, "seed \(seed)")
        // Hidden on the far side, but kept.
        #expect(sim.everyone(left, shows: nil, network: Self.network, table: Self.table, key: "right-side"), "seed \(seed)")
        #expect(sim.everyone(right, shows: nil, network: Self.network, table: Self.table, key: "left-side"), "seed \(seed)")
        #expect(sim.node(1)!.storedEntries.contains { $0.key.key == "right-side" && !$0.entry.deleting }, "seed \(seed)")
        // Each side keeps working meanwhile.
        try Self.create(sim, on: 9, key: "written-during-partition", value: [1])
        sim.run(for: .seconds(3))
        sim.heal()
        #expect(sim.run(until: .seconds(10)) { s in
            s.membershipConverged()
                && s.everyone(shows: [0], network: Self.network, table: Self.table, key: "left-side")
                && s.everyone(shows: [9], network: Self.network, table: Self.table, key: "right-side")
                && s.everyone(shows: [1], network: Self.network, table: Self.table, key: "written-during-partition")
        }, "seed \(seed): \(sim.describe(0))")
    }

    @Test("a deleted entry never comes back after its tombstone is reaped", arguments: Seeds.list([30, 31]))
    func tombstones(seed: UInt64) throws {
        let faults = SimulationFaults(loss: 0.1, duplication: 0.2, maximumDelayMilliseconds: 30)
        let sim = try Self.cluster(seed: seed, nodes: 10, faults: faults)
        try Self.create(sim, on: 4, key: "gone", value: [1])
        try #require(sim.run(until: .seconds(3)) { $0.everyone(shows: [1], network: Self.network, table: Self.table, key: "gone") }, "seed \(seed)")
        try sim.with(4) { node, now in try node.deleteEntry(network: Self.network, table: Self.table, key: "gone", now: now) }
        #expect(sim.run(until: .seconds(3)) { $0.everyone(shows: nil, network: Self.network, table: Self.table, key: "gone") }, "seed \(seed)")
        // Tombstones live 3 s in `.fast`; then they are forgotten everywhere.
        #expect(sim.run(until: .seconds(6)) { s in
            s.running.allSatisfy { i in !s.node(i)!.storedEntries.contains { $0.key.key == "gone" } }
        }, "seed \(seed): \(sim.describeEntry(network: Self.network, table: Self.table, key: "gone"))")
        // Keep gossiping, with loss, duplicates and reordering: the entry must never reappear.
        for _ in 0..<40 {
            sim.run(for: .milliseconds(100))
            #expect(sim.holders(network: Self.network, table: Self.table, key: "gone") == 0, "seed \(seed) at \(sim.now)")
        }
    }

    @Test("a copy that outlived its tombstone in a partition is deleted by its owner", arguments: Seeds.list([32]))
    func staleCopyAfterPartition(seed: UInt64) throws {
        let sim = try Self.cluster(seed: seed, nodes: 8)
        try Self.create(sim, on: 0, key: "stale", value: [5])
        try #require(sim.run(until: .seconds(2)) { $0.everyone(shows: [5], network: Self.network, table: Self.table, key: "stale") }, "seed \(seed)")
        sim.partition([Array(0..<6), [6, 7]])
        try sim.with(0) { node, now in try node.deleteEntry(network: Self.network, table: Self.table, key: "stale", now: now) }
        // Well past the tombstone's life on the majority side.
        sim.run(for: .seconds(6))
        #expect(sim.node(1)!.storedEntries.allSatisfy { $0.key.key != "stale" }, "seed \(seed): tombstone reaped")
        #expect(sim.node(7)!.storedEntries.contains { $0.key.key == "stale" && !$0.entry.deleting }, "seed \(seed): stale copy kept")
        sim.heal()
        #expect(sim.run(until: .seconds(10)) { s in
            s.membershipConverged() && s.everyone(shows: nil, network: Self.network, table: Self.table, key: "stale")
        }, "seed \(seed): \(sim.holders(network: Self.network, table: Self.table, key: "stale")) still show it")
        #expect(sim.node(0)!.counters.ownEntriesRepublished >= 1, "seed \(seed)")
    }

    @Test("an owner that restarts deletes the entries it no longer has", arguments: Seeds.list([33]))
    func ownerRestart(seed: UInt64) throws {
        let sim = try Self.cluster(seed: seed, nodes: 6)
        try Self.create(sim, on: 5, key: "kept", value: [1])
        try Self.create(sim, on: 5, key: "forgotten", value: [2])
        try #require(sim.run(until: .seconds(2)) { $0.everyone(shows: [2], network: Self.network, table: Self.table, key: "forgotten") }, "seed \(seed)")
        sim.crash(5)
        sim.restart(5, via: 0)
        let outputs = try sim.with(5) { node, now in try node.joinNetwork(Self.network, now: now) }
        sim.send(outputs, from: 5)
        try Self.create(sim, on: 5, key: "kept", value: [3])
        #expect(sim.run(until: .seconds(5)) { s in
            s.membershipConverged()
                && s.everyone(shows: [3], network: Self.network, table: Self.table, key: "kept")
                && s.everyone(shows: nil, network: Self.network, table: Self.table, key: "forgotten")
        }, "seed \(seed): kept \(sim.describeEntry(network: Self.network, table: Self.table, key: "kept")) forgotten \(sim.describeEntry(network: Self.network, table: Self.table, key: "forgotten")) \(sim.describe(0))")
    }

    @Test("leaving a network or the cluster removes the leaver's entries", arguments: Seeds.list([34]))
    func leaving(seed: UInt64) throws {
        let sim = try Self.cluster(seed: seed, nodes: 6)
        try Self.create(sim, on: 1, key: "a", value: [1])
        try Self.create(sim, on: 2, key: "b", value: [2])
        try #require(sim.run(until: .seconds(2)) { $0.everyone(shows: [2], network: Self.network, table: Self.table, key: "b") }, "seed \(seed)")
        try sim.with(1) { node, now in try node.leaveNetwork(Self.network, now: now) }
        let outputs = sim.with(2) { node, now in node.leave(now: now) }
        sim.send(outputs, from: 2)
        // Node 2 has left: what it still holds does not matter, what the others hold does.
        let others = [0, 1, 3, 4, 5]
        #expect(sim.run(until: .seconds(3)) { s in
            s.everyone(others, shows: nil, network: Self.network, table: Self.table, key: "a")
                && s.everyone(others, shows: nil, network: Self.network, table: Self.table, key: "b")
        }, "seed \(seed): a \(sim.describeEntry(network: Self.network, table: Self.table, key: "a")) b \(sim.describeEntry(network: Self.network, table: Self.table, key: "b"))")
        #expect(!sim.node(0)!.members(ofNetwork: Self.network).contains("node-1"), "seed \(seed)")
        // A graceful leave deletes; it does not merely suspend.
        #expect(sim.node(0)!.storedEntries.allSatisfy { $0.key.key != "b" }, "seed \(seed)")
    }

    @Test("consumers get created, updated and deleted events", arguments: Seeds.list([35]))
    func events(seed: UInt64) throws {
        let sim = try Self.cluster(seed: seed, nodes: 4)
        sim.recordEvents = true
        try Self.create(sim, on: 0, key: "e", value: [1])
        sim.run(for: .milliseconds(500))
        try sim.with(0) { node, now in try node.updateEntry(network: Self.network, table: Self.table, key: "e", value: [2], now: now) }
        sim.run(for: .milliseconds(500))
        try sim.with(0) { node, now in try node.deleteEntry(network: Self.network, table: Self.table, key: "e", now: now) }
        sim.run(for: .milliseconds(500))
        let changes = sim.events[3].compactMap { event -> TableChange? in
            if case .table(let change) = event, change.key == "e" { return change }
            return nil
        }
        #expect(changes.map(\.kind) == [.created, .updated, .deleted], "seed \(seed): \(changes)")
        #expect(changes.map(\.value) == [[1], [2], [2]], "seed \(seed)")
    }
}

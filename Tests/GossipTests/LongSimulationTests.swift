import Gossip
import Testing

/// Long simulator runs: 1,000 nodes and many seeds. Not part of CI; `scripts/gossip-sim` runs
/// them in a release build with `GOSSIP_LONG=1` (and optionally `GOSSIP_SEEDS="1 2 3"`,
/// `GOSSIP_NODES=1000`).
@Suite("Long simulations", .enabled(if: Seeds.environment("GOSSIP_LONG") != nil), .serialized)
struct LongSimulationTests {
    static var seeds: [UInt64] {
        Seeds.environment("GOSSIP_SEEDS").map { $0.split(separator: " ").compactMap { UInt64($0) } } ?? [1001, 1002, 1003]
    }

    static var nodeCount: Int {
        Seeds.environment("GOSSIP_NODES").flatMap { Int($0) } ?? 1000
    }

    static func log(_ text: String) {
        print("gossip-sim: \(text)")
    }

    @Test("LAN profile, 1,000 nodes: membership and an entry converge, at 0% and 10% loss")
    func thousandNodes() throws {
        let n = Self.nodeCount
        for seed in Self.seeds {
            for loss in [0.0, 0.1] {
                let sim = Simulation(seed: seed, nodes: n, configuration: .lan,
                                     faults: SimulationFaults(loss: loss, duplication: 0.01, maximumDelayMilliseconds: 10),
                                     tick: .milliseconds(20))
                let started = sim.now
                sim.startAll()
                var lastReport = sim.now
                let converged = sim.run(until: .seconds(400), checkingEvery: .milliseconds(1000)) { s in
                    if s.now.nanoseconds(since: lastReport) >= 10_000_000_000 {
                        lastReport = s.now
                        let lagging = s.running.filter { s.node($0)!.activeMemberCount != n }
                        let example = lagging.first.map { i in
                            let known = Set(s.node(i)!.memberList.filter { $0.status.isActive }.map(\.name))
                            return ", e.g. node-\(i) knows \(known.count), missing \(s.names.filter { !known.contains($0) }.prefix(3))"
                        } ?? ""
                        Self.log("seed \(seed) loss \(loss): t=\(s.now.nanoseconds(since: started) / 1_000_000) ms, \(n - lagging.count)/\(n) nodes see all members\(example)")
                    }
                    return s.membershipConverged()
                }
                let membershipTime = sim.now.nanoseconds(since: started) / 1_000_000
                #expect(converged, "seed \(seed) loss \(loss): membership did not converge")
                Self.log("seed \(seed) loss \(loss): membership converged after \(membershipTime) ms (simulated)")
                guard converged else { continue }
                sim.run(for: .seconds(2))
                let falseDeaths = sim.running.reduce(0) { $0 + sim.node($1)!.counters.membersDeclaredDead }
                #expect(falseDeaths == 0, "seed \(seed) loss \(loss): \(falseDeaths) false deaths")

                try sim.joinEveryone("net")
                sim.run(for: .seconds(5))
                var times: [Int64] = []
                for round in 0..<10 {
                    let owner = (round * 97) % n
                    let key = "ep\(round)"
                    try sim.with(owner) { node, now in try node.createEntry(network: "net", table: "endpoints", key: key, value: [UInt8(round)], now: now) }
                    let written = sim.now
                    let reached = sim.run(until: .seconds(20), checkingEvery: .milliseconds(20)) {
                        $0.holders(network: "net", table: "endpoints", key: key) == n
                    }
                    #expect(reached, "seed \(seed) loss \(loss): entry \(key) reached \(sim.holders(network: "net", table: "endpoints", key: key))/\(n)")
                    times.append(sim.now.nanoseconds(since: written) / 1_000_000)
                }
                times.sort()
                let bound = Int((GossipMath_log4(Double(n))).rounded(.up)) * 200
                Self.log("seed \(seed) loss \(loss): entry at all \(n) nodes after p50 \(times[times.count / 2]) ms, max \(times.last!) ms "
                    + "(fanout-3 gossip lower bound ≈ \(bound) ms); \(sim.packetsDelivered) packets delivered")
            }
        }
    }

    @Test("many seeds: partitions, crashes and restarts under loss")
    func manySeeds() throws {
        let count = Int(Seeds.environment("GOSSIP_SEED_COUNT") ?? "") ?? 50
        for offset in 0..<count {
            let seed = UInt64(5000 + offset)
            let sim = Simulation(seed: seed, nodes: 30, faults: SimulationFaults(loss: 0.2, duplication: 0.1, maximumDelayMilliseconds: 25))
            sim.startAll()
            #expect(sim.run(until: .seconds(15)) { $0.membershipConverged() }, "seed \(seed)")
            try sim.joinEveryone("net")
            for i in 0..<5 {
                try sim.with(i * 6) { node, now in try node.createEntry(network: "net", table: "t", key: "k\(i)", value: [UInt8(i)], now: now) }
            }
            sim.partition([Array(0..<15), Array(15..<30)])
            sim.crash(29)
            sim.run(for: .seconds(5))
            try sim.with(0) { node, now in try node.deleteEntry(network: "net", table: "t", key: "k0", now: now) }
            sim.heal()
            sim.restart(29, via: 3)
            try sim.with(29) { node, now in _ = try node.joinNetwork("net", now: now) }
            let ok = sim.run(until: .seconds(20)) { s in
                s.membershipConverged()
                    && s.everyone(shows: nil, network: "net", table: "t", key: "k0")
                    && (1..<5).allSatisfy { s.everyone(shows: [UInt8($0)], network: "net", table: "t", key: "k\($0)") }
            }
            #expect(ok, "seed \(seed): \(sim.describe(0))")
            if offset % 10 == 9 { Self.log("\(offset + 1)/\(count) seeds done") }
        }
    }
}

/// log base 4, the number of rounds fanout-3 push gossip needs at best (each holder reaches 3 more).
private func GossipMath_log4(_ x: Double) -> Double {
    var rounds = 0.0
    var reached = 1.0
    while reached < x {
        reached *= 4
        rounds += 1
    }
    return rounds
}

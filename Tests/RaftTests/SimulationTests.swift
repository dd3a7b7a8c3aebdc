import Foundation
import RaftSimulation
import Testing

/// The seeded simulator over many seeds. CI runs a subset; `scripts/raft-sim` runs the long sweep
/// through the same test with RAFT_SIM_SEEDS (count), RAFT_SIM_FIRST (first seed), RAFT_SIM_SEED
/// (one seed) and RAFT_SIM_NODES (3 or 5) in the environment.
struct SimulationTests {
    static let env = ProcessInfo.processInfo.environment

    static func seeds(default count: UInt64) -> ClosedRange<UInt64> {
        if let one = env["RAFT_SIM_SEED"].flatMap(UInt64.init) { return one...one }
        let first = env["RAFT_SIM_FIRST"].flatMap(UInt64.init) ?? 1
        let n = env["RAFT_SIM_SEEDS"].flatMap(UInt64.init) ?? count
        return first...(first + max(n, 1) - 1)
    }

    static func sweep(nodes: Int, defaultSeeds: UInt64) {
        if let only = env["RAFT_SIM_NODES"].flatMap(Int.init), only != nodes { return }
        let range = seeds(default: defaultSeeds)
        let progressEvery: UInt64 = range.count > 1000 ? 1000 : 0
        var committed: UInt64 = 0
        var crashes = 0
        var torn = 0
        var snapshots = 0
        var reads = 0
        var confChanges = 0
        var requestedSnapshots = 0
        for seed in range {
            var sim = Simulator(seed: seed, options: SimulationOptions(nodes: nodes))
            do {
                let st = try sim.run()
                committed += st.committed
                crashes += st.crashes
                torn += st.tornWrites
                snapshots += st.snapshotsSent
                reads += st.readsServed
                confChanges += st.confChangesApplied
                requestedSnapshots += st.requestedSnapshots
            } catch {
                Issue.record("\(error)")
                return
            }
            if progressEvery > 0, (seed - range.lowerBound + 1) % progressEvery == 0 {
                print("raft-sim nodes=\(nodes): \(seed - range.lowerBound + 1)/\(range.count) seeds ok (through seed \(seed))")
            }
        }
        print("raft-sim nodes=\(nodes) seeds=\(range.lowerBound)...\(range.upperBound): ok; entries committed \(committed), crashes \(crashes), torn writes \(torn), snapshots sent \(snapshots), reads served \(reads), membership changes applied \(confChanges), snapshots made for new members \(requestedSnapshots)")
        // Guard against a vacuous run: the faults must not have stopped all progress.
        if range.count >= 50 {
            #expect(committed > range.count * 5)
            #expect(crashes > 0 && torn > 0 && snapshots > 0 && reads > 0)
            #expect(confChanges > range.count / 10, "membership changes (add, remove, learners) must be exercised")
            #expect(requestedSnapshots > 0, "members added after a compaction must be exercised")
        }
    }

    @Test func threeNodes() { Self.sweep(nodes: 3, defaultSeeds: 300) }
    @Test func fiveNodes() { Self.sweep(nodes: 5, defaultSeeds: 150) }

    @Test func sameSeedSameRun() throws {
        var a = Simulator(seed: 42, options: SimulationOptions(nodes: 5))
        var b = Simulator(seed: 42, options: SimulationOptions(nodes: 5))
        let sa = try a.run()
        let sb = try b.run()
        #expect(sa.committed == sb.committed && sa.crashes == sb.crashes && sa.elections == sb.elections)
    }
}

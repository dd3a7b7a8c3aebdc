import Foundation
import Raft
import RaftSimulation

// The long sweep of the seeded simulator without the test harness, so `scripts/raft-sim` builds
// only the Raft modules in release mode:
//   raft-sim <nodes> <first-seed> <count>
// Prints progress every 1000 seeds and exits 1 with the failure (and how to replay it) on the first
// violation.
func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

let args = CommandLine.arguments.dropFirst().compactMap { UInt64($0) }
guard args.count == 3, args[0] == 3 || args[0] == 5 else {
    FileHandle.standardError.write(Data("usage: raft-sim <3|5> <first-seed> <count>\n".utf8))
    exit(2)
}
let nodes = Int(args[0])
let first = args[1]
let count = args[2]
var stats = SimulationStats()
var membershipChanges = 0
var requestedSnapshots = 0
let start = Date()
for seed in first..<(first + count) {
    var sim = Simulator(seed: seed, options: SimulationOptions(nodes: nodes))
    do {
        let st = try sim.run()
        stats.committed += st.committed
        stats.crashes += st.crashes
        stats.tornWrites += st.tornWrites
        stats.snapshotsSent += st.snapshotsSent
        stats.readsServed += st.readsServed
        stats.elections += st.elections
        membershipChanges += st.confChangesApplied
        requestedSnapshots += st.requestedSnapshots
    } catch {
        say("\(error)")
        exit(1)
    }
    if (seed - first + 1) % 1000 == 0 {
        say("raft-sim nodes=\(nodes): \(seed - first + 1)/\(count) seeds ok (through seed \(seed)), \(Int(Date().timeIntervalSince(start))) s")
    }
}
say("raft-sim nodes=\(nodes) seeds=\(first)...\(first + count - 1): ok; entries committed \(stats.committed), elections \(stats.elections), crashes \(stats.crashes), torn writes \(stats.tornWrites), snapshots sent \(stats.snapshotsSent), reads served \(stats.readsServed), membership changes applied \(membershipChanges), snapshots made for new members \(requestedSnapshots)")

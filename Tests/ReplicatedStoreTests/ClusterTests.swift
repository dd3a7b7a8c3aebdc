import Foundation
import Raft
import RaftStorage
import ReplicatedStore
import Testing

/// End to end: three RaftNodes with disk storage and stores, in one process.
struct ClusterTests {
    func tempDir() -> String {
        var t = Array((NSTemporaryDirectory() + "/raftcluster-XXXXXX").utf8CString)
        return String(cString: t.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    }

    func allEqual(_ c: LocalCluster) -> Bool {
        let states = c.running.map { c.store($0).state }
        return states.dropFirst().allSatisfy { $0 == states[0] }
    }

    @Test(.timeLimit(.minutes(1)))
    func writesSurviveANodeRestartAndItCatchesUp() throws {
        let root = tempDir()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let c = try LocalCluster(nodes: 3, root: root, compactEvery: 25)
        let first = try c.waitForLeader()
        for i in 0..<20 {
            let r = try c.write(.create(collection: "nodes", key: "n\(i)", value: Array("v\(i)".utf8)))
            #expect(try r.result.get().first?.object.version == 1)
        }
        let conflict = try c.write(.compareAndSwap(collection: "nodes", key: "n3", version: 7, value: []))
        #expect(conflict.result == .failure(.versionMismatch(collection: "nodes", key: "n3", expected: 7, actual: 1)))
        try c.settle()
        #expect(allEqual(c))

        // Stop a follower; the others go on and compact past everything it has.
        let victim = c.ids.first { $0 != first }!
        c.stop(victim)
        for i in 0..<60 {
            _ = try c.write(.update(collection: "nodes", key: "n\(i % 20)", value: Array("w\(i)".utf8), expectedVersion: nil))
        }
        #expect(c.compactions > 0)
        try c.start(victim)
        try c.settle()
        #expect(c.snapshotsInstalled > 0, "the restarted node should have needed a snapshot")
        #expect(allEqual(c))
        #expect(c.store(victim).get("nodes", "n0")?.version == 4)

        // Stop the leader; a new one takes over, and the old one catches up from its directory.
        let oldLeader = c.leader!
        c.stop(oldLeader)
        let newLeader = try c.waitForLeader()
        #expect(newLeader != oldLeader)
        _ = try c.write(.delete(collection: "nodes", key: "n5", expectedVersion: nil))
        try c.start(oldLeader)
        try c.settle()
        #expect(allEqual(c))
        #expect(c.store(oldLeader).get("nodes", "n5") == nil)

        // Everything down at once, then up again from disk alone: nothing acknowledged is lost.
        let before = c.store(newLeader).state
        for id in c.ids { c.stop(id) }
        for id in c.ids { try c.start(id) }
        _ = try c.write(.create(collection: "nodes", key: "after", value: []))
        try c.settle()
        #expect(allEqual(c))
        let after = c.store(c.leader!).state
        #expect(after.list("nodes").filter { $0.key != "after" } == before.list("nodes"))
    }
}

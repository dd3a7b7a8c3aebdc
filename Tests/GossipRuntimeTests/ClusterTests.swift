import Gossip
import GossipRuntime
import Testing
import TestKit

/// Several runtimes in this process on loopback, with real UDP and TCP, in the fast profile.
@Suite("in-process cluster on loopback", .serialized)
struct ClusterTests {
    @Test("a cluster forms, a put reaches every node and a delete removes it everywhere")
    func putAndDeleteSpread() async throws {
        try await withCluster(4) { nodes in
            try await waitForMembership(nodes)
            for node in nodes { try node.joinNetwork("net1") }
            try await eventually("every node to see 4 members of net1", within: .seconds(5)) {
                nodes.allSatisfy { $0.dump().networks.first?.members.count == 4 }
            }
            var changes = nodes[3].changes(network: "net1", table: "endpoints").makeAsyncIterator()

            try nodes[0].put(network: "net1", table: "endpoints", key: "ep1", value: Array("10.0.0.2".utf8))
            let spread = try await eventually("the entry on every node", within: .seconds(5)) {
                nodes.allSatisfy { $0.entries(network: "net1", table: "endpoints") == [.init(key: "ep1", owner: "n0", value: Array("10.0.0.2".utf8))] }
            }
            print("put reached 4 nodes in \(spread)")
            let created = await changes.next()
            #expect(created == TableChange(kind: .created, network: "net1", table: "endpoints", key: "ep1", owner: "n0", value: Array("10.0.0.2".utf8)))

            try nodes[0].put(network: "net1", table: "endpoints", key: "ep1", value: Array("10.0.0.3".utf8))
            try await eventually("the update on every node", within: .seconds(5)) {
                nodes.allSatisfy { $0.entries(network: "net1", table: "endpoints").first?.value == Array("10.0.0.3".utf8) }
            }
            #expect(await changes.next()?.kind == .updated)

            try nodes[0].delete(network: "net1", table: "endpoints", key: "ep1")
            try await eventually("the entry gone from every node", within: .seconds(5)) {
                nodes.allSatisfy { $0.entries(network: "net1", table: "endpoints").isEmpty }
            }
            let deleted = await changes.next()
            #expect(deleted?.kind == .deleted && deleted?.owner == "n0")
            // The tombstone stays visible in the dump until it is reaped.
            #expect(try nodes[2].dump(network: "net1", table: "endpoints").entries.map(\.deleting) == [true])
        }
    }

    @Test("another node's entry cannot be written, and a node outside the network never gets it")
    func ownershipAndNetworkScope() async throws {
        try await withCluster(3) { nodes in
            try await waitForMembership(nodes)
            try nodes[0].joinNetwork("a")
            try nodes[1].joinNetwork("a")
            try nodes[2].joinNetwork("b")
            try await eventually("n1 to see n0 in network a", within: .seconds(5)) {
                nodes[1].dump(network: "a").networks.first?.members.count == 2
            }
            try nodes[0].put(network: "a", table: "t", key: "k", value: [1])
            try await eventually("the entry on n1", within: .seconds(5)) { nodes[1].entries(network: "a", table: "t").count == 1 }
            #expect(throws: GossipTableError.self) { try nodes[1].put(network: "a", table: "t", key: "k", value: [2]) }
            #expect(throws: GossipTableError.self) { try nodes[2].put(network: "a", table: "t", key: "x", value: [2]) }
            // Well past several gossip and push-pull rounds.
            try await Task.sleep(for: .milliseconds(1500))
            #expect(nodes[2].dump().entries.isEmpty)
        }
    }

    @Test("a graceful leave is seen by every other node, and the leaver's entries go with it")
    func gracefulLeave() async throws {
        try await withCluster(3) { nodes in
            try await waitForMembership(nodes)
            for node in nodes { try node.joinNetwork("net1") }
            try await eventually("net1 membership", within: .seconds(5)) {
                nodes.allSatisfy { $0.dump().networks.first?.members.count == 3 }
            }
            try nodes[2].put(network: "net1", table: "t", key: "mine", value: [7])
            try await eventually("n2's entry everywhere", within: .seconds(5)) {
                nodes.allSatisfy { $0.entries(network: "net1", table: "t").count == 1 }
            }
            try await nodes[2].leave()
            await nodes[2].shutdown()
            try await eventually("n2 seen as left", within: .seconds(5)) {
                nodes[0..<2].allSatisfy { $0.members().first { $0.name == "n2" }?.status == .left }
            }
            #expect(nodes[0..<2].allSatisfy { $0.entries(network: "net1", table: "t").isEmpty })
            #expect(nodes[0..<2].allSatisfy { $0.counters().core.membersDeclaredDead == 0 })
        }
    }
}

extension LiveGossipNode {
    /// Tests read the dump of a started node, which cannot fail.
    func dump(network: String? = nil) -> GossipDump {
        try! dump(network: network, table: nil)
    }
}

/// Table changes published while a subscriber's task is cancelled. A
/// cancelled task runs its stream's termination handler under its own
/// lock; the runtime yields to subscribers (which takes the task's lock)
/// under the runtime's. Had the handler taken the runtime's lock, the two
/// orders would deadlock (they did in ReplicatedStore, which a manager's
/// hung API showed). The writer and the canceller are threads of their
/// own, so a deadlock stops them and not the test runner's pool.
@Suite("subscriptions cancelled while changes are published")
struct SubscriptionCancelTests {
    @Test func cancellingSubscribersWhileTablesChangeNeverDeadlocks() async throws {
        let node = LiveGossipNode(name: "n0", configuration: .fast, keyring: nil, streamTimeout: .seconds(2))
        _ = try await node.start(bind: "127.0.0.1", port: 0)
        try node.joinNetwork("net1")
        let rounds = 2_000
        let done = await raceTwoThreads(rounds: rounds, write: { n in
            try? node.put(network: "net1", table: "t", key: "k\(n % 50)", value: [UInt8(n % 256)])
        }, round: { writes in
            let stream = node.changes(network: "net1", table: "t", replay: false)
            let watching = Task { for await _ in stream {} }
            let start = writes()
            while writes() == start {}
            watching.cancel()
        })
        #expect(done.rounds == rounds, "stuck after \(done.rounds) cancelled subscriptions and \(done.writes) writes")
        // A deadlocked node would hang its shutdown too.
        if done.rounds == rounds { await node.shutdown() }
    }
}


import Foundation
import Gossip
import GossipRuntime
import Testing

/// Five `gossip-node` processes, each in a test host's network namespace, exchanging real UDP and
/// TCP (encrypted) through a bridge, with 20% loss each way on one of them.
@Suite("gossip-node processes between network namespaces", .serialized)
struct LiveNamespaceTests {
    @Test("an entry written on one node reaches all under 20% loss; a delete and a graceful leave too")
    func spreadUnderLoss() async throws {
        try requireRoot()
        let count = 5
        let testbed = try NamespaceTestbed(nodes: count)
        var nodes: [NodeProcess] = []
        defer {
            for node in nodes { node.stop() }
            testbed.destroy()
        }
        let lossy = 3
        let lossTable = try testbed.injectLoss(node: lossy, percent: 20)
        let key = GossipKey.random().base64
        for n in 1...count {
            var arguments = ["--name", "n\(n)", "--bind", "\(testbed.address(n)):7946", "--profile", "fast",
                             "--key", key, "--network", "net1"]
            if n > 1 { arguments += ["--join", "\(testbed.address(n - 1)):7946"] }
            nodes.append(try NodeProcess(name: "n\(n)", namespace: testbed.namespace(n), arguments: arguments))
        }
        let names = Set(nodes.map(\.name))

        try await eventually("every node to learn the other four", within: .seconds(10)) {
            nodes.allSatisfy { node in
                Set(node.lines { $0["event"] == "member-joined" }.compactMap { $0["name"] })
                    == names.subtracting([node.name])
            }
        }
        // Network membership travels by gossip too; a write goes only to members the writer knows.
        try await Task.sleep(for: .milliseconds(500))

        nodes[0].send("put net1 endpoints ep1 10.0.0.2")
        let spread = try await eventually("ep1 on every node", within: .seconds(5)) {
            nodes.allSatisfy { $0.first(event: "table", ["kind": "created", "key": "ep1", "owner": "n1"]) != nil }
        }
        let putAt = try #require(nodes[0].first(event: "put", ["key": "ep1"])?["t"].flatMap { Int($0) })
        let latest = nodes.compactMap { $0.first(event: "table", ["kind": "created", "key": "ep1"])?["t"].flatMap { Int($0) } }.max() ?? 0
        print("live: ep1 reached \(count) processes \((latest - putAt) / 1_000_000) ms after the write (seen by the test after \(spread))")

        nodes[0].send("delete net1 endpoints ep1")
        try await eventually("ep1 gone from every node", within: .seconds(5)) {
            nodes.allSatisfy { $0.first(event: "table", ["kind": "deleted", "key": "ep1"]) != nil }
        }

        nodes[count - 1].send("quit")
        try await eventually("n\(count)'s leave seen by the others", within: .seconds(5)) {
            nodes.dropLast().allSatisfy { $0.first(event: "member-left", ["name": "n\(count)"]) != nil }
        }
        #expect(try testbed.droppedPackets(node: lossy, table: lossTable) > 0, "the loss rules dropped nothing")
        for node in nodes.dropLast() { node.send("quit") }
        try await eventually("every process to stop", within: .seconds(5)) {
            nodes.allSatisfy { !$0.process.isRunning }
        }
        #expect(nodes.allSatisfy { $0.process.terminationStatus == 0 })
    }
}

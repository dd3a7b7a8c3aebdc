import Foundation
import Gossip
import GossipRuntime
import Testing

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Polls `condition` every 10 ms until it holds; fails the test (by throwing) after `bound`.
/// Returns how long it took.
@discardableResult
func eventually(_ what: String, within bound: Duration, _ condition: () throws -> Bool) async throws -> Duration {
    let clock = ContinuousClock()
    let start = clock.now
    while true {
        if try condition() { return clock.now - start }
        if clock.now - start > bound { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Nodes on 127.0.0.1 with ports the kernel picks, each joining through the one before it (so a
/// join through any member, not only the first, is exercised). Always shut down, even on failure.
func withCluster<T>(
    _ count: Int, keys: [GossipKey]? = nil, prefix: String = "n",
    _ body: ([LiveGossipNode]) async throws -> T
) async throws -> T {
    var nodes: [LiveGossipNode] = []
    do {
        var previous: NodeAddress?
        for i in 0..<count {
            let keyring = keys.map { Keyring(primary: $0[0], others: Array($0.dropFirst())) }
            let node = LiveGossipNode(name: "\(prefix)\(i)", configuration: .fast, keyring: keyring, streamTimeout: .seconds(2))
            nodes.append(node)
            let address = try await node.start(bind: "127.0.0.1", port: 0)
            if let previous { try await node.join([previous]) }
            previous = address
        }
        let result = try await body(nodes)
        for node in nodes { await node.shutdown() }
        return result
    } catch {
        for node in nodes { await node.shutdown() }
        throw error
    }
}

func aliveCount(_ node: LiveGossipNode) -> Int {
    node.members().filter { $0.status == .alive }.count
}

func waitForMembership(_ nodes: [LiveGossipNode], within bound: Duration = .seconds(3)) async throws {
    try await eventually("every node to see \(nodes.count) alive members", within: bound) {
        nodes.allSatisfy { aliveCount($0) == nodes.count }
    }
}

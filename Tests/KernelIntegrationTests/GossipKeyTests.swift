import Foundation
import Testing

/// Rotating the gossip key through the daemons' API, as an operator would
/// (install everywhere, use everywhere, remove everywhere), without a gap:
/// the cluster keeps carrying changes at every step.
@Suite struct GossipKeyTests {
    static func newKey() -> String {
        Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    }

    func keys(_ testbed: Testbed, _ host: String) throws -> [[String: Any]] {
        let text = try testbed.swarmnet(host, ["gossip", "keys", "--format", "json"])
        return try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
    }

    /// A network made on the manager reaches both workers.
    func propagates(_ testbed: Testbed, _ name: String, subnet: String) throws -> Bool {
        try testbed.swarmnet("h1", ["network", "create", "--subnet", subnet, name])
        return ["h2", "h3"].allSatisfy { host in
            eventually(10) { (try? testbed.swarmnet(host, ["network", "ls"]))?.contains(name) == true }
        }
    }

    @Test func aKeyRotatesAcrossTheClusterWithoutAGap() throws {
        let old = Self.newKey(), new = Self.newKey()
        try withTestbed(hosts: 3, daemonArguments: ["--gossip-key", old]) { testbed in
            #expect(try propagates(testbed, "before", subnet: "10.86.0.0/24"))
            let hosts = ["h1", "h2", "h3"]
            for host in hosts { try testbed.swarmnet(host, ["gossip", "keys", "--install", new]) }
            #expect(try keys(testbed, "h2").count == 2)
            #expect(try propagates(testbed, "installed", subnet: "10.86.1.0/24"))
            for host in hosts { try testbed.swarmnet(host, ["gossip", "keys", "--use", new]) }
            #expect(try propagates(testbed, "used", subnet: "10.86.2.0/24"))
            for host in hosts { try testbed.swarmnet(host, ["gossip", "keys", "--remove", old]) }
            #expect(try propagates(testbed, "removed", subnet: "10.86.3.0/24"))
            let final = try keys(testbed, "h3")
            #expect(final.count == 1 && final.first?["primary"] as? Bool == true)
            // Bad steps fail clearly and change nothing.
            #expect(throws: CommandFailure.self) { try testbed.swarmnet("h1", ["gossip", "keys", "--remove", new]) } // the primary
            #expect(throws: CommandFailure.self) { try testbed.swarmnet("h1", ["gossip", "keys", "--use", Self.newKey()]) } // not installed
            #expect(throws: CommandFailure.self) { try testbed.swarmnet("h1", ["gossip", "keys", "--install", "short"]) }
            #expect(try keys(testbed, "h1").count == 1)
        }
    }
}

import Foundation
import TestKit
import Synchronization
import Testing

/// The live tests fail, never skip, without root.
func requireRoot() throws { try TestKit.requireRoot("the live gossip test") }

/// Test hosts: network namespaces `sgt<pid>x1…xN` with one veth each into a bridge that lives in
/// a namespace of its own (`sgt<pid>x0`), addresses 192.0.2.N/24 (see `NamespaceBridge`).
final class NamespaceTestbed {
    let bridge: NamespaceBridge
    var count: Int { bridge.hosts.count }

    init(nodes count: Int, tag: String = "") throws {
        bridge = try NamespaceBridge(prefix: "sgt\(getpid())\(tag)x", hosts: Array(1...count), subnet: "192.0.2")
    }

    var prefix: String { bridge.prefix }
    func namespace(_ n: Int) -> String { bridge.namespace(n) }
    func address(_ n: Int) -> String { bridge.address(n) }

    /// Drops `percent`% of the packets entering and leaving namespace `n`, at random.
    func injectLoss(node n: Int, percent: Int) throws -> String {
        let table = "sgloss\(getpid())"
        try run(["ip", "netns", "exec", namespace(n), "nft", "-f", "-"], stdin: """
            table inet \(table) {
                chain input { type filter hook input priority 0; policy accept; numgen random mod 100 < \(percent) counter drop; }
                chain output { type filter hook output priority 0; policy accept; numgen random mod 100 < \(percent) counter drop; }
            }
            """)
        return table
    }

    /// Packets the loss rules of namespace `n` dropped, read back with `nft -j`.
    func droppedPackets(node n: Int, table: String) throws -> Int {
        let json = try run(["ip", "netns", "exec", namespace(n), "nft", "-j", "list", "table", "inet", table])
        let root = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]
        var total = 0
        for item in root?["nftables"] as? [[String: Any]] ?? [] {
            guard let rule = item["rule"] as? [String: Any], let expressions = rule["expr"] as? [[String: Any]] else { continue }
            for expression in expressions {
                if let counter = expression["counter"] as? [String: Any], let packets = counter["packets"] as? Int {
                    total += packets
                }
            }
        }
        return total
    }

    func destroy() { bridge.destroy() }
}

/// The `gossip-node` built beside this test bundle.
func gossipNodeBinary() throws -> URL { try builtExecutable("gossip-node") }

/// One `gossip-node` process: commands go to its stdin, its JSON lines are collected.
final class NodeProcess: @unchecked Sendable {
    let name: String
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let log = LineLog()
    private let reader: Thread

    init(name: String, namespace: String, arguments: [String]) throws {
        self.name = name
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["ip", "netns", "exec", namespace, try gossipNodeBinary().path] + arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        let handle = output.fileHandleForReading
        let log = self.log
        reader = Thread {
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = pending[pending.startIndex..<newline]
                    pending.removeSubrange(pending.startIndex...newline)
                    if let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any] {
                        log.append(object.mapValues { "\($0)" })
                    }
                }
            }
        }
        try process.run()
        reader.start()
    }

    func send(_ command: String) {
        input.fileHandleForWriting.write(Data((command + "\n").utf8))
    }

    /// Lines printed so far that match `predicate`.
    func lines(where predicate: ([String: String]) -> Bool) -> [[String: String]] {
        log.lines.withLock { $0.filter(predicate) }
    }

    func first(event: String, _ fields: [String: String] = [:]) -> [String: String]? {
        lines { line in
            line["event"] == event && fields.allSatisfy { line[$0.key] == $0.value }
        }.first
    }

    func stop() {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }
}

/// A process's output lines, each flattened to text fields (JSON numbers as their digits).
final class LineLog: Sendable {
    let lines = Mutex<[[String: String]]>([])

    func append(_ line: [String: String]) {
        lines.withLock { $0.append(line) }
    }
}

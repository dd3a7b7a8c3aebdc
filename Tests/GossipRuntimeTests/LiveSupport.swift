import Foundation
import Synchronization
import Testing

struct CommandFailed: Error, CustomStringConvertible {
    var command: [String]
    var status: Int32
    var stderr: String
    var description: String { "\(command.joined(separator: " ")) exited \(status): \(stderr)" }
}

/// Runs a command to completion; throws with its stderr when it fails.
@discardableResult
func run(_ arguments: [String], stdin: String? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let input = Pipe()
    process.standardInput = stdin == nil ? FileHandle.nullDevice : input
    try process.run()
    if let stdin {
        input.fileHandleForWriting.write(Data(stdin.utf8))
        try input.fileHandleForWriting.close()
    }
    let output = out.fileHandleForReading.readDataToEndOfFile()
    let errors = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw CommandFailed(command: arguments, status: process.terminationStatus, stderr: String(decoding: errors, as: UTF8.self))
    }
    return String(decoding: output, as: UTF8.self)
}

struct NotRoot: Error, CustomStringConvertible {
    var description: String { "the live gossip tests create network namespaces and need root; run as root" }
}

/// The live tests fail, never skip, without root.
func requireRoot() throws {
    guard geteuid() == 0 else { throw NotRoot() }
}

/// Test hosts: network namespaces `sgt<pid>x1…xN` with one veth each into a bridge that lives in
/// a namespace of its own (`sgt<pid>x0`), addresses 192.0.2.N/24. Nothing touches the test
/// machine's own namespace; `destroy()` removes everything (the veths and nftables tables go
/// with their namespaces).
final class NamespaceTestbed {
    let prefix: String
    let count: Int
    private(set) var created: [String] = []

    init(nodes count: Int, tag: String = "") throws {
        self.prefix = "sgt\(getpid())\(tag)x"
        self.count = count
        do {
            try setUp()
        } catch {
            destroy()
            throw error
        }
    }

    var hub: String { "\(prefix)0" }
    func namespace(_ n: Int) -> String { "\(prefix)\(n)" }
    func address(_ n: Int) -> String { "192.0.2.\(n)" }

    private func add(_ namespace: String) throws {
        try run(["ip", "netns", "add", namespace])
        created.append(namespace)
        try run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    }

    private func setUp() throws {
        try add(hub)
        try run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        try run(["ip", "-n", hub, "link", "set", "br0", "up"])
        for n in 1...count {
            let ns = namespace(n)
            try add(ns)
            try run(["ip", "-n", hub, "link", "add", "v\(n)", "type", "veth", "peer", "name", "eth0", "netns", ns])
            try run(["ip", "-n", hub, "link", "set", "v\(n)", "master", "br0", "up"])
            try run(["ip", "-n", ns, "addr", "add", "\(address(n))/24", "dev", "eth0"])
            try run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        }
    }

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

    func destroy() {
        for ns in created.reversed() {
            _ = try? run(["ip", "netns", "del", ns])
        }
        created = []
    }
}

/// The `gossip-node` built beside this test bundle.
func gossipNodeBinary() throws -> URL {
    let candidates = [
        Bundle.main.bundleURL.appendingPathComponent("gossip-node"),
        Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("gossip-node"),
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("gossip-node"),
    ]
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw CommandFailed(command: ["gossip-node"], status: -1, stderr: "not found in \(candidates.map(\.path))")
    }
    return found
}

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

import Addressing
import DNS
import Foundation
import Logging
import Namespaces
import NIOCore
import NIOPosix
import Testing

/// Helpers for the root tests of the embedded DNS server: namespaces of our
/// own with unique names (snd<pid>x<n>, like the kernel integration tests
/// name theirs), removed whatever the outcome, and the commands that check
/// the server from outside (dig, getent, python).
enum DNSTestHost {
    static func requireRoot() throws {
        try #require(getuid() == 0, "DNS kernel tests need root (network namespaces); run them as root")
        for tool in ["dig", "dnsmasq"] {
            try #require(findExecutable(tool) != nil, "\(tool) is missing: scripts/setup installs dnsutils and dnsmasq-base")
        }
    }

    static func findExecutable(_ name: String) -> String? {
        for directory in ["/usr/bin", "/usr/sbin", "/bin", "/sbin"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(name)") {
            return "\(directory)/\(name)"
        }
        return nil
    }

    private static let counter = Counter()

    static func uniqueName() -> String {
        "snd" + String(getpid(), radix: 36) + "x" + String(counter.next(), radix: 36)
    }

    /// Creates `count` namespaces with `lo` up, runs `body`, deletes them
    /// (and any resolv.conf written for them).
    static func withNamespaces<T>(_ count: Int, _ body: ([NetworkNamespace]) async throws -> T) async throws -> T {
        try requireRoot()
        var made: [NetworkNamespace] = []
        defer {
            for namespace in made {
                try? ResolvConf.remove(forNamespaceNamed: namespace.name!)
                try? namespace.delete()
            }
        }
        for _ in 0..<count {
            let namespace = try NetworkNamespace.create(named: uniqueName())
            made.append(namespace)
            try await run(["ip", "-n", namespace.name!, "link", "set", "lo", "up"])
        }
        return try await body(made)
    }

    /// A veth pair between two namespaces with an address on each end
    /// (a /29 of TEST-NET-2 that exists only inside these namespaces).
    static func link(_ a: NetworkNamespace, _ addressA: String, _ b: NetworkNamespace, _ addressB: String) async throws {
        let nameA = "v" + a.name!.suffix(12)
        let nameB = "v" + b.name!.suffix(12)
        try await run(["ip", "-n", a.name!, "link", "add", nameA, "type", "veth", "peer", "name", nameB, "netns", b.name!])
        try await run(["ip", "-n", a.name!, "addr", "add", "\(addressA)/29", "dev", nameA])
        try await run(["ip", "-n", b.name!, "addr", "add", "\(addressB)/29", "dev", nameB])
        try await run(["ip", "-n", a.name!, "link", "set", nameA, "up"])
        try await run(["ip", "-n", b.name!, "link", "set", nameB, "up"])
    }

    /// Starts the server, runs `body`, stops the server even when `body` throws.
    static func withServer<T>(
        in namespace: NetworkNamespace, records: some DNSRecordSource, upstreams: [SocketAddress] = [],
        configuration: DNSServerConfiguration = DNSServerConfiguration(),
        _ body: (EmbeddedDNSServer) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: "dns-test")
        logger.logLevel = .debug
        let server = try await EmbeddedDNSServer.start(namespace: namespace, records: records, upstreams: upstreams,
                                                       configuration: configuration, group: MultiThreadedEventLoopGroup.singleton,
                                                       logger: logger)
        do {
            let result = try await body(server)
            await server.stop()
            return result
        } catch {
            await server.stop()
            throw error
        }
    }

    /// dnsmasq in `namespace` on `address`: example.test → 192.0.2.99 and
    /// the `hosts` lines. It runs as a daemon (its own fork, a pid file),
    /// not as a Foundation Process: Foundation reaps children one blocking
    /// waitpid at a time, and a child that lives for the whole test would
    /// stall every command run after it.
    final class Dnsmasq: @unchecked Sendable {
        let hostsFile: String
        let pidFile: String

        init(in namespace: NetworkNamespace, address: String, hosts: [String], extra: [String] = []) async throws {
            hostsFile = NSTemporaryDirectory() + "/\(namespace.name!)-hosts"
            pidFile = hostsFile + ".pid"
            try (hosts.joined(separator: "\n") + "\n").write(toFile: hostsFile, atomically: true, encoding: .utf8)
            // Standard streams to /dev/null: the daemon must not hold our pipes.
            try await run(["ip", "netns", "exec", namespace.name!, "sh", "-c", "exec \"$@\" </dev/null >/dev/null 2>&1", "sh",
                           "dnsmasq", "--conf-file=/dev/null",
                           "--no-resolv", "--no-hosts", "--listen-address=\(address)", "--bind-interfaces",
                           "--address=/example.test/192.0.2.99", "--addn-hosts=\(hostsFile)", "--pid-file=\(pidFile)",
                           "--user=root"] + extra)
        }

        /// SIGKILL to the daemon named in the pid file: it inherits the
        /// test thread's signal mask, in which SIGTERM is blocked.
        func stop() {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
               let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1 {
                kill(pid, SIGKILL)
            }
            try? FileManager.default.removeItem(atPath: hostsFile)
            try? FileManager.default.removeItem(atPath: pidFile)
        }
    }

    /// Waits until `dig @server name` from `namespace` answers.
    static func waitForResolver(from namespace: NetworkNamespace, server: String, name: String) async throws {
        for _ in 0..<50 {
            if let output = try? await dig(namespace, ["@\(server)", name, "+short", "+tries=1", "+time=1"]), !output.isEmpty { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("resolver \(server) in \(namespace) never answered \(name)")
    }

    /// `ip netns exec NS dig ARGS`, its standard output.
    static func dig(_ namespace: NetworkNamespace, _ arguments: [String]) async throws -> String {
        try await run(["ip", "netns", "exec", namespace.name!, "dig"] + arguments)
    }

    /// `dig +short`'s lines, sorted.
    static func short(_ namespace: NetworkNamespace, _ arguments: [String]) async throws -> [String] {
        try await dig(namespace, arguments + ["+short", "+tries=1", "+time=3"]).split(separator: "\n").map(String.init).sorted()
    }

    /// The `status:` of a full dig answer, and its answer count.
    static func status(_ output: String) -> (status: String, answers: Int, flags: String) {
        func field(_ name: String, _ terminator: Character) -> String {
            guard let range = output.range(of: name) else { return "" }
            return String(output[range.upperBound...].prefix { $0 != terminator })
        }
        return (field("status: ", ","), Int(field("ANSWER: ", ",")) ?? -1, field("flags: ", ";"))
    }

    /// Runs a command; a non-zero exit throws with its standard error.
    /// The wait happens on a thread of its own: blocking the few threads of
    /// Swift's cooperative pool in Process.waitUntilExit starves the
    /// dispatch queues Foundation reaps children on, and the test hangs.
    @discardableResult
    static func run(_ arguments: [String], input: String? = nil) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try runBlocking(arguments, input: input) })
            }
        }
    }

    private static func runBlocking(_ arguments: [String], input: String?) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        let stdin = Pipe()
        if input != nil { process.standardInput = stdin }
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try stdin.fileHandleForWriting.close()
        }
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CommandFailure(arguments: arguments, status: process.terminationStatus,
                                 stdout: String(decoding: outputData, as: UTF8.self),
                                 stderr: String(decoding: errorData, as: UTF8.self))
        }
        return String(decoding: outputData, as: UTF8.self)
    }

    /// A Python program run inside `namespace` (the script on standard input).
    static func python(_ namespace: NetworkNamespace, _ script: String) async throws -> String {
        try await run(["ip", "netns", "exec", namespace.name!, "python3", "-"], input: script)
    }
}

struct CommandFailure: Error, CustomStringConvertible {
    let arguments: [String]
    let status: Int32
    let stdout: String
    let stderr: String
    var description: String { "\(arguments.joined(separator: " ")) exited \(status): \(stderr)\(stdout)" }
}

private final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}

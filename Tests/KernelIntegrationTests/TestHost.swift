import Foundation
import Testing
import Namespaces

/// Shared helpers for tests that need root and a real kernel. Every test
/// works in namespaces of its own with unique names, removed in `defer`
/// whatever the outcome.
enum TestHost {
    /// Integration tests fail, not skip, without root: CI runs as root and
    /// a silently skipped suite would hide a broken data plane.
    static func requireRoot() throws {
        try #require(getuid() == 0, "kernel integration tests need root (CAP_NET_ADMIN, mounts in /run/netns); run them as root")
    }

    private static let counter = Counter()

    /// A name unique to this process and call, short enough for an
    /// interface (at most 15 bytes): "snt" + pid + counter, in base 36.
    static func uniqueName(_ prefix: String = "snt") -> String {
        prefix + String(getpid(), radix: 36) + "x" + String(counter.next(), radix: 36)
    }

    /// Creates `count` namespaces, runs `body`, and deletes them.
    static func withNamespaces<T>(_ count: Int, _ body: ([NetworkNamespace]) throws -> T) throws -> T {
        try requireRoot()
        var made: [NetworkNamespace] = []
        defer { for namespace in made { try? namespace.delete() } }
        for _ in 0..<count { made.append(try NetworkNamespace.create(named: uniqueName())) }
        return try body(made)
    }

    /// Runs a command and returns its standard output; a non-zero exit throws
    /// with the standard error.
    @discardableResult
    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let output = Pipe()
        let error = Pipe()
        process.standardOutput = output
        process.standardError = error
        try process.run()
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = error.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CommandFailure(arguments: arguments, status: process.terminationStatus,
                                 stderr: String(decoding: errorData, as: UTF8.self))
        }
        return String(decoding: outputData, as: UTF8.self)
    }

    /// iproute2's JSON output (`ip -j ...`, `bridge -j ...`) as objects: the
    /// independent second reader of what the kernel holds.
    static func json(_ arguments: [String]) throws -> [[String: Any]] {
        let text = try run(arguments)
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return [] }
        return try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
    }

    /// `ip -n NS -j -d link show`, by interface name.
    static func ipLinks(_ namespace: NetworkNamespace) throws -> [String: [String: Any]] {
        let links = try json(["ip", "-n", namespace.name!, "-j", "-d", "link", "show"])
        return Dictionary(links.map { ($0["ifname"] as! String, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// Sends `bytes` over one TCP connection from `client` to an echo server
    /// the call starts in `server` at `address:port`, and returns "ok" when
    /// the same bytes came back (or what went wrong).
    static func tcpEcho(from client: NetworkNamespace, to server: NetworkNamespace, address: String, port: Int, bytes: Int) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", server.name!, "python3", "-c", """
        import socket
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("\(address)", \(port))); s.listen(1)
        c, _ = s.accept(); data = b""
        while len(data) < \(bytes):
            chunk = c.recv(65536)
            if not chunk: break
            data += chunk
        c.sendall(data); c.close()
        """]
        try process.run()
        defer {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
        return try run(["ip", "netns", "exec", client.name!, "python3", "-c", """
        import socket, time
        for _ in range(50):
            try:
                s = socket.create_connection(("\(address)", \(port)), timeout=3); break
            except OSError:
                time.sleep(0.1)
        payload = (bytes(range(256)) * (\(bytes) // 256 + 1))[:\(bytes)]
        s.sendall(payload); back = b""
        while len(back) < len(payload):
            chunk = s.recv(65536)
            if not chunk: break
            back += chunk
        print("ok" if back == payload else "mismatch %d" % len(back))
        """]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The swarmnet command line built beside the tests.
    static var swarmnetExecutable: String {
        let testBundle = Bundle.main.bundleURL.path
        let candidates = [testBundle, URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path]
            .flatMap { [$0 + "/swarmnet", URL(fileURLWithPath: $0).deletingLastPathComponent().path + "/swarmnet"] }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? "swarmnet"
    }
}

struct CommandFailure: Error, CustomStringConvertible {
    let arguments: [String]
    let status: Int32
    let stderr: String
    var description: String { "\(arguments.joined(separator: " ")) exited \(status): \(stderr)" }
}

private final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}

import Foundation
import Namespaces
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// What the root test targets share: running a command, refusing to run
// without root, a bridge of test hosts made of network namespaces (the live
// gossip and Raft tests), and finding an executable built beside the test
// bundle. A library target, since test targets cannot depend on one another.

public struct CommandFailed: Error, CustomStringConvertible {
    public var command: [String]
    public var status: Int32
    public var stderr: String
    public var description: String { "\(command.joined(separator: " ")) exited \(status): \(stderr)" }

    public init(command: [String], status: Int32, stderr: String) {
        self.command = command
        self.status = status
        self.stderr = stderr
    }
}

/// Runs a command to completion; throws with its stderr when it fails.
@discardableResult
public func run(_ arguments: [String], stdin: String? = nil) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let out = Pipe(), err = Pipe(), input = Pipe()
    process.standardOutput = out
    process.standardError = err
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

public struct NotRoot: Error, CustomStringConvertible {
    public let test: String
    public var description: String { "\(test) creates network namespaces and needs root; run as root" }
}

/// Live tests fail, never skip, without root.
public func requireRoot(_ test: String) throws {
    guard geteuid() == 0 else { throw NotRoot(test: test) }
}

/// Test hosts `PREFIX1…` (the numbers given), each a network namespace with
/// one veth (`eth0`, address `SUBNET.N/24`) into a bridge that lives in a
/// namespace of its own (`PREFIX0`). Nothing touches the test machine's own
/// namespace; `destroy()` removes everything (veths and nftables tables go
/// with their namespaces).
public final class NamespaceBridge: @unchecked Sendable {
    public let prefix: String
    public let hosts: [Int]
    /// The first three octets of the hosts' addresses ("192.0.2").
    public let subnet: String
    private(set) var created: [String] = []

    public init(prefix: String, hosts: [Int], subnet: String) throws {
        self.prefix = prefix
        self.hosts = hosts
        self.subnet = subnet
        do {
            try setUp()
        } catch {
            destroy()
            throw error
        }
    }

    public var hub: String { "\(prefix)0" }
    public func namespace(_ n: Int) -> String { "\(prefix)\(n)" }
    public func address(_ n: Int) -> String { "\(subnet).\(n)" }

    private func add(_ namespace: String) throws {
        try run(["ip", "netns", "add", namespace])
        created.append(namespace)
        try run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    }

    private func setUp() throws {
        try add(hub)
        try run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
        try run(["ip", "-n", hub, "link", "set", "br0", "up"])
        for n in hosts {
            let ns = namespace(n)
            try add(ns)
            try run(["ip", "-n", hub, "link", "add", "v\(n)", "type", "veth", "peer", "name", "eth0", "netns", ns])
            try run(["ip", "-n", hub, "link", "set", "v\(n)", "master", "br0", "up"])
            try run(["ip", "-n", ns, "addr", "add", "\(address(n))/24", "dev", "eth0"])
            try run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        }
    }

    public func destroy() {
        for ns in created.reversed() { _ = try? run(["ip", "netns", "del", ns]) }
        created = []
    }
}

/// An executable built beside this test bundle (`gossip-node`, `raft-node`).
public func builtExecutable(_ name: String) throws -> URL {
    let candidates = [
        Bundle.main.bundleURL.appendingPathComponent(name),
        Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent(name),
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name),
    ]
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
        throw CommandFailed(command: [name], status: -1, stderr: "not found in \(candidates.map(\.path))")
    }
    return found
}

/// A TCP socket bound to `port` on every address of `namespace` and
/// listening: made on a thread inside the namespace (the socket stays
/// there), used from any thread. Servers in tests run as threads of the
/// test process rather than child processes.
public func listeningTCPSocket(in namespace: NetworkNamespace, port: UInt16, backlog: Int32 = 128) throws -> Int32 {
    try namespace.run { () throws -> Int32 in
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CommandFailed(command: ["socket"], status: errno, stderr: String(cString: strerror(errno))) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, backlog) == 0 else {
            let saved = errno
            close(fd)
            throw CommandFailed(command: ["bind/listen", "\(port)"], status: saved, stderr: String(cString: strerror(saved)))
        }
        return fd
    }
}

/// Sends all of `bytes` on socket `fd`, or throws (never SIGPIPE: the
/// peer closing is an error to see, not the end of the test process).
public func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard written > 0 else { throw CommandFailed(command: ["write"], status: errno, stderr: String(cString: strerror(errno))) }
        offset += written
    }
}

/// Reads `fd` until the peer closes it or `seconds` pass; what was read,
/// and whether the peer closed.
public func readUntilClosed(_ fd: Int32, seconds: Double) -> (bytes: [UInt8], closed: Bool) {
    var received: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65_536)
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 100) == 1 else { continue }
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count <= 0 { return (received, true) }
        received += buffer[0..<count]
    }
    return (received, false)
}

/// Raises this process's soft descriptor limit to at least `count` (within the hard limit).
public func raiseDescriptorLimit(to count: UInt64) {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, UInt64(limit.rlim_cur) < count else { return }
    limit.rlim_cur = min(rlim_t(count), limit.rlim_max)
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}

/// Descriptors process `pid` has open.
public func openDescriptors(of pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
}

/// Looks for a deadlock between two threads: `write(n)` runs for n = 1, 2, …
/// on one thread and `round(writes)` `rounds` times on another (`writes`
/// reads how many writes are done), until the rounds are done or neither
/// thread has made a step for `stall`. The threads are their own, so a
/// deadlock stops them and not Swift Testing's pool; whatever they
/// deadlocked on stays stuck. Returns the rounds and writes done.
public func raceTwoThreads(rounds: Int, stall: Duration = .seconds(5), write: @escaping @Sendable (Int) -> Void,
                           round: @escaping @Sendable (_ writes: @Sendable () -> Int) -> Void) async -> (rounds: Int, writes: Int) {
    final class Progress: Sendable {
        let writes = Atomic<Int>(0), rounds = Atomic<Int>(0), stop = Atomic<Bool>(false)
    }
    let progress = Progress()
    let writer = Thread {
        var n = 0
        while !progress.stop.load(ordering: .relaxed) {
            n += 1
            write(n)
            progress.writes.add(1, ordering: .relaxed)
        }
    }
    let other = Thread {
        for _ in 0..<rounds where !progress.stop.load(ordering: .relaxed) {
            round { progress.writes.load(ordering: .relaxed) }
            progress.rounds.add(1, ordering: .relaxed)
        }
    }
    writer.start()
    other.start()
    let tick = Duration.milliseconds(100)
    var last = -1, still = Duration.zero
    while progress.rounds.load(ordering: .relaxed) < rounds && still < stall {
        try? await Task.sleep(for: tick)
        let now = progress.rounds.load(ordering: .relaxed) + progress.writes.load(ordering: .relaxed)
        still = now == last ? still + tick : .zero
        last = now
    }
    progress.stop.store(true, ordering: .relaxed)
    return (progress.rounds.load(ordering: .relaxed), progress.writes.load(ordering: .relaxed))
}

import Foundation
import TestKit
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The live test fails, never skips, without root.
func requireRoot() throws { try TestKit.requireRoot("the live Raft test") }

/// Nanoseconds on the monotonic clock, shared by every client thread.
func monotonicNow() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

/// Test hosts `srt<pid><tag>1…N` (one raft-node each) and a client host `srt<pid><tag>9`, each
/// with a veth into a bridge in a namespace of its own (`srt<pid><tag>0`), addresses
/// 198.51.100.N/24; each test passes its own tag, so no two tests share a name.
/// Partitions are nftables drop rules in a table the test owns (`srtpart`) inside the hosts'
/// namespaces; `destroy()` removes the tables and namespaces, and the test machine's own namespace
/// is never touched.
final class RaftTestbed: @unchecked Sendable {
    let bridge: NamespaceBridge
    let count: Int
    let clientHost = 9
    static let table = "srtpart"

    init(nodes count: Int, tag: String = "x") throws {
        self.count = count
        bridge = try NamespaceBridge(prefix: "srt\(getpid())\(tag)", hosts: Array(1...count) + [clientHost], subnet: "198.51.100")
    }

    var prefix: String { bridge.prefix }
    var hub: String { bridge.hub }
    func namespace(_ n: Int) -> String { bridge.namespace(n) }
    func address(_ n: Int) -> String { bridge.address(n) }

    /// Drops, inside host `n`, packets from (`inbound`) and to (`outbound`) the given hosts.
    func block(host n: Int, inbound: [Int], outbound: [Int]) throws {
        var rules = ""
        if !inbound.isEmpty {
            rules += "chain input { type filter hook input priority 0; policy accept; ip saddr { \(inbound.map(address).joined(separator: ", ")) } drop; }\n"
        }
        if !outbound.isEmpty {
            rules += "chain output { type filter hook output priority 0; policy accept; ip daddr { \(outbound.map(address).joined(separator: ", ")) } drop; }\n"
        }
        try run(["nsenter", "--net=/run/netns/\(namespace(n))", "nft", "-f", "-"],
                stdin: "table inet \(Self.table)\ndelete table inet \(Self.table)\ntable inet \(Self.table) {\n\(rules)}\n")
    }

    /// Cuts hosts `a` and `b` apart, both ways.
    func partition(_ a: [Int], _ b: [Int]) throws {
        for n in a { try block(host: n, inbound: b, outbound: b) }
        for n in b { try block(host: n, inbound: a, outbound: a) }
    }

    /// Removes every partition rule.
    func heal() {
        for n in 1...count {
            _ = try? run(["nsenter", "--net=/run/netns/\(namespace(n))", "nft", "delete", "table", "inet", Self.table])
        }
    }

    func destroy() {
        heal()
        bridge.destroy()
    }
}

/// The `raft-node` built beside this test bundle.
func raftNodeBinary() throws -> URL { try builtExecutable("raft-node") }

/// One raft-node process in a host's namespace, started with nsenter (which execs it, so the pid
/// is the node's and SIGKILL reaches it directly).
final class RaftNodeProcess: @unchecked Sendable {
    let id: Int
    let arguments: [String]
    let namespace: String
    let logPath: String
    private(set) var process: Process?

    init(id: Int, namespace: String, arguments: [String], logPath: String) {
        self.id = id
        self.namespace = namespace
        self.arguments = arguments
        self.logPath = logPath
    }

    func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        p.arguments = ["--net=/run/netns/\(namespace)", try raftNodeBinary().path] + arguments
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.run()
        process = p
    }

    var isRunning: Bool { process?.isRunning ?? false }

    func kill9() {
        guard let p = process, p.isRunning else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }
}

/// A blocking HTTP/1.1 exchange (one request per connection) from the calling thread, whose
/// network namespace decides where the socket lives. Nil when no response came (the request may
/// or may not have been received).
struct HTTPResult {
    var status: Int
    var body: String
    /// The connection was refused or never made: the request certainly was not received.
    var notSent = false
}

func httpRequest(host: String, port: Int, method: String, path: String, body: String = "", timeout: Double) -> HTTPResult? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    inet_pton(AF_INET, host, &addr.sin_addr)
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return HTTPResult(status: 0, body: "", notSent: true) }
    let request = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    let bytes = Array(request.utf8)
    var sent = 0
    while sent < bytes.count {
        let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard n > 0 else { return nil }
        sent += n
    }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 8192)
    while true {
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        response += buffer[0..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard text.hasPrefix("HTTP/1."), let space = text.firstIndex(of: " "),
          let status = Int(text[text.index(after: space)...].prefix(3)),
          let split = text.range(of: "\r\n\r\n") else { return nil }
    return HTTPResult(status: status, body: String(text[split.upperBound...]))
}

/// setns(2) with CLONE_NEWNET; Glibc's Swift overlay does not export setns, so it is looked up.
private func enterNetworkNamespace(_ fd: Int32) -> Int32 {
    typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns") else { return -1 }
    let cloneNewNet: Int32 = 0x4000_0000
    return unsafeBitCast(symbol, to: SetNS.self)(fd, cloneNewNet)
}

/// Runs `body` on a new thread that has entered network namespace `name` (setns moves only the
/// calling thread, so the test's own threads and tasks never change namespace).
func onThread(inNamespace name: String, _ body: @escaping @Sendable () -> Void) -> Thread {
    let t = Thread {
        let fd = open("/run/netns/\(name)", O_RDONLY)
        guard fd >= 0, enterNetworkNamespace(fd) == 0 else {
            fatalError("cannot enter network namespace \(name): \(String(cString: strerror(errno)))")
        }
        close(fd)
        body()
    }
    t.start()
    return t
}

/// Runs `body` in namespace `name` and waits for its result.
func inNamespace<T: Sendable>(_ name: String, _ body: @escaping @Sendable () -> T) -> T {
    let result = Mutex<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    _ = onThread(inNamespace: name) {
        let r = body()
        result.withLock { $0 = r }
        done.signal()
    }
    done.wait()
    return result.withLock { $0! }
}

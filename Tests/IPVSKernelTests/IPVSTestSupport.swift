import Addressing
import Foundation
import TestKit
import LoadBalancing
import Namespaces
import Netlink
import Testing

/// Where IPVS tests may run. This machine's kernel has no IPVS; they run in
/// the VM (scripts/test-ipvs), which sets SWARMNET_IPVS_REQUIRED=1 so that
/// a missing IPVS there is a failure and never a silent skip.
enum IPVSEnvironment {
    static let required = ProcessInfo.processInfo.environment["SWARMNET_IPVS_REQUIRED"].map { !$0.isEmpty && $0 != "0" } ?? false

    /// Whether the suites run: always when required (a missing IPVS then
    /// fails every test); otherwise only as root with IPVS, and a skip is
    /// announced loudly.
    static let shouldRun: Bool = {
        if required { return true }
        if getuid() != 0 {
            announceSkip("not root (IPVS needs CAP_NET_ADMIN)")
            return false
        }
        switch IPVS.availability() {
        case .available: return true
        case .unavailable(let reason):
            announceSkip(reason)
            return false
        }
    }()

    private static func announceSkip(_ reason: String) {
        let banner = String(repeating: "#", count: 72)
        FileHandle.standardError.write(Data("""
            \(banner)
            IPVS KERNEL TESTS SKIPPED: \(reason)
            (run scripts/test-ipvs to run them in the IPVS VM; set SWARMNET_IPVS_REQUIRED=1 to make this a failure)
            \(banner)

            """.utf8))
    }
}

/// Namespaces, commands and readers for the kernel tests.
enum IPVSTestHost {
    private static let counter = Mutex(0)

    /// Unique and at most 15 bytes, so it also names interfaces.
    static func uniqueName(_ prefix: String = "ipv") -> String {
        let n = counter.withLock { value -> Int in
            value += 1
            return value
        }
        return prefix + String(getpid(), radix: 36) + "x" + String(n, radix: 36)
    }

    /// Creates `count` fresh namespaces, runs `body`, deletes them whatever happens.
    static func withNamespaces<T>(_ count: Int, _ body: ([NetworkNamespace]) throws -> T) throws -> T {
        try #require(getuid() == 0, "IPVS kernel tests need root")
        var made: [NetworkNamespace] = []
        defer { for namespace in made { try? namespace.delete() } }
        for _ in 0..<count {
            let namespace = try NetworkNamespace.create(named: uniqueName())
            made.append(namespace)
            // With lo down a fresh namespace has no local routing table, and
            // IPVS then refuses every IPv4 real server (EINVAL: the kernel's
            // inet_addr_type() finds no table and answers RTN_BROADCAST).
            try RouteNetlink(namespace: namespace).linkSet(name: "lo", up: true)
        }
        return try body(made)
    }

    /// Runs a command; a non-zero exit throws with its standard error.
    @discardableResult
    static func run(_ arguments: [String]) throws -> String {
        try TestKit.run(arguments)
    }

    /// Runs a command inside a namespace (nsenter --net).
    @discardableResult
    static func run(in namespace: NetworkNamespace, _ arguments: [String]) throws -> String {
        try run(["nsenter", "--net=\(namespace.path)", "--"] + arguments)
    }

    /// `ipvsadm -Ln` in the namespace, parsed: the second reader.
    static func ipvsadm(_ namespace: NetworkNamespace) throws -> [VirtualService] {
        try IPVSAdmOutput.parse(run(in: namespace, ["ipvsadm", "-Ln"]))
    }

    /// Reads a file on a thread inside the namespace; /proc/thread-self/net
    /// then shows that namespace (/proc/self/net would show the process's).
    static func read(_ path: String, in namespace: NetworkNamespace) throws -> String {
        try namespace.run { try String(contentsOfFile: path, encoding: .utf8) }
    }

    static func write(_ path: String, _ value: String, in namespace: NetworkNamespace) throws {
        try namespace.run { try value.write(toFile: path, atomically: false, encoding: .utf8) }
    }
}

struct CommandFailed: Error, CustomStringConvertible {
    let arguments: [String]
    let status: Int32
    let stderr: String
    var description: String { "\(arguments.joined(separator: " ")) exited \(status): \(stderr)" }
}

/// A lock around a value, for the counter above and the servers' tallies.
final class Mutex<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    init(_ value: Value) { self.value = value }
    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}

/// ipvsadm's listing, parsed into the model:
///
///     IP Virtual Server version 1.2.1 (size=4096)
///     Prot LocalAddress:Port Scheduler Flags
///       -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
///     TCP  10.0.0.5:80 wrr persistent 300
///       -> 10.0.1.2:8080                Masq    1      0          0
///     FWM  42 sh (flag-1,flag-2)
enum IPVSAdmOutput {
    struct Unparsed: Error, CustomStringConvertible {
        let line: String
        var description: String { "ipvsadm line not understood: '\(line)'" }
    }

    static func parse(_ text: String) throws -> [VirtualService] {
        var services: [VirtualService] = []
        for line in text.split(separator: "\n").map(String.init) {
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first else { continue }
            switch first {
            case "TCP", "UDP", "FWM":
                guard words.count >= 3 else { throw Unparsed(line: line) }
                let key: ServiceKey
                if first == "FWM" {
                    guard let mark = UInt32(words[1]) else { throw Unparsed(line: line) }
                    key = .firewallMark(mark, family: line.contains("IPv6") ? .ipv6 : .ipv4)
                } else {
                    let (address, port) = try endpoint(words[1], line)
                    key = .address(address, first == "TCP" ? .tcp : .udp, port: port)
                }
                var service = VirtualService(key: key, scheduler: Scheduler(rawValue: words[2]))
                if let index = words.firstIndex(of: "persistent"), index + 1 < words.count {
                    service.persistence = UInt32(words[index + 1])
                }
                // Scheduler flags print as "(sh-fallback,sh-port)" or "(flag-1,flag-2)".
                if let flags = words.first(where: { $0.hasPrefix("(") }) {
                    if flags.contains("fallback") || flags.contains("flag-1") { service.schedulerFlags.insert(.fallback) }
                    if flags.contains("port") || flags.contains("flag-2") { service.schedulerFlags.insert(.hashPort) }
                }
                services.append(service)
            case "->":
                guard words.count >= 4, words[1] != "RemoteAddress:Port" else { continue }
                guard !services.isEmpty, let weight = UInt32(words[3]) else { throw Unparsed(line: line) }
                let (address, port) = try endpoint(words[1], line)
                let forwarding: ForwardingMethod = switch words[2] {
                case "Masq": .masquerade
                case "Route": .directRoute
                case "Tunnel": .tunnel
                case "Local": .local
                default: throw Unparsed(line: line)
                }
                services[services.count - 1].realServers.append(
                    RealServer(address: address, port: port, weight: weight, forwarding: forwarding))
            default:
                continue
            }
        }
        return services.map(\.sorted).sorted { $0.key < $1.key }
    }

    /// "10.0.0.5:80" or "[fd00::5]:80".
    private static func endpoint(_ text: String, _ line: String) throws -> (IPAddress, UInt16) {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            throw Unparsed(line: line)
        }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        return (try IPAddress(parsing: host), port)
    }
}

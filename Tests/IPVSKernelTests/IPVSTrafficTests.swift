import Addressing
import Foundation
import TestKit
import Glibc
import LoadBalancing
import Namespaces
import Netlink
import Testing

/// Real connections through a VIP: a client namespace, a load-balancer
/// namespace holding the VIP and IPVS (NAT), and two backend namespaces
/// each running a tiny TCP server written here (the VM has no python).
///
///     client 10.30.0.2 ── 10.30.0.1 [lb: VIP 10.40.0.5 on lo] 10.31.1.1 ── 10.31.1.2 b1
///                                                              10.31.2.1 ── 10.31.2.2 b2
@Suite(.enabled(if: IPVSEnvironment.shouldRun), .serialized)
struct IPVSTrafficTests {
    static let vip = ip("10.40.0.5")
    static let key = ServiceKey.address(vip, .tcp, port: 80)

    @Test func connectionsToTheVIPReachBothBackendsAndNotARemovedOne() throws {
        try IPVSTestHost.withNamespaces(4) { namespaces in
            let (lb, client, b1, b2) = (namespaces[0], namespaces[1], namespaces[2], namespaces[3])
            try Topology.wire(lb: lb, client: client, backends: [b1, b2])
            let servers = [try TCPServer(namespace: b1, port: 8080, reply: "b1"),
                           try TCPServer(namespace: b2, port: 8080, reply: "b2")]
            defer { servers.forEach { $0.stop() } }

            let ipvs = try IPVS(namespace: lb)
            try ipvs.setSysctls(.swarm)
            let both = VirtualService(key: Self.key, scheduler: .roundRobin,
                                      realServers: [rs("10.31.1.2"), rs("10.31.2.2")])
            try ipvs.reconcile(to: [both])

            var answers: [String: Int] = [:]
            for _ in 0..<20 { answers[try TCPClient.fetch(from: client, Self.vip, 80), default: 0] += 1 }
            // Round robin over two backends: exactly half each.
            #expect(answers == ["b1": 10, "b2": 10])
            #expect(servers.map(\.accepted) == [10, 10])
            // IPVS holds a connection entry (TIME_WAIT) for each.
            let before = try ConnectionTable.entries(in: lb)
            #expect(!before.filter { $0.destination == "0A1F0102:1F90" }.isEmpty, "\(before)")

            // b1 leaves: weight 0, then deleted; expire_nodest_conn=1 makes
            // the kernel drop its connection entries.
            let changes = try ipvs.reconcile(to: [VirtualService(key: Self.key, scheduler: .roundRobin,
                                                                 realServers: [rs("10.31.2.2")])])
            #expect(changes.operations.count == 2)
            var remaining = try ConnectionTable.entries(in: lb).filter { $0.destination == "0A1F0102:1F90" }
            let deadline = Date().addingTimeInterval(5)
            while !remaining.isEmpty && Date() < deadline {
                usleep(100_000)
                remaining = try ConnectionTable.entries(in: lb).filter { $0.destination == "0A1F0102:1F90" }
            }
            #expect(remaining.isEmpty, "connection entries of the removed backend: \(remaining)")

            for _ in 0..<6 { #expect(try TCPClient.fetch(from: client, Self.vip, 80) == "b2") }
            #expect(servers.map(\.accepted) == [10, 16])
        }
    }

    /// UDP has no FIN: without help a removed backend's entries live for
    /// the UDP timeout (300 s) and keep receiving a client's datagrams.
    @Test func udpEntriesOfARemovedBackendAreFlushedToo() throws {
        try IPVSTestHost.withNamespaces(4) { namespaces in
            let (lb, client, b1, b2) = (namespaces[0], namespaces[1], namespaces[2], namespaces[3])
            try Topology.wire(lb: lb, client: client, backends: [b1, b2])
            let servers = [try UDPServer(namespace: b1, port: 5353, reply: "b1"),
                           try UDPServer(namespace: b2, port: 5353, reply: "b2")]
            defer { servers.forEach { $0.stop() } }
            let ipvs = try IPVS(namespace: lb)
            try ipvs.setSysctls(.swarm)
            let key = ServiceKey.address(Self.vip, .udp, port: 53)
            try ipvs.reconcile(to: [VirtualService(key: key, realServers: [rs("10.31.1.2", 5353), rs("10.31.2.2", 5353)])])

            var answers: [String: Int] = [:]
            for _ in 0..<10 { answers[try UDPClient.ask(from: client, Self.vip, 53), default: 0] += 1 }
            #expect(answers == ["b1": 5, "b2": 5])
            let b1Entries = { try ConnectionTable.entries(in: lb).filter { $0.proto == "UDP" && $0.destination == "0A1F0102:14E9" } }
            #expect(try b1Entries().count == 5)

            try ipvs.reconcile(to: [VirtualService(key: key, realServers: [rs("10.31.2.2", 5353)])])
            let deadline = Date().addingTimeInterval(5)
            var remaining = try b1Entries()
            while !remaining.isEmpty && Date() < deadline {
                usleep(100_000)
                remaining = try b1Entries()
            }
            #expect(remaining.isEmpty, "UDP entries of the removed backend: \(remaining)")
            for _ in 0..<4 { #expect(try UDPClient.ask(from: client, Self.vip, 53) == "b2") }
        }
    }

    @Test func weightedRoundRobinFollowsTheWeights() throws {
        try IPVSTestHost.withNamespaces(4) { namespaces in
            let (lb, client, b1, b2) = (namespaces[0], namespaces[1], namespaces[2], namespaces[3])
            try Topology.wire(lb: lb, client: client, backends: [b1, b2])
            let servers = [try TCPServer(namespace: b1, port: 8080, reply: "b1"),
                           try TCPServer(namespace: b2, port: 8080, reply: "b2")]
            defer { servers.forEach { $0.stop() } }
            let ipvs = try IPVS(namespace: lb)
            try ipvs.reconcile(to: [VirtualService(key: Self.key, scheduler: .weightedRoundRobin,
                                                   realServers: [rs("10.31.1.2", weight: 1), rs("10.31.2.2", weight: 3)])])
            var answers: [String: Int] = [:]
            for _ in 0..<20 { answers[try TCPClient.fetch(from: client, Self.vip, 80), default: 0] += 1 }
            #expect(answers == ["b1": 5, "b2": 15])
            // The kernel's counters agree (connections in TIME_WAIT are inactive).
            let counts = try ipvs.destinations(of: Self.key).map { $0.activeConnections + $0.inactiveConnections }
            #expect(counts == [5, 15])
        }
    }
}

/// Veths, addresses and routes for the traffic tests, through swarmnet's
/// own rtnetlink layer.
enum Topology {
    static func wire(lb: NetworkNamespace, client: NetworkNamespace, backends: [NetworkNamespace]) throws {
        let lbLink = try RouteNetlink(namespace: lb)
        for namespace in [lb, client] + backends {
            try RouteNetlink(namespace: namespace).linkSet(name: "lo", up: true)
        }
        try lbLink.linkAdd(LinkSpec(name: "to-client", kind: .veth(peer: VethPeer(name: "eth0", namespace: client, up: true)), up: true))
        try lbLink.addressAdd(try IPPrefix(parsing: "10.30.0.1/24"), device: "to-client")
        let clientLink = try RouteNetlink(namespace: client)
        try clientLink.addressAdd(try IPPrefix(parsing: "10.30.0.2/24"), device: "eth0")
        try clientLink.routeAdd(RouteEntry(destination: nil, gateway: ip("10.30.0.1")))
        try wireBackends(from: lbLink, backends)
        // The VIP is local to the balancer (IPVS takes it at LOCAL_IN);
        // replies from the backends are forwarded back to the client.
        try lbLink.addressAdd(try IPPrefix(parsing: "10.40.0.5/32"), device: "lo")
        try IPVSTestHost.write("/proc/sys/net/ipv4/ip_forward", "1\n", in: lb)
    }
}

extension Topology {
    /// A veth from `link`'s namespace to each backend: that side
    /// 10.31.n.1/24, the backend 10.31.n.2/24 routed back through it.
    static func wireBackends(from link: RouteNetlink, _ backends: [NetworkNamespace]) throws {
        for (index, backend) in backends.enumerated() {
            let n = index + 1
            try link.linkAdd(LinkSpec(name: "to-b\(n)", kind: .veth(peer: VethPeer(name: "eth0", namespace: backend, up: true)), up: true))
            try link.addressAdd(try IPPrefix(parsing: "10.31.\(n).1/24"), device: "to-b\(n)")
            let backendLink = try RouteNetlink(namespace: backend)
            try backendLink.addressAdd(try IPPrefix(parsing: "10.31.\(n).2/24"), device: "eth0")
            try backendLink.routeAdd(RouteEntry(destination: nil, gateway: ip("10.31.\(n).1")))
        }
    }
}

/// IPVS's connection table of a namespace (/proc/net/ip_vs_conn), with
/// addresses and ports in hex as the kernel prints them.
enum ConnectionTable {
    struct Entry: CustomStringConvertible {
        let proto: String
        let destination: String
        let state: String
        var description: String { "\(proto) -> \(destination) \(state)" }
    }

    static func entries(in namespace: NetworkNamespace) throws -> [Entry] {
        // Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
        try IPVSTestHost.read("/proc/thread-self/net/ip_vs_conn", in: namespace)
            .split(separator: "\n").dropFirst().compactMap { line in
                let words = line.split(separator: " ").map(String.init)
                guard words.count >= 8 else { return nil }
                return Entry(proto: words[0], destination: "\(words[5]):\(words[6])", state: words[7])
            }
    }
}

/// A TCP server in a namespace: the listening socket is created on a thread
/// inside it, then accepted from a thread of its own; each connection gets
/// `reply` and is closed.
final class TCPServer: @unchecked Sendable {
    private let fd: Int32
    private let count = Mutex(0)
    private let peerList = Mutex<[String]>([])
    private let stopped = Mutex(false)
    private let thread: Thread

    var accepted: Int { count.withLock { $0 } }
    /// The source address of each accepted connection, in order (what a
    /// backend sees: the client's, or the balancer's after masquerading).
    var peers: [String] { peerList.withLock { $0 } }

    init(namespace: NetworkNamespace, port: UInt16, reply: String) throws {
        let fd = try listeningTCPSocket(in: namespace, port: port, backlog: 64)
        self.fd = fd
        let count = self.count
        let peerList = self.peerList
        let stopped = self.stopped
        let payload = Array((reply + "\n").utf8)
        thread = Thread {
            while !stopped.withLock({ $0 }) {
                var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard Glibc.poll(&poll, 1, 100) > 0 else { continue }
                var peer = sockaddr_in()
                var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                let connection = withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(fd, $0, &length) }
                }
                guard connection >= 0 else { continue }
                count.withLock { $0 += 1 }
                peerList.withLock { $0.append(IPv4Address(UInt32(bigEndian: peer.sin_addr.s_addr)).description) }
                _ = payload.withUnsafeBytes { write(connection, $0.baseAddress, $0.count) }
                close(connection)
            }
            close(fd)
        }
        thread.start()
    }

    func stop() { stopped.withLock { $0 = true } }
}

/// One connection from a namespace: the socket is made inside it, then
/// used from here. Returns the server's one-line answer.
enum TCPClient {
    static func fetch(from namespace: NetworkNamespace, _ address: IPAddress, _ port: UInt16) throws -> String {
        let fd = try namespace.run { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        guard fd >= 0 else { throw CommandFailed(arguments: ["socket"], status: errno, stderr: "") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = port.bigEndian
        guard case .v4(let v4) = address else { throw CommandFailed(arguments: ["connect", "\(address)"], status: EAFNOSUPPORT, stderr: "") }
        target.sin_addr.s_addr = v4.value.bigEndian
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            throw CommandFailed(arguments: ["connect", "\(address):\(port)"], status: errno, stderr: String(cString: strerror(errno)))
        }
        var buffer = [UInt8](repeating: 0, count: 64)
        var received: [UInt8] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        return String(decoding: received, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A UDP server in a namespace: answers every datagram with `reply`.
final class UDPServer: @unchecked Sendable {
    private let stopped = Mutex(false)

    init(namespace: NetworkNamespace, port: UInt16, reply: String) throws {
        let fd = try namespace.run { () throws -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard fd >= 0, bound == 0 else { throw CommandFailed(arguments: ["udp bind", "\(port)"], status: errno, stderr: "") }
            return fd
        }
        let stopped = self.stopped
        let payload = Array(reply.utf8)
        Thread {
            var buffer = [UInt8](repeating: 0, count: 512)
            while !stopped.withLock({ $0 }) {
                var poll = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard Glibc.poll(&poll, 1, 100) > 0 else { continue }
                var peer = sockaddr_storage()
                var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = withUnsafeMutablePointer(to: &peer) { peerPointer in
                    peerPointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                        buffer.withUnsafeMutableBytes { recvfrom(fd, $0.baseAddress, $0.count, 0, address, &length) }
                    }
                }
                guard n >= 0 else { continue }
                _ = withUnsafePointer(to: &peer) { peerPointer in
                    peerPointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                        payload.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, address, length) }
                    }
                }
            }
            close(fd)
        }.start()
    }

    func stop() { stopped.withLock { $0 = true } }
}

/// One question from a new UDP socket (so a new source port, a new IPVS entry).
enum UDPClient {
    static func ask(from namespace: NetworkNamespace, _ address: IPAddress, _ port: UInt16) throws -> String {
        let fd = try namespace.run { socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        guard fd >= 0 else { throw CommandFailed(arguments: ["socket"], status: errno, stderr: "") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard case .v4(let v4) = address else { throw CommandFailed(arguments: ["ask", "\(address)"], status: EAFNOSUPPORT, stderr: "") }
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = port.bigEndian
        target.sin_addr.s_addr = v4.value.bigEndian
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0, send(fd, "?", 1, 0) == 1 else {
            throw CommandFailed(arguments: ["udp send", "\(address):\(port)"], status: errno, stderr: String(cString: strerror(errno)))
        }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else {
            throw CommandFailed(arguments: ["udp receive", "\(address):\(port)"], status: errno, stderr: String(cString: strerror(errno)))
        }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }
}

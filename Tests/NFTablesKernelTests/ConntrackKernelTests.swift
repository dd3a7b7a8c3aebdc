import Addressing
import Foundation
import LoadBalancing
import Namespaces
import Netlink
import TestKit
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A removed backend's connections, on the real kernel: the nftables back
/// end deletes their conntrack entries, so a UDP stream from one source
/// port moves to a remaining backend and an established TCP connection is
/// reset. `conntrack -L` (conntrack-tools) is the second reader. Plain `-L`:
/// its `-n` is --src-nat, a filter that would hide these DNAT-only entries.
@Suite(.serialized) struct ConntrackKernelTests {
    let vip = try! IPAddress(parsing: NFTTestbed.vip)

    @Test func aUDPStreamMovesOffARemovedBackendAndOffADeletedService() throws {
        try NFTTestbed.with(backends: 2) { testbed in
            let lb = try NFTablesLoadBalancer(namespace: testbed.lb)
            let key = ServiceKey.address(vip, .udp, port: 5300)
            let servers = (0..<2).map { RealServer(address: testbed.address(ofBackend: $0), port: 9000) }
            try lb.reconcile(to: [VirtualService(key: key, realServers: servers)])
            let receivers = try testbed.backends.map { try TestSocket.udp(in: $0, port: 9000) }
            defer { receivers.forEach { close($0) } }
            // One socket, one source port: the whole stream is one conntrack entry.
            let client = try TestSocket.udp(in: testbed.lb, port: 0)
            defer { close(client) }
            try TestSocket.connect(client, to: NFTTestbed.vip, port: 5300)

            func stream() throws -> [Int] {
                for i in 0..<20 { try TestSocket.send(client, "d\(i)") }
                usleep(300_000)
                return receivers.map(TestSocket.drain)
            }
            let first = try stream()
            #expect(first.sorted() == [0, 20], "one entry, one backend: \(first)")
            let chosen = try #require(first.firstIndex(of: 20))
            let other = 1 - chosen
            let removedAddress = "\(testbed.address(ofBackend: chosen))"
            #expect(try Conntracktool.entries(in: testbed.lb).contains { $0.replySource == removedAddress && $0.replySourcePort == 9000 })

            let changes = try lb.reconcile(service: key, to: VirtualService(key: key, realServers: [servers[other]]))
            #expect(changes.connectionsDeleted == 1, "\(changes)")
            #expect(changes.connectionCleanupError == nil)
            #expect(try !Conntracktool.entries(in: testbed.lb).contains { $0.replySource == removedAddress })

            let second = try stream()
            #expect(second[chosen] == 0, "the removed backend still receives the stream: \(second)")
            #expect(second[other] == 20, "\(second)")

            // The whole service deleted by the full reconcile: the remaining
            // backend's entry goes too, and the stream reaches no one.
            let deleted = try lb.reconcile(to: [])
            #expect(deleted.operations == [.deleteService(key)])
            #expect(deleted.connectionsDeleted == 1, "\(deleted)")
            #expect(try !Conntracktool.entries(in: testbed.lb).contains { $0.replySourcePort == 9000 })
            #expect(try stream() == [0, 0])
        }
    }

    @Test func anEstablishedTCPConnectionToARemovedBackendIsResetWhileNewOnesWork() throws {
        try NFTTestbed.with(backends: 2) { testbed in
            let lb = try NFTablesLoadBalancer(namespace: testbed.lb)
            let key = ServiceKey.address(vip, .tcp, port: 5301)
            let servers = (0..<2).map { RealServer(address: testbed.address(ofBackend: $0), port: 9001) }
            try lb.reconcile(to: [VirtualService(key: key, realServers: servers)])
            let listeners = try testbed.backends.map { try listeningTCPSocket(in: $0, port: 9001) }
            defer { listeners.forEach { close($0) } }

            let old = try TestSocket.tcpConnect(in: testbed.lb, to: NFTTestbed.vip, port: 5301)
            defer { close(old) }
            let (chosen, oldPeer) = try TestSocket.accept(listeners)
            defer { close(oldPeer) }
            try TestSocket.send(old, "hello")
            #expect(try TestSocket.receive(oldPeer) == "hello")
            let other = 1 - chosen

            let changes = try lb.reconcile(service: key, to: VirtualService(key: key, realServers: [servers[other]]))
            #expect(changes.connectionsDeleted == 1, "\(changes)")
            #expect(try !Conntracktool.entries(in: testbed.lb).contains {
                $0.replySource == "\(testbed.address(ofBackend: chosen))" && $0.replySourcePort == 9001
            })

            // A new connection reaches the remaining backend and works.
            let fresh = try TestSocket.tcpConnect(in: testbed.lb, to: NFTTestbed.vip, port: 5301)
            defer { close(fresh) }
            let (index, freshPeer) = try TestSocket.accept(listeners)
            defer { close(freshPeer) }
            #expect(index == other)
            try TestSocket.send(fresh, "new")
            #expect(try TestSocket.receive(freshPeer) == "new")

            // The old one's next segment makes a new entry, balanced to the
            // remaining backend, which knows no such connection: a reset.
            var failure: Int32?
            for _ in 0..<3 where failure == nil {
                if let error = TestSocket.trySend(old, "more") { failure = error; break }
                failure = TestSocket.receiveError(old)
            }
            #expect(failure == ECONNRESET || failure == EPIPE, "old connection: \(failure.map { String(cString: strerror($0)) } ?? "still open")")
            usleep(100_000)
            #expect(TestSocket.drainBytes(oldPeer) == 0, "the removed backend got data after its removal")
        }
    }

    @Test func aPublishedPortsStreamMovesOffARemovedBackend() throws {
        try NFTTestbed.with(backends: 2) { testbed in
            // The routing mesh: the outside client sends to lb's own address
            // (any local address answers a published port), lb DNATs and masquerades.
            let mesh = try NFTablesLoadBalancer(namespace: testbed.lb, configuration: NFTablesConfiguration(hooks: .routingMesh))
            let key = ServiceKey.address(.v4(IPv4Address(0)), .udp, port: 30053)
            let servers = (0..<2).map { RealServer(address: testbed.address(ofBackend: $0), port: 9003) }
            try mesh.reconcile(to: [VirtualService(key: key, realServers: servers)])
            let receivers = try testbed.backends.map { try TestSocket.udp(in: $0, port: 9003) }
            defer { receivers.forEach { close($0) } }
            let client = try TestSocket.udp(in: testbed.outside, port: 0)
            defer { close(client) }
            try TestSocket.connect(client, to: "10.78.0.1", port: 30053)
            func stream() throws -> [Int] {
                for i in 0..<20 { try TestSocket.send(client, "m\(i)") }
                usleep(300_000)
                return receivers.map(TestSocket.drain)
            }
            let first = try stream()
            #expect(first.sorted() == [0, 20], "\(first)")
            let chosen = try #require(first.firstIndex(of: 20))
            let other = 1 - chosen
            let changes = try mesh.reconcile(service: key, to: VirtualService(key: key, realServers: [servers[other]]))
            #expect(changes.connectionsDeleted == 1, "\(changes)")
            #expect(try !Conntracktool.entries(in: testbed.lb).contains {
                $0.replySource == "\(testbed.address(ofBackend: chosen))" && $0.replySourcePort == 9003
            })
            let second = try stream()
            #expect(second[chosen] == 0 && second[other] == 20, "\(second)")
        }
    }

    @Test func ourListingMatchesConntrackL() throws {
        try NFTTestbed.with(backends: 2) { testbed in
            let lb = try NFTablesLoadBalancer(namespace: testbed.lb)
            let udp = ServiceKey.address(vip, .udp, port: 5302)
            try lb.reconcile(to: [VirtualService(key: udp, realServers: (0..<2).map {
                RealServer(address: testbed.address(ofBackend: $0), port: 9002)
            })])
            // A few UDP flows of their own source ports (NATed, unreplied), and
            // two TCP connections straight to a backend (not NATed, replied,
            // closed). Conntrack runs in the namespace once the table is there.
            var clients: [Int32] = []
            defer { clients.forEach { close($0) } }
            for _ in 0..<4 {
                let client = try TestSocket.udp(in: testbed.lb, port: 0)
                clients.append(client)
                try TestSocket.connect(client, to: NFTTestbed.vip, port: 5302)
                try TestSocket.send(client, "x")
            }
            let direct = try testbed.connect(from: testbed.lb, to: "\(testbed.address(ofBackend: 0))", port: 8080, proto: .tcp, count: 2)
            #expect(direct.answers == ["b0": 2])
            let conntrack = try Conntrack(namespace: testbed.lb)
            // Two reads of a live table can differ by an entry changing state
            // in between; a quiet namespace settles within a few tries. Only
            // TCP and UDP are compared: the kernel's own IGMP reports (an
            // interface joining 224.0.0.22) come and go, and conntrack-tools
            // names their protocol "unknown" where we print its number.
            let transport = { (entry: Conntracktool.Entry) in entry.proto == "tcp" || entry.proto == "udp" }
            var ours: Set<Conntracktool.Entry> = [], theirs: Set<Conntracktool.Entry> = []
            for _ in 0..<3 {
                ours = Set(try conntrack.list(family: AF_INET).map(Conntracktool.Entry.init).filter(transport))
                theirs = Set(try Conntracktool.entries(in: testbed.lb).filter(transport))
                if ours == theirs { break }
                usleep(200_000)
            }
            #expect(ours == theirs, "ours only: \(ours.subtracting(theirs)); conntrack -L only: \(theirs.subtracting(ours))")
            #expect(ours.filter { $0.originalDestinationPort == 5302 && $0.replySourcePort == 9002 && $0.unreplied }.count == 4)
            #expect(ours.filter { $0.proto == "tcp" && $0.originalDestinationPort == 8080 && $0.assured && !$0.unreplied }.count == 2)
            // The kernel's own listing in the test's namespace is another table.
            #expect(try conntrack.list().allSatisfy { $0.family == AF_INET })
        }
    }
}

/// `conntrack -L -o id` in a namespace, parsed: conntrack-tools is the second reader.
enum Conntracktool {
    struct Entry: Hashable, CustomStringConvertible {
        var proto: String
        var originalSource: String, originalDestination: String
        var originalSourcePort: UInt16?, originalDestinationPort: UInt16?
        var replySource: String, replyDestination: String
        var replySourcePort: UInt16?, replyDestinationPort: UInt16?
        var unreplied: Bool, assured: Bool
        var mark: UInt32?
        var id: UInt32?

        var description: String {
            "\(proto) \(originalSource):\(originalSourcePort ?? 0)->\(originalDestination):\(originalDestinationPort ?? 0) "
                + "reply \(replySource):\(replySourcePort ?? 0)->\(replyDestination):\(replyDestinationPort ?? 0)"
                + "\(unreplied ? " unreplied" : "")\(assured ? " assured" : "") mark \(mark.map(String.init) ?? "-") id \(id.map(String.init) ?? "-")"
        }

        init(_ entry: ConntrackEntry) {
            proto = [6: "tcp", 17: "udp"][entry.original.protocolNumber] ?? "\(entry.original.protocolNumber)"
            originalSource = "\(entry.original.source)"
            originalDestination = "\(entry.original.destination)"
            originalSourcePort = entry.original.sourcePort
            originalDestinationPort = entry.original.destinationPort
            replySource = "\(entry.reply.source)"
            replyDestination = "\(entry.reply.destination)"
            replySourcePort = entry.reply.sourcePort
            replyDestinationPort = entry.reply.destinationPort
            unreplied = !entry.status.contains(.seenReply)
            assured = entry.status.contains(.assured)
            mark = entry.mark
            id = entry.id
        }

        /// One line: "udp 17 29 src=A dst=B sport=P dport=Q [UNREPLIED] src=… mark=0 use=1 id=N".
        init?(line: Substring) {
            let tokens = line.split(separator: " ")
            guard tokens.count > 2 else { return nil }
            proto = String(tokens[0])
            var tuples: [[String: String]] = []
            var rest: [String: String] = [:]
            unreplied = tokens.contains("[UNREPLIED]")
            assured = tokens.contains("[ASSURED]")
            for token in tokens {
                let parts = token.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2 else { continue }
                if parts[0] == "src" { tuples.append([:]) }
                if tuples.count > 0 && tuples.count <= 2 && ["src", "dst", "sport", "dport"].contains(parts[0])
                    && tuples[tuples.count - 1][parts[0]] == nil {
                    tuples[tuples.count - 1][parts[0]] = parts[1]
                } else {
                    rest[parts[0]] = parts[1]
                }
            }
            guard tuples.count == 2 else { return nil }
            originalSource = tuples[0]["src"] ?? ""
            originalDestination = tuples[0]["dst"] ?? ""
            originalSourcePort = tuples[0]["sport"].flatMap { UInt16($0) }
            originalDestinationPort = tuples[0]["dport"].flatMap { UInt16($0) }
            replySource = tuples[1]["src"] ?? ""
            replyDestination = tuples[1]["dst"] ?? ""
            replySourcePort = tuples[1]["sport"].flatMap { UInt16($0) }
            replyDestinationPort = tuples[1]["dport"].flatMap { UInt16($0) }
            mark = rest["mark"].flatMap { UInt32($0) }
            id = rest["id"].flatMap { UInt32($0) }
        }
    }

    /// IPv4 entries (conntrack -L's default family), as conntrack-tools reads them.
    static func entries(in namespace: NetworkNamespace) throws -> [Entry] {
        try NFTTestHost.run(in: namespace, ["conntrack", "-L", "-o", "id"]).split(separator: "\n").compactMap(Entry.init(line:))
    }
}

/// Sockets made on a thread inside a namespace (a socket stays in the
/// namespace it was made in) and then used from the test's thread.
enum TestSocket {
    struct Failed: Error, CustomStringConvertible {
        let call: String
        let errno: Int32
        var description: String { "\(call): \(String(cString: strerror(errno)))" }
    }

    static func address(_ text: String, _ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, text, &address.sin_addr)
        return address
    }

    /// A UDP socket bound to `port` (0: any) on every address of `namespace`.
    static func udp(in namespace: NetworkNamespace, port: UInt16) throws -> Int32 {
        try namespace.run { () throws -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw Failed(call: "socket", errno: errno) }
            var bound = address("0.0.0.0", port)
            let status = withUnsafePointer(to: &bound) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard status == 0 else {
                let saved = errno
                close(fd)
                throw Failed(call: "bind \(port)", errno: saved)
            }
            return fd
        }
    }

    static func connect(_ fd: Int32, to host: String, port: UInt16) throws {
        var peer = address(host, port)
        let status = withUnsafePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { throw Failed(call: "connect \(host):\(port)", errno: errno) }
    }

    /// A TCP connection from `namespace`, with 2-second send and receive timeouts.
    static func tcpConnect(in namespace: NetworkNamespace, to host: String, port: UInt16) throws -> Int32 {
        let fd = try namespace.run { () throws -> Int32 in
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw Failed(call: "socket", errno: errno) }
            return fd
        }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        do { try connect(fd, to: host, port: port) } catch {
            close(fd)
            throw error
        }
        return fd
    }

    /// Waits up to 2 s for a connection on any of `listeners`: its index and the accepted socket.
    static func accept(_ listeners: [Int32]) throws -> (Int, Int32) {
        var fds = listeners.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        guard poll(&fds, nfds_t(fds.count), 2000) > 0, let index = fds.firstIndex(where: { $0.revents & Int16(POLLIN) != 0 }) else {
            throw Failed(call: "accept: no connection within 2 s", errno: ETIMEDOUT)
        }
        let fd = Glibc.accept(listeners[index], nil, nil)
        guard fd >= 0 else { throw Failed(call: "accept", errno: errno) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return (index, fd)
    }

    static func send(_ fd: Int32, _ text: String) throws {
        if let error = trySend(fd, text) { throw Failed(call: "send", errno: error) }
    }

    /// The errno of a failed send, nil when it was sent (MSG_NOSIGNAL: a
    /// reset connection fails with EPIPE instead of killing the process).
    static func trySend(_ fd: Int32, _ text: String) -> Int32? {
        let bytes = Array(text.utf8)
        return Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count ? nil : errno
    }

    /// Up to 100 bytes, waiting up to the socket's receive timeout.
    static func receive(_ fd: Int32) throws -> String {
        var buffer = [UInt8](repeating: 0, count: 100)
        let count = recv(fd, &buffer, buffer.count, 0)
        guard count >= 0 else { throw Failed(call: "recv", errno: errno) }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// The errno a receive ends with (ESHUTDOWN for an orderly close, which
    /// is not a reset), nil when data arrived or the timeout passed with the
    /// connection still open.
    static func receiveError(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 100)
        let count = recv(fd, &buffer, buffer.count, 0)
        if count == 0 { return ESHUTDOWN }
        if count < 0 && errno != EAGAIN { return errno }
        return nil
    }

    /// How many datagrams are queued (read without waiting).
    static func drain(_ fd: Int32) -> Int {
        var buffer = [UInt8](repeating: 0, count: 100)
        var count = 0
        while recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT)) >= 0 { count += 1 }
        return count
    }

    /// How many bytes are queued (read without waiting).
    static func drainBytes(_ fd: Int32) -> Int {
        var buffer = [UInt8](repeating: 0, count: 1000)
        var total = 0
        while true {
            let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if count <= 0 { return total }
            total += count
        }
    }
}

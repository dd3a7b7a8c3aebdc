import Addressing
import Foundation
import TestKit
import LoadBalancing
import Namespaces
import Testing

/// Namespaces, commands and readers for the nftables kernel tests (a
/// minimal copy of KernelIntegrationTests' TestHost: a test target cannot
/// depend on another). Names are snf<pid>x<n> (the kernel integration tests use snt<pid>x<n> with a counter of their own, in the same process); everything made is removed
/// in `defer`, whatever the outcome.
enum NFTTestHost {
    private static let counter = Counter()

    static func uniqueName() -> String {
        "snf" + String(getpid(), radix: 36) + "x" + String(counter.next(), radix: 36)
    }

    static func withNamespaces<T>(_ count: Int, _ body: ([NetworkNamespace]) throws -> T) throws -> T {
        try #require(getuid() == 0, "nftables kernel tests need root (CAP_NET_ADMIN, mounts in /run/netns)")
        var made: [NetworkNamespace] = []
        defer { for namespace in made { try? namespace.delete() } }
        for _ in 0..<count {
            let namespace = try NetworkNamespace.create(named: uniqueName())
            made.append(namespace)
            try run(in: namespace, ["ip", "link", "set", "lo", "up"])
        }
        return try body(made)
    }

    @discardableResult
    static func run(_ arguments: [String], input: String? = nil) throws -> String {
        try TestKit.run(arguments, stdin: input)
    }

    @discardableResult
    static func run(in namespace: NetworkNamespace, _ arguments: [String]) throws -> String {
        try run(["ip", "netns", "exec", namespace.name!] + arguments)
    }

    /// `nft -j list table ip NAME` in the namespace, as objects by kind: the
    /// second reader. Nil when the table does not exist.
    static func nftTable(_ namespace: NetworkNamespace, _ table: String) throws -> NFTListing? {
        guard let text = try? run(in: namespace, ["nft", "-j", "list", "table", "ip", table]) else { return nil }
        let root = try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        return NFTListing(items: try #require(root["nftables"] as? [[String: Any]]))
    }

    /// A balancer in `namespace` that programmed `services` one per-service
    /// change at a time (each one sending something).
    static func programOneAtATime(_ services: [VirtualService], configuration: NFTablesConfiguration,
                                  in namespace: NetworkNamespace) throws -> NFTablesLoadBalancer {
        let lb = try NFTablesLoadBalancer(namespace: namespace, configuration: configuration)
        try lb.reconcile(to: [])
        for service in services {
            try lb.reconcile(service: service.key, to: service)
            #expect(!lb.lastTransaction.isEmpty, "\(service.key) sent nothing")
        }
        return lb
    }

    /// Loads `nft -f` of `services` into `theirs` and checks that the table
    /// swarmnet programmed in `ours` lists alike: every chain (`nft list
    /// chain`, text) and every set and map with its elements (`nft -j`).
    static func expectTableMatchesNft(_ services: [VirtualService], configuration: NFTablesConfiguration,
                                      ours: NetworkNamespace, theirs: NetworkNamespace) throws {
        let table = configuration.tableName
        let ruleset = try NFTablesLoadBalancer.ruleset(for: services, configuration: configuration)
        try run(["ip", "netns", "exec", theirs.name!, "nft", "-f", "-"], input: ruleset)
        let mine = try #require(try nftTable(ours, table))
        let nfts = try #require(try nftTable(theirs, table))
        #expect(mine.chains == nfts.chains)
        #expect(mine.sets == nfts.sets)
        for chain in nfts.chains {
            let list = { (namespace: NetworkNamespace) in try run(in: namespace, ["nft", "list", "chain", "ip", table, chain]) }
            #expect(try list(ours) == list(theirs), "\(configuration.masquerade) chain \(chain)")
        }
        for set in nfts.sets {
            #expect(mine.setElements(set) == nfts.setElements(set), "\(configuration.masquerade) set \(set)")
        }
    }

    /// `nft list ruleset` in the namespace (text), to show that nothing is there.
    static func ruleset(_ namespace: NetworkNamespace) throws -> String {
        try run(in: namespace, ["nft", "list", "ruleset"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// nft's JSON listing, by kind.
struct NFTListing {
    let items: [[String: Any]]

    var chains: [String] { items.compactMap { ($0["chain"] as? [String: Any])?["name"] as? String }.sorted() }

    func rules(_ chain: String) -> [[String: Any]] {
        items.compactMap { $0["rule"] as? [String: Any] }.filter { $0["chain"] as? String == chain }
    }

    /// Names of the table's sets and maps.
    var sets: [String] {
        items.compactMap { (($0["set"] ?? $0["map"]) as? [String: Any])?["name"] as? String }.sorted()
    }

    /// Elements of a set or map as nft would write them: "KEY [comment C] [: DATA]".
    func setElements(_ name: String) -> [String] {
        guard let object = items.compactMap({ ($0["set"] ?? $0["map"]) as? [String: Any] }).first(where: { $0["name"] as? String == name })
        else { return [] }
        func text(_ value: Any) -> String {
            if let object = value as? [String: Any] {
                if let wrapped = object["elem"] as? [String: Any], let key = wrapped["val"] {
                    return text(key) + ((wrapped["comment"] as? String).map { " comment \($0)" } ?? "")
                }
                if let parts = object["concat"] as? [Any] { return parts.map(text).joined(separator: " . ") }
                if let target = (object["goto"] as? [String: Any])?["target"] { return "goto \(target)" }
            }
            return "\(value)"
        }
        let isMap = object["map"] != nil
        return ((object["elem"] as? [Any]) ?? []).map { element in
            guard isMap, let pair = element as? [Any], pair.count == 2 else { return text(element) }
            return text(pair[0]) + " : " + text(pair[1])
        }.sorted()
    }

    /// Elements of a map as "key -> target" lines.
    func elements(_ map: String) -> [String] {
        guard let object = items.compactMap({ $0["map"] as? [String: Any] }).first(where: { $0["name"] as? String == map })
        else { return [] }
        return ((object["elem"] as? [[Any]]) ?? []).map { pair in
            let key = ((pair[0] as? [String: Any])?["concat"] as? [Any] ?? [pair[0]]).map { "\($0)" }.joined(separator: " . ")
            let target = ((pair[1] as? [String: Any])?["goto"] as? [String: Any])?["target"] as? String ?? "?"
            return "\(key) -> \(target)"
        }.sorted()
    }
}

private final class Counter: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()
    func next() -> Int { lock.withLock { value += 1; return value } }
}

/// A small network: a balancer namespace `lb` with a bridge, backends on
/// the bridge (10.77.0.11, .12, ...; their default route via the balancer
/// at 10.77.0.1), and an outside client on a link of its own (10.78.0.2,
/// balancer 10.78.0.1). Each backend runs one Python process that answers
/// every TCP connection and UDP datagram on port 8080 with
/// "NAME PEER-ADDRESS".
final class NFTTestbed {
    /// Runs `body` with a testbed of lb, outside and `backends` backend
    /// namespaces, its servers up; everything is removed afterwards.
    static func with(backends: Int, _ body: (NFTTestbed) throws -> Void) throws {
        try NFTTestHost.withNamespaces(2 + backends) { namespaces in
            let testbed = try NFTTestbed(namespaces: namespaces)
            defer { testbed.stop() }
            try testbed.waitForServers()
            try body(testbed)
        }
    }

    let lb: NetworkNamespace
    let backends: [NetworkNamespace]
    let outside: NetworkNamespace
    private var servers: [Process] = []

    static let vip = "10.96.0.1"

    init(namespaces: [NetworkNamespace]) throws {
        lb = namespaces[0]
        outside = namespaces[1]
        backends = Array(namespaces[2...])
        let lbName = lb.name!
        try NFTTestHost.run(in: lb, ["ip", "link", "add", "br0", "type", "bridge"])
        try NFTTestHost.run(in: lb, ["ip", "addr", "add", "10.77.0.1/24", "dev", "br0"])
        try NFTTestHost.run(in: lb, ["ip", "link", "set", "br0", "up"])
        // Locally made connections to the VIP need a route before the output hook DNATs them.
        try NFTTestHost.run(in: lb, ["ip", "route", "add", "10.96.0.0/16", "dev", "br0"])
        try NFTTestHost.run(in: lb, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for (index, backend) in backends.enumerated() {
            let host = "h\(index)"
            try NFTTestHost.run(in: lb, ["ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", backend.name!])
            try NFTTestHost.run(in: lb, ["ip", "link", "set", host, "master", "br0", "up"])
            try NFTTestHost.run(in: backend, ["ip", "addr", "add", "10.77.0.\(11 + index)/24", "dev", "eth0"])
            try NFTTestHost.run(in: backend, ["ip", "link", "set", "eth0", "up"])
            try NFTTestHost.run(in: backend, ["ip", "route", "add", "default", "via", "10.77.0.1"])
        }
        try NFTTestHost.run(in: lb, ["ip", "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", outside.name!])
        try NFTTestHost.run(in: lb, ["ip", "addr", "add", "10.78.0.1/24", "dev", "out0"])
        try NFTTestHost.run(in: lb, ["ip", "link", "set", "out0", "up"])
        try NFTTestHost.run(in: outside, ["ip", "addr", "add", "10.78.0.2/24", "dev", "eth0"])
        try NFTTestHost.run(in: outside, ["ip", "link", "set", "eth0", "up"])
        try NFTTestHost.run(in: outside, ["ip", "route", "add", "default", "via", "10.78.0.1"])
        _ = lbName
        for (index, backend) in backends.enumerated() { try startServer(in: backend, name: "b\(index)") }
    }

    /// Stops the servers (the namespaces are deleted by their owner).
    func stop() {
        // SIGKILL: the test runner's children inherit a signal mask that
        // blocks SIGTERM, so terminate() would leave them running.
        for server in servers where server.isRunning { kill(server.processIdentifier, SIGKILL) }
        for server in servers { server.waitUntilExit() }
    }

    func address(ofBackend index: Int) -> IPAddress { try! IPAddress(parsing: "10.77.0.\(11 + index)") }

    private func startServer(in namespace: NetworkNamespace, name: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip")
        process.arguments = ["netns", "exec", namespace.name!, "python3", "-c", """
            import socket, threading
            t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            t.bind(("0.0.0.0", 8080)); t.listen(512)
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 8080))
            def udp():
                while True:
                    data, peer = u.recvfrom(100); u.sendto(("\(name) " + peer[0]).encode(), peer)
            threading.Thread(target=udp, daemon=True).start()
            while True:
                c, peer = t.accept(); c.sendall(("\(name) " + peer[0]).encode()); c.close()
            """]
        try process.run()
        servers.append(process)
    }

    /// Makes `count` connections (TCP) or exchanges (UDP, each from a new
    /// socket, so a new conntrack entry) from `client` to address:port, and
    /// returns how many answers each backend gave ("b0": 97, ...), plus the
    /// peer addresses the backends saw, and failures under "fail".
    func connect(from client: NetworkNamespace, to address: String, port: Int, proto: TransportProtocol,
                 count: Int) throws -> (answers: [String: Int], peers: Set<String>) {
        let output = try NFTTestHost.run(in: client, ["python3", "-c", """
            import socket, json, time
            counts = {}; peers = set()
            for i in range(\(count)):
                try:
                    if "\(proto.rawValue)" == "tcp":
                        s = socket.create_connection(("\(address)", \(port)), timeout=1); data = s.recv(100)
                    else:
                        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
                        s.sendto(b"x", ("\(address)", \(port))); data = s.recvfrom(100)[0]
                    s.close()
                    name, peer = data.decode().split(" ")
                    counts[name] = counts.get(name, 0) + 1; peers.add(peer)
                except OSError:
                    counts["fail"] = counts.get("fail", 0) + 1
            print(json.dumps({"counts": counts, "peers": sorted(peers)}))
            """])
        let object = try #require(JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        return ((object["counts"] as? [String: Int]) ?? [:], Set((object["peers"] as? [String]) ?? []))
    }

    /// Waits until every backend answers on its own address (servers started).
    func waitForServers() throws {
        for index in backends.indices {
            var ok = false
            for _ in 0..<50 where !ok {
                let result = try connect(from: lb, to: "\(address(ofBackend: index))", port: 8080, proto: .tcp, count: 1)
                ok = result.answers["b\(index)"] == 1
                if !ok { usleep(100_000) }
            }
            try #require(ok, "backend b\(index) never answered")
        }
    }
}

import Foundation
import Testing
import Lab
import Namespaces
import TestKit

/// A test bed for daemon tests: lab hosts, each running its own swarmnetd
/// (entered with `nsenter --net`, as scripts/testbed does), torn down
/// whatever happens. The daemons start in no swarm, each alone: hosts work
/// together once `formSwarm` (or `withSwarm`) has joined them.
final class Testbed: @unchecked Sendable {
    let lab: Lab
    let hosts: [Lab.Host]
    let root: String
    private(set) var daemons: [String: Process] = [:]
    let binDirectory: String

    /// Extra swarmnetd flags for every host (a gossip key, say).
    let daemonArguments: [String]

    init(hosts count: Int, reconcileInterval: Double = 1, daemonArguments: [String] = []) throws {
        self.daemonArguments = daemonArguments
        try TestHost.requireRoot()
        let lab = Lab(prefix: TestHost.uniqueName() + "-")
        let root = "/run/swarmnet-test/\(lab.prefix.dropLast())"
        self.lab = lab
        self.root = root
        binDirectory = URL(fileURLWithPath: TestHost.swarmnetExecutable).deletingLastPathComponent().path
        do {
            hosts = try lab.up(hosts: count)
            for host in hosts { try start(host.name, reconcileInterval: reconcileInterval) }
        } catch {
            lab.down()
            try? FileManager.default.removeItem(atPath: root)
            throw error
        }
    }

    func socket(_ host: String) -> String { "\(root)/\(host)/api.sock" }

    /// The state directory of `host`'s daemon.
    func stateDirectory(_ host: String) -> String { "\(root)/\(host)/state" }

    /// nsenter's arguments that run `host`'s daemon in its namespace.
    func daemonArguments(_ host: String, reconcileInterval: Double = 1, stateDirectory: String? = nil) -> [String] {
        ["--net=/run/netns/\(lab.prefix)\(host)", "\(binDirectory)/swarmnetd",
         "--node-name", host, "--state-dir", stateDirectory ?? self.stateDirectory(host), "--socket", socket(host),
         "--namespace-prefix", "\(lab.prefix)\(host)-", "--underlay-dev", "eth0",
         "--reconcile-interval", "\(reconcileInterval)", "--gossip-profile", "fast"] + daemonArguments
    }

    /// Starts (or restarts) the daemon of `host` and waits for its API.
    func start(_ host: String, reconcileInterval: Double = 1, stateDirectory: String? = nil) throws {
        let directory = "\(root)/\(host)"
        try FileManager.default.createDirectory(atPath: stateDirectory ?? self.stateDirectory(host), withIntermediateDirectories: true)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        process.arguments = daemonArguments(host, reconcileInterval: reconcileInterval, stateDirectory: stateDirectory)
        _ = FileManager.default.createFile(atPath: directory + "/swarmnetd.log", contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: directory + "/swarmnetd.log"))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        daemons[host] = process
        // Inside the IPVS VM (software-emulated CPU, SWARMNET_IPVS_REQUIRED=1)
        // a daemon takes many times longer to come up than here.
        let inVM = ProcessInfo.processInfo.environment["SWARMNET_IPVS_REQUIRED"] == "1"
        let deadline = Date().addingTimeInterval(inVM ? 120 : 20)
        while Date() < deadline {
            if (try? docker(host, ["version", "--format", "{{.Server.Version}}"])) != nil { return }
            guard process.isRunning else { break }
            usleep(100_000)
        }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        throw CommandFailure(arguments: ["swarmnetd", host], status: -1, stderr: (try? String(contentsOfFile: directory + "/swarmnetd.log", encoding: .utf8)) ?? "")
    }

    /// The process id of `host`'s daemon (nsenter execs it).
    func pid(_ host: String) -> Int32? { daemons[host].map(\.processIdentifier) }

    /// Kills the daemon of `host` with SIGKILL (no clean-up at all).
    func kill9(_ host: String) {
        guard let process = daemons[host] else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func stop(_ host: String) {
        guard let process = daemons[host], process.isRunning else { return }
        process.terminate()
        process.waitUntilExit()
    }

    /// The stock docker CLI against a host's daemon.
    @discardableResult
    func docker(_ host: String, _ arguments: [String]) throws -> String {
        try TestHost.run(["docker"] + arguments, environment: ["DOCKER_HOST": "unix://\(socket(host))"])
    }

    /// swarmnet against a host's daemon.
    @discardableResult
    func swarmnet(_ host: String, _ arguments: [String]) throws -> String {
        try TestHost.run([TestHost.swarmnetExecutable] + arguments, environment: ["SWARMNET_SOCKET": socket(host)])
    }

    /// `docker load` of `images` (of scripts/images) on every host; what
    /// each host's loads printed, by host.
    @discardableResult
    func load(images: [String]) throws -> [String: String] {
        let tarballs = try images.map { try TestImages.path($0) }
        var printed: [String: String] = [:]
        for host in hosts.map(\.name) {
            printed[host] = try tarballs.map { try docker(host, ["load", "-i", $0]) }.joined()
        }
        return printed
    }

    /// A workload namespace belonging to the test bed (removed with it).
    func workload(_ name: String) throws -> NetworkNamespace {
        try NetworkNamespace.create(named: "\(lab.prefix)\(name)")
    }

    func log(_ host: String) -> String {
        (try? String(contentsOfFile: "\(root)/\(host)/swarmnetd.log", encoding: .utf8)) ?? ""
    }

    /// The OCI runtime's state directory of `host`'s daemon (its default:
    /// beside the socket).
    func runtimeRoot(_ host: String) -> String { "\(root)/\(host)/runc" }

    func tearDown() {
        // The daemons' logs outlive the test bed, for the reader of a failure.
        let logs = "/tmp/swarmnet-test-logs/\(lab.prefix.dropLast())"
        try? FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        for host in hosts.map(\.name) { try? FileManager.default.copyItem(atPath: "\(root)/\(host)/swarmnetd.log", toPath: "\(logs)/\(host).log") }
        // Containers outlive their daemon by design: remove them while the
        // daemons live to reap their shims.
        for host in hosts.map(\.name) { removeTasks(runtimeRoot: runtimeRoot(host), mountsUnder: root) }
        for host in daemons.keys { stop(host) }
        _ = try? TestHost.run(["pkill", "-KILL", "-f", "swarmnet-shim \(root)/"])
        unmountAll(under: root)
        lab.down()
        _ = try? TestHost.run(["rm", "-rf", "--one-file-system", root])
    }
}

/// Runs `body` with a test bed, tearing it down afterwards.
@discardableResult
func withTestbed<T>(hosts: Int, reconcileInterval: Double = 1, daemonArguments: [String] = [], _ body: (Testbed) throws -> T) throws -> T {
    let testbed = try Testbed(hosts: hosts, reconcileInterval: reconcileInterval, daemonArguments: daemonArguments)
    defer { testbed.tearDown() }
    return try body(testbed)
}

/// Runs `body` on a swarm formed with the stock CLI: h1 and the next
/// `managers - 1` hosts are managers, the rest workers. `images` (of
/// scripts/images) are loaded on every host first.
@discardableResult
func withSwarm<T>(hosts: Int, managers: Int = 1, images: [String] = [], reconcileInterval: Double = 1, daemonArguments: [String] = [],
                  _ body: (Testbed) throws -> T) throws -> T {
    try withTestbed(hosts: hosts, reconcileInterval: reconcileInterval, daemonArguments: daemonArguments) { testbed in
        let names = testbed.hosts.map(\.name)
        try testbed.load(images: images)
        try testbed.formSwarm(managers: Array(names.prefix(managers)), workers: Array(names.dropFirst(managers)))
        return try body(testbed)
    }
}

/// Polls `condition` until it holds or `seconds` pass.
func eventually(_ seconds: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    repeat {
        if try condition() { return true }
        usleep(50_000)
    } while Date() < deadline
    return try condition()
}

// MARK: - Swarms

extension Testbed {
    /// The manager endpoint of `host` (HOST:2377).
    func endpoint(_ host: String) -> String {
        "\(hosts.first { $0.name == host }!.address):2377"
    }

    func token(_ host: String, _ role: String) throws -> String {
        try docker(host, ["swarm", "join-token", "-q", role]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Forms a swarm with the stock CLI: init on the first of `managers`,
    /// the others join with the manager token, `workers` with the worker
    /// token. Returns the init command's output.
    @discardableResult
    func formSwarm(managers: [String], workers: [String]) throws -> String {
        let output = try docker(managers[0], ["swarm", "init"])
        let managerToken = try token(managers[0], "manager"), workerToken = try token(managers[0], "worker")
        for host in managers.dropFirst() { try docker(host, ["swarm", "join", "--token", managerToken, endpoint(managers[0])]) }
        for host in workers { try docker(host, ["swarm", "join", "--token", workerToken, endpoint(managers[0])]) }
        return output
    }

    /// The UDP sockets bound to the gossip port (7946) in `host`'s
    /// namespace, as `ss` lists them: none while its daemon is in no swarm.
    func gossipSockets(_ host: String) throws -> [String] {
        try TestHost.run(["ip", "netns", "exec", "\(lab.prefix)\(host)", "ss", "-Hlun", "sport = :7946"])
            .split(separator: "\n").map(String.init)
    }

    /// The gossip members `host` sees alive, by name (`swarmnet debug peers`).
    func aliveGossipPeers(_ host: String) throws -> Set<String> {
        let text = try swarmnet(host, ["debug", "peers", "--format", "json"])
        let peers = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]] ?? []
        return Set(peers.filter { ($0["state"] as? String ?? "").hasPrefix("alive") }.compactMap { $0["name"] as? String })
    }

    /// `docker node ls` on `host` as "HOSTNAME STATUS AVAILABILITY MANAGER-STATUS" lines, sorted.
    func nodes(_ host: String) throws -> [String] {
        try docker(host, ["node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}"])
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.sorted()
    }

    /// The nftables table in a host's namespace that `partition` drops
    /// packets with.
    static let partitionTable = "swarmnet_partition"

    /// Cuts `host` off from `others` with nftables in `host`'s namespace,
    /// both ways; checked with `nft -j`. `heal` undoes it (so does the
    /// test bed's teardown, with the namespace).
    func partition(_ host: String, from others: [String]) throws {
        let namespace = "\(lab.prefix)\(host)"
        let addresses = "{ " + others.map { name in "\(hosts.first { $0.name == name }!.address)" }.joined(separator: ", ") + " }"
        let table = Self.partitionTable
        try TestHost.run(["ip", "netns", "exec", namespace, "nft", "add table inet \(table)"])
        try TestHost.run(["ip", "netns", "exec", namespace, "nft",
                          "add chain inet \(table) input { type filter hook input priority -10; policy accept; ip saddr \(addresses) drop; }"])
        try TestHost.run(["ip", "netns", "exec", namespace, "nft",
                          "add chain inet \(table) output { type filter hook output priority -10; policy accept; ip daddr \(addresses) drop; }"])
        let rules = try TestHost.run(["ip", "netns", "exec", namespace, "nft", "-j", "list", "table", "inet", table])
        #expect(rules.components(separatedBy: "\"drop\"").count == 3, "the partition's rules on \(host): \(rules)")
    }

    func heal(_ host: String) {
        _ = try? TestHost.run(["ip", "netns", "exec", "\(lab.prefix)\(host)", "nft", "delete table inet \(Self.partitionTable)"])
    }

    /// The swarm files of `host`'s daemon.
    func swarmDirectory(_ host: String) -> String { stateDirectory(host) + "/swarm" }

    /// curl from `host`'s namespace to a manager endpoint, with `host`'s
    /// own node certificate, another's (`certificateOf`), or none. Prints
    /// the body and then the HTTP status.
    func curlEndpoint(from host: String, to manager: String, _ method: String, _ path: String, body: String = "{}",
                      certificateOf owner: String?) throws -> (status: Int, body: String) {
        let address = hosts.first { $0.name == manager }!.address
        var arguments = ["ip", "netns", "exec", "\(lab.prefix)\(host)", "curl", "-sS", "-m", "5", "-w", "\n%{http_code}",
                         "--resolve", "swarm-manager:2377:\(address)", "-X", method, "-d", body]
        if let owner {
            let certificates = swarmDirectory(owner) + "/certificates"
            arguments += ["--cacert", certificates + "/swarm-root-ca.crt", "--cert", certificates + "/swarm-node.crt",
                          "--key", certificates + "/swarm-node.key"]
        } else {
            arguments += ["-k"]
        }
        let output = try TestHost.run(arguments + ["https://swarm-manager:2377\(path)"])
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }
}

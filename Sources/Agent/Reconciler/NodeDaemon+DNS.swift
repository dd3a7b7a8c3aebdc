import Addressing
import Cluster
import DNS
import DockerAPI
import FoundationEssentials
import SystemBasics
import Logging
import NIOCore
import NIOPosix
import Namespaces
import Netlink

/// The embedded DNS server of every local workload namespace, at
/// 127.0.0.11 as in Docker: service names → VIP (or backends in dnsrr
/// mode), `tasks.NAME` → backends, everything else forwarded to the
/// daemon's upstream resolvers. Each server reads its own record table,
/// which every reconciler pass replaces from the plan, so an answer is never
/// older than the last pass (and a removed backend leaves DNS with it).
extension NodeDaemon {
    /// Starts servers for new workloads, refreshes every table, stops the
    /// servers of workloads that left; returns what failed.
    func reconcileDNS(plan: BalancingPlan) async -> [String] {
        guard configuration.embeddedDNS else { return [] }
        var errors: [String] = []
        let wanted = plan.names
        for path in dnsServers.paths() where wanted[path] == nil {
            await stopDNS(path: path)
        }
        for (path, names) in wanted {
            // A table is rebuilt only when its names changed: rebuilding
            // every table on every pass cost workloads x names each time.
            if let served = dnsServers.entry(path) {
                if served.names != names {
                    served.table.replaceAll(Self.dnsRecords(names))
                    dnsServers.serving(names, at: path)
                }
                continue
            }
            let records = Self.dnsRecords(names)
            let namespace = NetworkNamespace.path(path)
            guard namespace.exists else { continue }
            do {
                // The server listens on 127.0.0.11, on the namespace's lo.
                try await worker.run {
                    let session = try RouteNetlink(namespace: namespace)
                    if let lo = try? session.link(named: "lo"), !lo.isUp { try session.linkSet(name: "lo", up: true) }
                }
                let table = DNSRecordTable(records)
                let server = try await EmbeddedDNSServer.start(
                    namespace: namespace, records: table, upstreams: dnsUpstreams(), group: MultiThreadedEventLoopGroup.singleton,
                    logger: logger)
                var resolvConf: String?
                if let name = Self.namedNamespace(path) { resolvConf = try ResolvConf.write(forNamespaceNamed: name) }
                dnsServers.add(path, server: server, table: table, resolvConf: resolvConf, names: names)
            } catch {
                errors.append("DNS for \(path): \(error)")
            }
        }
        return errors
    }

    func stopDNS(path: String) async {
        guard let entry = dnsServers.remove(path) else { return }
        await entry.server.stop()
        if let name = Self.namedNamespace(path), entry.resolvConf != nil {
            try? ResolvConf.remove(forNamespaceNamed: name)
        }
    }

    func stopAllDNS() async {
        for path in dnsServers.paths() { await stopDNS(path: path) }
    }

    /// The resolvers names are forwarded to: the configured ones, or the
    /// host's (`/etc/resolv.conf` of the daemon's namespace).
    func dnsUpstreams() -> [SocketAddress] {
        if let configured = configuration.dnsUpstreams {
            return configured.compactMap { text in
                let parts = text.split(separator: ":")
                return try? SocketAddress(ipAddress: String(parts[0]), port: parts.count == 2 ? Int(parts[1]) ?? 53 : 53)
            }
        }
        return (try? ResolvConf.hostUpstreams()) ?? []
    }

    /// `ip netns` name of a namespace path under /run/netns, whose
    /// resolv.conf `ip netns exec` takes from /etc/netns/NAME.
    /// A daemon killed with SIGKILL cannot remove the resolv.conf files it
    /// wrote; at start-up, those whose namespace has gone since are removed
    /// (only files swarmnet wrote, whoever's: a file without its namespace
    /// serves no one). While the daemon runs, `stopDNS` removes its own.
    static func removeOrphanResolvConfs() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: ResolvConf.netnsDirectory) else { return }
        for name in names where !FileManager.default.fileExists(atPath: NetworkNamespace.directory + "/" + name) {
            guard let path = try? ResolvConf.path(forNamespaceNamed: name),
                  let text = try? String(contentsOfFile: path, encoding: .utf8), text.hasPrefix(ResolvConf.marker) else { continue }
            try? ResolvConf.remove(forNamespaceNamed: name)
        }
    }

    static func namedNamespace(_ path: String) -> String? {
        let directory = NetworkNamespace.directory + "/"
        guard path.hasPrefix(directory) else { return nil }
        let name = String(path.dropFirst(directory.count))
        return name.isEmpty || name.contains("/") ? nil : name
    }

    static func dnsRecords(_ names: [String: [BalancingPlan.Name]]) -> [String: [DNSNameRecords]] {
        names.mapValues { entries in
            entries.map {
                DNSNameRecords(network: $0.networkName, endpointMode: $0.endpointMode == .vip ? .vip : .dnsrr,
                               virtualIPs: $0.virtualIPs, backends: $0.backends)
            }
        }
    }

    /// `swarmnet debug dns NAME`: what a workload's server would answer.
    public func debugDNS(name: String, container: String?) async throws -> DNSDebugReport {
        let plan = balancingPlan()
        var rows: [DNSDebugReport.Answer] = []
        let lowered = name.lowercased().trimming(".")
        let tasks = lowered.hasPrefix("tasks.")
        let key = tasks ? String(lowered.dropFirst("tasks.".count)) : lowered
        for (path, names) in plan.names.sorted(by: { $0.key < $1.key }) {
            if let container, !(path == container || path.hasSuffix("/" + container)) { continue }
            for entry in names[key] ?? [] {
                let addresses = tasks || entry.endpointMode == .dnsrr ? entry.backends : entry.virtualIPs
                rows.append(.init(workload: path, network: entry.networkName, mode: entry.endpointMode.rawValue,
                                  addresses: addresses.map(\.description), serving: dnsServers.table(path) != nil))
            }
        }
        return DNSDebugReport(node: configuration.nodeName, name: name, answers: rows,
                              upstreams: dnsUpstreams().map { "\($0)" })
    }
}

/// The embedded DNS servers this daemon runs, by workload namespace path.
final class DNSServerRegistry: @unchecked Sendable {
    struct Entry {
        var server: EmbeddedDNSServer
        var table: DNSRecordTable
        var resolvConf: String?
        /// The names its table was last filled from.
        var names: [String: [BalancingPlan.Name]]
    }

    private let lock = Lock()
    private var entries: [String: Entry] = [:]

    func table(_ path: String) -> DNSRecordTable? { lock.withLock { entries[path]?.table } }
    func entry(_ path: String) -> Entry? { lock.withLock { entries[path] } }
    func serving(_ names: [String: [BalancingPlan.Name]], at path: String) { lock.withLock { entries[path]?.names = names } }
    func paths() -> [String] { lock.withLock { Array(entries.keys) } }
    func add(_ path: String, server: EmbeddedDNSServer, table: DNSRecordTable, resolvConf: String?, names: [String: [BalancingPlan.Name]]) {
        lock.withLock { entries[path] = Entry(server: server, table: table, resolvConf: resolvConf, names: names) }
    }
    func remove(_ path: String) -> Entry? { lock.withLock { entries.removeValue(forKey: path) } }
}

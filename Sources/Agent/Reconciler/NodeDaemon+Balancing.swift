import Addressing
import Cluster
import FoundationEssentials
import SystemBasics
import LoadBalancing
import Logging
import Namespaces
import DockerAPI

/// Programs what `BalancingPlan` says into the kernel: a table in each local
/// workload namespace for the VIPs it reaches, and the routing mesh's tables
/// in the daemon's own namespace. Every pass reads what the kernel holds and
/// repairs it (a flushed or deleted table, a restart), so nothing assumes
/// earlier programming survived.
extension NodeDaemon {
    /// The table in each workload namespace.
    static let workloadTable = "swarmnet"
    /// Balancers reconciled per turn of the kernel worker in a pass.
    static let balancersPerTurn = 4
    /// The routing mesh's table (ingress-mode ports) in the daemon's namespace.
    static let meshTable = "swarmnet-mesh"
    /// Host-mode ports: local backends only, never masqueraded, so that the
    /// backend sees the client's address.
    static let hostPortTable = "swarmnet-hostports"

    /// Picks the kernel balancer for `--lb-backend`: `auto` takes IPVS when
    /// its generic netlink family answers in the daemon's namespace (the
    /// kernel loads ip_vs on that request where it is a module), nftables
    /// otherwise; `ipvs` on a kernel without it is an error at start-up
    /// rather than a daemon that cannot balance.
    static func resolveBalancer(_ choice: LoadBalancerChoice) throws -> BalancerKind {
        switch choice {
        case .nftables:
            return .nftables(reason: "chosen with --lb-backend nftables")
        case .ipvs, .auto:
            switch IPVS.availability() {
            case .available(let version, _):
                return .ipvs(version: version)
            case .unavailable(let reason):
                if choice == .ipvs { throw BalancerChoiceError(reason: reason) }
                return .nftables(reason: "IPVS unavailable: \(reason)")
            }
        }
    }

    /// The current plan, from the state and gossip.
    func balancingPlan() -> BalancingPlan {
        BalancingPlan.make(services: Array(state.services.values), networks: state.networks, endpoints: allEndpoints(),
                           localNode: nodeID)
    }

    /// The plan's published ports of one mode as the back end takes them: a
    /// service on 0.0.0.0 (any local address) and the published port.
    static func publishedServices(_ plan: BalancingPlan, mode: PublishMode) -> [VirtualService] {
        plan.published.filter { $0.mode == mode }.map {
            VirtualService(key: .address(.v4(IPv4Address(0)), $0.protocol, port: $0.port), realServers: $0.realServers)
        }
    }

    /// The balancers this host needs for `plan`: one per local workload
    /// namespace for the VIPs it reaches, and (once this host is on the
    /// ingress network) the routing mesh's and the host-mode ports' in the
    /// daemon's own namespace.
    func balancerWork(plan: BalancingPlan, mesh: Bool) -> [BalancerWork] {
        var work = plan.workloads.map { path, services in
            BalancerWork(namespacePath: path, role: .workload, settings: balancerKind.settings(for: .workload, localBackends: []),
                         services: services)
        }
        guard mesh else { return work }
        let hostPorts = Self.publishedServices(plan, mode: .host)
        let localBackends = Set(hostPorts.flatMap(\.realServers).map(\.address)).sorted(by: BalancingPlan.order)
        work.append(BalancerWork(namespacePath: Self.ownNamespacePath, role: .mesh,
                                 settings: balancerKind.settings(for: .mesh, localBackends: [], ingressSubnet: state.ingressNetwork?.subnet),
                                 services: Self.publishedServices(plan, mode: .ingress) + plan.ingressVIPs))
        work.append(BalancerWork(namespacePath: Self.ownNamespacePath, role: .hostPorts,
                                 settings: balancerKind.settings(for: .hostPorts, localBackends: localBackends),
                                 services: hostPorts))
        return work
    }

    /// One pass over every balancer; returns what failed (the next pass
    /// retries). A full pass reconciles every balancer with the kernel; a
    /// change's pass (`full` false) only those whose desired services
    /// differ from what they last programmed, so a change costs the
    /// workloads it touches, not every workload on the host (issue 17).
    func reconcileBalancing(full: Bool = true) async -> [String] {
        let sweepErrors = await sweepLeftoverHostBalancers()
        if state.services.isEmpty && balancers.isEmpty && !configuration.embeddedDNS { return sweepErrors }
        if state.services.values.contains(where: \.isPublished) {
            do { try await ensureIngressGateway() } catch {
                return ["ingress endpoint: \(error)"]
            }
        }
        await probeLocalBackends()
        let plan = balancingPlan()
        let dnsErrors = await reconcileDNS(plan: plan)
        let meshGateway = state.ingressNetwork.flatMap { ingress in
            state.endpoints.values.first { $0.networkID == ingress.id && $0.node == nodeID && $0.isIngressGateway == true }
        }
        let work = balancerWork(plan: plan, mesh: meshGateway != nil)
        let registry = balancers
        let kind = balancerKind
        let ingressSubnet = state.ingressNetwork?.subnet
        let removalErrors = try? await worker.run { [work] () -> [String] in
            var errors: [String] = []
            let wanted = Set(work.map(\.id))
            for stale in registry.ids() where !wanted.contains(stale) {
                // A workload that left, or a mesh no longer needed: its
                // table goes (when its namespace still exists).
                // It stays registered until its removal succeeds, so a
                // failure is retried on the next pass.
                guard let balancer = registry.any(stale) else { continue }
                if balancer.namespace?.exists ?? true {
                    do { try balancer.removeAll() } catch {
                        errors.append("removing balancer \(stale): \(error)")
                        continue
                    }
                    if registry.forgetOneClock(stale), let namespace = balancer.namespace {
                        // A task's namespace may go meanwhile: then there
                        // is nothing left to restore.
                        do { try TCPTimestampClock.restoreClockPerDestination(in: namespace) } catch {
                            if namespace.exists { errors.append("\(stale): restoring net.ipv4.tcp_timestamps: \(error)") }
                        }
                    }
                } else {
                    _ = registry.forgetOneClock(stale)
                }
                _ = registry.remove(stale)
            }
            return errors
        }
        let due = full ? work : work.filter { item in
            registry.programmed(item.id) != item.services || registry.existing(item.id, settings: item.settings) == nil
        }
        var outcome = removalErrors ?? ["the kernel worker has stopped"]
        // A few balancers per turn of the kernel worker: a request (an
        // attach) waits for one turn, not for the whole pass.
        for start in stride(from: 0, to: due.count, by: Self.balancersPerTurn) {
            let turn = Array(due[start..<min(start + Self.balancersPerTurn, due.count)])
            outcome += (try? await worker.run { () -> [String] in
                var errors: [String] = []
                for item in turn {
                    do {
                        let namespace = NetworkNamespace.path(item.namespacePath)
                        guard namespace.exists else { continue }
                        let balancer = try registry.balancer(item.id, settings: item.settings) {
                            // A daemon restarted with another --lb-backend: the
                            // old back end's programming of this role goes first.
                            try kind.retireOtherBackend(of: item.role, in: namespace, ingressSubnet: ingressSubnet)
                            if item.role == .workload {
                                // A workload reaches backends through VIPs and
                                // straight: one timestamp clock for both (see
                                // TCPTimestampClock). Its VIPs work without it,
                                // so a failure is reported, not fatal.
                                do { if try TCPTimestampClock.useOneClock(in: namespace) { registry.rememberOneClock(item.id) } } catch {
                                    errors.append("\(item.id): net.ipv4.tcp_timestamps: \(error)")
                                }
                            }
                            return try item.settings.open(for: item.role, in: namespace)
                        }
                        let changes = try balancer.reconcile(to: item.services)
                        registry.setProgrammed(item.id, item.services)
                        if let failure = changes.connectionCleanupError {
                            // The table is right; established connections to a
                            // removed backend live on until the retry succeeds.
                            errors.append("\(item.id): deleting conntrack entries of removed backends: \(failure)")
                        }
                    } catch {
                        errors.append("\(item.id): \(error)")
                        _ = registry.remove(item.id) // reopened next pass
                    }
                }
                return errors
            }) ?? ["the kernel worker has stopped"]
        }
        return sweepErrors + dnsErrors + outcome
    }

    /// Once per run, on the first pass (and each pass until it succeeds): the routing mesh's and the
    /// host-mode ports' programming left in the daemon's own namespace by an
    /// earlier run is removed when no service publishes a port any more
    /// (the service was removed while the daemon was down, or its state was
    /// wiped), with either back end's. With a published port, they are left
    /// for the balancers about to open them, so a restart does not
    /// interrupt the mesh. A failure is reported and tried again next pass.
    func sweepLeftoverHostBalancers() async -> [String] {
        guard !hostBalancersSwept else { return [] }
        if state.services.values.contains(where: \.isPublished) {
            hostBalancersSwept = true
            return []
        }
        let ingressSubnet = state.ingressNetwork?.subnet
        let outcome = try? await worker.run { () -> [String] in
            let own = NetworkNamespace.path(Self.ownNamespacePath)
            return [BalancerRole.mesh, .hostPorts].compactMap { role in
                do {
                    try BalancerKind.removeEitherBackend(of: role, in: own, ingressSubnet: ingressSubnet)
                    return nil
                } catch {
                    return "removing the \(role.rawValue) balancer left by an earlier run: \(error)"
                }
            }
        }
        guard let outcome else { return ["the kernel worker has stopped"] }
        if outcome.isEmpty { hostBalancersSwept = true }
        return outcome
    }

    /// Desired services beside what each balancer holds, for `swarmnet debug lb`.
    func balancerReport() async -> [(work: BalancerWork, kernel: [VirtualService]?, error: String?)] {
        let work = balancerWork(plan: balancingPlan(), mesh: true)
        let registry = balancers
        return (try? await worker.run { [work] in
            work.sorted { ($0.namespacePath, $0.settings.label) < ($1.namespacePath, $1.settings.label) }.map { item in
                do {
                    // The balancer the reconciler uses, or a reader of its own.
                    let balancer = try registry.existing(item.id, settings: item.settings)
                        ?? item.settings.open(for: item.role, in: .path(item.namespacePath))
                    return (item, try balancer.services(), nil)
                } catch {
                    return (item, nil, "\(error)")
                }
            }
        }) ?? []
    }
}

/// The kernel balancer a daemon uses.
public enum BalancerKind: Sendable, Equatable, CustomStringConvertible {
    case ipvs(version: String)
    /// With why IPVS is not used.
    case nftables(reason: String)

    public var description: String {
        switch self {
        case .ipvs(let version): "ipvs (IPVS \(version); marks and masquerade in nftables)"
        case .nftables(let reason): "nftables (\(reason))"
        }
    }

    /// How the balancer of `role` is laid out with this kind. Marks of the
    /// three IPVS roles come from separate ranges ("SW" 0x5357, 0x5358,
    /// 0x5359 in the high 16 bits), since two of them share the daemon's
    /// namespace. In that namespace IPVS's VIP:port services are not all
    /// swarmnet's: the mesh owns those inside `ingressSubnet` (the
    /// published services' VIPs on ingress).
    func settings(for role: BalancerRole, localBackends: [IPAddress], ingressSubnet: IPPrefix? = nil) -> BalancerSettings {
        switch (self, role) {
        // The maps layout: a change costs the kernel the same at 10,000
        // services as at 100 (see NFTablesConfiguration.Layout), and a
        // daemon with many workloads programs one table in each of them.
        case (.nftables, .workload):
            .nftables(NFTablesConfiguration(tableName: NodeDaemon.workloadTable, hooks: .output, masquerade: .never, layout: .maps))
        case (.nftables, .mesh):
            .nftables(NFTablesConfiguration(tableName: NodeDaemon.meshTable, hooks: .routingMesh, masquerade: .publishedPorts,
                                            layout: .maps))
        case (.nftables, .hostPorts):
            .nftables(NFTablesConfiguration(
                tableName: NodeDaemon.hostPortTable, hooks: .routingMesh, masquerade: .never,
                publishedPorts: .localBackendsOnly(localBackends.compactMap { try? IPPrefix(address: $0, length: 32) }), layout: .maps))
        case (.ipvs, .workload):
            .ipvs(IPVSBalancerConfiguration(markTable: role.ipvsMarkTable, hooks: .output,
                                            masqueradePublishedPorts: false, markBase: 0x5357_0000, ownsAddressServices: true))
        case (.ipvs, .mesh):
            .ipvs(IPVSBalancerConfiguration(markTable: role.ipvsMarkTable, hooks: .routingMesh,
                                            masqueradePublishedPorts: true, markBase: 0x5358_0000, ownsAddressServices: false,
                                            ownedAddresses: ingressSubnet.map { [$0] } ?? []))
        case (.ipvs, .hostPorts):
            .ipvs(IPVSBalancerConfiguration(markTable: role.ipvsMarkTable, hooks: .routingMesh,
                                            masqueradePublishedPorts: false, markBase: 0x5359_0000, ownsAddressServices: false))
        }
    }

    /// Removes what the other back end programmed for `role` in `namespace`
    /// (a daemon restarted with another `--lb-backend`), so that no rule of
    /// the old one catches packets before the new one: its nftables table,
    /// or, where the kernel has IPVS, the IPVS services of the role's mark
    /// range (and a workload's VIP:port services) with their mark table.
    /// Run by the reconciler when it opens a balancer; an absent table or
    /// service is not an error, any other failure is (and is retried).
    func retireOtherBackend(of role: BalancerRole, in namespace: NetworkNamespace, ingressSubnet: IPPrefix?) throws {
        switch self {
        case .ipvs: try Self.removeNFTables(of: role, in: namespace)
        case .nftables: try Self.removeIPVS(of: role, in: namespace, ingressSubnet: ingressSubnet)
        }
    }

    /// Removes what either back end programmed for `role` in `namespace`.
    static func removeEitherBackend(of role: BalancerRole, in namespace: NetworkNamespace, ingressSubnet: IPPrefix?) throws {
        try removeNFTables(of: role, in: namespace)
        try removeIPVS(of: role, in: namespace, ingressSubnet: ingressSubnet)
    }

    private static func removeNFTables(of role: BalancerRole, in namespace: NetworkNamespace) throws {
        try NFTablesLoadBalancer(namespace: namespace, configuration: NFTablesConfiguration(tableName: role.nftablesTable))
            .deleteTable()
    }

    /// The IPVS services of the role's mark range with their mark table, where the kernel has IPVS.
    private static func removeIPVS(of role: BalancerRole, in namespace: NetworkNamespace, ingressSubnet: IPPrefix?) throws {
        guard IPVS.availability(in: namespace).isAvailable,
              case .ipvs(let configuration) = BalancerKind.ipvs(version: "").settings(for: role, localBackends: [], ingressSubnet: ingressSubnet)
        else { return }
        try IPVSBalancer(namespace: namespace, configuration: configuration).removeAll()
    }
}

/// `--lb-backend ipvs` where IPVS cannot be used.
struct BalancerChoiceError: Error, CustomStringConvertible {
    let reason: String
    var description: String { "--lb-backend ipvs: IPVS cannot be used here: \(reason)" }
}

/// What a balancer is for: a workload's VIPs, the routing mesh, host-mode ports.
enum BalancerRole: String, Sendable {
    case workload
    case mesh
    case hostPorts

    /// The nftables back end's table of this role.
    var nftablesTable: String {
        switch self {
        case .workload: NodeDaemon.workloadTable
        case .mesh: NodeDaemon.meshTable
        case .hostPorts: NodeDaemon.hostPortTable
        }
    }

    /// The IPVS back end's mark table of this role.
    var ipvsMarkTable: String { nftablesTable + "-ipvs" }
}

/// One balancer's back end and layout.
enum BalancerSettings: Sendable, Hashable {
    case nftables(NFTablesConfiguration)
    case ipvs(IPVSBalancerConfiguration)

    /// "nftables ip swarmnet", "ipvs (marks: ip swarmnet-ipvs)".
    var label: String {
        switch self {
        case .nftables(let configuration): "nftables ip \(configuration.tableName)"
        case .ipvs(let configuration): "ipvs (marks: ip \(configuration.markTable))"
        }
    }

    /// The nftables table it programs (the IPVS back end's mark table).
    var tableName: String {
        switch self {
        case .nftables(let configuration): configuration.tableName
        case .ipvs(let configuration): configuration.markTable
        }
    }

    /// Opens the balancer of `role` in `namespace`; opening writes nothing
    /// (readers such as `swarmnet debug lb` open balancers too). A
    /// workload's nftables balancer closes its sockets after each call: a
    /// host has one per workload, and three sockets each would be most of
    /// the daemon's descriptors and memory (issue 17).
    func open(for role: BalancerRole, in namespace: NetworkNamespace) throws -> any DaemonBalancer {
        switch self {
        case .nftables(let configuration):
            try NFTablesLoadBalancer(namespace: namespace, configuration: configuration, holdsSockets: role != .workload)
        case .ipvs(let configuration): try IPVSBalancer(namespace: namespace, configuration: configuration)
        }
    }
}

/// A balancer the daemon programs and removes.
protocol DaemonBalancer: LoadBalancerBackend {
    var namespace: NetworkNamespace? { get }
    /// Removes all this balancer programmed (when its workload or the mesh goes).
    func removeAll() throws
}

extension NFTablesLoadBalancer: DaemonBalancer {
    func removeAll() throws { try deleteTable() }
}

extension IPVSBalancer: DaemonBalancer {}

/// One balancer to program in one pass.
struct BalancerWork: Sendable {
    var namespacePath: String
    var role: BalancerRole
    var settings: BalancerSettings
    var services: [VirtualService]
    var id: String { "\(namespacePath)#\(role.rawValue)" }
}

/// The balancers the daemon has opened (one libnftables context or IPVS
/// socket each), used only on the kernel worker's thread; the lock makes
/// the type Sendable.
final class BalancerRegistry: @unchecked Sendable {
    private let lock = Lock()
    /// Each open balancer, with the services its last reconcile programmed
    /// (nil until one succeeds).
    private var open: [String: (settings: BalancerSettings, balancer: any DaemonBalancer, programmed: [VirtualService]?)] = [:]
    /// The workloads whose TCP timestamp clock this run changed
    /// (`TCPTimestampClock`), to change back when they leave but their
    /// namespace stays. Kept apart from `open`: a balancer closed after an
    /// error and reopened still counts. A restarted daemon does not know
    /// what an earlier run changed.
    private var oneClock: Set<String> = []

    /// The open balancer of `id`, or a new one when there is none or its
    /// settings changed (host-mode ports name their local backends in them).
    func balancer(_ id: String, settings: BalancerSettings, make: () throws -> any DaemonBalancer) throws -> any DaemonBalancer {
        if let existing = existing(id, settings: settings) { return existing }
        let made = try make()
        lock.withLock { open[id] = (settings, made, nil) }
        return made
    }

    /// The services the balancer of `id` last programmed, if it is open.
    func programmed(_ id: String) -> [VirtualService]? { lock.withLock { open[id]?.programmed } }

    /// Records what a reconcile of `id`'s balancer programmed.
    func setProgrammed(_ id: String, _ services: [VirtualService]) { lock.withLock { open[id]?.programmed = services } }

    /// The open balancer of `id` if its settings are still `settings`.
    func existing(_ id: String, settings: BalancerSettings) -> (any DaemonBalancer)? {
        lock.withLock { open[id].flatMap { $0.settings == settings ? $0.balancer : nil } }
    }

    /// The open balancer of `id`, whatever its settings.
    func any(_ id: String) -> (any DaemonBalancer)? { lock.withLock { open[id]?.balancer } }

    func remove(_ id: String) -> (any DaemonBalancer)? { lock.withLock { open.removeValue(forKey: id)?.balancer } }

    /// Records that this run changed the clock of `id` (see `oneClock`).
    func rememberOneClock(_ id: String) { _ = lock.withLock { oneClock.insert(id) } }
    /// Whether this run changed the clock of `id`, forgetting it.
    func forgetOneClock(_ id: String) -> Bool { lock.withLock { oneClock.remove(id) != nil } }

    func ids() -> [String] { lock.withLock { Array(open.keys) } }
    var isEmpty: Bool { lock.withLock { open.isEmpty } }
}

extension NodeDaemon {
    /// `swarmnet debug lb [SERVICE]`: every table this host should hold,
    /// desired entries beside the kernel's, differences marked.
    public func debugLoadBalancers(service reference: String?) async throws -> [BalancerTableReport] {
        var filter: Set<IPAddress>?
        var publishedPorts: Set<UInt16>?
        if let reference {
            let service = try state.service(reference)
            filter = Set(service.virtualIPs.map(\.address.address))
            publishedPorts = Set(service.ports.compactMap(\.publishedPort))
        }
        return await balancerReport().map { work, kernel, error in
            let keep = { (key: ServiceKey) -> Bool in
                guard let filter, let publishedPorts, case .address(let address, _, let port) = key else { return true }
                return filter.contains(address) || (address == .v4(IPv4Address(0)) && publishedPorts.contains(port))
            }
            return BalancerTableReport(
                node: configuration.nodeName, backend: work.settings.label, table: work.settings.tableName,
                namespace: work.namespacePath == Self.ownNamespacePath ? "(daemon)" : work.namespacePath, error: error,
                entries: Self.compare(desired: work.services.filter { keep($0.key) }, kernel: kernel?.filter { keep($0.key) } ?? []))
        }
    }

    static func compare(desired: [VirtualService], kernel: [VirtualService]) -> [BalancerEntryStatus] {
        let describe = { (service: VirtualService) in service.sorted.realServers.map(\.description) }
        let held = Dictionary(kernel.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        var rows = desired.sorted { $0.key < $1.key }.map { want -> BalancerEntryStatus in
            guard let have = held[want.key] else {
                return BalancerEntryStatus(service: want.key.description, desired: describe(want), kernel: nil, status: "missing")
            }
            return BalancerEntryStatus(service: want.key.description, desired: describe(want), kernel: describe(have),
                                       status: describe(want) == describe(have) ? "ok" : "wrong")
        }
        let wanted = Set(desired.map(\.key))
        rows += kernel.filter { !wanted.contains($0.key) }.sorted { $0.key < $1.key }.map {
            BalancerEntryStatus(service: $0.key.description, desired: nil, kernel: describe($0), status: "extra")
        }
        return rows
    }
}

import Addressing
import Cluster
import Foundation
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
    /// The routing mesh's table (ingress-mode ports) in the daemon's namespace.
    static let meshTable = "swarmnet-mesh"
    /// Host-mode ports: local backends only, never masqueraded, so that the
    /// backend sees the client's address.
    static let hostPortTable = "swarmnet-hostports"

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

    /// One pass over every balancer; returns what failed (the next pass retries).
    func reconcileBalancing() async -> [String] {
        if state.services.isEmpty && balancers.isEmpty && !configuration.embeddedDNS { return [] }
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
        var work: [BalancerWork] = []
        for (path, services) in plan.workloads {
            work.append(BalancerWork(namespacePath: path, table: Self.workloadTable,
                                     configuration: NFTablesConfiguration(tableName: Self.workloadTable, hooks: .output, masquerade: .never),
                                     services: services))
        }
        if meshGateway != nil {
            work.append(BalancerWork(
                namespacePath: Self.ownNamespacePath, table: Self.meshTable,
                configuration: NFTablesConfiguration(tableName: Self.meshTable, hooks: .routingMesh, masquerade: .publishedPorts),
                services: Self.publishedServices(plan, mode: .ingress)))
            let hostPorts = Self.publishedServices(plan, mode: .host)
            let localBackends = Set(hostPorts.flatMap(\.realServers).map(\.address)).sorted(by: BalancingPlan.order)
            work.append(BalancerWork(
                namespacePath: Self.ownNamespacePath, table: Self.hostPortTable,
                configuration: NFTablesConfiguration(
                    tableName: Self.hostPortTable, hooks: .routingMesh, masquerade: .never,
                    publishedPorts: .localBackendsOnly(localBackends.compactMap { try? IPPrefix(address: $0, length: 32) })),
                services: hostPorts))
        }
        let registry = balancers
        let outcome = try? await worker.run { [work] () -> [String] in
            var errors: [String] = []
            let wanted = Set(work.map(\.id))
            for stale in registry.ids() where !wanted.contains(stale) {
                // A workload that left, or a mesh no longer needed: its
                // table goes (when its namespace still exists).
                if let balancer = registry.remove(stale), balancer.namespace?.exists ?? true {
                    do { try balancer.deleteTable() } catch { errors.append("removing table \(stale): \(error)") }
                }
            }
            for item in work {
                do {
                    let namespace = NetworkNamespace.path(item.namespacePath)
                    guard namespace.exists else { continue }
                    let balancer = try registry.balancer(item.id, configuration: item.configuration) {
                        try NFTablesLoadBalancer(namespace: namespace, configuration: item.configuration)
                    }
                    try balancer.reconcile(to: item.services)
                } catch {
                    errors.append("\(item.id): \(error)")
                    _ = registry.remove(item.id) // reopened next pass
                }
            }
            return errors
        }
        return dnsErrors + (outcome ?? ["the kernel worker has stopped"])
    }

    /// Desired services beside what each table holds, for `swarmnet debug lb`.
    func balancerReport() async -> [(table: String, namespace: String, desired: [VirtualService], kernel: [VirtualService]?, error: String?)] {
        let plan = balancingPlan()
        var wanted: [(String, String, [VirtualService])] = plan.workloads.map { (Self.workloadTable, $0.key, $0.value) }
        for mode in [PublishMode.ingress, .host] {
            wanted.append((mode == .ingress ? Self.meshTable : Self.hostPortTable, Self.ownNamespacePath,
                           Self.publishedServices(plan, mode: mode)))
        }
        return (try? await worker.run { [wanted] in
            wanted.sorted { ($0.1, $0.0) < ($1.1, $1.0) }.map { table, path, desired in
                do {
                    // A reader of its own: reading needs only the table's name.
                    let balancer = try NFTablesLoadBalancer(namespace: .path(path), configuration: NFTablesConfiguration(tableName: table))
                    return (table, path, desired, try balancer.services(), nil)
                } catch {
                    return (table, path, desired, nil, "\(error)")
                }
            }
        }) ?? []
    }
}

/// One table to program in one pass.
struct BalancerWork: Sendable {
    var namespacePath: String
    var table: String
    var configuration: NFTablesConfiguration
    var services: [VirtualService]
    var id: String { "\(namespacePath)#\(table)" }
}

/// The balancers the daemon has opened (one libnftables context per table),
/// used only on the kernel worker's thread; the lock makes the type Sendable.
final class BalancerRegistry: @unchecked Sendable {
    private let lock = NSLock()
    private var open: [String: NFTablesLoadBalancer] = [:]

    /// The open balancer of `id`, or a new one when there is none or its
    /// configuration changed (host-mode ports name their local backends in it).
    func balancer(_ id: String, configuration: NFTablesConfiguration, make: () throws -> NFTablesLoadBalancer) throws
        -> NFTablesLoadBalancer
    {
        if let existing = lock.withLock({ open[id] }), existing.configuration == configuration { return existing }
        let made = try make()
        lock.withLock { open[id] = made }
        return made
    }

    func remove(_ id: String) -> NFTablesLoadBalancer? { lock.withLock { open.removeValue(forKey: id) } }
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
            let service = try Self.mapping { try state.service(reference) }
            filter = Set(service.virtualIPs.map(\.address.address))
            publishedPorts = Set(service.ports.compactMap(\.publishedPort))
        }
        return await balancerReport().map { table, namespace, desired, kernel, error in
            let keep = { (key: ServiceKey) -> Bool in
                guard let filter, let publishedPorts, case .address(let address, _, let port) = key else { return true }
                return filter.contains(address) || (address == .v4(IPv4Address(0)) && publishedPorts.contains(port))
            }
            return BalancerTableReport(
                node: configuration.nodeName, backend: "nftables ip \(table)", table: table,
                namespace: namespace == Self.ownNamespacePath ? "(daemon)" : namespace, error: error,
                entries: Self.compare(desired: desired.filter { keep($0.key) }, kernel: kernel?.filter { keep($0.key) } ?? []))
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

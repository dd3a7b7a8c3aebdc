#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Cluster
import DockerAPI
import FoundationEssentials
import Logging
import NIOPosix
import Namespaces
import Netlink
import Overlay
import Synchronization

/// Endpoints: a workload's namespace attached to a network (an address
/// from the cluster store, a veth into the network's sandbox, its peers),
/// and detached again. Docker's `network connect` and every task's
/// networks take this one path.
extension NodeDaemon {
    // MARK: - Endpoints

    /// Attaches a workload's namespace to a network, as a backend of
    /// `service` when one is named (then also to the ingress network when
    /// the service publishes ports). A task's endpoints are created not
    /// `serving`: no backend until its process runs. Returns the endpoint
    /// on `reference`.
    @discardableResult
    func attachWorkload(network reference: String, namespace: NetworkNamespace, name: String, requestedAddress: String?,
                        service serviceName: String?, aliases: [String] = [], serving: Bool = true) async throws -> EndpointRecord {
        if let serviceName, (try? state.service(serviceName)) == nil { await store().synchronizeDefinitions() }
        let record = try await knownNetwork(reference)
        var service: ServiceRecord?
        if let serviceName { service = try state.service(serviceName) }
        if record.isIngress {
            // A task of a published service with no network of its own
            // joins the routing mesh only (Docker's `-p 80:80` alone).
            guard let service, service.isPublished else {
                throw ControlError(.permissionDenied, "network \(record.name) is the routing mesh's ingress network: workloads join it as backends of a service that publishes a port (connect them to the service's network with its name)")
            }
            let meshGateway = try await ensureIngressGateway()
            return try await attachEndpoint(network: record, namespace: namespace, name: name, requestedAddress: nil,
                                            serviceID: service.id, defaultGateway: meshGateway?.address.address, serving: serving)
        }
        if let found = service {
            guard found.networks.contains(record.id) else {
                let names = found.networks.compactMap { state.networks[$0]?.name }
                throw ControlError(.invalidArgument, "service \(found.name) is not attached to network \(record.name) (its networks: \(names.isEmpty ? "none" : names.joined(separator: ", ")))")
            }
        }
        // A published service's backend also joins the ingress network, with
        // its default route through this host's ingress endpoint, so replies
        // to outside clients leave through the host that took the connection.
        var meshGateway: EndpointRecord?
        if service?.isPublished == true { meshGateway = try await ensureIngressGateway() }
        let endpoint = try await attachEndpoint(
            network: record, namespace: namespace, name: name, requestedAddress: requestedAddress, serviceID: service?.id,
            aliases: aliases, serving: serving)
        if let service, service.isPublished, let ingress = state.ingressNetwork,
           !state.endpoints.values.contains(where: { $0.networkID == ingress.id && $0.node == nodeID && $0.namespacePath == namespace.path }) {
            do {
                try await attachEndpoint(network: ingress, namespace: namespace, name: name, requestedAddress: nil,
                                         serviceID: service.id, defaultGateway: meshGateway?.address.address, serving: serving)
            } catch {
                await detachEndpoint(endpoint)
                throw error
            }
        }
        return endpoint
    }

    /// Allocates (at the swarm's managers, or here outside a swarm), records,
    /// and attaches one endpoint; a kernel failure undoes the record and the
    /// allocation.
    @discardableResult
    func attachEndpoint(
        network record: NetworkRecord, namespace: NetworkNamespace, name: String, requestedAddress: String?, serviceID: String?,
        interfaceName: String? = nil, defaultRoute: Bool = true, defaultGateway: IPAddress? = nil, isIngressGateway: Bool = false,
        aliases: [String] = [], serving: Bool = true
    ) async throws -> EndpointRecord {
        // The record comes first, so that a reconciler pass running meanwhile
        // sees the endpoint and neither removes nor duplicates its veth.
        // The same namespace can be named by several paths (its ip netns
        // name, /proc/PID/ns/net, a bind mount): compared as namespaces.
        let identity = namespace.identity
        if let attached = state.endpoints.values.first(where: {
            $0.networkID == record.id && $0.node == nodeID
                && ($0.namespacePath == namespace.path || (identity != nil && NetworkNamespace.path($0.namespacePath).identity == identity))
        }) {
            let alias = attached.namespacePath == namespace.path ? "" : " (as \(attached.namespacePath))"
            throw ControlError(.permissionDenied, "endpoint \(name) is already attached to network \(record.name)\(alias)")
        }
        // The store allocates every address: the swarm's managers (they
        // hold all allocations, in Raft), or this node's own store.
        let network = try overlayNetwork(record)
        let allocation = AllocationRequest(
            endpointID: Identifier.make(), network: record.id, node: nodeID, nodeName: configuration.nodeName,
            namespacePath: namespace.path, name: name, requestedAddress: requestedAddress, vtep: configuration.dataPathAddress,
            serviceID: serviceID, isIngressGateway: isIngressGateway ? true : nil)
        // The state is copied only after the last await before its commit:
        // the actor is reentrant, and a copy taken before the manager
        // answered would overwrite what concurrent attaches committed
        // meanwhile (their endpoints vanished from `network inspect`).
        var allocated = try await store().allocate(allocation)
        var next = state
        allocated.aliases = aliases.isEmpty ? nil : aliases
        // Recorded (and gossiped) out of the balancers from the start, not
        // taken out a moment later: other hosts must never send it traffic
        // before its process listens.
        if !serving && serviceID != nil { allocated.unhealthy = true }
        next.endpoints[allocated.id] = allocated
        let endpoint = allocated
        do { try commit(next, touching: [.endpoint(endpoint.id)]) } catch {
            await releaseAllocation(endpoint.id)
            throw error
        }
        let peers = peers(of: record.id)
        let attached: AttachedEndpoint?
        do {
            attached = try await worker.run { [driver] in
                try driver.ensureSandbox(network)
                var attached: AttachedEndpoint?
                if try !driver.hasEndpoint(endpoint.id, on: network) {
                    attached = try driver.attach(
                        EndpointSpec(id: endpoint.id, workload: namespace, address: endpoint.address, mac: endpoint.mac,
                                     interfaceName: interfaceName, defaultRoute: defaultRoute, defaultGateway: defaultGateway),
                        to: network)
                }
                try driver.syncPeers(peers, on: network)
                return attached
            }
        } catch {
            var undo = state
            undo.endpoints[endpoint.id] = nil
            try? commit(undo, touching: [.endpoint(endpoint.id)])
            await releaseAllocation(endpoint.id)
            wake()
            throw ControlError(.internal, "attaching \(name) to network \(record.name): \(error)")
        }
        if let attached, state.endpoints[endpoint.id] != nil {
            var named = state
            named.endpoints[endpoint.id]?.hostInterface = attached.hostInterface
            named.endpoints[endpoint.id]?.workloadInterface = attached.workloadInterface
            try commit(named, touching: [.endpoint(endpoint.id)])
        }
        if let recorded = state.endpoints[endpoint.id] { publish(recorded) }
        logger.info("attached endpoint", metadata: ["network": "\(record.name)", "container": "\(name)",
                                                    "address": "\(endpoint.address)", "interface": "\(attached?.workloadInterface ?? "-")",
                                                    "service": "\(serviceID.flatMap { state.services[$0]?.name } ?? "-")"])
        return state.endpoints[endpoint.id] ?? endpoint
    }

    /// Forgets an endpoint (the record first: a reconciler pass must not put
    /// the veth back), withdraws it from gossip and the manager, and removes
    /// its veth; a veth that will not go is left to the reconciler.
    func detachEndpoint(_ endpoint: EndpointRecord) async {
        guard let record = state.networks[endpoint.networkID], let network = try? overlayNetwork(record) else { return }
        var next = state
        next.endpoints[endpoint.id] = nil
        try? commit(next, touching: [.endpoint(endpoint.id)])
        let last = !state.endpoints.values.contains { $0.networkID == endpoint.networkID && $0.node == nodeID }
        try? gossip?.withdraw(endpoint: endpoint, lastOnNetwork: last)
        await releaseAllocation(endpoint.id)
        do {
            try await worker.run { [driver] in try driver.detach(endpointID: endpoint.id, from: network) }
        } catch {
            logger.warning("removing an endpoint's veth failed; the reconciler will retry", metadata: ["error": "\(error)"])
        }
        logger.info("detached endpoint", metadata: ["network": "\(record.name)", "container": "\(endpoint.name)"])
    }

    /// The path by which the daemon's own namespace is attached (the
    /// routing mesh's ingress endpoint lives there).
    static let ownNamespacePath = "/proc/self/ns/net"
    /// The ingress endpoint's interface in the daemon's namespace.
    static let ingressInterfaceName = "sn-ingress"

    /// This host's ingress endpoint (Docker's ingress-sbox): made when the
    /// ingress network exists and a service publishes a port.
    @discardableResult
    func ensureIngressGateway() async throws -> EndpointRecord? {
        guard let ingress = state.ingressNetwork, state.services.values.contains(where: \.isPublished) else { return nil }
        if let existing = state.endpoints.values.first(where: { $0.networkID == ingress.id && $0.node == nodeID && $0.isIngressGateway == true }) {
            return existing
        }
        // Tasks starting together share one attach: a second one would be
        // refused by the allocator (one endpoint per namespace and network).
        if let inFlight = ingressGatewayAttach { return try await inFlight.value }
        let attach = Task { () async throws -> EndpointRecord? in
            let endpoint = try await attachEndpoint(
                network: ingress, namespace: .path(Self.ownNamespacePath), name: "ingress-endpoint", requestedAddress: nil, serviceID: nil,
                interfaceName: Self.ingressInterfaceName, defaultRoute: false, isIngressGateway: true)
            Self.enableForwarding(logger: logger)
            return endpoint
        }
        ingressGatewayAttach = attach
        defer { ingressGatewayAttach = nil }
        return try await attach.value
    }

    // MARK: - Peers from other nodes

    /// Local endpoints, for publishing through gossip.
    public func localEndpoints() -> [EndpointRecord] {
        state.endpoints.values.filter { $0.node == nodeID }
    }

    func peers(of networkID: String) -> [Peer] {
        remoteEndpoints.values.filter { $0.networkID == networkID }.map {
            Peer(address: $0.address.address, mac: $0.mac, vtep: $0.vtep)
        }
    }
}

import Cluster
import DockerAPI
import Foundation
import Logging

/// A node in no swarm: network-only services through the Docker-shaped API
/// (`swarmnet service create`). The local store validates and allocates
/// them (VIPs, published ports, the ingress network) in one transaction,
/// and the agent takes them from it as definitions; workloads are attached
/// as backends by name (`network connect --service`). In a swarm the
/// managers hold services, with tasks (SwarmServicesAPI), and every node
/// balances over their backends wherever they run (see
/// NodeDaemon+Balancing).
extension NodeDaemon {
    public func createService(_ spec: ServiceSpec) async throws -> ServiceCreateResponse {
        guard !isInSwarm else { throw ControlError.notManager }
        await watchLocalStore()
        let (record, ingressCreated) = try await localStore.createService(
            ServiceRequest(spec), hostRoutes: { [self] in try await self.hostRoutesForAllocation() })
        if let ingressCreated {
            logger.info("created the ingress network", metadata: ["subnet": "\(ingressCreated.subnet)", "vni": "\(ingressCreated.vni)"])
        }
        logger.info("created service", metadata: [
            "service": "\(record.name)", "id": "\(record.id.prefix(12))", "mode": "\(record.endpointMode.rawValue)",
            "vips": "\(record.virtualIPs.map(\.address.description))",
            "ports": "\(record.ports.map { "\($0.publishedPort ?? 0):\($0.targetPort)/\($0.protocol.rawValue) \($0.publishMode.rawValue)" })"])
        return ServiceCreateResponse(id: record.id)
    }

    public func listServices(filters: [String: [String]]) async throws -> [ServiceResource] {
        for key in filters.keys where !["name", "id", "label", "mode"].contains(key) {
            throw ControlError(.invalidArgument, "invalid filter '\(key)'")
        }
        let endpoints = allEndpoints()
        return state.services.values
            .filter { service in
                (filters["name"].map { names in names.contains { service.name.contains($0) } } ?? true)
                    && (filters["id"].map { ids in ids.contains { service.id.hasPrefix($0) } } ?? true)
                    && (filters["mode"].map { $0.contains("replicated") } ?? true)
                    && (filters["label"].map { labels in labels.allSatisfy { Self.matches(label: $0, service.labels) } } ?? true)
            }
            .sorted { $0.created < $1.created }
            .map { serviceResource($0, endpoints: endpoints) }
    }

    public func inspectService(_ reference: String) async throws -> ServiceResource {
        serviceResource(try state.service(reference), endpoints: allEndpoints())
    }

    public func removeService(_ reference: String) async throws {
        guard !isInSwarm else { throw ControlError.notManager }
        await watchLocalStore()
        let record = try await localStore.removeService(reference)
        // Its backends stay attached to their networks, as no one's backends.
        var next = state
        let backends = next.endpoints.values.filter { $0.node == nodeID && $0.serviceID == record.id }.map(\.id)
        for id in backends { next.endpoints[id]?.serviceID = nil }
        if !backends.isEmpty {
            try commit(next, touching: backends.map { .endpoint($0) })
            for id in backends { if let endpoint = state.endpoints[id] { publish(endpoint) } }
        }
        wakeForChange()
        logger.info("removed service", metadata: ["service": "\(record.name)", "id": "\(record.id.prefix(12))"])
    }

    // MARK: - Backends

    /// The swarm's managers marked these nodes (engine IDs) down: their
    /// endpoints leave the balancers and DNS answers in the next pass,
    /// without waiting for gossip's failure detector.
    public func setDownNodes(_ nodes: Set<String>) {
        guard nodes != downNodes else { return }
        downNodes = nodes
        logger.info("nodes marked down by the swarm", metadata: ["nodes": "\(nodes.sorted())"])
        wakeForChange()
    }

    /// Every endpoint this node knows: its own, and those gossip reports
    /// from other hosts.
    func allEndpoints() -> [EndpointRecord] {
        var all = remoteEndpoints
        for (id, endpoint) in state.endpoints where endpoint.node == nodeID { all[id] = endpoint }
        // Nodes the swarm's managers marked down serve nothing any more.
        return all.values.filter { $0.node == nodeID || !downNodes.contains($0.node) }
    }

    /// The backends of a service, on every host: the endpoints attached
    /// with its ID, on its networks and on the ingress network.
    func backends(of service: ServiceRecord, among endpoints: [EndpointRecord]) -> [EndpointRecord] {
        endpoints.filter { $0.serviceID == service.id && $0.isIngressGateway != true }
            .sorted {
                $0.networkID != $1.networkID ? $0.networkID < $1.networkID
                    : $0.address.address.bytes.lexicographicallyPrecedes($1.address.address.bytes)
            }
    }

    func serviceResource(_ record: ServiceRecord, endpoints: [EndpointRecord]) -> ServiceResource {
        let spec = ServiceSpec(
            name: record.name, labels: record.labels,
            taskTemplate: TaskSpec(
                containerSpec: ContainerSpec(image: record.image),
                networks: record.networks.map { id in
                    NetworkAttachmentConfig(target: id, driverOpts: nil)
                }),
            mode: ServiceMode(replicated: ServiceMode.Replicated(replicas: record.replicas ?? 1)),
            endpointSpec: EndpointSpec(mode: record.endpointMode.rawValue, ports: record.ports.map(Self.portConfig)))
        let vips = record.virtualIPs.map { (networkID: $0.networkID, addr: $0.address.description) }
        return ServiceResource(
            id: record.id, version: record.version, createdAt: record.created.rfc3339, updatedAt: record.updated.rfc3339,
            spec: spec, ports: record.ports.map(Self.portConfig), virtualIPs: vips,
            backends: backends(of: record, among: endpoints).map {
                ServiceBackend(endpointID: $0.id, name: $0.name, node: $0.nodeName ?? $0.node, networkID: $0.networkID,
                               address: $0.address.address.description)
            })
    }

    static func portConfig(_ port: ServicePort) -> PortConfig {
        PortConfig(name: port.name, protocol: port.protocol.rawValue, targetPort: Int(port.targetPort),
                   publishedPort: port.publishedPort.map(Int.init), publishMode: port.publishMode.rawValue)
    }
}

extension NodeDaemon {
    /// The routing mesh forwards connections from the underlay to backends
    /// through the ingress endpoint: the daemon's namespace must route.
    static func enableForwarding(logger: Logger) {
        do {
            try "1\n".write(toFile: "/proc/sys/net/ipv4/ip_forward", atomically: false, encoding: .utf8)
        } catch {
            logger.error("could not enable IPv4 forwarding; the routing mesh will not forward", metadata: ["error": "\(error)"])
        }
    }
}

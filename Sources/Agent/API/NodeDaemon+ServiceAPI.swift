import Cluster
import DockerAPI
import FoundationEssentials
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
        let (record, ingressCreated) = try await watchLocalStore().createService(
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
        let record = try await watchLocalStore().removeService(reference)
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

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

/// The Docker API's network, version and info calls, as this node serves
/// them. A network's create and removal are validated and written to the
/// cluster store, one write each; this node takes the result as every node
/// does, from the store's definitions. `connect` and `disconnect` attach a
/// workload through the one endpoint path (Endpoints/).
extension NodeDaemon: DockerBackend {
    // MARK: - Networks

    public func createNetwork(_ request: NetworkCreateRequest) async throws -> NetworkCreateResponse {
        let config = request.ipam?.config?.first
        if (request.ipam?.config?.count ?? 0) > 1 {
            throw ControlError(.invalidArgument, "swarmnet overlay networks take one IPAM config (one IPv4 subnet)")
        }
        let networkRequest = ClusterState.NetworkRequest(
            name: request.name, driver: (request.driver ?? "").isEmpty ? "overlay" : request.driver!,
            subnet: config?.subnet, gateway: config?.gateway, attachable: request.attachable ?? false,
            isInternal: request.isInternal ?? false, labels: request.labels ?? [:], options: request.options ?? [:])
        // One write of the store (the swarm's managers', in Raft, or this
        // node's own); this node takes the definition as every node does,
        // from the store, before answering.
        let store = await store()
        let record = try await store.createNetwork(networkRequest, hostRoutes: try await hostRoutesForAllocation())
        await store.synchronizeDefinitions()
        logger.info("created network", metadata: ["network": "\(record.name)", "id": "\(record.id.prefix(12))",
                                                   "subnet": "\(record.subnet)", "vni": "\(record.vni)"])
        return NetworkCreateResponse(id: record.id)
    }

    public func listNetworks(filters: [String: [String]]) async throws -> [NetworkResource] {
        for key in filters.keys where !["name", "id", "driver", "label", "scope", "type"].contains(key) {
            throw ControlError(.invalidArgument, "invalid filter '\(key)'")
        }
        await store().synchronizeDefinitions()
        // Endpoints grouped once: a resource per network filtering every
        // endpoint made `network ls` networks times endpoints.
        let local = Dictionary(grouping: state.endpoints.values.filter { $0.node == nodeID }, by: \.networkID)
        let remote = Dictionary(grouping: remoteEndpoints.values, by: \.networkID)
        return state.networks.values
            .filter { network in
                (filters["name"].map { names in names.contains { network.name.contains($0) } } ?? true)
                    && (filters["id"].map { ids in ids.contains { network.id.hasPrefix($0) } } ?? true)
                    && (filters["driver"].map { $0.contains(network.driver) } ?? true)
                    && (filters["scope"].map { $0.contains("swarm") } ?? true)
                    && (filters["label"].map { labels in labels.allSatisfy { Self.matches(label: $0, network.labels) } } ?? true)
            }
            .sorted { $0.created < $1.created }
            .map { resource($0, local: local[$0.id] ?? [], remote: remote[$0.id] ?? []) }
    }

    public func inspectNetwork(_ reference: String) async throws -> NetworkResource {
        await store().synchronizeDefinitions()
        return resource(try state.network(reference))
    }

    public func removeNetwork(_ reference: String) async throws {
        // Refused by the store while any node has an endpoint or a service
        // uses it. This node's sandbox goes at once, the others' with their
        // next definitions update; one that cannot be removed now is the
        // reconciler's to remove (it is no network's any more).
        let store = await store()
        let record = try await store.removeNetwork(reference)
        await store.synchronizeDefinitions()
        if let network = try? overlayNetwork(record) {
            try? await worker.run { [driver] in try driver.removeSandbox(network) }
        }
        logger.info("removed network", metadata: ["network": "\(record.name)", "id": "\(record.id.prefix(12))"])
    }

    public func connect(network reference: String, _ request: NetworkConnectRequest) async throws {
        let namespace: NetworkNamespace
        do {
            namespace = try NamespaceReference.resolve(request.container)
        } catch {
            throw ControlError(.invalidArgument, "\(error)")
        }
        guard namespace.exists else {
            throw ControlError(.notFound, "No such container: \(request.container) (no network namespace at \(namespace.path))")
        }
        try await attachWorkload(network: reference, namespace: namespace, name: request.container,
                                 requestedAddress: request.endpointConfig?.ipamConfig?.ipv4Address, service: request.service)
        wakeForChange() // starts watching the sandbox's events, programs the balancers
    }

    public func disconnect(network reference: String, _ request: NetworkDisconnectRequest) async throws {
        let namespacePath = (try? NamespaceReference.resolve(request.container).path) ?? request.container
        let endpoint: EndpointRecord
        do { endpoint = try state.endpoint(network: reference, container: request.container) } catch {
            endpoint = try state.endpoint(network: reference, container: namespacePath)
        }
        await detachEndpoint(endpoint)
        // A backend's ingress endpoint goes with its last service network.
        if let serviceID = endpoint.serviceID, let ingress = state.ingressNetwork, endpoint.networkID != ingress.id,
           !state.endpoints.values.contains(where: {
               $0.node == nodeID && $0.namespacePath == endpoint.namespacePath && $0.serviceID == serviceID && $0.networkID != ingress.id
           }),
           let meshEndpoint = state.endpoints.values.first(where: {
               $0.node == nodeID && $0.namespacePath == endpoint.namespacePath && $0.networkID == ingress.id && $0.isIngressGateway != true
           }) {
            await detachEndpoint(meshEndpoint)
        }
        wakeForChange()
    }

    static func matches(label filter: String, _ labels: [String: String]) -> Bool {
        let parts = filter.split(separator: "=", maxSplits: 1).map(String.init)
        return parts.count == 2 ? labels[parts[0]] == parts[1] : labels[parts[0]] != nil
    }

    func resource(_ record: NetworkRecord) -> NetworkResource {
        resource(record, local: state.endpoints.values.filter { $0.networkID == record.id && $0.node == nodeID },
                 remote: remoteEndpoints.values.filter { $0.networkID == record.id })
    }

    /// The network's resource, given its endpoints here and elsewhere.
    func resource(_ record: NetworkRecord, local: [EndpointRecord], remote: [EndpointRecord]) -> NetworkResource {
        var peers = Set(remote.map { "\($0.nodeName ?? $0.node) \($0.vtep)" })
        if !local.isEmpty { peers.insert("\(configuration.nodeName) \(configuration.dataPathAddress)") }
        return NetworkResource(
            name: record.name, id: record.id, created: record.created.rfc3339, driver: record.driver,
            ipam: IPAM(config: [IPAMConfig(subnet: record.subnet.description, gateway: record.gateway.description)]),
            isInternal: record.isInternal, attachable: record.attachable,
            containers: Dictionary(local.map {
                ($0.id, EndpointResource(name: $0.name, endpointID: $0.id, macAddress: $0.mac.description, ipv4Address: $0.address.description))
            }, uniquingKeysWith: { a, _ in a }),
            options: record.options, labels: record.labels,
            peers: peers.sorted().map { let parts = $0.split(separator: " "); return PeerInfo(name: String(parts[0]), ip: String(parts[1])) })
    }

    // MARK: - Version and info

    public func version() async -> VersionResponse {
        VersionResponse(
            platform: ["Name": "swarmnet"], version: SwarmnetVersion.current, apiVersion: DockerRouter.apiVersion,
            minAPIVersion: DockerRouter.minimumAPIVersion, gitCommit: "", goVersion: "swift6", os: "linux",
            arch: "amd64", kernelVersion: Self.kernelRelease(), buildTime: "")
    }

    public func info() async -> InfoResponse {
        InfoResponse(
            id: nodeID, name: configuration.nodeName, ncpu: ProcessInfo.processInfo.activeProcessorCount,
            memTotal: Int64(ProcessInfo.processInfo.physicalMemory), kernelVersion: Self.kernelRelease(),
            operatingSystem: "swarmnet", osType: "linux", architecture: "x86_64", serverVersion: SwarmnetVersion.current,
            containers: state.endpoints.values.filter { $0.node == nodeID }.count, images: 0, driver: "none",
            systemTime: Date().rfc3339,
            // The swarm's runtime answers for a node in a swarm (DockerRouter).
            swarm: SwarmInfo(nodeID: "", nodeAddr: "", localNodeState: "inactive", controlAvailable: false, error: "",
                             nodes: 0, managers: 0))
    }

    static func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

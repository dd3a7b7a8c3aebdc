#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Cluster
import DockerAPI
import Foundation
import Logging
import NIOPosix
import Namespaces
import Netlink
import Overlay
import Synchronization

/// One host's swarmnet: the cluster state it keeps, the Docker-shaped API it
/// serves, and the reconciler that makes the kernel match the state.
///
/// Requests change the state first (allocation, persisted), then the kernel
/// through the overlay driver on the kernel worker; a kernel failure undoes
/// the state change, so the two never disagree for long, and the reconciler
/// repairs whatever drifts anyway.
public actor NodeDaemon: DockerBackend {
    public let configuration: NodeConfiguration
    let logger: Logger
    let worker = KernelWorker()
    let driver: OverlayDriver
    let stateFile: StateFile
    let nodeID: String
    /// The daemon's identity (its endpoints' node), as the swarm knows it.
    public nonisolated var engineID: String { nodeID }
    var state: ClusterState
    /// Endpoints on other nodes, as gossip reports them.
    var remoteEndpoints: [String: EndpointRecord] = [:]
    /// Engine IDs of the nodes the swarm's managers marked down.
    var downNodes: Set<String> = []
    /// The networks and endpoints the gossip layer's network memberships
    /// were last made to follow (`refreshFromGossip`).
    var gossipFollows: (networks: [String: NetworkRecord], endpoints: [String: EndpointRecord])?
    private let wakeReconciler: AsyncStream<Void>.Continuation
    private let wakeups: AsyncStream<Void>
    /// Whether the next pass is a full resync or only a change's.
    private let passRequest = PassRequest()
    /// This node's endpoints as `state` has them, for the kernel worker.
    private let localEndpointIDs = LocalEndpointIDs()
    private let watcher: SandboxWatcher
    /// The gossip session while this node is in a swarm; nil outside one
    /// (or with --no-gossip).
    var gossip: ClusterGossip?
    /// Asks the gossip service for a session: the node entered a swarm.
    let gossipSessionRequest: AsyncStream<Void>.Continuation
    /// What the gossip service waits on (`gossipSessionRequest`).
    public nonisolated let gossipSessionRequests: AsyncStream<Void>
    /// The cluster store of this node while it is in no swarm (the same
    /// rules, over a file of its own).
    let localStore: LocalClusterStore
    /// This daemon's watch of the local store being set up, or set up:
    /// every request to the store waits for it.
    var localStoreWatch: Task<Void, Never>?
    /// In a swarm: the managers' store, which holds the cluster in Raft.
    var swarmStore: (any ClusterStore)?
    /// The revision of the store's definitions `state` holds, and the
    /// swarm's definitions that arrived before the swarm's store did.
    var definitionsRevision: UInt64?
    var pendingDefinitions: ClusterDefinitions?
    /// This host's ingress endpoint being attached (`ensureIngressGateway`).
    var ingressGatewayAttach: Task<EndpointRecord?, Error>?
    /// The swarm's gossip keys and managers, once this node is in a swarm.
    var swarmGossip: (keys: [String], managerHosts: [String], port: Int)?
    /// The load balancers opened in workload namespaces and the mesh's own.
    let balancers = BalancerRegistry()
    /// Whether this run has removed the host balancers an earlier run left
    /// and no published port needs (`sweepLeftoverHostBalancers`).
    var hostBalancersSwept = false
    /// The kernel balancer in use (`--lb-backend`, resolved at start-up).
    public nonisolated let balancerKind: BalancerKind
    /// The embedded DNS servers of local workloads.
    let dnsServers = DNSServerRegistry()
    /// Held while the daemon lives: one daemon per state directory.
    private let stateLock: StateDirectoryLock
    /// Sandboxes with this daemon's prefix that are not proven to be this
    /// node's, already logged (they are left alone, and logged once).
    private var foreignSandboxesLogged: Set<UInt32> = []
    /// Reconciler passes begun and ended (`waitForNextPass`).
    private var passesStarted = 0
    private var passesFinished = 0

    public init(configuration: NodeConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        try FileManager.default.createDirectory(atPath: configuration.stateDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        // Before anything is read or touched: a second daemon on this
        // state directory stops here.
        stateLock = try StateDirectoryLock(directory: configuration.stateDirectory)
        stateFile = StateFile(directory: configuration.stateDirectory)
        let state = try stateFile.load()
        self.state = state
        // A daemon of an earlier version kept networks, services and
        // allocations in its own state file: they seed the store once.
        localStore = try LocalClusterStore(directory: configuration.stateDirectory + "/local-store", seed: state)
        nodeID = try Self.loadNodeID(directory: configuration.stateDirectory)
        localEndpointIDs.follow(state, node: nodeID, touching: nil)
        balancerKind = try Self.resolveBalancer(configuration.loadBalancer)
        driver = OverlayDriver(
            underlay: Underlay(namespace: nil, device: configuration.underlayDevice, address: configuration.dataPathAddress),
            namePrefix: configuration.namespacePrefix, owner: nodeID)
        let (wakeups, wakeReconciler) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.wakeups = wakeups
        self.wakeReconciler = wakeReconciler
        (gossipSessionRequests, gossipSessionRequest) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        watcher = SandboxWatcher(wake: { [passRequest] in
            passRequest.requestFull()
            wakeReconciler.yield()
        })
    }

    /// A node keeps its identity across restarts. A new state directory
    /// makes a new identity; a damaged one stops the daemon: a daemon that
    /// quietly took a new identity would no longer know its own sandboxes
    /// and endpoints.
    static func loadNodeID(directory: String) throws -> String {
        let path = directory + "/node-id"
        guard FileManager.default.fileExists(atPath: path) else {
            let id = String(Identifier.make().prefix(nodeIDLength))
            try id.write(toFile: path, atomically: true, encoding: .utf8)
            return id
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw DamagedNodeID(path: path, reason: "it cannot be read") }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.utf8.count == nodeIDLength, text.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            throw DamagedNodeID(path: path, reason: "it holds \(data.count) bytes that are not a node ID (\(nodeIDLength) lowercase hex digits)")
        }
        return text
    }

    static let nodeIDLength = 25

    /// The node identity file exists but holds no identity.
    struct DamagedNodeID: Error, CustomStringConvertible {
        let path: String
        let reason: String
        var description: String {
            "node identity \(path) is damaged: \(reason). Refusing to start: with another identity this daemon would no longer know its own sandboxes and endpoints. Restore the file, or remove the whole state directory to start as a new node."
        }
    }

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

    // MARK: - Endpoints

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

    /// The cluster store requests go to: the swarm's managers', or this
    /// node's own while it is in no swarm (whose definitions this daemon
    /// takes from the first use on).
    func store() async -> any ClusterStore {
        if let swarmStore { return swarmStore }
        await watchLocalStore()
        return localStore
    }

    /// Takes the local store's definitions, from now on. The store first
    /// frees this node's allocations that no endpoint here holds (a crash
    /// between the store's write and this daemon's), before any request
    /// of this run allocates.
    func watchLocalStore() async {
        if let localStoreWatch { return await localStoreWatch.value }
        let own = Set(state.endpoints.values.filter { $0.node == nodeID }.map(\.id))
        let watch = Task { [localStore, nodeID, logger] in
            do {
                try await localStore.watch(keeping: own, of: nodeID) { [weak self] update in await self?.applyLocalDefinitions(update) ?? true }
            } catch {
                logger.error("could not free the local store's orphaned allocations", metadata: ["error": "\(error)"])
            }
        }
        localStoreWatch = watch
        await watch.value
    }

    /// A network by name or ID. One this node does not know yet (created
    /// a moment ago, on a manager; a worker learns definitions with its
    /// next heartbeat) is asked of the swarm's managers first.
    func knownNetwork(_ reference: String) async throws -> NetworkRecord {
        if (try? state.network(reference)) == nil { await store().synchronizeDefinitions() }
        return try state.network(reference)
    }

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

    // MARK: - State

    /// Makes `next` the state, on disk first. `touching` names every
    /// record the change can have touched, where the caller knows them
    /// (see `StateFile.save`).
    func commit(_ next: ClusterState, touching records: [RecordReference]? = nil) throws {
        try stateFile.save(next, touching: records)
        state = next
        localEndpointIDs.follow(next, node: nodeID, touching: records)
    }

    func overlayNetwork(_ record: NetworkRecord) throws -> OverlayNetwork {
        do {
            return try OverlayNetwork(id: record.id, vni: record.vni, subnet: record.subnet, gateway: record.gateway,
                                      port: configuration.vxlanPort, underlayMTU: configuration.underlayMTU)
        } catch {
            throw ControlError(.internal, "\(error)")
        }
    }

    /// IPv4 routes of the host (the daemon's own namespace), which a network
    /// may not overlap.
    static func hostRoutes() throws -> [IPPrefix] {
        try RouteNetlink().routes(family: AF_INET, table: nil).compactMap { route in
            guard let destination = route.destination, route.type == 1 /* RTN_UNICAST */ else { return nil }
            return destination
        }
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

    // MARK: - Reconciler

    /// Asks for a full pass soon: every sandbox, endpoint and balancer
    /// compared with the kernel (the timer, netlink delete events, a failed
    /// change).
    public nonisolated func wake() {
        passRequest.requestFull()
        wakeReconciler.yield()
    }

    /// Asks for a change's pass soon: the balancers and DNS tables whose
    /// desired state changed, and the sandbox watchers. The change itself
    /// (an endpoint's veth, a network's peers) was made by its request.
    public nonisolated func wakeForChange() { wakeReconciler.yield() }

    /// Returns once a pass that started after this call has finished (or
    /// after `timeout`): a task's namespace then has its DNS server and
    /// balancers before its process starts.
    func waitForNextPass(timeout: Duration = .seconds(5)) async {
        let target = passesStarted + 1
        wakeForChange()
        let deadline = ContinuousClock.now + timeout
        while passesFinished < target, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Runs the reconciler: now, on every wake-up and every interval, until cancelled.
    public func runReconciler() async {
        await watchLocalStore()
        if configuration.embeddedDNS { Self.removeOrphanResolvConfs() }
        await reconcileOnce()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [configuration, self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: configuration.reconcileInterval)
                    wake() // the periodic resync is a full pass
                }
            }
            // Health probes ride a change's pass, on a timer of their own:
            // the full resync can then be rare (its cost grows with the
            // workloads) without slowing the probes down.
            group.addTask { [configuration, self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: configuration.healthInterval)
                    if await hasHealthChecks() { wakeForChange() }
                }
            }
            for await _ in wakeups {
                if Task.isCancelled { break }
                passesStarted += 1
                await reconcileOnce(full: passRequest.takeFull())
                passesFinished = passesStarted
            }
            group.cancelAll()
        }
    }

    /// One pass: every network with local endpoints gets its sandbox, its
    /// endpoints' veths and exactly the peers it should have; sandboxes no
    /// network needs (left by a crash, or a removed network) are removed;
    /// endpoints whose workload namespace has gone are forgotten. A
    /// change's pass (`full` false) leaves the overlay to the request that
    /// made the change and reconciles only the balancers and DNS tables
    /// whose desired state moved.
    @discardableResult
    public func reconcileOnce(full: Bool = true) async -> ReconcileReport {
        // The safety net under the per-event gossip path: the whole view again.
        if full { refreshFromGossip() }
        let local = state.endpoints.values.filter { $0.node == nodeID }
        var plan: [(OverlayNetwork, [EndpointRecord], [Peer])] = []
        for record in state.networks.values {
            let endpoints = local.filter { $0.networkID == record.id }
            guard !endpoints.isEmpty, let network = try? overlayNetwork(record) else { continue }
            plan.append((network, endpoints, peers(of: record.id)))
        }
        let wanted = Set(plan.map(\.0.vni))
        let wantedSandboxes = Set(plan.compactMap { try? driver.sandbox(for: $0.0).name })
        // Unwatch first: a watched namespace would outlive its removal.
        watcher.retain(only: wantedSandboxes)
        defer { watcher.watch(wantedSandboxes) }
        var outcome = ReconcileReport()
        if full {
            // Each network in a turn of the kernel worker of its own: a
            // request (an attach) waits for one network's repair, not for
            // the whole pass's (the balancers take turns the same way).
            do {
                outcome = try await worker.run { [driver] in try Self.removeUnwantedSandboxes(keeping: wanted, driver: driver) }
                let planned = Set(local.map(\.id))
                for (network, endpoints, peers) in plan {
                    let part = try await worker.run { [driver, localEndpointIDs] in
                        Self.reconcileOverlay(network, endpoints: endpoints, peers: peers, planned: planned, live: localEndpointIDs.current(),
                                              driver: driver)
                    }
                    outcome.add(part)
                }
            } catch {
                logger.error("reconcile failed", metadata: ["error": "\(error)"])
                return ReconcileReport(errors: ["\(error)"])
            }
        }
        for foreign in outcome.foreignSandboxes where !foreignSandboxesLogged.contains(foreign.vni) {
            foreignSandboxesLogged.insert(foreign.vni)
            logger.warning("leaving a sandbox that is not proven to be this node's", metadata: [
                "sandbox": "\(configuration.namespacePrefix)ov-\(foreign.vni)",
                "owner": "\(foreign.owner ?? "none marked")", "node": "\(nodeID)"])
        }
        if !outcome.staleEndpoints.isEmpty {
            var next = state
            for id in outcome.staleEndpoints { next.endpoints[id] = nil }
            try? commit(next)
            for id in outcome.staleEndpoints {
                guard let gone = local.first(where: { $0.id == id }) else { continue }
                let last = !state.endpoints.values.contains { $0.networkID == gone.networkID && $0.node == nodeID }
                try? gossip?.withdraw(endpoint: gone, lastOnNetwork: last)
                await releaseAllocation(id)
            }
        }
        outcome.errors += await reconcileBalancing(full: full)
        if outcome.changed || !outcome.errors.isEmpty {
            logger.notice("reconciled", metadata: [
                "sandboxesRepaired": "\(outcome.sandboxesRepaired)", "sandboxesRemoved": "\(outcome.sandboxesRemoved)", "endpointsRepaired": "\(outcome.endpointsRepaired)", "endpointsRemoved": "\(outcome.endpointsRemoved)",
                "staleEndpoints": "\(outcome.staleEndpoints.count)", "peerEntriesAdded": "\(outcome.peerEntriesAdded)",
                "peerEntriesRemoved": "\(outcome.peerEntriesRemoved)", "errors": "\(outcome.errors)"])
        }
        return outcome
    }

    /// The first turn of a full pass's overlay part, on the kernel worker:
    /// sandboxes no network wants and that are this node's go.
    private static func removeUnwantedSandboxes(keeping wanted: Set<UInt32>, driver: OverlayDriver) throws -> ReconcileReport {
        var report = ReconcileReport()
        for vni in try driver.existingSandboxVNIs() where !wanted.contains(vni) {
            // Only what is proven to be this node's goes: a sandbox
            // of another identity (a fresh --state-dir with the same
            // prefix) still serves its workloads.
            let owner = try driver.sandboxOwner(vni: vni)
            guard owner == driver.owner else {
                report.foreignSandboxes.append(ForeignSandbox(vni: vni, owner: owner))
                continue
            }
            try driver.removeSandbox(vni: vni)
            report.sandboxesRemoved += 1
        }
        return report
    }

    /// One network's turn of a full pass, on the kernel worker: its
    /// sandbox, endpoint veths and peers are made to match the plan. The
    /// plan was made when the pass began, and requests ran between the
    /// turns since: `live` (this node's endpoints as they are now, against
    /// the `planned` ones) keeps the turn from removing the veth of an
    /// endpoint attached meanwhile, or putting back one detached meanwhile.
    private static func reconcileOverlay(_ network: OverlayNetwork, endpoints: [EndpointRecord], peers: [Peer], planned: Set<String>,
                                         live: Set<String>, driver: OverlayDriver) -> ReconcileReport {
        var report = ReconcileReport()
        // Every endpoint it had here left since (and the network may be
        // gone too): its sandbox is not made again; the next pass removes it.
        guard endpoints.contains(where: { live.contains($0.id) }) else { return report }
        do {
            if try driver.ensureSandbox(network) { report.sandboxesRepaired += 1 }
            let present = try driver.endpointInterfaces(on: network)
            for endpoint in endpoints where live.contains(endpoint.id) {
                let workload = NetworkNamespace.path(endpoint.namespacePath)
                guard workload.exists else {
                    try driver.detach(endpointID: endpoint.id, from: network)
                    report.staleEndpoints.append(endpoint.id)
                    continue
                }
                if !present.contains(OverlayDriver.hostInterfaceName(endpointID: endpoint.id)) {
                    try driver.attach(EndpointSpec(id: endpoint.id, workload: workload, address: endpoint.address,
                                                   mac: endpoint.mac, interfaceName: endpoint.workloadInterface,
                                                   defaultRoute: endpoint.isIngressGateway != true), to: network)
                    report.endpointsRepaired += 1
                }
            }
            let keeping = endpoints.map(\.id).filter(live.contains) + live.subtracting(planned)
            report.endpointsRemoved += try driver.removeStrayEndpoints(keeping: keeping, on: network, present: present)
            let sync = try driver.syncPeers(peers, on: network)
            report.peerEntriesAdded += sync.added
            report.peerEntriesRemoved += sync.removed
        } catch {
            report.errors.append("network \(network.id.prefix(12)): \(error)")
        }
        return report
    }

    public func shutdown() async {
        await stopAllDNS()
        watcher.stopAll()
        try? await worker.shutdown()
    }
}

/// What one reconciler pass repaired.
public struct ReconcileReport: Sendable, Equatable {
    /// Sandboxes made or repaired (a missing vxlan device, bridge, address...).
    public var sandboxesRepaired = 0
    public var sandboxesRemoved = 0
    public var endpointsRepaired = 0
    /// Endpoint veths that no endpoint record owns, removed.
    public var endpointsRemoved = 0
    public var staleEndpoints: [String] = []
    public var peerEntriesAdded = 0
    public var peerEntriesRemoved = 0
    /// Sandboxes with this daemon's prefix that no network wants but that
    /// are not this node's: left alone.
    public var foreignSandboxes: [ForeignSandbox] = []
    public var errors: [String] = []

    public var changed: Bool {
        sandboxesRepaired + sandboxesRemoved + endpointsRepaired + endpointsRemoved + staleEndpoints.count + peerEntriesAdded + peerEntriesRemoved > 0
    }

    /// Adds another turn's report to this one.
    mutating func add(_ other: ReconcileReport) {
        sandboxesRepaired += other.sandboxesRepaired
        sandboxesRemoved += other.sandboxesRemoved
        endpointsRepaired += other.endpointsRepaired
        endpointsRemoved += other.endpointsRemoved
        staleEndpoints += other.staleEndpoints
        peerEntriesAdded += other.peerEntriesAdded
        peerEntriesRemoved += other.peerEntriesRemoved
        foreignSandboxes += other.foreignSandboxes
        errors += other.errors
    }
}

/// The IDs of this node's endpoints, as the daemon's state has them after
/// each commit; read by full-pass turns on the kernel worker's thread.
final class LocalEndpointIDs: Sendable {
    private let ids = Mutex<Set<String>>([])
    /// After a commit: only the endpoints it names (the state file's own
    /// account of what changed), or all of them when it names none.
    func follow(_ state: ClusterState, node: String, touching records: [RecordReference]?) {
        guard let records else {
            let local = Set(state.endpoints.values.lazy.filter { $0.node == node }.map(\.id))
            ids.withLock { $0 = local }
            return
        }
        ids.withLock { ids in
            for case .endpoint(let id) in records {
                if state.endpoints[id]?.node == node { ids.insert(id) } else { ids.remove(id) }
            }
        }
    }
    func current() -> Set<String> { ids.withLock { $0 } }
}

/// Which pass the reconciler runs next: a full one once any caller asked
/// for it since the last pass, else a change's.
final class PassRequest: Sendable {
    private let full = Mutex(true)
    func requestFull() { full.withLock { $0 = true } }
    /// Whether a full pass was asked for; the request is consumed.
    func takeFull() -> Bool { full.withLock { value in defer { value = false }; return value } }
}

/// A sandbox another node identity marked (or none did).
public struct ForeignSandbox: Sendable, Equatable {
    public var vni: UInt32
    public var owner: String?
}

/// swarmnet's version, shown by `/version` and `/info`.
public enum SwarmnetVersion {
    public static let current = "0.1.0"
}

#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Cluster
import DockerAPI
import FoundationEssentials
import SystemBasics
import Logging
import NIOPosix
import Namespaces
import Netlink
import Overlay
import Synchronization

/// One host's node agent: the desired state of this node's data plane, and
/// what makes the kernel match it. Data flows one way, as the folders of
/// this module are laid out:
///
/// - `API/`: the Docker API's calls this node serves validate a request and
///   write it to the cluster store (networks, addresses, network-only
///   services), or change this node's own endpoints;
/// - `Store/`: the store (the swarm's managers', or this node's own in no
///   swarm) hands back its definitions, which `state` keeps;
/// - `Gossip/`: the other hosts' endpoints arrive as gossip changes;
/// - `Endpoints/`, `Tasks/`: workloads attached to networks (a veth, an
///   address), for `network connect` and for tasks;
/// - `Reconciler/`: each change applied as it comes, and a periodic full
///   pass that repairs whatever drifted. It never writes cluster state.
///
/// A request changes the state first (persisted), then the kernel through
/// the overlay driver on the kernel worker; a kernel failure undoes the
/// state change, so the two never disagree for long.
public actor NodeDaemon {
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
    let wakeReconciler: AsyncStream<Void>.Continuation
    let wakeups: AsyncStream<Void>
    /// Whether the next pass is a full resync or only a change's.
    let passRequest = PassRequest()
    /// This node's endpoints as `state` has them, for the kernel worker.
    let localEndpointIDs = LocalEndpointIDs()
    let watcher: SandboxWatcher
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
    var foreignSandboxesLogged: Set<UInt32> = []
    /// Reconciler passes begun and ended (`waitForNextPass`).
    var passesStarted = 0
    var passesFinished = 0

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
        let text = String(decoding: data, as: UTF8.self).trimmed()
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

    /// Runs a blocking call (a probe, an image's file work) off Swift's
    /// cooperative pool.
    static func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(work)
    }

    /// IPv4 routes of the host (the daemon's own namespace), which a network
    /// may not overlap.
    static func hostRoutes() throws -> [IPPrefix] {
        try RouteNetlink().routes(family: AF_INET, table: nil).compactMap { route in
            guard let destination = route.destination, route.type == 1 /* RTN_UNICAST */ else { return nil }
            return destination
        }
    }
}

/// swarmnet's version, shown by `/version` and `/info`.
public enum SwarmnetVersion {
    public static let current = "0.1.0"
}

import Addressing
import FoundationEssentials

/// What a node asks the cluster's allocator for when it attaches an
/// endpoint: the allocator holds every network's allocations, so addresses
/// are unique across the cluster.
public struct AllocationRequest: Codable, Sendable {
    public var endpointID: String
    public var network: String
    public var node: String
    public var nodeName: String
    public var namespacePath: String
    public var name: String
    public var requestedAddress: String?
    public var vtep: IPAddress
    /// The service the endpoint is a backend of.
    public var serviceID: String?
    /// The node's own endpoint on the ingress network.
    public var isIngressGateway: Bool?

    public init(endpointID: String, network: String, node: String, nodeName: String, namespacePath: String, name: String,
                requestedAddress: String?, vtep: IPAddress, serviceID: String?, isIngressGateway: Bool?) {
        self.endpointID = endpointID
        self.network = network
        self.node = node
        self.nodeName = nodeName
        self.namespacePath = namespacePath
        self.name = name
        self.requestedAddress = requestedAddress
        self.vtep = vtep
        self.serviceID = serviceID
        self.isIngressGateway = isIngressGateway
    }
}

/// The cluster store, as the node agent and the API's handlers use it:
/// one write per request (networks, endpoint addresses), and the
/// definitions every node's data plane takes from it. Two implementations:
/// the swarm's managers' (`SwarmClusterStore`, over Raft) and a node's own
/// while it is in no swarm (`LocalClusterStore`). Both run the same rules
/// (`ClusterState`); errors are `ControlError` and `ClusterError`, which
/// only the API edge maps to HTTP statuses.
public protocol ClusterStore: Sendable {
    /// Validates and allocates a network (subnet, gateway, VNI). `hostRoutes`
    /// are the asking host's routes, which the subnet may not overlap.
    func createNetwork(_ request: ClusterState.NetworkRequest, hostRoutes: [IPPrefix]) async throws -> NetworkRecord
    /// Removes a network no endpoint and no service uses any more.
    func removeNetwork(_ reference: String) async throws -> NetworkRecord
    /// Allocates an endpoint's address for the node the request names.
    func allocate(_ request: AllocationRequest) async throws -> EndpointRecord
    /// Frees an endpoint's address; only its own node may.
    func release(endpointID: String, node: String) async throws
    /// Brings this node's definitions up to what the cluster has committed
    /// (before a read: a manager answers with every write acknowledged
    /// anywhere); nothing where definitions come by heartbeat.
    func synchronizeDefinitions() async
}

/// The cluster-wide definitions every node's data plane needs (networks,
/// and services with their VIPs and ports), as of one revision of the
/// swarm's store. Endpoints are not in it: each node knows its own, and
/// learns the others' through gossip.
public struct ClusterDefinitions: Codable, Sendable, Equatable {
    public var revision: UInt64
    public var networks: [NetworkRecord]
    public var services: [ServiceRecord]

    public init(revision: UInt64, networks: [NetworkRecord], services: [ServiceRecord]) {
        self.revision = revision
        self.networks = networks
        self.services = services
    }
}

/// What a node's daemon is handed of the swarm's definitions: all of them
/// (a worker's heartbeat answer, a manager's first), or only what changed
/// since the revision it was handed last (a manager, per write: handing
/// over every network made each write cost more with each network).
public enum DefinitionsUpdate: Sendable {
    case all(ClusterDefinitions)
    /// The records changed between `base` and `revision`: a nil record was
    /// removed.
    case changes(base: UInt64, revision: UInt64, networks: [String: NetworkRecord?], services: [String: ServiceRecord?])
}

extension ClusterState {
    /// Records an endpoint for an allocation request; the same request
    /// again (a retry after a lost answer) gets the same endpoint.
    public mutating func addEndpointRecord(_ request: AllocationRequest) throws -> EndpointRecord {
        if let existing = endpoints[request.endpointID] {
            guard existing.node == request.node else {
                throw ClusterError.forbidden("endpoint \(request.endpointID) belongs to node \(existing.node)")
            }
            return existing
        }
        return try addEndpoint(
            id: request.endpointID, network: request.network, node: request.node, namespacePath: request.namespacePath,
            name: request.name, requestedAddress: request.requestedAddress, vtep: request.vtep, nodeName: request.nodeName,
            serviceID: request.serviceID, isIngressGateway: request.isIngressGateway == true)
    }

    /// Forgets an endpoint's allocation, for the node that owns it. An
    /// endpoint already gone is not an error (a release may be retried).
    public mutating func releaseEndpoint(_ id: String, node: String) throws {
        guard let record = endpoints[id] else { return }
        guard record.node == node else {
            throw ClusterError.forbidden("endpoint \(id) belongs to node \(record.node), not to node \(node)")
        }
        endpoints[id] = nil
    }

    /// Forgets every allocation of a node that left the cluster for good;
    /// returns how many there were.
    @discardableResult
    public mutating func releaseEndpoints(ofNode node: String) -> Int {
        let gone = endpoints.values.filter { $0.node == node }.map(\.id)
        for id in gone { endpoints[id] = nil }
        return gone.count
    }

    /// The definitions of this state, for the nodes' data planes.
    public func definitions(revision: UInt64) -> ClusterDefinitions {
        ClusterDefinitions(
            revision: revision, networks: networks.values.sorted { $0.id < $1.id }, services: services.values.sorted { $0.id < $1.id })
    }
}

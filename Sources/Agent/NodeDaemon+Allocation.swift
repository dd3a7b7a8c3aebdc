import Addressing
import Cluster
import DockerAPI
import Foundation
import NIOHTTP1
import NIOPosix

/// Endpoint address allocation. In a swarm the managers allocate, in Raft
/// (`allocator`); before a swarm the node started without `--worker`
/// allocates for every node and workers ask it over the cluster API (see
/// ClusterAPI).
extension NodeDaemon {
    /// The manager's side: allocates an endpoint for a worker and keeps the
    /// allocation (so the address stays taken, and the network cannot be
    /// removed while the endpoint exists).
    public func allocate(for request: AllocationRequest) throws -> EndpointRecord {
        guard configuration.isManager, allocator == nil else { throw APIError(.serviceUnavailable, "this node is not a manager") }
        var next = state
        if let existing = next.endpoints[request.endpointID] { return existing }
        let record = try Self.mapping { try next.addEndpointRecord(request) }
        try commit(next)
        logger.info("allocated endpoint for a worker", metadata: ["node": "\(request.nodeName)", "address": "\(record.address)"])
        return record
    }

    /// The manager's side: forgets a worker's endpoint allocation.
    public func release(endpointID: String) throws {
        guard let record = state.endpoints[endpointID] else { return }
        guard record.node != nodeID else {
            throw APIError(.forbidden, "endpoint \(endpointID) is attached on the manager itself")
        }
        var next = state
        next.endpoints[endpointID] = nil
        try commit(next)
    }

    /// The worker's side: asks the manager (found through gossip) to allocate.
    func askManager(_ request: AllocationRequest) async throws -> EndpointRecord {
        guard let manager = gossip?.managerAddresses().first else {
            throw APIError(.serviceUnavailable, "no manager is reachable to allocate an address (is the node joined to the cluster?)")
        }
        let (status, answer) = try await exchange(with: manager, "POST", "/swarmnet/cluster/endpoints",
                                                  body: try JSONEncoder.iso8601.encode(request))
        guard status == 201 else {
            let message = (try? JSONDecoder().decode(ErrorResponse.self, from: answer))?.message ?? "status \(status)"
            throw APIError(HTTPResponseStatus(statusCode: status), "manager \(manager): \(message)")
        }
        return try JSONDecoder.iso8601.decode(EndpointRecord.self, from: answer)
    }

    /// The worker's side: tells the manager an endpoint is gone. Best effort:
    /// a manager that cannot be reached keeps the allocation.
    func releaseAtManager(_ endpointID: String) async {
        guard let manager = gossip?.managerAddresses().first else { return }
        do {
            _ = try await exchange(with: manager, "DELETE", "/swarmnet/cluster/endpoints/\(endpointID)")
        } catch {
            logger.warning("could not release an address at the manager", metadata: ["manager": "\(manager)", "error": "\(error)"])
        }
    }

    /// Frees an endpoint's address wherever it was allocated: at the
    /// swarm's managers, at the pre-swarm manager, or here (nothing to do:
    /// the record is gone). Best effort: an allocation that cannot be
    /// released now is logged, and a removed node's are freed with it.
    func releaseAllocation(_ endpointID: String) async {
        if let allocator {
            do { try await allocator.release(endpointID: endpointID, node: nodeID) } catch {
                logger.warning("could not release an address at the swarm's managers", metadata: ["endpoint": "\(endpointID.prefix(12))", "error": "\(error)"])
            }
        } else if !configuration.isManager {
            await releaseAtManager(endpointID)
        }
    }

    /// This host's IPv4 routes, which a new network's subnet may not
    /// overlap (read on the kernel worker).
    public func hostRoutesForAllocation() async throws -> [IPPrefix] {
        try await worker.run { try Self.hostRoutes() }
    }

    // MARK: - In a swarm

    /// Entering a swarm (an allocator) or leaving it (nil). In a swarm the
    /// managers hold every allocation, so this node keeps only its own
    /// endpoints; the copies of other nodes' it held as the pre-swarm
    /// allocator are theirs to report through gossip.
    public func setClusterAllocator(_ allocator: (any ClusterAllocator)?) {
        self.allocator = allocator
        definitionsRevision = nil
        guard allocator != nil else {
            pendingDefinitions = nil
            return
        }
        if state.endpoints.values.contains(where: { $0.node != nodeID }) {
            var next = state
            next.endpoints = next.endpoints.filter { $0.value.node == nodeID }
            do { try commit(next) } catch {
                logger.error("could not drop other nodes' endpoint copies", metadata: ["error": "\(error)"])
            }
        }
        if let pending = pendingDefinitions {
            pendingDefinitions = nil
            applyDefinitions(.all(pending))
        }
    }

    /// The swarm's networks and services (with their VIPs and ports), as
    /// the managers' store has them: they replace this node's copies. A
    /// network missing from them that still has an endpoint here is kept
    /// until the endpoint goes (a definition can arrive later than a
    /// task's detach). Returns false for a change this daemon cannot take
    /// (it is not at the change's base): the caller then sends them all.
    @discardableResult
    public func applyDefinitions(_ update: DefinitionsUpdate) -> Bool {
        switch update {
        case .all(let definitions):
            // The swarm runtime's loops may deliver them before it has told
            // this daemon it is in a swarm: kept for that moment (the
            // runtime sends a revision once).
            guard allocator != nil else {
                pendingDefinitions = definitions
                return true
            }
            guard definitions.revision != definitionsRevision else { return true }
            if let current = definitionsRevision, definitions.revision < current { return true } // an older answer, overtaken
            let networks = Dictionary(definitions.networks.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            let services = Dictionary(definitions.services.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            // Every network and service, those here and those in the
            // definitions: any may have changed.
            var changedNetworks: [String: NetworkRecord?] = networks
            for id in state.networks.keys where networks[id] == nil { changedNetworks[id] = .some(nil) }
            var changedServices: [String: ServiceRecord?] = services
            for id in state.services.keys where services[id] == nil { changedServices[id] = .some(nil) }
            apply(revision: definitions.revision, networks: changedNetworks, services: changedServices)
            return true
        case .changes(let base, let revision, let networks, let services):
            guard allocator != nil, definitionsRevision == base else { return false }
            apply(revision: revision, networks: networks, services: services)
            return true
        }
    }

    /// Puts (or removes, for nil) the given networks and services, and
    /// records on disk and wakes the reconciler for those that differ.
    private func apply(revision: UInt64, networks: [String: NetworkRecord?], services: [String: ServiceRecord?]) {
        definitionsRevision = revision
        var next = state
        var touched: [RecordReference] = []
        var localNetworkChanged = false
        // Read once, and only when a network changed.
        var localNetworks: Set<String>?
        for (id, record) in networks where state.networks[id] != record {
            if localNetworks == nil {
                localNetworks = Set(state.endpoints.values.lazy.filter { $0.node == self.nodeID }.map(\.networkID))
            }
            let local = localNetworks!.contains(id)
            // A network gone from the swarm is kept while an endpoint here uses it.
            if record == nil, local { continue }
            next.networks[id] = record
            touched.append(.network(id))
            localNetworkChanged = localNetworkChanged || local || record == nil
        }
        for (id, record) in services where state.services[id] != record {
            next.services[id] = record
            touched.append(.service(id))
        }
        guard !touched.isEmpty else { return }
        do { try commit(next, touching: touched) } catch {
            logger.error("could not record the swarm's definitions", metadata: ["error": "\(error)"])
            definitionsRevision = nil
            return
        }
        // A full pass where this node's sandboxes may need it: a network
        // with endpoints here changed, or one went (its sandbox, if any, is
        // removed). A network new to the swarm needs nothing here until an
        // endpoint joins it, and a service a change's pass.
        if localNetworkChanged { wake() } else { wakeForChange() }
    }

    /// Whether the swarm's managers allocate for this node.
    public var isInSwarm: Bool { allocator != nil }

    /// What `swarm init` makes the swarm's first allocations.
    public func clusterStateForSeeding() -> ClusterState { state }

    /// In a swarm, requests to the manager go through this (TLS with the
    /// node's certificate): method, HOST:PORT, path, body → status, body.
    public typealias SecureClusterTransport = @Sendable (String, String, String, [UInt8]?) async throws -> (Int, [UInt8])

    public func setSecureClusterTransport(_ transport: SecureClusterTransport?) {
        secureClusterTransport = transport
    }

    /// One request to the manager's cluster API: in a swarm over TLS with
    /// this node's certificate, before one over plain TCP.
    func exchange(with manager: String, _ method: String, _ path: String, body: Data? = nil) async throws -> (Int, Data) {
        if let secure = secureClusterTransport {
            let (status, answer) = try await secure(method, manager, path, body.map(Array.init))
            return (status, Data(answer))
        }
        guard let client = Self.client(for: manager) else {
            throw APIError(.serviceUnavailable, "the manager's address \(manager) is not HOST:PORT")
        }
        let response = try await Self.blocking { try client.request(method, path, body: body) }
        return (response.status, response.body)
    }

    static func client(for address: String) -> UnixHTTPClient? {
        let parts = address.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { return nil }
        return UnixHTTPClient(host: String(parts[0]), port: port)
    }

    /// Runs a blocking call (a socket exchange) off Swift's cooperative pool.
    static func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(work)
    }

}

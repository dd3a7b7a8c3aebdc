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
            applyDefinitions(pending)
        }
    }

    /// The swarm's networks and services (with their VIPs and ports), as
    /// the managers' store has them: they replace this node's copies. A
    /// network missing from them that still has an endpoint here is kept
    /// until the endpoint goes (a definition can arrive later than a
    /// task's detach).
    public func applyDefinitions(_ definitions: ClusterDefinitions) {
        // The swarm runtime's loops may deliver them before it has told
        // this daemon it is in a swarm: kept for that moment (the runtime
        // sends a revision once).
        guard allocator != nil else {
            pendingDefinitions = definitions
            return
        }
        guard definitions.revision != definitionsRevision else { return }
        if let current = definitionsRevision, definitions.revision < current { return } // an older answer, overtaken
        definitionsRevision = definitions.revision
        var next = state
        let localNetworks = Set(state.endpoints.values.filter { $0.node == nodeID }.map(\.networkID))
        var networks = Dictionary(definitions.networks.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for id in localNetworks where networks[id] == nil {
            if let kept = state.networks[id] { networks[id] = kept }
        }
        next.networks = networks
        next.services = Dictionary(definitions.services.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        guard next != state else { return }
        let networksChanged = next.networks != state.networks
        do { try commit(next) } catch {
            logger.error("could not record the swarm's definitions", metadata: ["error": "\(error)"])
            definitionsRevision = nil
            return
        }
        if networksChanged { wake() } else { wakeForChange() }
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

import Cluster
import DockerAPI
import Foundation
import NIOHTTP1
import NIOPosix

/// Endpoint address allocation: the manager allocates for every node;
/// workers ask it over the cluster API (see ClusterAPI).
extension NodeDaemon {
    /// The manager's side: allocates an endpoint for a worker and keeps the
    /// allocation (so the address stays taken, and the network cannot be
    /// removed while the endpoint exists).
    public func allocate(for request: AllocationRequest) throws -> EndpointRecord {
        guard configuration.isManager else { throw APIError(.serviceUnavailable, "this node is not a manager") }
        var next = state
        if let existing = next.endpoints[request.endpointID] { return existing }
        let record = try Self.mapping { try next.addEndpointRecord(request) }
        try commit(next)
        logger.info("allocated endpoint for a worker", metadata: ["node": "\(request.nodeName)", "address": "\(record.address)"])
        return record
    }

    /// The manager's side: forgets a worker's endpoint allocation.
    public func release(endpointID: String, caller: String? = nil) throws {
        guard let record = state.endpoints[endpointID] else { return }
        guard record.node != nodeID else {
            throw APIError(.forbidden, "endpoint \(endpointID) is attached on the manager itself")
        }
        if let caller, record.node != caller {
            throw APIError(.forbidden, "endpoint \(endpointID) belongs to node \(record.node), not to node \(caller)")
        }
        var next = state
        next.endpoints[endpointID] = nil
        try commit(next)
    }

    /// The manager's side: a node left the swarm for good (`docker node
    /// rm`): the addresses allocated to it are free again. Nothing happens
    /// on a daemon that does not allocate.
    public func releaseAllocations(ofNode node: String) {
        guard configuration.isManager, node != nodeID else { return }
        let gone = state.endpoints.values.filter { $0.node == node }
        guard !gone.isEmpty else { return }
        var next = state
        for endpoint in gone { next.endpoints[endpoint.id] = nil }
        do {
            try commit(next)
            logger.info("released the addresses of a removed node", metadata: ["node": "\(node)", "endpoints": "\(gone.count)"])
        } catch {
            logger.error("could not release a removed node's addresses", metadata: ["node": "\(node)", "error": "\(error)"])
        }
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

import Addressing
import Cluster
import DockerAPI
import Foundation
import NIOCore
import NIOHTTP1

/// What a worker asks the manager for when it attaches an endpoint: the
/// manager holds every network's allocations, so addresses are unique across
/// the cluster (the job Raft-replicated manager state takes over later).
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
}

/// The manager's cluster API on TCP (port 2377, Swarm's cluster management
/// port): endpoint address allocation for workers.
///
///   POST   /swarmnet/cluster/endpoints        AllocationRequest → EndpointRecord (201)
///   DELETE /swarmnet/cluster/endpoints/{id}   release (204)
///
/// In a swarm it is served on the manager endpoint, over TLS, to nodes
/// whose certificate verified: `caller` is the engine ID of the node the
/// certificate names, and a node allocates and releases only its own
/// endpoints. Before a swarm it is served on plain TCP to anyone (`caller`
/// nil), as it always was.
public struct ClusterAPI: Sendable {
    public let daemon: NodeDaemon

    public init(daemon: NodeDaemon) {
        self.daemon = daemon
    }

    public func handle(_ request: HTTPRequest, caller: String? = nil) async -> HTTPResponse {
        let segments = request.uri.split(separator: "?").first.map { $0.split(separator: "/").map(String.init) } ?? []
        do {
            switch (request.method, segments.count) {
            case (.POST, 3) where segments == ["swarmnet", "cluster", "endpoints"]:
                let allocation = try DockerRouter.decode(AllocationRequest.self, request.body)
                if let caller, allocation.node != caller {
                    throw APIError(.forbidden, "node \(caller) may allocate only for itself, not for node \(allocation.node)")
                }
                return try DockerRouter.json(.created, await daemon.allocate(for: allocation))
            case (.DELETE, 4) where Array(segments.prefix(3)) == ["swarmnet", "cluster", "endpoints"]:
                try await daemon.release(endpointID: segments[3], caller: caller)
                return HTTPResponse(status: .noContent)
            default:
                throw APIError(.notFound, "page not found")
            }
        } catch let error as APIError {
            return DockerRouter.error(error)
        } catch {
            return DockerRouter.error(APIError(.badRequest, "\(error)"))
        }
    }
}

extension ClusterState {
    /// Records an endpoint for an allocation request (on the manager).
    mutating func addEndpointRecord(_ request: AllocationRequest) throws -> EndpointRecord {
        try addEndpoint(
            id: request.endpointID, network: request.network, node: request.node, namespacePath: request.namespacePath,
            name: request.name, requestedAddress: request.requestedAddress, vtep: request.vtep, nodeName: request.nodeName,
            serviceID: request.serviceID, isIngressGateway: request.isIngressGateway == true)
    }
}

extension JSONEncoder {
    /// JSON with ISO 8601 dates, as the cluster's records are exchanged.
    static var iso8601: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }
}

extension JSONDecoder {
    static var iso8601: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

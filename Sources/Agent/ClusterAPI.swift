import Addressing
import Cluster
import DockerAPI
import Foundation
import NIOCore
import NIOHTTP1

/// The pre-swarm manager's cluster API on TCP (port 2377, Swarm's cluster
/// management port): endpoint address allocation for workers.
///
///   POST   /swarmnet/cluster/endpoints        AllocationRequest → EndpointRecord (201)
///   DELETE /swarmnet/cluster/endpoints/{id}   release (204)
///
/// It stops when the node enters a swarm: the managers then serve the same
/// routes on their mutual-TLS endpoint, from Raft, to each node for its own
/// endpoints only (`SwarmRuntime+Allocation`).
public struct ClusterAPI: Sendable {
    public let daemon: NodeDaemon

    public init(daemon: NodeDaemon) {
        self.daemon = daemon
    }

    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let segments = request.uri.split(separator: "?").first.map { $0.split(separator: "/").map(String.init) } ?? []
        do {
            switch (request.method, segments.count) {
            case (.POST, 3) where segments == ["swarmnet", "cluster", "endpoints"]:
                let allocation = try DockerRouter.decode(AllocationRequest.self, request.body)
                return try DockerRouter.json(.created, await daemon.allocate(for: allocation))
            case (.DELETE, 4) where Array(segments.prefix(3)) == ["swarmnet", "cluster", "endpoints"]:
                try await daemon.release(endpointID: segments[3])
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

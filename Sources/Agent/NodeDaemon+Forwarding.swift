import DockerAPI
import Foundation
import NIOHTTP1

/// In a swarm, a manager that does not allocate networks (the one node
/// started without `--worker` does, until networks live in Raft) hands
/// cluster writes to the node that does, over its mutual-TLS session:
/// `docker network create` and `docker service create` answer on every
/// manager, as they do with Docker's engine.
extension NodeDaemon {
    /// True when this daemon forwards cluster writes instead of refusing them.
    var forwardsClusterWrites: Bool { !configuration.isManager && swarmManager && secureClusterTransport != nil }

    public func setSwarmManager(_ isManager: Bool) {
        swarmManager = isManager
    }

    /// Sends a Docker API write to the allocating node and returns its
    /// answer's body; its errors come back as they were.
    func forwardToAllocator(_ method: String, _ path: String, body: Data = Data()) async throws -> Data {
        guard let manager = gossip?.managerAddresses().first else {
            throw APIError(.serviceUnavailable, "the node that allocates networks is not reachable (it is found through gossip)")
        }
        let request = ForwardedRequest(method: method, path: path, body: body)
        let (status, answer) = try await exchange(with: manager, "POST", "/swarmnet/forward", body: try JSONEncoder().encode(request))
        guard (200..<300).contains(status) else {
            let message = (try? JSONDecoder().decode(ErrorResponse.self, from: answer))?.message ?? "status \(status)"
            throw APIError(HTTPResponseStatus(statusCode: status), message)
        }
        return answer
    }
}

import FoundationEssentials
import NIOCore
import NIOHTTP1

/// `/swarm…` and `/nodes…`: Docker's paths over a `SwarmBackend`.
struct SwarmRoutes {
    let backend: SwarmBackend

    func route(_ method: HTTPMethod, _ segments: [String], query: [String: String], body: ByteBuffer) async throws -> HTTPResponse? {
        switch (method, segments) {
        case (.GET, ["swarm"]):
            return try DockerRouter.json(.ok, await backend.inspectSwarm())
        case (.POST, ["swarm", "init"]):
            return try DockerRouter.json(.ok, await backend.initialize(try DockerRouter.decode(SwarmInitRequest.self, body)))
        case (.POST, ["swarm", "join"]):
            try await backend.join(try DockerRouter.decode(SwarmJoinRequest.self, body))
            return HTTPResponse(status: .ok)
        case (.POST, ["swarm", "leave"]):
            try await backend.leave(force: Self.flag(query["force"]))
            return HTTPResponse(status: .ok)
        case (.POST, ["swarm", "update"]):
            let flags = SwarmUpdateFlags(
                version: try Self.version(query), rotateWorkerToken: Self.flag(query["rotateWorkerToken"]),
                rotateManagerToken: Self.flag(query["rotateManagerToken"]))
            try await backend.updateSwarm(try DockerRouter.decode(SwarmSpec.self, body), flags)
            return HTTPResponse(status: .ok)
        case (.GET, ["swarm", "unlockkey"]), (.POST, ["swarm", "unlock"]):
            throw APIError(.badRequest, "swarmnet does not lock managers (autolock is not supported): the manager keys are root-only files in the state directory")
        case (.GET, ["swarmnet", "debug", "raft"]):
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            return HTTPResponse(status: .ok, headers: headers, body: ByteBuffer(bytes: try await backend.debugRaft()))
        case (.GET, ["nodes"]):
            return try DockerRouter.json(.ok, await backend.listNodes(filters: try DockerRouter.filters(query["filters"])))
        case (.GET, let s) where s.count == 2 && s[0] == "nodes":
            return try DockerRouter.json(.ok, await backend.inspectNode(s[1]))
        case (.POST, let s) where s.count == 3 && s[0] == "nodes" && s[2] == "update":
            try await backend.updateNode(s[1], version: try Self.version(query), try DockerRouter.decode(NodeSpec.self, body))
            return HTTPResponse(status: .ok)
        case (.DELETE, let s) where s.count == 2 && s[0] == "nodes":
            try await backend.removeNode(s[1], force: Self.flag(query["force"]))
            return HTTPResponse(status: .ok)
        default:
            return nil
        }
    }

    static func flag(_ value: String?) -> Bool {
        guard let value else { return false }
        return ["1", "true", "True", "TRUE"].contains(value)
    }

    static func version(_ query: [String: String]) throws -> UInt64 {
        guard let text = query["version"], let version = UInt64(text) else {
            throw APIError(.badRequest, "invalid swarm version: the version query parameter must be the object's Version.Index")
        }
        return version
    }
}

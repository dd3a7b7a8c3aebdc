import Cluster
import FoundationEssentials
import SystemBasics
import NIOCore
import NIOHTTP1

/// An error with the HTTP status Docker uses for it; the body is Docker's
/// `{"message": ...}`.
public struct APIError: Error, Sendable, CustomStringConvertible {
    public var status: HTTPResponseStatus
    public var message: String

    public init(_ status: HTTPResponseStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { message }
}

extension APIError {
    /// The core's errors as HTTP statuses: the one place where they meet
    /// HTTP (the Docker API here, the manager endpoint between nodes).
    public init(_ error: ControlError) {
        self.init(Self.status(of: error.kind), error.message)
    }

    public static func status(of kind: ControlError.Kind) -> HTTPResponseStatus {
        switch kind {
        case .invalidArgument, .failedPrecondition: .badRequest
        case .notFound: .notFound
        case .conflict: .conflict
        case .unavailable: .serviceUnavailable
        case .permissionDenied: .forbidden
        case .removed: .gone
        case .internal: .internalServerError
        }
    }
}

/// What the daemon provides behind the Docker-shaped API.
public protocol DockerBackend: Sendable {
    func version() async -> VersionResponse
    func info() async -> InfoResponse
    func listNetworks(filters: [String: [String]]) async throws -> [NetworkResource]
    func inspectNetwork(_ reference: String) async throws -> NetworkResource
    func createNetwork(_ request: NetworkCreateRequest) async throws -> NetworkCreateResponse
    func removeNetwork(_ reference: String) async throws
    func connect(network: String, _ request: NetworkConnectRequest) async throws
    func disconnect(network: String, _ request: NetworkDisconnectRequest) async throws
    func createService(_ spec: ServiceSpec) async throws -> ServiceCreateResponse
    func listServices(filters: [String: [String]]) async throws -> [ServiceResource]
    func inspectService(_ reference: String) async throws -> ServiceResource
    func removeService(_ reference: String) async throws
}

/// Routes Docker Engine API paths to a backend. Paths are accepted with and
/// without a `/vX.Y` prefix (the docker CLI sends one after negotiating).
public struct DockerRouter: Sendable {
    /// The newest API version served; the CLI negotiates down to it.
    public static let apiVersion = "1.50"
    public static let minimumAPIVersion = "1.24"

    public let backend: DockerBackend
    public let debug: SwarmnetDebugBackend?
    public let containers: ContainerBackend?
    public let swarm: SwarmBackend?
    /// Swarm mode's services and tasks; outside a swarm (or on a worker)
    /// `/services` is the backend's network-only services.
    public let services: ServiceOrchestration?

    public init(backend: DockerBackend, debug: SwarmnetDebugBackend? = nil, containers: ContainerBackend? = nil,
                swarm: SwarmBackend? = nil, services: ServiceOrchestration? = nil) {
        self.backend = backend
        self.debug = debug
        self.containers = containers
        self.swarm = swarm
        self.services = services
    }

    /// Requests whose bodies are tarballs, which the server writes to a
    /// file (`BodySpool`): `docker load` and `docker import`.
    public static func spoolsBody(_ method: HTTPMethod, _ uri: String) -> Bool {
        guard method == .POST else { return false }
        let path = split(uri).path
        return path == "/images/load" || path == "/images/create"
    }

    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let (path, query) = Self.split(request.uri)
        let segments = path.split(separator: "/").map(String.init)
        do {
            var response = try await route(request, segments, query: query)
            response.headers.replaceOrAdd(name: "API-Version", value: Self.apiVersion)
            response.headers.replaceOrAdd(name: "Server", value: "swarmnet")
            return response
        } catch let error as APIError {
            return Self.error(error)
        } catch let error as ControlError {
            return Self.error(APIError(error))
        } catch let error as ClusterError {
            return Self.error(APIError(ControlError(error)))
        } catch let error as DecodingError {
            return Self.error(APIError(.badRequest, "invalid JSON in request body: \(Self.describe(error))"))
        } catch {
            return Self.error(APIError(.internalServerError, "\(error)"))
        }
    }

    private func route(_ request: HTTPRequest, _ segments: [String], query: [String: String]) async throws -> HTTPResponse {
        let (method, body) = (request.method, request.body)
        if let containers, let first = segments.first, first == "containers" || first == "images" {
            let decoded = segments.map { $0.percentDecoded() ?? $0 }
            return try await ContainerRoutes(backend: containers).route(method, decoded, query: query, request: request)
        }
        if let first = segments.first, first == "swarm" || first == "nodes" || segments == ["swarmnet", "debug", "raft"] {
            guard let swarm else { throw APIError(.serviceUnavailable, Self.notInSwarm) }
            let decoded = segments.map { $0.percentDecoded() ?? $0 }
            if let response = try await SwarmRoutes(backend: swarm).route(method, decoded, query: query, body: body) { return response }
        }
        if let first = segments.first, first == "tasks" || first == "services", let services {
            if let refusal = await services.workerRefusal() { throw APIError(.serviceUnavailable, refusal) }
            if await services.isActive() {
                let decoded = segments.map { $0.percentDecoded() ?? $0 }
                if let response = try await ServiceRoutes(backend: services).route(method, decoded, query: query, body: body) { return response }
            }
        }
        if segments.first == "tasks" { throw APIError(.serviceUnavailable, Self.notInSwarm) }
        let route = segments.joined(separator: "/")
        switch (method, route) {
        case (.GET, "_ping"), (.HEAD, "_ping"):
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            headers.add(name: "Docker-Experimental", value: "false")
            headers.add(name: "OSType", value: "linux")
            headers.add(name: "Cache-Control", value: "no-cache, no-store, must-revalidate")
            return HTTPResponse(status: .ok, headers: headers, body: ByteBuffer(string: "OK"))
        case (.GET, "version"):
            return try Self.json(.ok, await backend.version())
        case (.GET, "info"):
            var info = await backend.info()
            if let swarm { info.swarm = await swarm.swarmInfo() }
            return try Self.json(.ok, info)
        case (.GET, "networks"):
            return try Self.json(.ok, await backend.listNetworks(filters: try Self.filters(query["filters"])))
        case (.POST, "networks/create"):
            let request = try Self.decode(NetworkCreateRequest.self, body)
            return try Self.json(.created, await backend.createNetwork(request))
        case (.POST, "services/create"):
            let spec = try Self.decode(ServiceSpec.self, body)
            return try Self.json(.created, await backend.createService(spec))
        case (.GET, "services"):
            return try Self.json(.ok, await backend.listServices(filters: try Self.filters(query["filters"])))
        default:
            break
        }
        // Read only: in a swarm the managers make and rotate the keys.
        if let debug, method == .GET, segments == ["swarmnet", "gossip", "keys"] {
            return try Self.json(.ok, await debug.gossipKeys())
        }
        if let debug, method == .GET, segments.count >= 3, segments[0] == "swarmnet", segments[1] == "debug" {
            switch (segments[2], segments.count) {
            case ("overlay", 4):
                return try Self.json(.ok, await debug.debugOverlay(network: segments[3].percentDecoded() ?? segments[3]))
            case ("peers", 3):
                return try Self.json(.ok, await debug.debugPeers())
            case ("lb", 3):
                return try Self.json(.ok, await debug.debugLoadBalancers(service: query["service"]))
            case ("dns", 4):
                return try Self.json(.ok, await debug.debugDNS(name: segments[3].percentDecoded() ?? segments[3], container: query["container"]))
            case ("table", 5):
                return try Self.json(.ok, await debug.debugTable(
                    network: segments[3].percentDecoded() ?? segments[3], table: segments[4].percentDecoded() ?? segments[4]))
            default:
                break
            }
        }
        // /networks/{id} and /networks/{id}/(connect|disconnect)
        if segments.first == "networks", segments.count == 2 || segments.count == 3 {
            let reference = segments[1].percentDecoded() ?? segments[1]
            switch (method, segments.count == 3 ? segments[2] : "") {
            case (.GET, ""):
                return try Self.json(.ok, await backend.inspectNetwork(reference))
            case (.DELETE, ""):
                try await backend.removeNetwork(reference)
                return HTTPResponse(status: .noContent)
            case (.POST, "connect"):
                try await backend.connect(network: reference, try Self.decode(NetworkConnectRequest.self, body))
                return HTTPResponse(status: .ok)
            case (.POST, "disconnect"):
                try await backend.disconnect(network: reference, try Self.decode(NetworkDisconnectRequest.self, body))
                return HTTPResponse(status: .ok)
            default:
                break
            }
        }
        // /services/{id}
        if segments.first == "services", segments.count == 2 {
            let reference = segments[1].percentDecoded() ?? segments[1]
            switch method {
            case .GET:
                return try Self.json(.ok, await backend.inspectService(reference))
            case .DELETE:
                try await backend.removeService(reference)
                return HTTPResponse(status: .ok)
            default:
                break
            }
        }
        throw APIError(.notFound, "page not found")
    }

    /// Docker's answer to a swarm call on a node that is in no swarm.
    public static let notInSwarm =
        "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."

    /// Splits a request URI into a path without the API version prefix and
    /// its decoded query parameters.
    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        let path = withoutVersion(parts.first ?? "")
        var query: [String: String] = [:]
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(keyValue[0]).percentDecoded() ?? String(keyValue[0])
                let value = keyValue.count == 2 ? (String(keyValue[1]).replacing("+", with: " ").percentDecoded() ?? "") : ""
                query[key] = value
            }
        }
        return (path, query)
    }

    /// The path without its API version prefix (`/v1.41/networks` →
    /// `/networks`). By hand: a regex literal is compiled on every call,
    /// which was 6% of a `network create`.
    static func withoutVersion(_ path: Substring) -> String {
        let bytes = Array(path.utf8)
        var index = 0
        func skip(_ character: UInt8) -> Bool {
            guard index < bytes.count, bytes[index] == character else { return false }
            index += 1
            return true
        }
        func skipDigits() -> Bool {
            let start = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            return index > start
        }
        guard skip(UInt8(ascii: "/")), skip(UInt8(ascii: "v")), skipDigits(), skip(UInt8(ascii: ".")), skipDigits(),
              bytes[index...].first == UInt8(ascii: "/") else { return String(path) }
        return String(decoding: bytes[index...], as: UTF8.self)
    }

    /// Docker's `filters` parameter: `{"name": {"web": true}}` or, from
    /// older clients, `{"name": ["web"]}`.
    static func filters(_ text: String?) throws -> [String: [String]] {
        guard let text, !text.isEmpty else { return [:] }
        guard let object = try? JSONObject.parse(text) as? [String: Any] else {
            throw APIError(.badRequest, "invalid filter: \(text)")
        }
        var result: [String: [String]] = [:]
        for (key, value) in object {
            if let map = value as? [String: Any] { result[key] = Array(map.keys) }
            else if let list = value as? [String] { result[key] = list }
            else { throw APIError(.badRequest, "invalid filter '\(key)'") }
        }
        return result
    }

    public static func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer) throws -> T {
        guard body.readableBytes > 0 else { throw APIError(.badRequest, "request body is empty; expected JSON") }
        return try JSONDecoder().decode(type, from: Data(body.readableBytesView))
    }

    /// Docker's JSON as the daemon writes it: keys sorted, slashes as they
    /// are. One encoder for every response (it is safe to share).
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    public static func json<T: Encodable>(_ status: HTTPResponseStatus, _ value: T) throws -> HTTPResponse {
        var headers = HTTPHeaders()
        // The docker CLI prints an error's message cleanly only when the
        // type is exactly this.
        headers.add(name: "Content-Type", value: "application/json")
        var body = ByteBuffer(bytes: try encoder.encode(value))
        body.writeString("\n")
        return HTTPResponse(status: status, headers: headers, body: body)
    }

    public static func error(_ error: APIError) -> HTTPResponse {
        var response = (try? json(error.status, ErrorResponse(message: error.message))) ?? HTTPResponse(status: error.status)
        response.headers.replaceOrAdd(name: "API-Version", value: apiVersion)
        return response
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context), .dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

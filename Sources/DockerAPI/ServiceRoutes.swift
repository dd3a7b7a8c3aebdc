import NIOCore
import NIOHTTP1

/// Swarm mode's `/services` and `/tasks` paths.
struct ServiceRoutes {
    let backend: ServiceOrchestration

    func route(_ method: HTTPMethod, _ segments: [String], query: [String: String], body: ByteBuffer) async throws -> HTTPResponse? {
        switch (method, segments) {
        case (.POST, ["services", "create"]):
            return try DockerRouter.json(.created, await backend.createService(try DockerRouter.decode(ServiceSpec.self, body)))
        case (.GET, ["services"]):
            return try DockerRouter.json(.ok, await backend.listServices(
                filters: try DockerRouter.filters(query["filters"]), status: SwarmRoutes.flag(query["status"])))
        case (.GET, let s) where s.count == 2 && s[0] == "services":
            return try DockerRouter.json(.ok, await backend.inspectService(s[1]))
        case (.POST, let s) where s.count == 3 && s[0] == "services" && s[2] == "update":
            let spec = try DockerRouter.decode(ServiceSpec.self, body)
            return try DockerRouter.json(.ok, await backend.updateService(
                s[1], version: try SwarmRoutes.version(query), rollback: query["rollback"] == "previous", spec))
        case (.DELETE, let s) where s.count == 2 && s[0] == "services":
            try await backend.removeService(s[1])
            return HTTPResponse(status: .ok)
        case (.GET, ["tasks"]):
            return try DockerRouter.json(.ok, await backend.listTasks(filters: try DockerRouter.filters(query["filters"])))
        case (.GET, let s) where s.count == 3 && (s[0] == "services" || s[0] == "tasks") && s[2] == "logs":
            let options = try LogOptions(query: query)
            let (service, task) = (s[0] == "services" ? s[1] : nil, s[0] == "tasks" ? s[1] : nil)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/vnd.docker.multiplexed-stream")
            if options.follow {
                return HTTPResponse(status: .ok, headers: headers,
                                    stream: try await backend.followLogs(service: service, task: task, options: options))
            }
            let stream = try await backend.logs(service: service, task: task, options: options)
            return HTTPResponse(status: .ok, headers: headers, body: ByteBuffer(bytes: stream))
        case (.GET, let s) where s.count == 2 && s[0] == "tasks":
            return try DockerRouter.json(.ok, await backend.inspectTask(s[1]))
        default:
            return nil
        }
    }
}

import FoundationEssentials
import SystemBasics
import NIOCore
import NIOHTTP1

/// The Docker Engine API's `/containers` and `/images` paths.
struct ContainerRoutes {
    let backend: ContainerBackend

    func route(_ method: HTTPMethod, _ segments: [String], query: [String: String], request: HTTPRequest) async throws -> HTTPResponse {
        switch (method, segments.first, segments.count) {
        case (.POST, "containers", 2) where segments[1] == "create":
            let create = try DockerRouter.decode(ContainerCreateRequest.self, request.body)
            return try DockerRouter.json(.created, await backend.createContainer(name: query["name"], create))
        case (.GET, "containers", 2) where segments[1] == "json":
            return try DockerRouter.json(.ok, await backend.listContainers(all: Self.flag(query["all"])))
        case (.POST, "images", 2) where segments[1] == "load":
            guard let archive = request.spooledBody else { throw APIError(.badRequest, "docker load needs a tarball as the request body") }
            let lines = try await backend.loadImages(archive: archive, quiet: Self.flag(query["quiet"]))
            return Self.messages(lines.map { ["stream": $0 + "\n"] })
        case (.POST, "images", 2) where segments[1] == "create":
            if let image = query["fromImage"], !image.isEmpty {
                let tag = query["tag"].flatMap { $0.isEmpty ? nil : $0 }
                throw APIError(.notFound, "pull access denied for \(image)\(tag.map { ":" + $0 } ?? ""): no registry is reachable from swarmnet; load the image with `docker load -i FILE.tar` (or `docker import`)")
            }
            guard query["fromSrc"] == "-", let archive = request.spooledBody else {
                throw APIError(.badRequest, "docker import needs fromSrc=- and the tarball as the request body (importing from a URL is not supported)")
            }
            let id = try await backend.importImage(
                archive: archive, repository: query["repo"].flatMap { $0.isEmpty ? nil : $0 },
                tag: query["tag"].flatMap { $0.isEmpty ? nil : $0 }, changes: Self.values("changes", in: request.uri),
                message: query["message"])
            return Self.messages([["status": id]])
        case (.GET, "images", 2) where segments[1] == "json":
            return try DockerRouter.json(.ok, await backend.listImages())
        default:
            break
        }
        if segments.first == "images", segments.count >= 2 {
            return try await image(method, segments, query: query)
        }
        guard segments.first == "containers", segments.count == 2 || segments.count == 3 else {
            throw APIError(.notFound, "page not found")
        }
        let reference = segments[1]
        switch (method, segments.count == 3 ? segments[2] : "") {
        case (.POST, "start"):
            try await backend.startContainer(reference)
            return HTTPResponse(status: .noContent)
        case (.POST, "stop"):
            let stopped = try await backend.stopContainer(reference, timeout: query["t"].flatMap(Double.init))
            return HTTPResponse(status: stopped ? .noContent : .notModified)
        case (.POST, "kill"):
            try await backend.killContainer(reference, signal: query["signal"].flatMap { $0.isEmpty ? nil : $0 } ?? "SIGKILL")
            return HTTPResponse(status: .noContent)
        case (.POST, "wait"):
            // The head goes out at once and the body when the container
            // ends, as Docker's daemon does: the CLI's `run` waits for
            // this head before it starts the container.
            _ = try await backend.inspectContainer(reference)
            let backend = backend
            let body = AsyncThrowingStream<[UInt8], Error> { continuation in
                let waiter = Task {
                    do {
                        let result = try await backend.waitContainer(reference)
                        let encoder = JSONEncoder()
                        encoder.outputFormatting = [.sortedKeys]
                        continuation.yield(Array(try encoder.encode(result)) + [UInt8(ascii: "\n")])
                        continuation.finish()
                    } catch {
                        continuation.finish(throwing: error)
                    }
                }
                continuation.onTermination = { _ in waiter.cancel() }
            }
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            return HTTPResponse(status: .ok, headers: headers, stream: body)
        case (.DELETE, ""):
            try await backend.removeContainer(reference, force: Self.flag(query["force"]))
            return HTTPResponse(status: .noContent)
        case (.GET, "json"):
            return try DockerRouter.json(.ok, await backend.inspectContainer(reference))
        case (.GET, "logs"):
            let options = try LogOptions(query: query)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/vnd.docker.multiplexed-stream")
            return HTTPResponse(status: .ok, headers: headers, stream: try await backend.containerLogs(reference, options: options))
        default:
            throw APIError(.notFound, "page not found")
        }
    }

    /// `/images/NAME/json`, `/images/NAME/tag`, `DELETE /images/NAME`:
    /// NAME may hold slashes (`library/busybox`).
    private func image(_ method: HTTPMethod, _ segments: [String], query: [String: String]) async throws -> HTTPResponse {
        let last = segments.last!
        switch method {
        case .GET where last == "json" && segments.count >= 3:
            return try DockerRouter.json(.ok, await backend.inspectImage(segments[1..<(segments.count - 1)].joined(separator: "/")))
        case .POST where last == "tag" && segments.count >= 3:
            guard let repository = query["repo"], !repository.isEmpty else { throw APIError(.badRequest, "repository name must have at least one component") }
            try await backend.tagImage(segments[1..<(segments.count - 1)].joined(separator: "/"), repository: repository,
                                       tag: query["tag"].flatMap { $0.isEmpty ? nil : $0 })
            return HTTPResponse(status: .created)
        case .DELETE:
            return try DockerRouter.json(.ok, await backend.removeImage(segments[1...].joined(separator: "/"), force: Self.flag(query["force"])))
        default:
            throw APIError(.notFound, "page not found")
        }
    }

    /// Docker's progress stream: one JSON object per line.
    static func messages(_ objects: [[String: String]]) -> HTTPResponse {
        var body = ByteBuffer()
        for object in objects {
            if let data = try? DockerRouter.encoder.encode(object) {
                body.writeBytes(data)
                body.writeString("\r\n")
            }
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        return HTTPResponse(status: .ok, headers: headers, body: body)
    }

    static func flag(_ value: String?) -> Bool {
        guard let value else { return false }
        return value == "1" || value.lowercased() == "true"
    }

    /// Every value of a repeated query parameter (`changes`).
    static func values(_ key: String, in uri: String) -> [String] {
        guard let query = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return [] }
        return query.split(separator: "&").compactMap { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == key else { return nil }
            return String(parts[1]).replacing("+", with: " ").percentDecoded()
        }
    }

    /// `since`/`until`: Unix seconds, with an optional fraction (the CLI
    /// turns `10m` and dates into that).
    static func time(_ text: String) -> Date? {
        guard !text.isEmpty, let seconds = Double(text) else { return nil }
        return Date(timeIntervalSince1970: seconds)
    }
}

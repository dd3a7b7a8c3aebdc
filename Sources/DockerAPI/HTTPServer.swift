import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP request, read whole.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    public var uri: String
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(method: HTTPMethod, uri: String, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
    }
}

/// One HTTP response.
public struct HTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// An HTTP/1.1 server on a unix socket (the Docker Engine API's transport),
/// on SwiftNIO's async channels. Each connection is served by a child task;
/// requests on one connection are answered in order.
public struct UnixHTTPServer: Sendable {
    /// Where the server listens: the API's unix socket, or a TCP address
    /// (the manager's cluster API).
    public enum Listen: Sendable, CustomStringConvertible {
        case unix(String)
        case tcp(host: String, port: Int)

        public var description: String {
            switch self {
            case .unix(let path): path
            case .tcp(let host, let port): "\(host):\(port)"
            }
        }
    }

    public let listen: Listen
    public let logger: Logger
    public let handler: @Sendable (HTTPRequest) async -> HTTPResponse

    public var path: String { listen.description }

    public init(path: String, logger: Logger, handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse) {
        self.init(listen: .unix(path), logger: logger, handler: handler)
    }

    public init(listen: Listen, logger: Logger, handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse) {
        self.listen = listen
        self.logger = logger
        self.handler = handler
    }

    /// Binds (a unix socket is root-only: mode 0600), calls `ready`, and
    /// serves until the task is cancelled.
    public func run(ready: @Sendable () -> Void = {}) async throws {
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        let initializer: @Sendable (Channel) -> EventLoopFuture<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
            }
        }
        let server: NIOAsyncChannel<NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, Never>
        switch listen {
        case .unix(let path):
            server = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true, childChannelInitializer: initializer)
            chmod(path, 0o600)
        case .tcp(let host, let port):
            server = try await bootstrap.bind(host: host, port: port, childChannelInitializer: initializer)
        }
        ready()
        try await withThrowingDiscardingTaskGroup { group in
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    group.addTask { await serve(connection) }
                }
            }
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body = ByteBuffer()
                for try await part in inbound {
                    switch part {
                    case .head(let requestHead):
                        head = requestHead
                        body.clear()
                    case .body(var chunk):
                        body.writeBuffer(&chunk)
                    case .end:
                        guard let requestHead = head else { continue }
                        var response = await handler(HTTPRequest(method: requestHead.method, uri: requestHead.uri,
                                                                  headers: requestHead.headers, body: body))
                        response.headers.replaceOrAdd(name: "Content-Length", value: "\(response.body.readableBytes)")
                        if !requestHead.isKeepAlive { response.headers.replaceOrAdd(name: "Connection", value: "close") }
                        try await outbound.write(.head(HTTPResponseHead(version: requestHead.version, status: response.status, headers: response.headers)))
                        if requestHead.method != .HEAD && response.body.readableBytes > 0 {
                            try await outbound.write(.body(.byteBuffer(response.body)))
                        }
                        try await outbound.write(.end(nil))
                        if !requestHead.isKeepAlive { return }
                    }
                }
            }
        } catch {
            logger.debug("connection ended with an error", metadata: ["error": "\(error)"])
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

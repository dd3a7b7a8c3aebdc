#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import Synchronization
import NIOHTTP1
import NIOPosix

/// One HTTP request, read whole.
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    public var uri: String
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    /// The body, when it was written to a file instead (`BodySpool`).
    public var spooledBody: SpooledBody?
    /// The client's certificate (DER), when the connection is TLS and the
    /// client presented one that verified (`ConnectionSecurity`).
    public var peerCertificate: [UInt8]?

    public init(method: HTTPMethod, uri: String, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer(),
                spooledBody: SpooledBody? = nil) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self.spooledBody = spooledBody
    }
}

/// A request body in an unnamed file (`O_TMPFILE`): it is freed when the
/// server closes the descriptor after the handler returns, or when the
/// process dies, so no upload is ever left on disk.
public struct SpooledBody: Sendable {
    public var descriptor: Int32
    public var length: Int64
}

/// Which requests have their bodies written to a file rather than held in
/// memory, and how large such a body may be: image tarballs (`docker
/// load`, `docker import`) are larger than any JSON body.
public struct BodySpool: Sendable {
    public var directory: String
    public var maxBytes: Int64
    public var accepts: @Sendable (HTTPMethod, String) -> Bool

    public init(directory: String, maxBytes: Int64, accepts: @escaping @Sendable (HTTPMethod, String) -> Bool) {
        self.directory = directory
        self.maxBytes = maxBytes
        self.accepts = accepts
    }
}

/// TLS for a TCP listener, kept out of this module's dependencies: the
/// owner of the certificates adds its handlers first on every connection,
/// and says where a connection's verified client certificate is.
public struct ConnectionSecurity: Sendable {
    public var configure: @Sendable (any Channel) throws -> Void
    /// The DER of the client's verified certificate, if it sent one; read
    /// on the channel's event loop once the request has arrived.
    public var peerCertificate: @Sendable (any Channel) -> [UInt8]?

    public init(configure: @escaping @Sendable (any Channel) throws -> Void,
                peerCertificate: @escaping @Sendable (any Channel) -> [UInt8]?) {
        self.configure = configure
        self.peerCertificate = peerCertificate
    }
}

/// One HTTP response.
public struct HTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer
    /// A body written as it comes (chunked), after `body`: `docker logs
    /// --follow`.
    public var stream: AsyncThrowingStream<[UInt8], Error>?

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer = ByteBuffer(),
                stream: AsyncThrowingStream<[UInt8], Error>? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.stream = stream
    }
}

/// What one connection may cost the server. A client that sends more, or
/// too slowly, is answered or cut off, so that no client holds memory or a
/// descriptor without bound (a 200 MB body used to be read whole, and a
/// request head trickled one byte a second kept its connection for ever).
public struct HTTPServerLimits: Sendable {
    /// The largest request body taken; a larger one gets 413 and the
    /// connection is closed, without reading the rest.
    public var maxBodyBytes: Int
    /// How long a connection may wait for the whole head of its next
    /// request (after it opened, or after the last response).
    public var idleTimeout: TimeAmount
    /// How long a request's body may take, from its head to its end.
    public var bodyTimeout: TimeAmount
    /// Connections open at once; a connection past this is closed at once.
    public var maxConnections: Int
    /// Requests whose bodies go to a file, with their own size limit and
    /// ten times the body timeout.
    public var spool: BodySpool?

    public init(maxBodyBytes: Int = 16 << 20, idleTimeout: TimeAmount = .seconds(60), bodyTimeout: TimeAmount = .seconds(60),
                maxConnections: Int = 4096, spool: BodySpool? = nil) {
        self.maxBodyBytes = maxBodyBytes
        self.idleTimeout = idleTimeout
        self.bodyTimeout = bodyTimeout
        self.maxConnections = maxConnections
        self.spool = spool
    }
}

/// An HTTP/1.1 server on a unix socket (the Docker Engine API's transport)
/// or TCP, on SwiftNIO. Requests on one connection are answered in order
/// (NIO's pipelining assistance holds a second request until the first is
/// answered); each is bounded by `HTTPServerLimits`.
public struct UnixHTTPServer: Sendable {
    /// Where the server listens: the API's unix socket, or a TCP address
    /// (the manager endpoint, behind TLS).
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
    public let limits: HTTPServerLimits
    public let handler: @Sendable (HTTPRequest) async -> HTTPResponse
    /// TLS on every connection (the manager endpoint); nil serves plain.
    public var security: ConnectionSecurity?

    public var path: String { listen.description }

    public init(path: String, logger: Logger, limits: HTTPServerLimits = HTTPServerLimits(),
                handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse) {
        self.init(listen: .unix(path), logger: logger, limits: limits, handler: handler)
    }

    public init(listen: Listen, logger: Logger, limits: HTTPServerLimits = HTTPServerLimits(),
                handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse) {
        self.listen = listen
        self.logger = logger
        self.limits = limits
        self.handler = handler
    }

    /// Binds (a unix socket is root-only: mode 0600), calls `ready`, and
    /// serves until the task is cancelled.
    public func run(ready: @Sendable () -> Void = {}) async throws {
        let connections = ConnectionCount(limit: limits.maxConnections)
        let (limits, handler, logger, security) = (limits, handler, logger, security)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard connections.admit(channel) else {
                    logger.warning("too many API connections; closing a new one", metadata: ["limit": "\(limits.maxConnections)"])
                    return channel.close()
                }
                return channel.eventLoop.makeCompletedFuture {
                    try security?.configure(channel)
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPConnectionHandler(limits: limits, handler: handler, logger: logger,
                                              peerCertificate: security?.peerCertificate))
                }
            }
        let server: any Channel
        switch listen {
        case .unix(let path):
            server = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
            chmod(path, 0o600)
        case .tcp(let host, let port):
            server = try await bootstrap.bind(host: host, port: port).get()
        }
        ready()
        try await withTaskCancellationHandler {
            try await server.closeFuture.get()
        } onCancel: {
            server.close(promise: nil)
        }
    }
}

/// Counts open connections and refuses any beyond the limit.
final class ConnectionCount: Sendable {
    private let open = Atomic<Int>(0)
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func admit(_ channel: any Channel) -> Bool {
        guard open.wrappingAdd(1, ordering: .relaxed).newValue <= limit else {
            open.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        channel.closeFuture.whenComplete { [self] _ in open.wrappingSubtract(1, ordering: .relaxed) }
        return true
    }
}

/// Serves one connection: collects a request (within the body limit and
/// deadlines), hands it to the handler off the event loop, writes the
/// response, and closes after it when the client asked (`Connection:
/// close`) only once the response is written out: closing right after
/// queueing it cut off responses larger than the socket's buffer.
final class HTTPConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Waiting for the head of a request.
        case idle
        case receiving(HTTPRequestHead, ByteBuffer)
        /// Receiving a body into a file (`BodySpool`).
        case spooling(HTTPRequestHead, descriptor: Int32, length: Int64)
        /// The handler has the request; the response is not written yet.
        case responding
        /// Refused (413) or timed out: nothing more is read.
        case closing
    }

    private let limits: HTTPServerLimits
    private let handler: @Sendable (HTTPRequest) async -> HTTPResponse
    private let logger: Logger
    private let peerCertificate: (@Sendable (any Channel) -> [UInt8]?)?
    private var state = State.idle
    private var deadline: Scheduled<Void>?

    init(limits: HTTPServerLimits, handler: @escaping @Sendable (HTTPRequest) async -> HTTPResponse, logger: Logger,
         peerCertificate: (@Sendable (any Channel) -> [UInt8]?)? = nil) {
        self.limits = limits
        self.handler = handler
        self.logger = logger
        self.peerCertificate = peerCertificate
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(limits.idleTimeout, context: context, reason: "no complete request head")
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        if case .spooling(_, let descriptor, _) = state {
            close(descriptor)
            state = .closing
        }
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), .idle):
            if let length = head.headers.first(name: "Content-Length").flatMap(Int.init), length > limits.maxBodyBytes {
                refuse(head, context: context)
                return
            }
            if let spool = limits.spool, spool.accepts(head.method, head.uri) {
                if let length = head.headers.first(name: "Content-Length").flatMap(Int64.init), length > spool.maxBytes {
                    refuse(head, limit: spool.maxBytes, context: context)
                    return
                }
                let descriptor = open(spool.directory, Self.O_TMPFILE | O_RDWR | O_CLOEXEC, 0o600)
                guard descriptor >= 0 else {
                    logger.error("cannot spool a request body", metadata: ["directory": "\(spool.directory)", "errno": "\(errno)"])
                    refuse(head, limit: 0, context: context)
                    return
                }
                state = .spooling(head, descriptor: descriptor, length: 0)
                arm(limits.bodyTimeout * 10, context: context, reason: "the request body took too long")
                return
            }
            state = .receiving(head, context.channel.allocator.buffer(capacity: 0))
            arm(limits.bodyTimeout, context: context, reason: "the request body took too long")
        case (.body(let chunk), .spooling(let head, let descriptor, let length)):
            let total = length + Int64(chunk.readableBytes)
            // Written on the event loop: this lands in the page cache at
            // memory speed (no fsync), and only for the few routes spooled.
            guard total <= limits.spool?.maxBytes ?? 0, Self.writeAll(descriptor, chunk) else {
                close(descriptor)
                refuse(head, limit: limits.spool?.maxBytes ?? 0, context: context)
                return
            }
            state = .spooling(head, descriptor: descriptor, length: total)
        case (.end, .spooling(let head, let descriptor, let length)):
            deadline?.cancel()
            deadline = nil
            state = .responding
            respond(to: head, body: context.channel.allocator.buffer(capacity: 0),
                    spooled: SpooledBody(descriptor: descriptor, length: length), context: context)
        case (.body(var chunk), .receiving(let head, var body)):
            guard body.readableBytes + chunk.readableBytes <= limits.maxBodyBytes else {
                refuse(head, context: context)
                return
            }
            state = .idle // drops the reference, so the append does not copy
            body.writeBuffer(&chunk)
            state = .receiving(head, body)
        case (.end, .receiving(let head, let body)):
            deadline?.cancel()
            deadline = nil
            state = .responding
            respond(to: head, body: body, context: context)
        default:
            break // after a refusal: the rest is not read
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("API connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    /// Hands the request to the handler off the event loop and writes its
    /// answer back on it.
    private func respond(to head: HTTPRequestHead, body: ByteBuffer, spooled: SpooledBody? = nil, context: ChannelHandlerContext) {
        var request = HTTPRequest(method: head.method, uri: head.uri, headers: head.headers, body: body, spooledBody: spooled)
        request.peerCertificate = peerCertificate?(context.channel)
        let handler = handler
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        Task {
            let response = await handler(request)
            if let spooled { close(spooled.descriptor) }
            eventLoop.execute {
                let (connection, context) = loopBound.value
                connection.write(response, for: head, context: context)
            }
        }
    }

    private func write(_ response: HTTPResponse, for head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard case .responding = state, context.channel.isActive else { return }
        if let stream = response.stream {
            writeStreamed(response, stream, for: head, context: context)
            return
        }
        var response = response
        response.headers.replaceOrAdd(name: "Content-Length", value: "\(response.body.readableBytes)")
        let keepAlive = head.isKeepAlive
        if !keepAlive { response.headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: response.status, headers: response.headers))),
                      promise: nil)
        if head.method != .HEAD && response.body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        }
        // The state moves on before the end is written: NIO's pipelining
        // handler delivers a request it held back as soon as it is.
        if keepAlive {
            state = .idle
            arm(limits.idleTimeout, context: context, reason: "no complete request head")
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            state = .closing
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// A streamed answer: chunked, each part flushed as it comes; the
    /// connection closes after it (a follower usually ends by leaving).
    /// Nothing times the connection out while the stream lasts.
    private func writeStreamed(_ response: HTTPResponse, _ stream: AsyncThrowingStream<[UInt8], Error>, for head: HTTPRequestHead,
                               context: ChannelHandlerContext) {
        var headers = response.headers
        headers.remove(name: "Content-Length")
        headers.replaceOrAdd(name: "Transfer-Encoding", value: "chunked")
        headers.replaceOrAdd(name: "Connection", value: "close")
        state = .closing
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: response.status, headers: headers))),
                      promise: nil)
        if response.body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil) }
        context.flush()
        let channel = context.channel
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let reader = Task {
            do {
                for try await part in stream {
                    guard channel.isActive else { break }
                    // Waits for each write, so a slow reader slows the
                    // stream rather than growing the daemon's memory.
                    try await eventLoop.flatSubmit {
                        let (connection, context) = loopBound.value
                        return context.writeAndFlush(connection.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: part)))))
                    }.get()
                }
            } catch {}
            eventLoop.execute {
                let (connection, context) = loopBound.value
                context.writeAndFlush(connection.wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
            }
        }
        channel.closeFuture.whenComplete { _ in reader.cancel() }
    }

    /// 413, then the connection closes once the answer is written.
    private func refuse(_ head: HTTPRequestHead, limit: Int64? = nil, context: ChannelHandlerContext) {
        state = .closing
        deadline?.cancel()
        deadline = nil
        let message = limit == 0 ? "the request body could not be stored (see the daemon's log)"
            : "request body too large: the limit is \(limit ?? Int64(limits.maxBodyBytes)) bytes"
        var body = context.channel.allocator.buffer(capacity: message.utf8.count + 16)
        body.writeString("{\"message\":\"\(message)\"}\n")
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(body.readableBytes)"),
                                   ("Connection", "close")])
        headers.replaceOrAdd(name: "Server", value: "swarmnet")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: limit == 0 ? .internalServerError : .payloadTooLarge,
                                                                          headers: headers))),
                      promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    /// `O_TMPFILE` (`__O_TMPFILE | O_DIRECTORY` on Linux), which Swift's
    /// Glibc module does not import.
    private static let O_TMPFILE: Int32 = 0o20000000 | O_DIRECTORY

    private static func writeAll(_ descriptor: Int32, _ chunk: ByteBuffer) -> Bool {
        chunk.withUnsafeReadableBytes { bytes in
            var written = 0
            while written < bytes.count {
                let result = Glibc.write(descriptor, bytes.baseAddress! + written, bytes.count - written)
                if result < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                written += result
            }
            return true
        }
    }

    /// Closes the connection unless the next step comes within `timeout`.
    private func arm(_ timeout: TimeAmount, context: ChannelHandlerContext, reason: String) {
        deadline?.cancel()
        let channel = context.channel
        let logger = logger
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            logger.debug("closing an API connection", metadata: ["reason": "\(reason)"])
            channel.close(promise: nil)
        }
    }
}

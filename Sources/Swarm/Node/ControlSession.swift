import FoundationEssentials
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// A session with one manager endpoint: a single TLS connection kept open
/// (HTTP/1.1 keep-alive), so that a node's heartbeats cost a request each,
/// not a handshake. A failure closes it; the next request dials again.
/// Requests are answered in order; each is bounded in time and its answer
/// in size.
actor ControlSession {
    let address: String
    let context: NIOSSLContext
    let timeout: TimeAmount
    let maxResponseBytes = 4 << 20
    private var channel: (any Channel)?
    private var collector: SessionCollector?

    init(address: String, context: NIOSSLContext, timeout: TimeAmount) {
        self.address = address
        self.context = context
        self.timeout = timeout
    }

    func request(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws -> ControlClient.Response {
        let (channel, collector) = try await connected()
        let promise = channel.eventLoop.makePromise(of: ControlClient.Response.self)
        let (host, _) = try ControlClient.split(address)
        var headers = HTTPHeaders([("Host", host)])
        if let body {
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: "\(body.count)")
        }
        let (address, timeout) = (address, timeout)
        channel.eventLoop.execute {
            collector.expect(promise)
            channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)),
                          promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(ControlClient.Failure(description: "manager \(address) did not answer within \(timeout.nanoseconds / 1_000_000) ms"))
            channel.close(promise: nil)
        }
        defer { deadline.cancel() }
        do {
            return try await promise.futureResult.get()
        } catch {
            close()
            throw error
        }
    }

    func close() {
        channel?.close(promise: nil)
        channel = nil
        collector = nil
    }

    private func connected() async throws -> (any Channel, SessionCollector) {
        if let channel, channel.isActive, let collector { return (channel, collector) }
        close()
        let (host, port) = try ControlClient.split(address)
        let collector = SessionCollector(maxBytes: maxResponseBytes)
        let context = context
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(timeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(collector)
                    }
                }
                .connect(host: host, port: port).get()
        } catch {
            throw ControlClient.Failure(description: "cannot reach manager \(address): \(error)")
        }
        self.channel = channel
        self.collector = collector
        return (channel, collector)
    }
}

/// Hands each response on a session's connection to the request that
/// waits for it, in order; fails them all when the connection ends.
final class SessionCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    private let maxBytes: Int
    // Touched on the channel's event loop only.
    private var waiting: [EventLoopPromise<ControlClient.Response>] = []
    private var status = 0
    private var body: [UInt8] = []

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    func expect(_ promise: EventLoopPromise<ControlClient.Response>) {
        waiting.append(promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            body = []
        case .body(let buffer):
            guard body.count + buffer.readableBytes <= maxBytes else {
                failAll(ControlClient.Failure(description: "the manager's answer is larger than \(maxBytes) bytes"))
                context.close(promise: nil)
                return
            }
            body.append(contentsOf: buffer.readableBytesView)
        case .end:
            guard !waiting.isEmpty else { return }
            waiting.removeFirst().succeed(ControlClient.Response(status: status, body: body))
            body = []
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(ControlClient.Failure(description: "the manager closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(ControlClient.Failure(description: "\(error)"))
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        let promises = waiting
        waiting = []
        for promise in promises { promise.fail(error) }
    }
}

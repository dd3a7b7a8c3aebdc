import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One request to a manager endpoint over TLS, bounded in time and size.
/// A connection per request: heartbeats are one a second per node, and a
/// fresh connection finds a restarted or replaced manager by itself.
struct ControlClient: Sendable {
    let context: NIOSSLContext
    var timeout: TimeAmount = .seconds(5)
    var maxResponseBytes = 4 << 20

    struct Response: Sendable {
        var status: Int
        var body: [UInt8]
        /// The server's certificate (DER), as presented.
        var serverCertificate: [UInt8]?
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    func request(_ method: HTTPMethod, _ address: String, _ path: String, body: [UInt8]? = nil) async throws -> Response {
        let (host, port) = try Self.split(address)
        let promise = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Response.self)
        let (context, maxBytes, timeout) = (context, maxResponseBytes, timeout)
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise, maxBytes: maxBytes))
                }
            }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            promise.fail(error)
            throw Failure(description: "cannot reach manager \(address): \(error)")
        }
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            promise.fail(Failure(description: "manager \(address) did not answer within \(timeout.nanoseconds / 1_000_000) ms"))
            channel.close(promise: nil)
        }
        var headers = HTTPHeaders([("Host", host), ("Connection", "close")])
        if let body {
            headers.add(name: "Content-Type", value: "application/json")
            headers.add(name: "Content-Length", value: "\(body.count)")
        }
        channel.write(HTTPClientRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)),
                      promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        do {
            return try await promise.futureResult.get()
        } catch let error as Failure {
            throw error
        } catch {
            throw Failure(description: "manager \(address): \(error)")
        }
    }

    static func split(_ address: String) throws -> (String, Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port) else {
            throw Failure(description: "'\(address)' is not HOST:PORT")
        }
        return (String(address[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }
}

/// Collects one response (head and body, up to a limit) into a promise.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<ControlClient.Response>
    private let maxBytes: Int
    private var status = 0
    private var body: [UInt8] = []

    init(promise: EventLoopPromise<ControlClient.Response>, maxBytes: Int) {
        self.promise = promise
        self.maxBytes = maxBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body(let buffer):
            guard body.count + buffer.readableBytes <= maxBytes else {
                promise.fail(ControlClient.Failure(description: "the manager's answer is larger than \(maxBytes) bytes"))
                context.close(promise: nil)
                return
            }
            body.append(contentsOf: buffer.readableBytesView)
        case .end:
            promise.succeed(ControlClient.Response(status: status, body: body, serverCertificate: ControlTLS.peerCertificate(context.channel)))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ControlClient.Failure(description: "the manager closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(ControlClient.Failure(description: "\(error)"))
        context.close(promise: nil)
    }
}

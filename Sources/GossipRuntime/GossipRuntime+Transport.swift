import Gossip
import NIOCore
import NIOPosix
import Synchronization

/// Sockets: one UDP socket for packets, a TCP listener for push-pull requests, and one short TCP
/// connection per push-pull this node opens (one request frame, one response frame, close).
extension LiveGossipNode {
    var maxFrameSize: Int { configuration.maxStreamSize + Keyring.overhead }

    var streamTimeAmount: TimeAmount {
        .nanoseconds(Int64(streamTimeout.components.seconds) * 1_000_000_000 + streamTimeout.components.attoseconds / 1_000_000_000)
    }

    func bindDatagram(host: String, port: Int) async throws -> any Channel {
        try await DatagramBootstrap(group: group)
            // Room for the largest datagram, so an oversize one is rejected by the decoder
            // rather than truncated into something that might parse.
            .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramHandler(runtime: self))
                }
            }
            .bind(host: host, port: port)
            .get()
    }

    func bindListener(host: String, port: Int) async throws -> any Channel {
        let maxFrameSize = maxFrameSize
        let timeout = streamTimeAmount
        return try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 256)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LengthPrefixedFrameDecoder(maxFrameSize: maxFrameSize)))
                    try channel.pipeline.syncOperations.addHandler(StreamServerHandler(runtime: self, timeout: timeout))
                }
            }
            .bind(host: host, port: port)
            .get()
    }

    func sendDatagram(_ payload: [UInt8], to destination: NodeAddress, on udp: any Channel) {
        guard let address = try? SocketAddress(ipAddress: destination.host, port: Int(destination.port)) else {
            count { $0.sendErrors += 1 }
            return
        }
        var buffer = udp.allocator.buffer(capacity: payload.count)
        buffer.writeBytes(payload)
        udp.writeAndFlush(AddressedEnvelope(remoteAddress: address, data: buffer)).whenFailure { [weak self] _ in
            self?.count { $0.sendErrors += 1 }
        }
    }

    /// Opens a connection, sends one push-pull request and feeds the response to the core.
    /// The future is true when a valid response arrived; it never fails.
    func openStream(_ payload: [UInt8], to destination: NodeAddress) -> EventLoopFuture<Bool> {
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: [UInt8]?.self)
        let request = LengthPrefixedFrameDecoder.frame(payload, allocator: ByteBufferAllocator())
        let maxFrameSize = maxFrameSize
        let timeout = streamTimeAmount
        let once = Once()
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(LengthPrefixedFrameDecoder(maxFrameSize: maxFrameSize)))
                    try channel.pipeline.syncOperations.addHandler(
                        StreamClientHandler(request: request, timeout: timeout, once: once, promise: promise))
                }
            }
        // An IP literal (what the core always holds) skips the resolver.
        let connected = if let address = try? SocketAddress(ipAddress: destination.host, port: Int(destination.port)) {
            bootstrap.connect(to: address)
        } else {
            bootstrap.connect(host: destination.host, port: Int(destination.port))
        }
        connected.whenFailure { _ in
                if once.claim() { promise.succeed(nil) }
            }
        return promise.futureResult.map { [self] response in
            guard let response else {
                count { $0.streamConnectFailures += 1 }
                return false
            }
            return receiveResponse(response, from: destination)
        }
    }
}

/// Completes something exactly once, whichever of several paths gets there first.
final class Once: Sendable {
    private let done = Atomic<Bool>(false)

    func claim() -> Bool {
        !done.exchange(true, ordering: .acquiringAndReleasing)
    }
}

/// Hands every datagram to the runtime, with the sender's address.
final class DatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let runtime: LiveGossipNode

    init(runtime: LiveGossipNode) {
        self.runtime = runtime
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let host = envelope.remoteAddress.ipAddress, let port = envelope.remoteAddress.port,
              let port16 = UInt16(exactly: port) else { return }
        runtime.receiveDatagram(Array(envelope.data.readableBytesView), from: NodeAddress(host: host, port: port16))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP errors (a peer that went away) surface here; the protocol copes with the loss.
        runtime.count { $0.sendErrors += 1 }
    }
}

/// Serves one push-pull request per connection: reads a frame, writes the response, closes.
final class StreamServerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let runtime: LiveGossipNode
    let timeout: TimeAmount
    var served = false

    init(runtime: LiveGossipNode, timeout: TimeAmount) {
        self.runtime = runtime
        self.timeout = timeout
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !served else { return }
        served = true
        let frame = unwrapInboundIn(data)
        guard let remote = context.remoteAddress, let host = remote.ipAddress, let port = remote.port,
              let port16 = UInt16(exactly: port),
              let reply = runtime.serveStream(Array(frame.readableBytesView), from: NodeAddress(host: host, port: port16))
        else {
            context.close(promise: nil)
            return
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(LengthPrefixedFrameDecoder.frame(reply, allocator: context.channel.allocator)))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        runtime.count { $0.streamErrors += 1 }
        context.close(promise: nil)
    }
}

/// Sends one push-pull request and waits for the response frame.
final class StreamClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let request: ByteBuffer
    let timeout: TimeAmount
    let once: Once
    let promise: EventLoopPromise<[UInt8]?>

    init(request: ByteBuffer, timeout: TimeAmount, once: Once, promise: EventLoopPromise<[UInt8]?>) {
        self.request = request
        self.timeout = timeout
        self.once = once
        self.promise = promise
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if once.claim() { promise.succeed(Array(frame.readableBytesView)) }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if once.claim() { promise.succeed(nil) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if once.claim() { promise.succeed(nil) }
        context.close(promise: nil)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if once.claim() { promise.succeed(nil) }
    }
}

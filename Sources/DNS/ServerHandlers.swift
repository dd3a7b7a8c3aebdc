import NIOCore
import Synchronization

/// DNS over a stream (RFC 1035 §4.2.2, RFC 7766): each message preceded by
/// its length in two bytes. The length field caps a frame at 65,535 bytes,
/// which bounds what one connection can make us buffer.
struct DNSStreamFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt16.self),
              buffer.readableBytes >= 2 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 2)
        context.fireChannelRead(NIOAny(buffer.readSlice(length: Int(length))!))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A partial frame at EOF is dropped: there is no one left to answer.
        while try decode(context: context, buffer: &buffer) == .continue {}
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// Answers datagrams on the listening UDP socket.
final class DNSDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let engine: DNSQueryEngine

    init(engine: DNSQueryEngine) { self.engine = engine }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        let client = envelope.remoteAddress
        switch engine.handle(Array(envelope.data.readableBytesView), over: .udp) {
        case .drop:
            return
        case .reply(let reply):
            context.writeAndFlush(wrapOutboundOut(datagram(reply, to: client, allocator: context.channel.allocator)), promise: nil)
        case .forward(let forwarding):
            let channel = context.channel
            let engine = engine
            Task {
                guard let reply = await engine.forward(forwarding) else { return }
                channel.writeAndFlush(datagram(reply, to: client, allocator: channel.allocator), promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A client gone away (ICMP unreachable for a reply) surfaces here;
        // the socket serves on.
        engine.logger.trace("UDP socket error", metadata: ["error": "\(error)"])
    }

}

private func datagram(_ reply: [UInt8], to client: SocketAddress, allocator: ByteBufferAllocator) -> AddressedEnvelope<ByteBuffer> {
    var buffer = allocator.buffer(capacity: reply.count)
    buffer.writeBytes(reply)
    return AddressedEnvelope(remoteAddress: client, data: buffer)
}

/// Answers the queries of one TCP connection, several of them, in any
/// order (RFC 7766 §6.2.1.1); stops reading while too many are
/// outstanding; closes the connection once idle.
final class DNSStreamHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let engine: DNSQueryEngine
    let maxOutstanding: Int
    private var outstanding = 0
    private var readHeld = false

    init(engine: DNSQueryEngine, maxOutstanding: Int) {
        self.engine = engine
        self.maxOutstanding = maxOutstanding
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch engine.handle(Array(frame.readableBytesView), over: .tcp) {
        case .drop:
            return
        case .reply(let reply):
            context.writeAndFlush(wrapOutboundOut(Self.frame(reply, allocator: context.channel.allocator)), promise: nil)
        case .forward(let forwarding):
            outstanding += 1
            let channel = context.channel
            let engine = engine
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            Task {
                let reply = await engine.forward(forwarding)
                channel.eventLoop.execute {
                    handler.value.finished(reply, context: bound.value)
                }
            }
        }
    }

    private func finished(_ reply: [UInt8]?, context: ChannelHandlerContext) {
        outstanding -= 1
        guard context.channel.isActive else { return }
        if let reply {
            context.writeAndFlush(wrapOutboundOut(Self.frame(reply, allocator: context.channel.allocator)), promise: nil)
        }
        if readHeld && outstanding < maxOutstanding {
            readHeld = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        if outstanding >= maxOutstanding {
            readHeld = true
            return
        }
        context.read()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            // Idle means nothing read or written for the timeout; a query
            // still with the upstream keeps the connection.
            if outstanding == 0 { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        engine.logger.trace("TCP connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    static func frame(_ reply: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: reply.count + 2)
        buffer.writeInteger(UInt16(reply.count))
        buffer.writeBytes(reply)
        return buffer
    }
}

/// Counts open TCP connections and refuses any beyond the limit; keeps
/// them so `stop` can close them.
final class DNSConnectionRegistry: Sendable {
    private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
    private let closed = Atomic<Bool>(false)
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// False when the connection must be closed at once.
    func admit(_ channel: any Channel) -> Bool {
        let key = ObjectIdentifier(channel)
        let admitted = channels.withLock { channels in
            guard !closed.load(ordering: .acquiring), channels.count < limit else { return false }
            channels[key] = channel
            return true
        }
        if admitted {
            channel.closeFuture.whenComplete { [self] _ in
                _ = channels.withLock { $0.removeValue(forKey: key) }
            }
        }
        return admitted
    }

    var count: Int { channels.withLock { $0.count } }

    /// Closes every connection and admits no more.
    func closeAll() -> [EventLoopFuture<Void>] {
        let open = channels.withLock { channels in
            closed.store(true, ordering: .releasing)
            return Array(channels.values)
        }
        return open.map { channel in channel.close().recover { _ in } }
    }
}

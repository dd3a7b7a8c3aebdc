import Logging
import NIOCore
import NIOPosix
import Raft

#if canImport(Glibc)
import Glibc
#endif

/// The outbound side to one peer: a connection dialled (and redialled with backoff) on one event
/// loop, and a bounded queue. All state is confined to `eventLoop`.
final class PeerLink: @unchecked Sendable {
    let peer: NodeID
    let address: PeerAddress
    let eventLoop: any EventLoop
    private unowned let transport: RaftTransport

    // Event-loop state.
    private var channel: (any Channel)?
    private var connecting = false
    private var closed = false
    private var backoff: TimeAmount
    /// Frames waiting for a connection.
    private var waiting: CircularBuffer<(frame: ByteBuffer, type: MessageType)> = []
    /// Frames written and not yet completed, counted against the limits with `waiting`.
    private var inFlight = 0
    private var queuedBytes = 0
    private var lastFailureLogged: NIODeadline = .distantPast
    /// No dial before this: sends while a peer is down must not bypass the backoff.
    private var retryAt: NIODeadline = .distantPast

    init(transport: RaftTransport, peer: NodeID, address: PeerAddress, eventLoop: any EventLoop) {
        self.transport = transport
        self.peer = peer
        self.address = address
        self.eventLoop = eventLoop
        backoff = transport.options.minBackoff
    }

    func send(_ messages: [Message]) {
        let allocator = ByteBufferAllocator()
        let frames = messages.map { (frame: RaftFrame.message($0).encoded(allocator: allocator), type: $0.type) }
        eventLoop.execute { self.enqueue(frames) }
    }

    func close() {
        eventLoop.execute {
            self.closed = true
            self.dropWaiting()
            self.channel?.close(promise: nil)
            self.channel = nil
        }
    }

    private func enqueue(_ frames: [(frame: ByteBuffer, type: MessageType)]) {
        let options = transport.options
        var wrote = false
        for f in frames {
            let size = f.frame.readableBytes
            if size > options.maxFrameSize {
                // The peer would refuse it; say so here, where the cause (a snapshot too big for
                // maxFrameSize) can be fixed.
                transport.logger.error("raft transport: \(f.type) of \(size) bytes to member \(peer) exceeds the frame limit of \(options.maxFrameSize) bytes; dropped")
                drop(f.type)
                continue
            }
            if closed || waiting.count + inFlight >= options.maxQueuedMessages
                || queuedBytes + size > options.maxQueuedBytes {
                drop(f.type)
                continue
            }
            if let channel, channel.isActive {
                write(f, on: channel)
                wrote = true
            } else {
                waiting.append(f)
                queuedBytes += size
            }
        }
        if wrote { channel?.flush() }
        if channel == nil { connect() }
    }

    private func write(_ f: (frame: ByteBuffer, type: MessageType), on channel: any Channel) {
        let size = f.frame.readableBytes
        inFlight += 1
        queuedBytes += size
        let transport = self.transport
        let peer = self.peer
        channel.write(f.frame).whenComplete { result in
            self.inFlight -= 1
            self.queuedBytes -= size
            switch result {
            case .success:
                transport.counters.withLock { $0.sent += 1 }
                if f.type == .snapshot { transport.handlers.delivery(peer, f.type, true) }
            case .failure:
                self.drop(f.type)
            }
        }
    }

    private func drop(_ type: MessageType) {
        transport.counters.withLock { $0.dropped += 1 }
        transport.handlers.delivery(peer, type, false)
    }

    private func dropWaiting() {
        while let f = waiting.popFirst() {
            queuedBytes -= f.frame.readableBytes
            drop(f.type)
        }
    }

    private func connect() {
        guard !connecting, !closed, channel == nil, NIODeadline.now() >= retryAt else { return }
        connecting = true
        let options = transport.options
        let security = options.configureSecurity
        let userTimeout = Int32(options.unacknowledgedTimeout.nanoseconds / 1_000_000)
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(options.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(ChannelOptions.socket(SocketOptionLevel(IPPROTO_TCP), SocketOptionName(TCP_USER_TIMEOUT)),
                           value: SocketOptionValue(userTimeout))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try security?(channel, false)
                    try channel.pipeline.syncOperations.addHandler(OutboundWatcher(link: self))
                }
            }
        let connected: EventLoopFuture<any Channel>
        if let ip = try? SocketAddress(ipAddress: address.host, port: address.port) {
            connected = bootstrap.connect(to: ip)
        } else {
            connected = bootstrap.connect(host: address.host, port: address.port)
        }
        connected.whenComplete { result in
            self.connecting = false
            switch result {
            case let .success(channel):
                guard !self.closed else {
                    channel.close(promise: nil)
                    return
                }
                self.transport.counters.withLock { $0.connects += 1 }
                self.transport.logger.info("raft transport: connected to member \(self.peer) at \(self.address)")
                self.channel = channel
                self.backoff = self.transport.options.minBackoff
                channel.write(RaftFrame.hello(.init(from: self.transport.id, to: self.peer)).encoded(allocator: channel.allocator),
                              promise: nil)
                while let f = self.waiting.popFirst() {
                    self.queuedBytes -= f.frame.readableBytes
                    self.write(f, on: channel)
                }
                channel.flush()
            case let .failure(error):
                self.failed("cannot connect: \(error)")
            }
        }
    }

    /// The connection ended or could not be made: drop what waits and dial again after the backoff.
    fileprivate func failed(_ why: String) {
        channel = nil
        dropWaiting()
        guard !closed else { return }
        let now = NIODeadline.now()
        // One line per peer per few seconds, so a member that is down does not flood the log.
        if now - lastFailureLogged > .seconds(5) {
            lastFailureLogged = now
            transport.logger.warning("raft transport: member \(peer) at \(address): \(why); redialling")
        }
        let delay = backoff
        backoff = min(backoff * 2, transport.options.maxBackoff)
        retryAt = now + delay
        // Dial even with nothing queued, so the link is ready when Raft next sends.
        eventLoop.scheduleTask(in: delay) { self.connect() }
    }

    fileprivate func inactive(_ channel: any Channel) {
        guard self.channel === channel else { return }
        failed("connection closed")
    }
}

/// Notices the end of an outbound connection; the peer never sends on it, so bytes are ignored.
private final class OutboundWatcher: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let link: PeerLink

    init(link: PeerLink) { self.link = link }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func channelInactive(context: ChannelHandlerContext) {
        link.inactive(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// Reads frames from a peer: the hello first, then messages. Anything wrong closes the
/// connection with one error line naming the peer and the problem.
final class InboundHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private unowned let transport: RaftTransport
    private var peer: NodeID?
    private var closing = false

    init(transport: RaftTransport) { self.transport = transport }

    private func who(_ context: ChannelHandlerContext) -> String {
        let addr = context.remoteAddress.map { "\($0)" } ?? "unknown address"
        if let peer { return "member \(peer) (\(addr))" }
        return addr
    }

    func channelActive(context: ChannelHandlerContext) {
        transport.track(inbound: context.channel, add: true)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        transport.track(inbound: context.channel, add: false)
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let body = unwrapInboundIn(data)
        let frame: RaftFrame
        do {
            frame = try RaftFrame.decode(body: body)
        } catch {
            reject(context, "\(error)")
            return
        }
        switch frame {
        case let .hello(h):
            guard peer == nil else { return reject(context, "a second hello on one connection") }
            guard transport.isMember(h.from), h.from != transport.id else {
                return reject(context, "message from unknown member \(h.from): not in this node's member list \(transport.peers.keys.sorted())")
            }
            guard h.to == transport.id else {
                return reject(context, "connection meant for member \(h.to), but this is member \(transport.id)")
            }
            peer = h.from
        case let .message(m):
            guard let peer else { return reject(context, "a message before the hello") }
            guard m.from == peer else {
                return reject(context, "message claims to be from member \(m.from) on member \(peer)'s connection")
            }
            guard transport.isMember(m.from) else {
                return reject(context, "message from unknown member \(m.from) (removed from this node's member list)")
            }
            guard m.to == transport.id else {
                return reject(context, "message for member \(m.to), but this is member \(transport.id)")
            }
            transport.counters.withLock { $0.received += 1 }
            transport.handlers.message(m)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let e = error as? ByteToMessageDecoderError, case let .leftoverDataWhenDone(b) = e {
            reject(context, "connection closed with \(b.readableBytes) bytes of an unfinished frame")
        } else if error is RaftFrame.Error {
            reject(context, "\(error)")
        } else if let e = error as? IOError, e.errnoCode == ECONNRESET {
            context.close(promise: nil)
        } else {
            reject(context, "\(error)")
        }
    }

    private func reject(_ context: ChannelHandlerContext, _ why: String) {
        guard !closing else { return }
        closing = true
        transport.counters.withLock { $0.rejectedConnections += 1 }
        transport.logger.error("raft transport: closing connection from \(who(context)): \(why)")
        context.close(promise: nil)
    }
}

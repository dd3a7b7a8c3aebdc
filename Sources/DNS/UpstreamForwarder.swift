#if canImport(Glibc)
import Glibc
#endif
import Logging
import Namespaces
import NIOCore
import NIOPosix
import Synchronization

/// Sends queries that are not ours to the upstream resolvers and returns
/// their replies unchanged but for the ID.
///
/// Each attempt uses a fresh UDP socket connected to the upstream: a random
/// source port and a random ID make a forged reply hard to land, and a
/// connected socket hears ICMP port-unreachable, so a dead upstream fails
/// the attempt at once instead of at the timeout. A truncated reply is
/// asked again over TCP; SERVFAIL, REFUSED or NOTIMP moves on to the next
/// upstream (as glibc's stub does).
final class UpstreamForwarder: Sendable {
    let upstreams: [SocketAddress]
    let configuration: DNSServerConfiguration
    let group: any EventLoopGroup
    let logger: Logger
    private let inFlight = Atomic<Int>(0)

    /// Opening a socket inside another namespace takes a thread of its own
    /// (NetworkNamespace.run), and a TCP connect blocks: both happen here,
    /// off the event loops. Shared by every server in the process.
    static let socketThreads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        return pool
    }()

    init(upstreams: [SocketAddress], configuration: DNSServerConfiguration, group: any EventLoopGroup, logger: Logger) {
        self.upstreams = upstreams
        self.configuration = configuration
        self.group = group
        self.logger = logger
    }

    enum AttemptError: Error {
        case timedOut
        case closed
        case badUpstreamAddress
        case connect(errno: Int32)
    }

    /// The upstream's reply with the client's ID restored, or nil when none
    /// answered in time.
    func forward(_ query: [UInt8], question: DNSQuestion, limit: Int) async -> [UInt8]? {
        guard !upstreams.isEmpty else { return nil }
        guard inFlight.wrappingAdd(1, ordering: .relaxed).oldValue < configuration.maxConcurrentForwards else {
            inFlight.wrappingSubtract(1, ordering: .relaxed)
            logger.warning("too many forwarded queries in flight", metadata: ["limit": "\(configuration.maxConcurrentForwards)"])
            return nil
        }
        defer { inFlight.wrappingSubtract(1, ordering: .relaxed) }

        let clientID = UInt16(query[0]) << 8 | UInt16(query[1])
        let deadline = NIODeadline.now() + configuration.forwardTimeout
        var fallback: [UInt8]?
        for upstream in upstreams.prefix(configuration.maxUpstreamsPerQuery) {
            let remaining = deadline - .now()
            guard remaining > .zero else { break }
            let timeout = min(configuration.upstreamTimeout, remaining)
            var reply: [UInt8]
            do {
                reply = try await exchange(query, question: question, with: upstream, overTCP: false, timeout: timeout)
            } catch {
                logger.debug("upstream failed", metadata: ["upstream": "\(upstream)", "error": "\(error)", "transport": "udp"])
                continue
            }
            if reply[2] & 0x02 != 0 {
                // TC: the whole answer only fits a stream. Use it if the
                // client can take it; else the client gets TC and asks us
                // over TCP itself.
                let timeout = min(configuration.upstreamTimeout, max(deadline - .now(), .milliseconds(1)))
                if let whole = try? await exchange(query, question: question, with: upstream, overTCP: true, timeout: timeout),
                   whole.count <= limit {
                    reply = whole
                }
            }
            Self.setID(clientID, in: &reply)
            if reply.count > limit { reply = Self.truncated(reply) }
            let code = reply[3] & 0x0f
            if code == UInt8(DNSResponseCode.serverFailure.rawValue) || code == UInt8(DNSResponseCode.refused.rawValue)
                || code == UInt8(DNSResponseCode.notImplemented.rawValue) {
                fallback = reply
                continue
            }
            return reply
        }
        return fallback
    }

    /// One query, one reply, on a new socket.
    func exchange(_ query: [UInt8], question: DNSQuestion, with upstream: SocketAddress, overTCP: Bool,
                  timeout: TimeAmount) async throws -> [UInt8] {
        var request = query
        let id = UInt16.random(in: .min ... .max)
        Self.setID(id, in: &request)
        let deadline = NIODeadline.now() + timeout
        let fd = try await Self.openSocket(to: upstream, stream: overTCP, namespace: configuration.forwardingNamespace, deadline: deadline)
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: [UInt8].self)
        let check = ReplyCheck(id: id, question: question)
        let channel: any Channel
        do {
            if overTCP {
                channel = try await ClientBootstrap(group: eventLoop)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(DNSStreamFrameDecoder()))
                            try channel.pipeline.syncOperations.addHandler(UpstreamReplyHandler(check: check, promise: promise))
                        }
                    }
                    .withConnectedSocket(fd).get()
            } else {
                channel = try await DatagramBootstrap(group: eventLoop)
                    .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(UpstreamDatagramHandler(check: check, promise: promise))
                        }
                    }
                    .withBoundSocket(fd).get()
            }
        } catch {
            promise.fail(error)
            throw error
        }
        defer { channel.close(promise: nil) }
        let timer = eventLoop.scheduleTask(deadline: deadline) { promise.fail(AttemptError.timedOut) }
        defer { timer.cancel() }
        var buffer = channel.allocator.buffer(capacity: request.count + 2)
        if overTCP {
            buffer.writeInteger(UInt16(request.count))
            buffer.writeBytes(request)
            channel.writeAndFlush(buffer).whenFailure { promise.fail($0) }
        } else {
            buffer.writeBytes(request)
            channel.writeAndFlush(AddressedEnvelope(remoteAddress: upstream, data: buffer)).whenFailure { promise.fail($0) }
        }
        return try await promise.futureResult.get()
    }

    /// A socket for `upstream`, created in `namespace` (nil: this
    /// process's), connected, non-blocking, ready for NIO to adopt.
    static func openSocket(to upstream: SocketAddress, stream: Bool, namespace: NetworkNamespace?,
                           deadline: NIODeadline) async throws -> CInt {
        try await socketThreads.runIfActive {
            let open = { try RawSocket.connected(to: upstream, stream: stream, deadline: deadline) }
            return try namespace.map { try $0.run(open) } ?? open()
        }
    }

    static func setID(_ id: UInt16, in message: inout [UInt8]) {
        message[0] = UInt8(id >> 8)
        message[1] = UInt8(id & 0xff)
    }

    /// The header and question of `reply` with TC set and no records: what
    /// a UDP client gets when the upstream's answer exceeds its size.
    static func truncated(_ reply: [UInt8]) -> [UInt8] {
        var reader = DNSReader(reply)
        guard (try? reader.header()) != nil, let count = try? reader.u16("QDCOUNT"), count == 1 else { return Array(reply.prefix(12)) }
        reader.offset = 12
        guard (try? reader.question()) != nil else { return Array(reply.prefix(12)) }
        var bytes = Array(reply[..<reader.offset])
        bytes[2] |= 0x02
        for index in 6..<12 { bytes[index] = 0 }
        return bytes
    }
}

/// What makes an upstream's reply ours: its ID, QR, and the question we sent.
struct ReplyCheck: Sendable {
    let id: UInt16
    let question: DNSQuestion

    func accepts(_ bytes: [UInt8]) -> Bool {
        var reader = DNSReader(bytes)
        guard let header = try? reader.header(), header.id == id, header.isResponse,
              let count = try? reader.u16("QDCOUNT"), count == 1 else { return false }
        reader.offset = 12
        guard let echoed = try? reader.question() else { return false }
        return echoed == question
    }
}

/// Completes the promise with the first datagram that passes the check; an
/// error on the socket (ICMP unreachable as ECONNREFUSED) fails it.
final class UpstreamDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let check: ReplyCheck
    let promise: EventLoopPromise<[UInt8]>

    init(check: ReplyCheck, promise: EventLoopPromise<[UInt8]>) {
        self.check = check
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(unwrapInboundIn(data).data.readableBytesView)
        if check.accepts(bytes) { promise.succeed(bytes) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(UpstreamForwarder.AttemptError.closed)
        context.fireChannelInactive()
    }
}

/// The same over a stream: the first frame that passes the check.
final class UpstreamReplyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    let check: ReplyCheck
    let promise: EventLoopPromise<[UInt8]>

    init(check: ReplyCheck, promise: EventLoopPromise<[UInt8]>) {
        self.check = check
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Array(unwrapInboundIn(data).readableBytesView)
        if check.accepts(bytes) { promise.succeed(bytes) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(UpstreamForwarder.AttemptError.closed)
        context.fireChannelInactive()
    }
}

import Addressing
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
@testable import DNS

/// The forwarder against fake upstreams on 127.0.0.1 in this process: no
/// root, no namespace, nothing beyond loopback.
@Suite("forwarding")
struct ForwarderTests {
    static let group = MultiThreadedEventLoopGroup.singleton

    func configuration(timeout: TimeAmount = .seconds(2)) -> DNSServerConfiguration {
        var configuration = DNSServerConfiguration()
        configuration.upstreamTimeout = timeout
        configuration.forwardTimeout = timeout * 3
        return configuration
    }

    func forwarder(_ upstreams: [SocketAddress], timeout: TimeAmount = .seconds(2)) -> UpstreamForwarder {
        UpstreamForwarder(upstreams: upstreams, configuration: configuration(timeout: timeout), group: Self.group,
                          logger: Logger(label: "test"))
    }

    static func query(_ name: String, id: UInt16 = 0x4242, edns: UInt16? = nil) -> (bytes: [UInt8], question: DNSQuestion) {
        var header = DNSHeader(id: id)
        header.recursionDesired = true
        let question = DNSQuestion(name: try! DNSName(name), type: .A)
        let message = DNSMessage(header: header, questions: [question], edns: edns.map { EDNS(udpPayloadSize: $0) })
        return (try! message.encoded(), question)
    }

    /// A reply to `query` with `count` A records.
    static func reply(to query: [UInt8], count: Int, code: DNSResponseCode = .noError, truncated: Bool = false) -> [UInt8] {
        let decoded = try! DNSMessage(decoding: query)
        var reply = DNSMessage.reply(to: decoded, code: code)
        reply.edns = decoded.edns
        reply.header.truncated = truncated
        reply.answers = (0..<count).map { index in
            DNSResourceRecord(name: decoded.questions[0].name, ttl: 30, data: .a(IPv4Address(192, 0, 2, UInt8(index % 250 + 1))))
        }
        return try! reply.encoded()
    }

    @Test("a reply comes back with the client's ID; the upstream saw a fresh ID and the same query otherwise")
    func idRewritten() async throws {
        let seen = Mutex<[[UInt8]]>([])
        try await FakeUpstream.with(udp: { query in
            seen.withLock { $0.append(query) }
            return [Self.reply(to: query, count: 2)]
        }) { upstream in
            let (query, question) = Self.query("example.test", edns: 1232)
            let reply = try #require(await forwarder([upstream]).forward(query, question: question, limit: 1232))
            let decoded = try DNSMessage(decoding: reply)
            #expect(decoded.header.id == 0x4242)
            #expect(decoded.answers.count == 2)
            #expect(decoded.edns?.udpPayloadSize == 1232)
            let sent = try #require(seen.withLock { $0.first })
            #expect(Array(sent.dropFirst(2)) == Array(query.dropFirst(2)))
        }
    }

    @Test("a forged reply (wrong ID or question) is ignored; the real one is taken")
    func forgedIgnored() async throws {
        try await FakeUpstream.with(udp: { query in
            var wrongID = Self.reply(to: query, count: 1)
            wrongID[0] ^= 0xff
            let (other, _) = Self.query("other.test", id: UInt16(query[0]) << 8 | UInt16(query[1]))
            return [wrongID, Self.reply(to: other, count: 3), Self.reply(to: query, count: 2)]
        }) { upstream in
            let (query, question) = Self.query("example.test")
            let reply = try #require(await forwarder([upstream]).forward(query, question: question, limit: 512))
            #expect(try DNSMessage(decoding: reply).answers.count == 2)
        }
    }

    @Test("a truncated UDP reply is asked again over TCP; a client that cannot take it gets TC")
    func truncatedRetriedOverTCP() async throws {
        let tcpQueries = Atomic<Int>(0)
        try await FakeUpstream.with(udp: { query in
            [Self.reply(to: query, count: 0, truncated: true)]
        }, tcp: { query in
            tcpQueries.add(1, ordering: .relaxed)
            return Self.reply(to: query, count: 100)
        }) { upstream in
            let (query, question) = Self.query("big.example.test", edns: 4096)
            let whole = try #require(await forwarder([upstream]).forward(query, question: question, limit: 4096))
            let decoded = try DNSMessage(decoding: whole)
            #expect(decoded.answers.count == 100 && !decoded.header.truncated)
            #expect(decoded.header.id == 0x4242)

            let (small, smallQuestion) = Self.query("big.example.test")
            let cut = try #require(await forwarder([upstream]).forward(small, question: smallQuestion, limit: 512))
            let cutDecoded = try DNSMessage(decoding: cut)
            #expect(cutDecoded.header.truncated && cutDecoded.answers.isEmpty)
            #expect(tcpQueries.load(ordering: .relaxed) == 2)
        }
    }

    @Test("SERVFAIL moves on to the next upstream; a refused port fails at once")
    func nextUpstream() async throws {
        try await FakeUpstream.with(udp: { query in [Self.reply(to: query, count: 0, code: .serverFailure)] }) { failing in
            try await FakeUpstream.with(udp: { query in [Self.reply(to: query, count: 1)] }) { good in
                let dead = try SocketAddress(ipAddress: "127.0.0.1", port: FakeUpstream.unusedPort())
                let (query, question) = Self.query("example.test")
                let clock = ContinuousClock()
                var reply: [UInt8]?
                let elapsed = await clock.measure {
                    reply = await forwarder([dead, failing, good]).forward(query, question: question, limit: 512)
                }
                let decoded = try DNSMessage(decoding: try #require(reply))
                #expect(decoded.responseCode == .noError && decoded.answers.count == 1)
                #expect(elapsed < .milliseconds(500), "a refused port must not wait for the timeout: \(elapsed)")
                print("dead, SERVFAIL, good upstream: answered in \(elapsed)")

                // Only failing upstreams: their SERVFAIL is passed on.
                let only = try #require(await forwarder([dead, failing]).forward(query, question: question, limit: 512))
                #expect(try DNSMessage(decoding: only).responseCode == .serverFailure)
            }
        }
    }

    @Test("an upstream that never answers times out; no upstream gives nil")
    func silent() async throws {
        try await FakeUpstream.with(udp: { _ in [] }) { silent in
            let (query, question) = Self.query("example.test")
            let clock = ContinuousClock()
            var reply: [UInt8]? = [0]
            let elapsed = await clock.measure {
                reply = await forwarder([silent], timeout: .milliseconds(200)).forward(query, question: question, limit: 512)
            }
            #expect(reply == nil)
            #expect(elapsed >= .milliseconds(200) && elapsed < .seconds(1), "\(elapsed)")
        }
        let (query, question) = Self.query("example.test")
        #expect(await forwarder([]).forward(query, question: question, limit: 512) == nil)
    }

    @Test("the engine: FORMERR for a bad query with a readable header; short packets and responses dropped; SERVFAIL when forwarding fails")
    func engine() async throws {
        let engine = DNSQueryEngine(policy: DNSResolverPolicy(), records: DNSRecordTable(), forwarder: forwarder([]),
                                    logger: Logger(label: "test"))
        let (query, _) = Self.query("example.test")
        guard case .reply(let formatError) = engine.handle(Array(query.dropLast(3)), over: .udp) else {
            Issue.record("no FORMERR"); return
        }
        let decoded = try DNSMessage(decoding: formatError)
        #expect(decoded.header.id == 0x4242 && decoded.header.isResponse && decoded.responseCode == .formatError)
        guard case .drop = engine.handle(Array(query.prefix(11)), over: .udp) else { Issue.record("short packet answered"); return }
        guard case .drop = engine.handle(Self.reply(to: query, count: 1), over: .udp) else { Issue.record("response answered"); return }
        guard case .forward(let forwarding) = engine.handle(query, over: .tcp) else { Issue.record("not forwarded"); return }
        #expect(forwarding.limit == 65_535)
        let failure = try DNSMessage(decoding: try #require(await engine.forward(forwarding)))
        #expect(failure.responseCode == .serverFailure && failure.header.id == 0x4242 && failure.questions.count == 1)
        #expect(engine.counters.withLock { $0 } == DNSServerCounters(queries: 4, answered: 0, forwarded: 1, serverFailures: 1, malformed: 1, dropped: 2))
    }
}

/// A resolver on 127.0.0.1 (UDP and TCP on one port) whose replies a test
/// scripts: `udp` returns the datagrams to send back (none: silence).
enum FakeUpstream {
    static func with(udp: @escaping @Sendable ([UInt8]) -> [[UInt8]], tcp: (@Sendable ([UInt8]) -> [UInt8])? = nil,
                     _ body: (SocketAddress) async throws -> Void) async throws {
        let group = ForwarderTests.group
        let udpChannel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UDPResponder(respond: udp)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { udpChannel.close(promise: nil) }
        let address = udpChannel.localAddress!
        var tcpChannel: (any Channel)?
        if let tcp {
            tcpChannel = try await ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(DNSStreamFrameDecoder()))
                        try channel.pipeline.syncOperations.addHandler(TCPResponder(respond: tcp))
                    }
                }
                .bind(to: address).get()
        }
        defer { tcpChannel?.close(promise: nil) }
        try await body(address)
    }

    /// A port nothing listens on (bound, read, released).
    static func unusedPort() throws -> Int {
        let channel = try DatagramBootstrap(group: ForwarderTests.group).bind(host: "127.0.0.1", port: 0).wait()
        let port = channel.localAddress!.port!
        try channel.close().wait()
        return port
    }

    final class UDPResponder: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let respond: @Sendable ([UInt8]) -> [[UInt8]]
        init(respond: @escaping @Sendable ([UInt8]) -> [[UInt8]]) { self.respond = respond }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            for reply in respond(Array(envelope.data.readableBytesView)) {
                let buffer = context.channel.allocator.buffer(bytes: reply)
                context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: buffer)), promise: nil)
            }
        }
    }

    final class TCPResponder: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let respond: @Sendable ([UInt8]) -> [UInt8]
        init(respond: @escaping @Sendable ([UInt8]) -> [UInt8]) { self.respond = respond }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let reply = respond(Array(unwrapInboundIn(data).readableBytesView))
            var buffer = context.channel.allocator.buffer(capacity: reply.count + 2)
            buffer.writeInteger(UInt16(reply.count))
            buffer.writeBytes(reply)
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }
    }
}

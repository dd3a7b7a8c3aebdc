#if canImport(Glibc)
import Glibc
#endif
import Logging
import Namespaces
import NIOCore
import NIOPosix

/// The DNS server one workload sees at 127.0.0.11:53, as in Docker: UDP and
/// TCP, listening inside the workload's namespace, answering service names
/// from a record source and forwarding everything else to the upstreams
/// from the daemon's namespace.
///
/// The listening sockets are created and bound on a thread inside the
/// namespace (NetworkNamespace.run) and then handed to NIO, whose event
/// loops run in the daemon's namespace: a socket belongs to the namespace it
/// was created in, whichever thread uses it.
public final class EmbeddedDNSServer: Sendable {
    public enum Error: Swift.Error, CustomStringConvertible {
        /// 127.0.0.11 cannot be bound: `lo` is down in the namespace (bring
        /// it up first: `ip -n NS link set lo up`).
        case loopbackDown(namespace: String, address: String)
        case bind(namespace: String, address: String, underlying: any Swift.Error)

        public var description: String {
            switch self {
            case .loopbackDown(let namespace, let address):
                "cannot listen on \(address) in network namespace \(namespace): lo is down there (EADDRNOTAVAIL); bring it up first"
            case .bind(let namespace, let address, let underlying):
                "cannot listen on \(address) in network namespace \(namespace): \(underlying)"
            }
        }
    }

    public let namespace: NetworkNamespace
    /// The address the server answers on inside the namespace.
    public let address: SocketAddress
    let engine: DNSQueryEngine
    let udp: any Channel
    let tcp: any Channel
    let connections: DNSConnectionRegistry

    private init(namespace: NetworkNamespace, address: SocketAddress, engine: DNSQueryEngine, udp: any Channel,
                 tcp: any Channel, connections: DNSConnectionRegistry) {
        self.namespace = namespace
        self.address = address
        self.engine = engine
        self.udp = udp
        self.tcp = tcp
        self.connections = connections
    }

    /// Starts serving `namespace`. `records` is asked on every query;
    /// `upstreams` (normally `ResolvConf.hostUpstreams()`) get every other
    /// name; with none, such names get SERVFAIL. The namespace's `lo` must
    /// be up.
    public static func start(
        namespace: NetworkNamespace,
        records: some DNSRecordSource,
        upstreams: [SocketAddress],
        configuration: DNSServerConfiguration = DNSServerConfiguration(),
        group: any EventLoopGroup,
        logger: Logger
    ) async throws -> EmbeddedDNSServer {
        var tagged = logger
        tagged[metadataKey: "netns"] = "\(namespace)"
        let logger = tagged
        let address = try SocketAddress(ipAddress: configuration.listenHost, port: configuration.listenPort)
        let forwarder = UpstreamForwarder(upstreams: upstreams, configuration: configuration, group: group, logger: logger)
        let engine = DNSQueryEngine(policy: configuration.policy, records: records, forwarder: forwarder, logger: logger)
        let connections = DNSConnectionRegistry(limit: configuration.maxTCPConnections)

        let (udpSocket, tcpSocket) = try await UpstreamForwarder.socketThreads.runIfActive {
            try namespace.run {
                let udp = try listeningSocket(address, stream: false, namespace: namespace)
                do {
                    return (udp, try listeningSocket(address, stream: true, namespace: namespace))
                } catch {
                    close(udp)
                    throw error
                }
            }
        }

        let udp: any Channel
        do {
            udp = try await DatagramBootstrap(group: group)
                .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_536))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(DNSDatagramHandler(engine: engine))
                    }
                }
                .withBoundSocket(udpSocket).get()
        } catch {
            close(tcpSocket)
            throw error
        }
        let idle = configuration.tcpIdleTimeout
        let perConnection = configuration.maxQueriesPerTCPConnection
        let tcp: any Channel
        do {
            tcp = try await ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 128)
                .childChannelInitializer { channel in
                    guard connections.admit(channel) else {
                        logger.warning("too many DNS TCP connections; closing a new one", metadata: ["limit": "\(connections.limit)"])
                        return channel.close()
                    }
                    return channel.eventLoop.makeCompletedFuture {
                        let handlers = channel.pipeline.syncOperations
                        try handlers.addHandler(IdleStateHandler(allTimeout: idle))
                        try handlers.addHandler(ByteToMessageHandler(DNSStreamFrameDecoder()))
                        try handlers.addHandler(DNSStreamHandler(engine: engine, maxOutstanding: perConnection))
                    }
                }
                .withBoundSocket(tcpSocket).get()
        } catch {
            try? await udp.close()
            throw error
        }
        logger.info("embedded DNS server started", metadata: ["address": "\(address)", "upstreams": "\(upstreams)"])
        return EmbeddedDNSServer(namespace: namespace, address: address, engine: engine, udp: udp, tcp: tcp, connections: connections)
    }

    /// Stops listening and closes open TCP connections. Queries still with
    /// an upstream finish into closed sockets.
    public func stop() async {
        try? await udp.close()
        try? await tcp.close()
        for closing in connections.closeAll() { try? await closing.get() }
        engine.logger.info("embedded DNS server stopped")
    }

    /// What the server has done so far.
    public var counters: DNSServerCounters { engine.counters.withLock { $0 } }

    /// Open TCP client connections.
    public var tcpConnections: Int { connections.count }

    private static func listeningSocket(_ address: SocketAddress, stream: Bool, namespace: NetworkNamespace) throws -> CInt {
        do {
            return try RawSocket.bound(to: address, stream: stream)
        } catch let error as RawSocket.Error where error.errno == EADDRNOTAVAIL {
            throw Error.loopbackDown(namespace: "\(namespace)", address: "\(address)")
        } catch {
            throw Error.bind(namespace: "\(namespace)", address: "\(address)\(stream ? "/tcp" : "/udp")", underlying: error)
        }
    }
}

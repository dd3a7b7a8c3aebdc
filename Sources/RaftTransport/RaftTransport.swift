import Logging
import NIOCore
import NIOPosix
import Raft
import Synchronization

/// Moves Raft messages between members over TCP: one outbound connection per peer for what this
/// node sends, and a listener for what the peers send it (as etcd's rafthttp streams, each
/// connection carries one direction).
///
/// Sending never blocks: each peer has a bounded queue, and a message that does not fit is dropped
/// and reported through `Handlers.delivery`; Raft retransmits what matters. A connection from a
/// member not in `peers`, a frame over `maxFrameSize`, or bytes that are not a valid frame close
/// that connection with an error naming the peer; the node itself carries on.
public final class RaftTransport: Sendable {
    /// Tunables; every timing has a LAN default.
    public struct Options: Sendable {
        /// Largest frame accepted or sent; it must hold the biggest snapshot the store can make.
        public var maxFrameSize: Int = 64 << 20
        /// Messages queued or in flight per peer before new ones are dropped.
        public var maxQueuedMessages: Int = 4096
        /// Bytes queued or in flight per peer before new messages are dropped.
        public var maxQueuedBytes: Int = 128 << 20
        public var connectTimeout: TimeAmount = .milliseconds(500)
        /// Reconnection waits start here and double up to `maxBackoff`.
        public var minBackoff: TimeAmount = .milliseconds(20)
        public var maxBackoff: TimeAmount = .milliseconds(500)
        /// TCP_USER_TIMEOUT: a connection whose data stays unacknowledged this long is dropped and
        /// redialled, so a healed partition is not stuck behind the kernel's retransmission backoff.
        public var unacknowledgedTimeout: TimeAmount = .seconds(2)
        /// Called first on every connection's pipeline (both directions): the place for mutual TLS.
        public var configureSecurity: (@Sendable (any Channel, _ isServer: Bool) throws -> Void)?

        public init() {}
    }

    /// Callbacks from the transport; they run on event-loop threads and must not block.
    public struct Handlers: Sendable {
        /// A valid message from a known member, addressed to this node.
        public var message: @Sendable (Message) -> Void
        /// A message was written to its peer's socket (true) or dropped (false).
        public var delivery: @Sendable (_ to: NodeID, _ type: MessageType, _ sent: Bool) -> Void

        public init(message: @escaping @Sendable (Message) -> Void,
                    delivery: @escaping @Sendable (NodeID, MessageType, Bool) -> Void = { _, _, _ in }) {
            self.message = message
            self.delivery = delivery
        }
    }

    /// Counters for tests and `debug raft`.
    public struct Counters: Sendable, Hashable, Codable {
        public var sent = 0
        public var dropped = 0
        public var received = 0
        public var rejectedConnections = 0
        public var connects = 0
    }

    public let id: NodeID
    public let options: Options
    let handlers: Handlers
    let logger: Logger
    let group: any EventLoopGroup
    private let state: Mutex<State>
    let counters = Mutex(Counters())

    private struct State {
        var peers: [NodeID: PeerAddress]
        var links: [NodeID: PeerLink] = [:]
        var listener: (any Channel)?
        var inbound: [ObjectIdentifier: any Channel] = [:]
        var closed = false
    }

    public init(id: NodeID, peers: [NodeID: PeerAddress], options: Options = Options(), handlers: Handlers,
                logger: Logger, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        precondition(id != noNode)
        self.id = id
        self.options = options
        self.handlers = handlers
        self.logger = logger
        self.group = group
        state = Mutex(State(peers: peers))
    }

    public var counterValues: Counters { counters.withLock { $0 } }

    /// The members this transport accepts and dials (this node included, if listed).
    public var peers: [NodeID: PeerAddress] { state.withLock { $0.peers } }

    /// Adds or moves a member (after a membership change).
    public func setPeer(_ peer: NodeID, address: PeerAddress) {
        let old: PeerLink? = state.withLock { s in
            guard s.peers[peer] != address else { return nil }
            s.peers[peer] = address
            return s.links.removeValue(forKey: peer)
        }
        old?.close()
    }

    /// Forgets a member: its connections are closed and its messages rejected from now on.
    public func removePeer(_ peer: NodeID) {
        let old = state.withLock { s in
            s.peers[peer] = nil
            return s.links.removeValue(forKey: peer)
        }
        old?.close()
    }

    /// Binds the listener; returns the bound port (useful with port 0).
    @discardableResult
    public func listen(host: String, port: Int) async throws -> Int {
        let maxFrame = options.maxFrameSize
        let security = options.configureSecurity
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try security?(channel, true)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RaftFrameDecoder(maxFrameSize: maxFrame)))
                    try channel.pipeline.syncOperations.addHandler(InboundHandler(transport: self))
                }
            }
            .bind(host: host, port: port)
            .get()
        state.withLock { $0.listener = channel }
        return channel.localAddress?.port ?? port
    }

    /// Sends messages, grouped per peer with one flush each; never blocks.
    public func send(_ messages: [Message]) {
        guard !messages.isEmpty else { return }
        var byPeer: [NodeID: [Message]] = [:]
        for m in messages { byPeer[m.to, default: []].append(m) }
        for (peer, ms) in byPeer {
            guard let link = link(for: peer) else {
                for m in ms { handlers.delivery(peer, m.type, false) }
                counters.withLock { $0.dropped += ms.count }
                logger.debug("raft transport: no address for member \(peer); dropping \(ms.count) messages")
                continue
            }
            link.send(ms)
        }
    }

    private func link(for peer: NodeID) -> PeerLink? {
        state.withLock { s in
            guard !s.closed, peer != id, let address = s.peers[peer] else { return nil }
            if let l = s.links[peer] { return l }
            let l = PeerLink(transport: self, peer: peer, address: address, eventLoop: group.next())
            s.links[peer] = l
            return l
        }
    }

    /// Whether `peer` may talk to this node.
    func isMember(_ peer: NodeID) -> Bool {
        state.withLock { $0.peers[peer] != nil }
    }

    func track(inbound channel: any Channel, add: Bool) {
        state.withLock { s in
            if add && !s.closed { s.inbound[ObjectIdentifier(channel)] = channel } else { s.inbound[ObjectIdentifier(channel)] = nil }
        }
    }

    /// Closes every connection and the listener; messages sent afterwards are dropped.
    public func shutdown() async {
        let (links, listener, inbound) = state.withLock { s in
            s.closed = true
            defer { s.links = [:]; s.inbound = [:]; s.listener = nil }
            return (Array(s.links.values), s.listener, Array(s.inbound.values))
        }
        for l in links { l.close() }
        for c in inbound { try? await c.close() }
        try? await listener?.close()
    }
}

import Gossip
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// One gossip node on real sockets: a `GossipNode` core driven by a UDP socket (probes and
/// gossip), a TCP listener and connections on the same port (push-pull), and a timer.
///
/// The runtime has no protocol logic: it feeds the core what arrives, ticks it on a monotonic
/// clock, transmits what the core returns, and seals and opens everything with the keyring when
/// one is set. Every access to the core is serialized by one lock; sockets are written outside it.
///
/// Lifecycle: `init`, `start(bind:port:advertise:)`, `join(_:)`, … `leave()`, `shutdown()`.
public final class LiveGossipNode: Sendable {
    public enum Error: Swift.Error, Sendable, Hashable, CustomStringConvertible {
        case notStarted
        case alreadyStarted
        case stopped
        case advertiseAddressRequired(bind: String)
        case invalidAddress(String)
        case joinFailed([NodeAddress])

        public var description: String {
            switch self {
            case .notStarted: "the gossip runtime has not been started"
            case .alreadyStarted: "the gossip runtime is already started"
            case .stopped: "the gossip runtime has been shut down"
            case .advertiseAddressRequired(let bind): "bound to \(bind): give the address other nodes reach this one at"
            case .invalidAddress(let text): "not an address of the form HOST:PORT with an IP literal host: \(text)"
            case .joinFailed(let seeds): "no member answered a join: \(seeds.map(\.description).joined(separator: ", "))"
            }
        }
    }

    /// One visible entry of a table.
    public struct Entry: Sendable, Hashable, Codable {
        public var key: String
        public var owner: String
        public var value: [UInt8]

        public init(key: String, owner: String, value: [UInt8]) {
            self.key = key
            self.owner = owner
            self.value = value
        }
    }

    /// Both kinds of counters at one instant.
    public struct Counters: Sendable, Hashable {
        public var core: GossipCounters
        public var transport: TransportCounters
    }

    public let name: String
    public let configuration: GossipConfiguration
    /// How long a push-pull connection may take, from connect to response.
    public let streamTimeout: Duration
    /// How often the core's timers are run.
    public let tickInterval: Duration

    let group: any EventLoopGroup
    let logger: Logger
    let origin: UInt64
    let state: Mutex<State>

    struct State: ~Copyable {
        var core: GossipNode?
        var keyring: Keyring?
        var transport = TransportCounters()
        var udp: (any Channel)?
        var listener: (any Channel)?
        var ticker: RepeatedTask?
        var stopped = false
        var subscribers: [UInt64: Subscriber] = [:]
        var nextSubscriber: UInt64 = 0
    }

    enum Subscriber {
        case table(network: String, table: String, AsyncStream<TableChange>.Continuation)
        case all(AsyncStream<GossipEvent>.Continuation)
    }

    /// What sending needs, read under the lock and used outside it.
    struct Wire {
        var udp: any Channel
        var keyring: Keyring?
    }

    /// - Parameters:
    ///   - name: this node's name, unique in the cluster (at most 255 bytes).
    ///   - configuration: every timing of the protocol; `.lan` in production, `.fast` in tests.
    ///   - keyring: encrypts and authenticates all gossip; nil sends plaintext.
    ///   - streamTimeout: how long one push-pull connection may take; memberlist's TCP timeout is 10 s.
    public init(name: String, configuration: GossipConfiguration = .lan, keyring: Keyring? = nil,
                streamTimeout: Duration = .seconds(10),
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
                logger: Logger = Logger(label: "swarmnet.gossip")) {
        self.name = name
        self.configuration = configuration
        self.streamTimeout = streamTimeout
        // A quarter of the shortest timer keeps the delay the tick adds small beside it.
        let shortest = min(configuration.gossipInterval, configuration.probeTimeout)
        self.tickInterval = min(max(shortest / 4, .milliseconds(5)), .milliseconds(50))
        self.group = group
        self.logger = logger
        self.origin = NIODeadline.now().uptimeNanoseconds
        self.state = Mutex(State(keyring: keyring))
    }

    // MARK: lifecycle

    /// Binds UDP and TCP on `host:port` (port 0 picks a free one, the same for both) and starts
    /// the timers. `advertise` is the host other nodes reach this one at; it defaults to `host`,
    /// and is required when `host` is a wildcard. Returns the advertised address.
    @discardableResult
    public func start(bind host: String, port: Int, advertise: String? = nil) async throws -> NodeAddress {
        try state.withLock { state in
            if state.stopped { throw Error.stopped }
            if state.core != nil || state.udp != nil { throw Error.alreadyStarted }
        }
        let advertisedHost = advertise ?? host
        if advertise == nil, host == "0.0.0.0" || host == "::" {
            throw Error.advertiseAddressRequired(bind: host)
        }
        guard (try? SocketAddress(ipAddress: advertisedHost, port: 0)) != nil else {
            throw Error.invalidAddress(advertisedHost)
        }

        // With port 0 the kernel picks the UDP port, which may be taken for TCP: try a few.
        var attempt = 0
        var bound: (udp: any Channel, listener: any Channel)?
        while bound == nil {
            attempt += 1
            let udp = try await bindDatagram(host: host, port: port)
            let actualPort = udp.localAddress?.port ?? port
            do {
                let listener = try await bindListener(host: host, port: actualPort)
                bound = (udp, listener)
            } catch {
                try? await udp.close()
                if port != 0 || attempt >= 8 { throw error }
            }
        }
        guard let (udp, listener) = bound else { throw Error.notStarted }
        let address = NodeAddress(host: advertisedHost, port: UInt16(udp.localAddress?.port ?? port))
        let core = GossipNode(name: name, address: address, configuration: configuration,
                              seed: UInt64.random(in: .min ... .max), now: now())
        let interval = TimeAmount.nanoseconds(Int64(tickInterval.components.seconds) * 1_000_000_000
                                              + tickInterval.components.attoseconds / 1_000_000_000)
        let ticker = udp.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [weak self] _ in
            self?.tick()
        }
        let stoppedMeanwhile = state.withLock { state -> Bool in
            if state.stopped { return true }
            state.core = core
            state.udp = udp
            state.listener = listener
            state.ticker = ticker
            return false
        }
        if stoppedMeanwhile {
            ticker.cancel()
            try? await udp.close()
            try? await listener.close()
            throw Error.stopped
        }
        logger.debug("gossip started", metadata: ["node": "\(name)", "address": "\(address)"])
        return address
    }

    /// Contacts the seeds with a join push-pull each and waits for their answers; one member is
    /// enough, the rest of the cluster is learnt by gossip. Returns how many seeds answered;
    /// throws `joinFailed` when none did.
    @discardableResult
    public func join(_ seeds: [NodeAddress]) async throws -> Int {
        let exchanges = try mutate { core, now in ((), core.join(seeds, now: now)) }.exchanges
        var answered = 0
        for exchange in exchanges where try await exchange.get() {
            answered += 1
        }
        if answered == 0, !exchanges.isEmpty { throw Error.joinFailed(seeds) }
        return answered
    }

    /// Announces a graceful leave and waits until the announcement has been gossiped (or
    /// `timeout`, by default 25 gossip intervals, passed). Call `shutdown()` afterwards.
    public func leave(timeout: Duration? = nil) async throws {
        _ = try mutate { core, now in ((), core.leave(now: now)) }
        let deadline = ContinuousClock.now + (timeout ?? configuration.gossipInterval * 25)
        while ContinuousClock.now < deadline {
            let pending = state.withLock { $0.core?.hasPendingBroadcasts ?? false }
            if !pending { break }
            try await Task.sleep(for: tickInterval)
        }
    }

    /// Stops the timers, closes the sockets and finishes every stream of changes. The state stays
    /// readable (`members()`, `dump()`), but nothing is sent or received any more.
    public func shutdown() async {
        let (udp, listener, ticker, subscribers) = state.withLock { state in
            state.stopped = true
            defer {
                state.udp = nil
                state.listener = nil
                state.ticker = nil
                state.subscribers = [:]
            }
            return (state.udp, state.listener, state.ticker, Array(state.subscribers.values))
        }
        ticker?.cancel()
        try? await udp?.close()
        try? await listener?.close()
        // Outside the lock: finishing a stream runs its termination handler.
        for subscriber in subscribers {
            switch subscriber {
            case .table(_, _, let continuation): continuation.finish()
            case .all(let continuation): continuation.finish()
            }
        }
    }

    // MARK: networks and tables

    /// Joins a network: this node starts receiving (and may write) the network's table entries.
    public func joinNetwork(_ network: String) throws {
        _ = try mutate { core, now in ((), try core.joinNetwork(network, now: now)) }
    }

    /// Leaves a network: its entries owned by this node are withdrawn everywhere.
    public func leaveNetwork(_ network: String) throws {
        _ = try mutate { core, now in
            try core.leaveNetwork(network, now: now)
            return ((), [])
        }
    }

    /// Creates or updates this node's entry `key` (a key owned by another node cannot be written).
    public func put(network: String, table: String, key: String, value: [UInt8]) throws {
        _ = try mutate { core, now in
            do {
                try core.updateEntry(network: network, table: table, key: key, value: value, now: now)
            } catch GossipTableError.entryNotFound {
                try core.createEntry(network: network, table: table, key: key, value: value, now: now)
            }
            return ((), core.flushTableBroadcasts(network: network, now: now))
        }
    }

    /// Deletes this node's entry `key`; the tombstone spreads and is reaped later.
    public func delete(network: String, table: String, key: String) throws {
        _ = try mutate { core, now in
            try core.deleteEntry(network: network, table: table, key: key, now: now)
            return ((), core.flushTableBroadcasts(network: network, now: now))
        }
    }

    /// Changes of one table as this node sees them, in order. With `replay`, the stream starts with
    /// a `.created` change for every entry visible now, so a consumer that programs the kernel
    /// from the stream needs nothing else. It ends at `shutdown()`.
    public func changes(network: String, table: String, replay: Bool = true) -> AsyncStream<TableChange> {
        let (stream, continuation) = AsyncStream.makeStream(of: TableChange.self, bufferingPolicy: .unbounded)
        let id = state.withLock { state -> UInt64? in
            guard !state.stopped else { return nil }
            if replay, let core = state.core {
                for entry in core.entries(network: network, table: table) {
                    continuation.yield(TableChange(kind: .created, network: network, table: table,
                                                   key: entry.key, owner: entry.owner, value: entry.value))
                }
            }
            state.nextSubscriber += 1
            state.subscribers[state.nextSubscriber] = .table(network: network, table: table, continuation)
            return state.nextSubscriber
        }
        finishOrUnsubscribeLater(id, continuation)
        return stream
    }

    /// Every event of the core (members joining, failing, leaving; table changes), in order.
    public func events() -> AsyncStream<GossipEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: GossipEvent.self, bufferingPolicy: .unbounded)
        let id = state.withLock { state -> UInt64? in
            guard !state.stopped else { return nil }
            state.nextSubscriber += 1
            state.subscribers[state.nextSubscriber] = .all(continuation)
            return state.nextSubscriber
        }
        finishOrUnsubscribeLater(id, continuation)
        return stream
    }

    private func finishOrUnsubscribeLater<Element>(_ id: UInt64?, _ continuation: AsyncStream<Element>.Continuation) {
        guard let id else {
            continuation.finish()
            return
        }
        // The handler runs while the cancelled task holds its own lock, and
        // `publish` yields (which takes a consumer task's lock) under
        // `state`'s lock to keep events in order: taking `state` here would
        // deadlock against it. So the subscriber is forgotten a moment
        // later, off this call; a yield to the ended stream meanwhile is
        // dropped.
        continuation.onTermination = { [weak self] _ in
            Task.detached { _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) } }
        }
    }

    // MARK: observation

    /// Every member this node knows, itself included, with status, incarnation and address.
    public func members() -> [Member] {
        state.withLock { $0.core?.memberList ?? [] }
    }

    /// The visible entries of one table, sorted by key.
    public func entries(network: String, table: String) -> [Entry] {
        state.withLock { state in
            state.core?.entries(network: network, table: table).map { Entry(key: $0.key, owner: $0.owner, value: $0.value) } ?? []
        }
    }

    /// The visible entries of `table` in every network, by network (one pass).
    public func entries(table: String) -> [String: [Entry]] {
        state.withLock { state in
            state.core?.entries(table: table).mapValues { $0.map { Entry(key: $0.key, owner: $0.owner, value: $0.value) } } ?? [:]
        }
    }

    /// The networks this node has joined.
    public func networks() -> [String] {
        state.withLock { $0.core?.networks ?? [] }
    }

    public func counters() -> Counters {
        state.withLock { Counters(core: $0.core?.counters ?? GossipCounters(), transport: $0.transport) }
    }

    /// Members, networks, entries (of one table, or all), keys and counters, for debug commands.
    public func dump(network: String? = nil, table: String? = nil) throws -> GossipDump {
        let now = now()
        return try state.withLock { state in
            guard let core = state.core else { throw Error.notStarted }
            return GossipDump(core: core, keyring: state.keyring, transport: state.transport, now: now,
                              network: network, table: table)
        }
    }

    // MARK: keyring

    /// Seals and opens everything with `keyring` from now on (nil: plaintext).
    /// A node that enters a swarm takes the swarm's keys this way, and from
    /// then on hears only members that hold them.
    public func replaceKeyring(_ keyring: Keyring?) {
        state.withLock { $0.keyring = keyring }
    }

    /// The keyring in use; nil when gossip is plaintext.
    public func keyring() -> Keyring? {
        state.withLock { $0.keyring }
    }

    /// Installs `key` for receiving. The first step of a rotation, done on every node.
    public func installKey(_ key: GossipKey) throws {
        try state.withLock { state in
            guard state.keyring != nil else { throw Keyring.Error.keyNotInstalled(key.fingerprint) }
            state.keyring!.install(key)
        }
    }

    /// Sends with `key` from now on (it must be installed). The second step of a rotation.
    public func useKey(_ key: GossipKey) throws {
        try state.withLock { state in
            guard state.keyring != nil else { throw Keyring.Error.keyNotInstalled(key.fingerprint) }
            try state.keyring!.use(key)
        }
    }

    /// Stops accepting `key`. The last step of a rotation, once every node sends with the new key.
    public func removeKey(_ key: GossipKey) throws {
        try state.withLock { state in
            guard state.keyring != nil else { throw Keyring.Error.keyNotInstalled(key.fingerprint) }
            try state.keyring!.remove(key)
        }
    }

    // MARK: driving the core

    func now() -> GossipInstant {
        GossipInstant(nanoseconds: Int64(NIODeadline.now().uptimeNanoseconds &- origin))
    }

    func tick() {
        _ = try? mutate { core, now in ((), core.tick(now: now)) }
    }

    /// Runs `body` on the core under the lock, hands the events to subscribers, then transmits the
    /// outputs outside the lock. Returns `body`'s value and one future per push-pull it opened
    /// (true once a valid response was received).
    func mutate<T>(replyTo: NodeAddress? = nil,
                   _ body: (inout GossipNode, GossipInstant) throws -> (T, [GossipOutput])
    ) throws -> (value: T, exchanges: [EventLoopFuture<Bool>], reply: [UInt8]?) {
        let now = now()
        let (value, outputs, wire) = try state.withLock { state -> (T, [GossipOutput], Wire) in
            guard !state.stopped else { throw Error.stopped }
            guard state.core != nil, let udp = state.udp else { throw Error.notStarted }
            let (value, outputs) = try body(&state.core!, now)
            let events = state.core!.drainEvents()
            if !events.isEmpty { Self.publish(events, to: state.subscribers) }
            let overhead = state.keyring == nil ? 0 : Keyring.overhead
            for output in outputs {
                switch output {
                case .packet(_, let bytes):
                    state.transport.udpPacketsSent += 1
                    state.transport.udpBytesSent += bytes.count + overhead
                case .stream(_, let bytes):
                    state.transport.streamsSent += 1
                    state.transport.streamBytesSent += bytes.count + overhead
                }
            }
            return (value, outputs, Wire(udp: udp, keyring: state.keyring))
        }
        var exchanges: [EventLoopFuture<Bool>] = []
        var reply: [UInt8]?
        for output in outputs {
            switch output {
            case .packet(let destination, let bytes):
                sendDatagram(wire.keyring?.seal(bytes) ?? bytes, to: destination, on: wire.udp)
            case .stream(let destination, let bytes):
                let payload = wire.keyring?.seal(bytes) ?? bytes
                if destination == replyTo {
                    reply = payload
                } else {
                    exchanges.append(openStream(payload, to: destination))
                }
            }
        }
        return (value, exchanges, reply)
    }

    static func publish(_ events: [GossipEvent], to subscribers: [UInt64: Subscriber]) {
        for event in events {
            for subscriber in subscribers.values {
                switch subscriber {
                case .all(let continuation):
                    continuation.yield(event)
                case .table(let network, let table, let continuation):
                    if case .table(let change) = event, change.network == network, change.table == table {
                        continuation.yield(change)
                    }
                }
            }
        }
    }

    func count(_ update: (inout TransportCounters) -> Void) {
        state.withLock { update(&$0.transport) }
    }

    /// A datagram arrived: open it and hand it to the core.
    func receiveDatagram(_ wireBytes: [UInt8], from sender: NodeAddress) {
        let keyring = state.withLock { state -> Keyring? in
            state.transport.udpPacketsReceived += 1
            state.transport.udpBytesReceived += wireBytes.count
            return state.keyring
        }
        var bytes = wireBytes
        if let keyring {
            guard let opened = keyring.open(wireBytes) else {
                count { $0.undecryptablePackets += 1 }
                return
            }
            bytes = opened
        }
        _ = try? mutate { core, now in ((), core.receivePacket(bytes, from: sender, now: now)) }
    }

    /// A push-pull request arrived on the listener; returns the sealed response to write back on
    /// the same connection, if the core gives one. `sender` is the connection's remote address,
    /// used only to recognise the response among the outputs.
    func serveStream(_ wireBytes: [UInt8], from sender: NodeAddress) -> [UInt8]? {
        guard let bytes = openStreamFrame(wireBytes) else { return nil }
        return try? mutate(replyTo: sender) { core, now in ((), core.receiveStream(bytes, from: sender, now: now)) }.reply
    }

    /// The response to a push-pull this node opened; true when it was a valid one.
    func receiveResponse(_ wireBytes: [UInt8], from peer: NodeAddress) -> Bool {
        guard let bytes = openStreamFrame(wireBytes) else { return false }
        let valid = try? mutate { core, now -> (Bool, [GossipOutput]) in
            let malformed = core.counters.malformedInputs
            let outputs = core.receiveStream(bytes, from: peer, now: now)
            return (core.counters.malformedInputs == malformed, outputs)
        }.value
        return valid ?? false
    }

    private func openStreamFrame(_ wireBytes: [UInt8]) -> [UInt8]? {
        let keyring = state.withLock { state -> Keyring? in
            state.transport.streamsReceived += 1
            state.transport.streamBytesReceived += wireBytes.count
            return state.keyring
        }
        guard let keyring else { return wireBytes }
        guard let opened = keyring.open(wireBytes) else {
            count { $0.undecryptableStreams += 1 }
            return nil
        }
        return opened
    }
}

/// One node's gossip state machine: SWIM/Lifeguard membership plus NetworkDB-style tables.
///
/// It does no I/O and reads no clock. The caller feeds it received bytes (`receivePacket`,
/// `receiveStream`) and the passage of time (`tick`), and transmits the `GossipOutput`s it returns.
/// All randomness comes from the seed, and nothing iterates a hash table where the order could
/// reach the output, so one seed always produces the same bytes.
public struct GossipNode: Sendable {
    public let name: String
    public let address: NodeAddress
    public let configuration: GossipConfiguration

    var random: GossipRandom
    public internal(set) var incarnation: UInt64 = 0
    /// True once `leave` was called: the node only finishes spreading its own departure.
    public internal(set) var isLeaving = false
    public internal(set) var counters = GossipCounters()

    // Membership.
    var members: [String: Member] = [:]
    /// Member names in insertion order: the deterministic iteration order for everything else.
    var memberNames: [String] = []
    var probeOrder: [String] = []
    var probeIndex = 0
    var sequence: UInt32 = 0
    var probe: ProbeInFlight?
    var relays: [UInt32: IndirectRelay] = [:]
    var suspicions: [String: Suspicion] = [:]
    var health: LocalHealth
    var broadcasts = TransmitQueue()

    // Tables.
    var networkClock = LamportClock()
    var tableClock = LamportClock()
    var networkMembers: [NetworkMemberKey: NetworkRecord] = [:]
    /// The networks this node has joined, sorted.
    var joinedNetworks: [String] = []
    var entries: [EntryKey: StoredEntry] = [:]
    var networkBroadcasts: [String: TransmitQueue] = [:]

    // Timers.
    var nextProbeAt: GossipInstant
    var nextGossipAt: GossipInstant
    var nextPushPullAt: GossipInstant
    var nextReconnectAt: GossipInstant
    var nextReapAt: GossipInstant

    var outbox: [GossipOutput] = []
    var events: [GossipEvent] = []

    /// A node that knows only itself; call `join` to reach the others.
    public init(name: String, address: NodeAddress, configuration: GossipConfiguration = .lan, seed: UInt64, now: GossipInstant) {
        precondition(name.utf8.count <= WireLimits.name && address.host.utf8.count <= WireLimits.name,
                     "node name and host must fit the wire format")
        self.name = name
        self.address = address
        self.configuration = configuration
        self.random = GossipRandom(seed: seed)
        self.health = LocalHealth(maximum: configuration.awarenessMaxMultiplier)
        // Staggered first deadlines, so nodes started together do not probe and gossip in lockstep.
        nextProbeAt = now.advanced(byNanoseconds: random.jitter(configuration.probeInterval.gossipNanoseconds))
        nextGossipAt = now.advanced(byNanoseconds: random.jitter(configuration.gossipInterval.gossipNanoseconds))
        nextPushPullAt = now.advanced(byNanoseconds: random.jitter(configuration.pushPullInterval.gossipNanoseconds))
        nextReconnectAt = now.advanced(byNanoseconds: random.jitter(configuration.reconnectInterval.gossipNanoseconds))
        nextReapAt = now.advanced(by: configuration.reapCheckInterval)
        let me = Member(name: name, address: address, incarnation: 0, status: .alive, statusChangedAt: now)
        members[name] = me
        memberNames.append(name)
        broadcasts.enqueue(.member(name), .alive(Alive(incarnation: 0, node: name, address: address)))
    }

    // MARK: inputs

    /// Contacts `seeds` with a join push-pull; any one member is enough, the rest is learnt by gossip.
    public mutating func join(_ seeds: [NodeAddress], now: GossipInstant) -> [GossipOutput] {
        for seed in seeds where seed != address {
            sendPushPull(to: seed, join: true, response: false, requesterNetworks: nil, now: now)
        }
        return drainOutbox()
    }

    /// Announces a graceful leave. Keep calling `tick` until `hasPendingBroadcasts` is false (or a
    /// few gossip intervals pass) so the announcement spreads, then stop the node.
    public mutating func leave(now: GossipInstant) -> [GossipOutput] {
        guard !isLeaving else { return drainOutbox() }
        isLeaving = true
        probe = nil
        relays = [:]
        let dead = Dead(incarnation: incarnation, node: name, from: name)
        members[name]?.status = .left
        members[name]?.statusChangedAt = now
        broadcasts.enqueue(.member(name), .dead(dead))
        // Push the news at once rather than waiting for the next gossip round.
        gossipRound(now: now)
        return drainOutbox()
    }

    public mutating func receivePacket(_ bytes: [UInt8], from sender: NodeAddress, now: GossipInstant) -> [GossipOutput] {
        counters.packetsReceived += 1
        counters.bytesReceived += bytes.count
        let messages: [GossipMessage]
        do {
            messages = try GossipCodec.decodePacket(bytes)
        } catch {
            counters.malformedInputs += 1
            return []
        }
        for message in messages {
            handle(message, from: sender, now: now)
        }
        return drainOutbox()
    }

    public mutating func receiveStream(_ bytes: [UInt8], from sender: NodeAddress, now: GossipInstant) -> [GossipOutput] {
        counters.streamsReceived += 1
        counters.bytesReceived += bytes.count
        let state: PushPull
        do {
            state = try GossipCodec.decodeStream(bytes, maxSize: configuration.maxStreamSize)
        } catch {
            counters.malformedInputs += 1
            return []
        }
        handlePushPull(state, from: sender, now: now)
        return drainOutbox()
    }

    /// Runs every timer that is due at `now`. Call it at least every few milliseconds of the
    /// shortest interval (the simulator ticks every 5 ms with `.fast`).
    public mutating func tick(now: GossipInstant) -> [GossipOutput] {
        if !isLeaving {
            probeTick(now: now)
            relayTick(now: now)
            suspicionTick(now: now)
        }
        if now >= nextGossipAt {
            nextGossipAt = now.advanced(by: configuration.gossipInterval)
            gossipRound(now: now)
        }
        if !isLeaving, now >= nextPushPullAt {
            nextPushPullAt = now.advanced(byNanoseconds: pushPullIntervalNanoseconds)
            pushPullRound(now: now)
        }
        if !isLeaving, now >= nextReconnectAt {
            nextReconnectAt = now.advanced(by: configuration.reconnectInterval)
            reconnectRound(now: now)
        }
        if now >= nextReapAt {
            nextReapAt = now.advanced(by: configuration.reapCheckInterval)
            reap(now: now)
        }
        return drainOutbox()
    }

    /// Events since the last call, oldest first.
    public mutating func drainEvents() -> [GossipEvent] {
        defer { events.removeAll(keepingCapacity: true) }
        return events
    }

    // MARK: observation

    /// All known members, this node included, in the order they were learnt.
    public var memberList: [Member] {
        memberNames.compactMap { members[$0] }
    }

    public func member(named name: String) -> Member? {
        members[name]
    }

    /// Alive or suspect members, this node included.
    public var activeMemberCount: Int {
        memberNames.reduce(0) { $0 + ((members[$1]?.status.isActive ?? false) ? 1 : 0) }
    }

    /// Lifeguard's local health score: 0 is healthy; timeouts are scaled by `score + 1`.
    public var localHealthScore: Int { health.score }

    /// True while broadcasts (membership or table) still wait to be sent.
    public var hasPendingBroadcasts: Bool {
        !broadcasts.isEmpty || networkBroadcasts.values.contains { !$0.isEmpty }
    }

    // MARK: plumbing

    mutating func drainOutbox() -> [GossipOutput] {
        defer { outbox.removeAll(keepingCapacity: true) }
        return outbox
    }

    mutating func nextSequence() -> UInt32 {
        sequence &+= 1
        return sequence
    }

    mutating func handle(_ message: GossipMessage, from sender: NodeAddress, now: GossipInstant) {
        switch message {
        case .ping(let ping): handlePing(ping, from: sender, now: now)
        case .indirectPing(let request): handleIndirectPing(request, from: sender, now: now)
        case .ack(let sequence): handleAck(sequence, now: now)
        case .nack(let sequence): handleNack(sequence)
        case .alive(let alive): handleAlive(alive, now: now)
        case .suspect(let suspect): handleSuspect(suspect, now: now)
        case .dead(let dead): handleDead(dead, now: now)
        case .network(let event): _ = mergeNetworkEvent(event, now: now)
        case .table(let event): _ = mergeTableEvent(event, now: now)
        }
    }

    /// memberlist's `pushPullScale`: beyond 32 members the interval grows with log2(n), so the
    /// cluster-wide push-pull load stays roughly constant.
    var pushPullIntervalNanoseconds: Int64 {
        let base = configuration.pushPullInterval.gossipNanoseconds
        let n = activeMemberCount
        guard n > 32 else { return base }
        let multiplier = Int64((GossipMath.log(Double(n)) / GossipMath.log(2) - 5).rounded(.up)) + 1
        let (scaled, overflow) = base.multipliedReportingOverflow(by: multiplier)
        return overflow ? .max : scaled
    }
}

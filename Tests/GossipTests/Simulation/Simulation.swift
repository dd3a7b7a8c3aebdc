import Gossip

/// Network faults the simulator injects between nodes.
struct SimulationFaults {
    /// Probability that a packet (not a stream: TCP retransmits) is dropped.
    var loss = 0.0
    /// Probability that a delivered packet is delivered a second time, later.
    var duplication = 0.0
    /// One-way delay, uniformly in this range, for packets and streams alike (so packets reorder).
    var minimumDelayMilliseconds: Int64 = 1
    var maximumDelayMilliseconds: Int64 = 5
}

/// A deterministic simulator of many `GossipNode`s on virtual time. Everything random, the
/// nodes' choices and the network's faults alike, derives from `seed`, and nodes exchange the
/// encoded bytes, so one seed replays one run exactly, codec included.
final class Simulation {
    struct Delivery {
        var from: Int
        var to: Int
        var isStream: Bool
        var bytes: [UInt8]
    }

    let seed: UInt64
    let configuration: GossipConfiguration
    var faults: SimulationFaults
    /// Ticks come this often; well under the shortest interval of the configuration.
    let tickNanoseconds: Int64
    private(set) var now = GossipInstant(nanoseconds: 1_000_000_000)
    private(set) var nodes: [GossipNode?] = []
    private(set) var names: [String] = []
    private(set) var addresses: [NodeAddress] = []
    private var indexByAddress: [NodeAddress: Int] = [:]
    private var restarts: [Int] = []
    /// Nodes can reach each other only when their groups are equal.
    private var group: [Int] = []
    private var network: GossipRandom
    private var inFlight = EventHeap<Delivery>()
    /// FNV-1a over every delivered byte and its timing: equal digests mean identical runs.
    private(set) var digest: UInt64 = 0xcbf2_9ce4_8422_2325
    private(set) var packetsDelivered = 0
    private(set) var packetsDropped = 0
    /// Events each node reported, when `recordEvents` is set.
    var recordEvents = false
    private(set) var events: [[GossipEvent]] = []

    init(seed: UInt64, nodes count: Int, configuration: GossipConfiguration = .fast, faults: SimulationFaults = SimulationFaults(), tick: Duration = .milliseconds(5)) {
        self.seed = seed
        self.configuration = configuration
        self.faults = faults
        self.tickNanoseconds = Int64(tick.components.attoseconds / 1_000_000_000) + tick.components.seconds * 1_000_000_000
        self.network = GossipRandom(seed: seed ^ 0x5EED_0F_0E7)
        for index in 0..<count {
            let address = NodeAddress(host: "10.0.\(index / 250).\(index % 250 + 1)", port: 7946)
            names.append("node-\(index)")
            addresses.append(address)
            indexByAddress[address] = index
            restarts.append(0)
            group.append(0)
            nodes.append(nil)
            events.append([])
        }
    }

    /// The seed of node `index` in its `restarts`-th life, distinct for every node and life.
    private func nodeSeed(_ index: Int) -> UInt64 {
        var mixer = GossipRandom(seed: seed &+ UInt64(index) &* 0x9E37_79B9 &+ UInt64(restarts[index]) << 40)
        return mixer.next()
    }

    /// Starts every node; each joins through one random node started before it, as an operator
    /// adding hosts one by one would.
    func startAll() {
        for index in nodes.indices {
            start(index, seeds: index == 0 ? [] : [Int.random(in: 0..<index, using: &network)])
        }
    }

    func start(_ index: Int, seeds: [Int]) {
        precondition(nodes[index] == nil, "node \(index) is running")
        var node = GossipNode(name: names[index], address: addresses[index], configuration: configuration, seed: nodeSeed(index), now: now)
        let outputs = node.join(seeds.map { addresses[$0] }, now: now)
        nodes[index] = node
        route(outputs, from: index)
    }

    /// Stops a node without a word: its state is lost, packets to it vanish.
    func crash(_ index: Int) {
        nodes[index] = nil
    }

    /// Starts a crashed node afresh (empty state, same name and address) joining through `via`.
    func restart(_ index: Int, via: Int) {
        restarts[index] += 1
        start(index, seeds: [via])
    }

    func partition(_ groups: [[Int]]) {
        for (number, members) in groups.enumerated() {
            for index in members { group[index] = number + 1 }
        }
    }

    func heal() {
        for index in group.indices { group[index] = 0 }
    }

    func canReach(_ a: Int, _ b: Int) -> Bool {
        group[a] == group[b]
    }

    var running: [Int] { nodes.indices.filter { nodes[$0] != nil } }

    /// Applies `body` to a running node and routes what it emits.
    func with<T>(_ index: Int, _ body: (inout GossipNode, GossipInstant) throws -> T) rethrows -> T {
        guard var node = nodes[index] else { preconditionFailure("node \(index) is not running (seed \(seed))") }
        nodes[index] = nil  // keep the node uniquely referenced while it is mutated
        defer { nodes[index] = node }
        return try body(&node, now)
    }

    func node(_ index: Int) -> GossipNode? { nodes[index] }

    func send(_ outputs: [GossipOutput], from index: Int) {
        route(outputs, from: index)
    }

    private func route(_ outputs: [GossipOutput], from: Int) {
        for output in outputs {
            let (destination, bytes, isStream): (NodeAddress, [UInt8], Bool) = switch output {
            case .packet(let to, let bytes): (to, bytes, false)
            case .stream(let to, let bytes): (to, bytes, true)
            }
            guard let to = indexByAddress[destination] else { continue }
            if !isStream {
                precondition(bytes.count <= configuration.maxPacketSize, "packet of \(bytes.count) bytes (seed \(seed))")
                if faults.loss > 0, Double.random(in: 0..<1, using: &network) < faults.loss {
                    packetsDropped += 1
                    continue
                }
            }
            let delivery = Delivery(from: from, to: to, isStream: isStream, bytes: bytes)
            inFlight.push(delivery, at: now.nanoseconds + delay())
            if !isStream, faults.duplication > 0, Double.random(in: 0..<1, using: &network) < faults.duplication {
                inFlight.push(delivery, at: now.nanoseconds + delay() + delay())
            }
        }
    }

    private func delay() -> Int64 {
        Int64.random(in: faults.minimumDelayMilliseconds...faults.maximumDelayMilliseconds, using: &network) * 1_000_000
    }

    private func mix(_ value: UInt64) {
        digest = (digest ^ value) &* 0x100_0000_01B3
    }

    /// Advances virtual time by `duration`, delivering and ticking as it goes.
    func run(for duration: Duration) {
        let end = now.advanced(by: duration)
        while now < end {
            step()
        }
    }

    /// Runs until `condition` holds (checked every `every`) or `limit` passes; returns whether it held.
    @discardableResult
    func run(until limit: Duration, checkingEvery every: Duration = .milliseconds(50), _ condition: (Simulation) -> Bool) -> Bool {
        let end = now.advanced(by: limit)
        while now < end {
            if condition(self) { return true }
            let next = min(now.advanced(by: every), end)
            while now < next { step() }
        }
        return condition(self)
    }

    private func step() {
        now = now.advanced(byNanoseconds: tickNanoseconds)
        while let time = inFlight.nextTime, time <= now.nanoseconds, let delivery = inFlight.pop() {
            deliver(delivery, at: GossipInstant(nanoseconds: time))
        }
        for index in nodes.indices where nodes[index] != nil {
            let outputs = with(index) { node, now in node.tick(now: now) }
            route(outputs, from: index)
            collectEvents(index)
        }
    }

    private func deliver(_ delivery: Delivery, at time: GossipInstant) {
        guard nodes[delivery.to] != nil, canReach(delivery.from, delivery.to) else {
            packetsDropped += 1
            return
        }
        packetsDelivered += 1
        mix(UInt64(bitPattern: time.nanoseconds))
        mix(UInt64(delivery.from) << 32 | UInt64(delivery.to))
        for byte in delivery.bytes { mix(UInt64(byte)) }
        let sender = addresses[delivery.from]
        let outputs = with(delivery.to) { node, _ in
            delivery.isStream
                ? node.receiveStream(delivery.bytes, from: sender, now: time)
                : node.receivePacket(delivery.bytes, from: sender, now: time)
        }
        route(outputs, from: delivery.to)
        collectEvents(delivery.to)
    }

    private func collectEvents(_ index: Int) {
        let drained = with(index) { node, _ in node.drainEvents() }
        if recordEvents { events[index].append(contentsOf: drained) }
    }
}

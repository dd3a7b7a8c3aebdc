import Cluster
import FoundationEssentials
import Gossip
import GossipRuntime
import Logging
import Synchronization

/// Carries the fast-changing facts of a swarm between its nodes over
/// gossip, the way libnetwork's NetworkDB does: endpoint records, in the
/// table `endpoints` of each network's own gossip network, written by the
/// endpoint's host. Definitions (networks, services, allocations) are not
/// gossiped: they live in the managers' Raft store and reach nodes over
/// their mutual-TLS sessions.
///
/// Values are the records' JSON. The gossip layer owns convergence
/// (anti-entropy, suspended entries of failed nodes, tombstones); this type
/// only translates.
public final class ClusterGossip: Sendable {
    public static let endpointsTable = "endpoints"

    public let node: LiveGossipNode
    let logger: Logger
    /// Endpoint records decoded earlier, by network and key, with the
    /// bytes they came from: every gossip event reads every endpoint, and
    /// decoding each one's JSON every time made a host's work per event
    /// grow with the cluster's endpoints (issue 17).
    private let decoded = Mutex<[String: (bytes: [UInt8], record: EndpointRecord)]>([:])
    /// Set by the first `stop`: a session is stopped once, whoever ends it.
    private let stopped = Mutex(false)

    public init(name: String, configuration: GossipConfiguration, keyring: Keyring?, logger: Logger) {
        node = LiveGossipNode(name: name, configuration: configuration, keyring: keyring, logger: logger)
        self.logger = logger
    }

    /// Binds the gossip sockets (the swarm's managers are joined through
    /// `NodeDaemon.enterSwarmGossip`).
    public func start(bind host: String, port: Int) async throws {
        let address = try await node.start(bind: host, port: port)
        logger.info("gossip listening", metadata: ["address": "\(address)"])
    }

    /// Leaves gracefully (others see "left", not "failed") and stops; a
    /// session already stopped is left as it is.
    public func stop() async {
        guard stopped.withLock({ value in defer { value = true }; return !value }) else { return }
        try? await node.leave(timeout: .seconds(2))
        await node.shutdown()
    }

    // MARK: - Writing (this node's own entries)

    public func publish(endpoint record: EndpointRecord) throws {
        if !node.networks().contains(record.networkID) { try node.joinNetwork(record.networkID) }
        try node.put(network: record.networkID, table: Self.endpointsTable, key: record.id, value: Self.encode(record))
    }

    /// Withdraws an endpoint; the last one of a network also leaves that
    /// network's gossip.
    public func withdraw(endpoint record: EndpointRecord, lastOnNetwork: Bool) throws {
        do {
            try node.delete(network: record.networkID, table: Self.endpointsTable, key: record.id)
        } catch {
            logger.debug("withdrawing endpoint", metadata: ["error": "\(error)"])
        }
        if lastOnNetwork { try? node.leaveNetwork(record.networkID) }
    }

    // MARK: - Reading (everyone's entries)

    /// Endpoint records of every network this node has joined.
    public func endpoints() -> [EndpointRecord] {
        var seen: [String: (bytes: [UInt8], record: EndpointRecord)] = [:]
        let known = decoded.withLock { $0 }
        let joined = Set(node.networks())
        let records = node.entries(table: Self.endpointsTable).filter { joined.contains($0.key) }.flatMap { network, entries in
            entries.compactMap { entry -> EndpointRecord? in
                let id = network + "/" + entry.key
                if let cached = known[id], cached.bytes == entry.value {
                    seen[id] = cached
                    return cached.record
                }
                guard let record = try? Self.decode(EndpointRecord.self, entry.value) else { return nil }
                seen[id] = (entry.value, record)
                return record
            }
        }
        decoded.withLock { $0 = seen }
        return records
    }

    /// Every change the gossip layer reports (members, entries).
    public func events() -> AsyncStream<GossipEvent> { node.events() }

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = .sortedKeys
        return Array(try encoder.encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(type, from: Data(bytes))
    }
}

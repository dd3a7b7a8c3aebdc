import Cluster
import Foundation
import Gossip
import GossipRuntime
import Logging
import Synchronization

/// Carries the cluster's facts between daemons over gossip, the way
/// libnetwork's NetworkDB does:
///
/// - network definitions, in the table `networks` of the cluster-wide gossip
///   network `swarmnet.cluster` (written by the node that allocates them);
/// - endpoint records, in the table `endpoints` of each network's own gossip
///   network, written by the endpoint's host. A node joins a network's gossip
///   network while it has endpoints there, so entries travel only among the
///   hosts that need them.
///
/// Values are the records' JSON. The gossip layer owns convergence
/// (anti-entropy, suspended entries of failed nodes, tombstones); this type
/// only translates.
public final class ClusterGossip: Sendable {
    public static let clusterNetwork = "swarmnet.cluster"
    public static let networksTable = "networks"
    public static let endpointsTable = "endpoints"
    /// Service definitions (with their VIPs and published ports), written by
    /// the manager that allocated them.
    public static let servicesTable = "services"
    /// Manager node → its cluster API address ("HOST:PORT").
    public static let managersTable = "managers"

    public let node: LiveGossipNode
    let logger: Logger
    /// Endpoint records decoded earlier, by network and key, with the
    /// bytes they came from: every gossip event reads every endpoint, and
    /// decoding each one's JSON every time made a host's work per event
    /// grow with the cluster's endpoints (issue 17).
    private let decoded = Mutex<[String: (bytes: [UInt8], record: EndpointRecord)]>([:])

    public init(name: String, configuration: GossipConfiguration, keyring: Keyring?, logger: Logger) {
        node = LiveGossipNode(name: name, configuration: configuration, keyring: keyring, logger: logger)
        self.logger = logger
    }

    /// Binds the gossip sockets, joins the cluster-wide network and, when
    /// seeds are given, the cluster through them.
    public func start(bind host: String, port: Int, seeds: [NodeAddress]) async throws {
        let address = try await node.start(bind: host, port: port)
        try node.joinNetwork(Self.clusterNetwork)
        logger.info("gossip listening", metadata: ["address": "\(address)"])
        if !seeds.isEmpty {
            let answered = try await node.join(seeds)
            logger.info("joined the cluster", metadata: ["seeds": "\(seeds)", "answered": "\(answered)"])
        }
    }

    /// Leaves gracefully (others see "left", not "failed") and stops.
    public func stop() async {
        try? await node.leave(timeout: .seconds(2))
        await node.shutdown()
    }

    // MARK: - Writing (this node's own entries)

    public func publish(network record: NetworkRecord) throws {
        try node.put(network: Self.clusterNetwork, table: Self.networksTable, key: record.id, value: Self.encode(record))
    }

    public func withdraw(networkID: String) throws {
        try node.delete(network: Self.clusterNetwork, table: Self.networksTable, key: networkID)
    }

    public func publish(service record: ServiceRecord) throws {
        try node.put(network: Self.clusterNetwork, table: Self.servicesTable, key: record.id, value: Self.encode(record))
    }

    public func withdraw(serviceID: String) throws {
        try node.delete(network: Self.clusterNetwork, table: Self.servicesTable, key: serviceID)
    }

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

    public func publish(manager address: String) throws {
        try node.put(network: Self.clusterNetwork, table: Self.managersTable, key: node.name, value: Array(address.utf8))
    }

    // MARK: - Reading (everyone's entries)

    /// Cluster API addresses of the managers gossip knows.
    public func managerAddresses() -> [String] {
        node.entries(network: Self.clusterNetwork, table: Self.managersTable).map { String(decoding: $0.value, as: UTF8.self) }
    }

    /// The network definitions gossip holds: those published (visible, or
    /// suspended while their writer is down) and the IDs of those deleted
    /// (tombstones).
    public func networkView() -> (published: [NetworkRecord], deleted: [String]) {
        clusterView(NetworkRecord.self, table: Self.networksTable)
    }

    /// The service definitions gossip holds, as `networkView`.
    public func serviceView() -> (published: [ServiceRecord], deleted: [String]) {
        clusterView(ServiceRecord.self, table: Self.servicesTable)
    }

    func clusterView<Record: Decodable>(_ type: Record.Type, table: String) -> (published: [Record], deleted: [String]) {
        guard let dump = try? node.dump(network: Self.clusterNetwork, table: table) else { return ([], []) }
        var published: [Record] = []
        var deleted: [String] = []
        for entry in dump.entries {
            if entry.deleting {
                deleted.append(entry.key)
            } else if let bytes = Data(base64Encoded: entry.base64), let record = try? Self.decode(Record.self, Array(bytes)) {
                published.append(record)
            }
        }
        return (published, deleted)
    }

    /// Endpoint records of every network this node has joined.
    public func endpoints() -> [EndpointRecord] {
        var seen: [String: (bytes: [UInt8], record: EndpointRecord)] = [:]
        let known = decoded.withLock { $0 }
        let joined = Set(node.networks()).subtracting([Self.clusterNetwork])
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

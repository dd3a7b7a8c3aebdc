import Addressing
import Synchronization

/// How a service's name resolves, as Docker's `EndpointSpec.Mode`.
public enum DNSEndpointMode: String, Hashable, Sendable, Codable {
    /// `SERVICE` → the service's virtual IP on the network.
    case vip
    /// `SERVICE` → every backend address (DNS round robin).
    case dnsrr
}

/// What one network that the served workload is attached to knows under a
/// name: a service (its VIP and backends there), or, with `dnsrr` and one
/// backend, any single host such as a task or container name.
public struct DNSNameRecords: Hashable, Sendable {
    /// The network's name or ID; only for logs.
    public var network: String
    public var endpointMode: DNSEndpointMode
    /// The service's virtual IPs on this network (IPv4, IPv6 or both);
    /// answered in `vip` mode.
    public var virtualIPs: [IPAddress]
    /// The addresses on this network of the service's tasks that should get
    /// traffic now (running and healthy); answered for `tasks.SERVICE` and
    /// in `dnsrr` mode.
    public var backends: [IPAddress]

    public init(network: String, endpointMode: DNSEndpointMode, virtualIPs: [IPAddress] = [], backends: [IPAddress]) {
        self.network = network
        self.endpointMode = endpointMode
        self.virtualIPs = virtualIPs
        self.backends = backends
    }
}

/// The names one workload can resolve. The server asks on every query, so
/// answers follow the source without any cache in between: implement it over
/// the daemon's current state, and keep it cheap (no I/O, no blocking).
public protocol DNSRecordSource: Sendable {
    /// The records for `name` on each network the served workload shares
    /// with it, in the workload's order of preference (Docker: endpoint
    /// priority, then network name); empty when the name is not known here,
    /// and the query is forwarded upstream.
    ///
    /// `name` is a lookup key: lower case, no trailing dot, no search domain
    /// (`"web"`, or `"web.1.abc"` for a task name). `tasks.web` is asked as
    /// `"web"`: the server derives it from the backends.
    func records(named name: String) -> [DNSNameRecords]

    /// Names (lookup keys such as `"web"`) that own `address` on a network
    /// the workload shares, for reverse (PTR) queries; empty to forward.
    func names(for address: IPAddress) -> [String]
}

extension DNSRecordSource {
    public func names(for address: IPAddress) -> [String] { [] }
}

/// A record source over two closures, for callers that keep their state
/// elsewhere.
public struct DNSRecordClosures: DNSRecordSource {
    let recordsFor: @Sendable (String) -> [DNSNameRecords]
    let namesFor: @Sendable (IPAddress) -> [String]

    public init(records: @escaping @Sendable (String) -> [DNSNameRecords],
                names: @escaping @Sendable (IPAddress) -> [String] = { _ in [] }) {
        recordsFor = records
        namesFor = names
    }

    public func records(named name: String) -> [DNSNameRecords] { recordsFor(name) }
    public func names(for address: IPAddress) -> [String] { namesFor(address) }
}

/// A record source that holds its table: set or replace names at any time,
/// from any thread; the next query sees the change.
public final class DNSRecordTable: DNSRecordSource {
    private let table: Mutex<[String: [DNSNameRecords]]>

    /// Keys are names in any case, with or without a trailing dot.
    public init(_ entries: [String: [DNSNameRecords]] = [:]) {
        table = Mutex(Dictionary(entries.map { (Self.key($0.key), $0.value) }, uniquingKeysWith: { $1 }))
    }

    /// Sets `name`'s records; an empty list removes the name.
    public func set(_ name: String, _ records: [DNSNameRecords]) {
        let key = Self.key(name)
        table.withLock { $0[key] = records.isEmpty ? nil : records }
    }

    public func replaceAll(_ entries: [String: [DNSNameRecords]]) {
        let normalised = Dictionary(entries.map { (Self.key($0.key), $0.value) }, uniquingKeysWith: { $1 })
        table.withLock { $0 = normalised }
    }

    public func records(named name: String) -> [DNSNameRecords] {
        table.withLock { $0[name] ?? [] }
    }

    public func names(for address: IPAddress) -> [String] {
        table.withLock { table in
            table.filter { _, records in
                records.contains { $0.virtualIPs.contains(address) || $0.backends.contains(address) }
            }.keys.sorted()
        }
    }

    private static func key(_ name: String) -> String {
        (try? DNSName(name).lookupKey) ?? name.lowercased()
    }
}

import Addressing

/// How an `NFTablesLoadBalancer` lays out its table: which hooks dispatch
/// to services, when balanced connections are masqueraded, and whether the
/// routing mesh keeps the client's source address.
public struct NFTablesConfiguration: Sendable, Hashable {
    /// The table's name (in family `ip`): 1 to 64 bytes of letters, digits,
    /// '_' and '-', starting with a letter.
    public var tableName: String
    public var hooks: Hooks
    public var masquerade: MasqueradePolicy
    public var publishedPorts: PublishedPortPolicy
    /// The packet-mark bit that asks the postrouting chain to masquerade
    /// (kube-proxy uses 0x4000). Exactly one bit.
    public var masqueradeMark: UInt32
    public var layout: Layout
    /// Maps layout: how long a class left without services keeps its set
    /// and rule before they are removed. A service that scales back and
    /// forth (or a backend that flaps) then moves between existing classes,
    /// elements only, instead of making and removing a class each time: a
    /// new class's rule binds the backends map, and the kernel then walks
    /// every element of that map (about 35 ms at 10,000 services x 10). An
    /// empty class costs one failed lookup per new connection meanwhile.
    public var emptyClassLifetime: Duration

    public init(tableName: String = "swarmnet", hooks: Hooks = .output, masquerade: MasqueradePolicy = .publishedPorts,
                publishedPorts: PublishedPortPolicy = .cluster, masqueradeMark: UInt32 = 0x4000, layout: Layout = .chains,
                emptyClassLifetime: Duration = .seconds(60)) {
        self.tableName = tableName
        self.hooks = hooks
        self.masquerade = masquerade
        self.publishedPorts = publishedPorts
        self.masqueradeMark = masqueradeMark
        self.layout = layout
        self.emptyClassLifetime = emptyClassLifetime
    }

    /// How services are laid out in the table. Both balance the same way
    /// (same schedulers, same masquerading); they differ in what a change
    /// costs the kernel as the table grows.
    public enum Layout: String, Sendable, Hashable, Codable, CaseIterable {
        /// kube-proxy's nftables mode: a verdict map into a chain per
        /// service, which picks a chain per endpoint that DNATs. Every
        /// change adds rules, and the kernel then validates the whole table
        /// and walks every chain: about 140 ms per change at 10,000
        /// services x 10 (`NFTablesRenderer`).
        case chains
        /// A fixed handful of chains; a service is a few set and map
        /// elements (its class, and one element per backend slot), so a
        /// change adds and deletes elements only and costs the same at
        /// 10,000 services as at 100 (`NFTablesRenderer+Maps`).
        case maps
    }

    /// Where the table's dispatch chain is hooked.
    public enum Hooks: String, Sendable, Hashable, Codable {
        /// `output` only: connections made by processes inside the namespace
        /// itself (a workload's namespace balancing its own connections to VIPs).
        case output
        /// `prerouting` and `output`: connections arriving from other
        /// interfaces too (the routing mesh in a host or ingress namespace;
        /// the namespace needs net.ipv4.ip_forward=1 to pass them on).
        case routingMesh
    }

    /// Which balanced connections get the masquerade mark, so that replies
    /// from the backend come back through this namespace.
    public enum MasqueradePolicy: String, Sendable, Hashable, Codable {
        /// No connection (a backend sees the client's address; replies
        /// must route back through this namespace by themselves).
        case never
        /// Every balanced connection (kube-proxy's --masquerade-all).
        case all
        /// Connections to published ports (the routing mesh) only, as Swarm's
        /// ingress does; VIP connections keep their source address.
        case publishedPorts
        /// Connections whose source is not an address of this namespace
        /// (`fib saddr type != local`): forwarded clients are masqueraded,
        /// local clients are not.
        case nonLocalClients
    }

    /// What a published port (a service whose VIP is 0.0.0.0) balances over.
    public enum PublishedPortPolicy: Sendable, Hashable {
        /// Every backend, masqueraded as `masquerade` says.
        case cluster
        /// Source-address preservation (externalTrafficPolicy=Local): only
        /// the backends inside these prefixes (the ones on this host) are
        /// chosen, and published-port traffic is never masqueraded. A
        /// published port with no local backend drops new connections.
        case localBackendsOnly([IPPrefix])
    }

    /// Rejects a name that nft could not parse unquoted or the kernel
    /// would refuse (NFT_TABLE_MAXNAMELEN is 256; swarmnet keeps it short).
    static func validate(tableName: String) throws {
        let bytes = Array(tableName.utf8)
        guard !bytes.isEmpty else { throw LoadBalancerError.invalidArgument("nftables table name is empty") }
        guard bytes.count <= 64 else {
            throw LoadBalancerError.invalidArgument("nftables table name '\(tableName)' is longer than 64 bytes")
        }
        let letter = { (b: UInt8) in (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) }
        let allowed = { (b: UInt8) in letter(b) || (b >= 0x30 && b <= 0x39) || b == 0x5f || b == 0x2d }
        guard letter(bytes[0]), bytes.allSatisfy(allowed) else {
            throw LoadBalancerError.invalidArgument(
                "nftables table name '\(tableName)' must start with a letter and hold only letters, digits, '_' and '-'")
        }
    }

    func validate() throws {
        try Self.validate(tableName: tableName)
        guard emptyClassLifetime >= .zero else {
            throw LoadBalancerError.invalidArgument("empty class lifetime \(emptyClassLifetime) is negative")
        }
        guard masqueradeMark != 0, masqueradeMark & (masqueradeMark - 1) == 0 else {
            throw LoadBalancerError.invalidArgument(
                "masquerade mark 0x\(String(masqueradeMark, radix: 16)) must be exactly one bit")
        }
    }
}

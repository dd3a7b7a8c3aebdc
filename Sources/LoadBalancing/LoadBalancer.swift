import Addressing

/// The transport protocol of a virtual service addressed by VIP and port.
public enum TransportProtocol: String, Sendable, Hashable, Codable, CaseIterable {
    case tcp
    case udp

    /// The IPPROTO_* number the kernel uses.
    public var number: UInt16 {
        switch self {
        case .tcp: 6
        case .udp: 17
        }
    }

    public init?(number: UInt16) {
        switch number {
        case 6: self = .tcp
        case 17: self = .udp
        default: return nil
        }
    }

    /// "TCP" / "UDP", as ipvsadm prints it.
    public var label: String { rawValue.uppercased() }
}

/// IPv4 or IPv6, for a service known only by its firewall mark.
public enum AddressFamily: String, Sendable, Hashable, Codable {
    case ipv4
    case ipv6

    /// AF_INET (2) or AF_INET6 (10).
    public var number: UInt16 { self == .ipv4 ? 2 : 10 }

    public init?(number: UInt16) {
        switch number {
        case 2: self = .ipv4
        case 10: self = .ipv6
        default: return nil
        }
    }
}

/// What identifies a virtual service: a VIP, protocol and port, or a
/// firewall mark set by a packet-filter rule (how Swarm's ingress matches
/// its published ports).
public enum ServiceKey: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    case address(IPAddress, TransportProtocol, port: UInt16)
    case firewallMark(UInt32, family: AddressFamily)

    public var family: AddressFamily {
        switch self {
        case .address(let address, _, _): address.isIPv4 ? .ipv4 : .ipv6
        case .firewallMark(_, let family): family
        }
    }

    /// "TCP 10.0.0.5:80", "UDP [fd00::5]:53", "FWM 42" (ipvsadm's words).
    public var description: String {
        switch self {
        case .address(let address, let proto, let port):
            "\(proto.label) \(RealServer.endpoint(address, port))"
        case .firewallMark(let mark, let family):
            family == .ipv4 ? "FWM \(mark)" : "FWM \(mark) IPv6"
        }
    }

    public static func < (lhs: ServiceKey, rhs: ServiceKey) -> Bool {
        lhs.sortKey.lexicographicallyPrecedes(rhs.sortKey)
    }

    private var sortKey: [UInt64] {
        switch self {
        case .address(let address, let proto, let port):
            [0, UInt64(proto.number), UInt64(port)] + address.bytes.map(UInt64.init)
        case .firewallMark(let mark, let family):
            [1, UInt64(family.number), UInt64(mark)]
        }
    }
}

/// A scheduler by its kernel name. The five swarmnet uses have names;
/// others read from the kernel keep theirs, so nothing is lost in a dump.
public struct Scheduler: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Round robin.
    public static let roundRobin = Scheduler(rawValue: "rr")
    /// Weighted round robin.
    public static let weightedRoundRobin = Scheduler(rawValue: "wrr")
    /// Least connections.
    public static let leastConnections = Scheduler(rawValue: "lc")
    /// Source hashing: a client address keeps its backend.
    public static let sourceHashing = Scheduler(rawValue: "sh")
    /// Maglev hashing: consistent hashing that moves few clients when the
    /// set of backends changes.
    public static let maglevHashing = Scheduler(rawValue: "mh")

    public var description: String { rawValue }
}

/// Flags of the hashing schedulers (sh, mh): fall back to another backend
/// when the chosen one has weight 0, and hash the source port as well.
public struct SchedulerFlags: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// IP_VS_SVC_F_SCHED1: sh-fallback / mh-fallback.
    public static let fallback = SchedulerFlags(rawValue: 0x0008)
    /// IP_VS_SVC_F_SCHED2: sh-port / mh-port.
    public static let hashPort = SchedulerFlags(rawValue: 0x0010)
}

/// How packets reach a real server. swarmnet uses masquerading (NAT), as
/// Swarm does; the others are read back faithfully from a dump.
public enum ForwardingMethod: UInt32, Sendable, Hashable, Codable {
    /// IP_VS_CONN_F_MASQ: destination NAT, replies come back through the balancer.
    case masquerade = 0
    /// IP_VS_CONN_F_LOCALNODE.
    case local = 1
    /// IP_VS_CONN_F_TUNNEL: IP-in-IP.
    case tunnel = 2
    /// IP_VS_CONN_F_DROUTE: direct routing (direct server return).
    case directRoute = 3
}

/// A backend of a virtual service.
public struct RealServer: Sendable, Hashable, Codable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16
    /// Relative share of new connections; 0 sends no new ones (quiescent).
    public var weight: UInt32
    public var forwarding: ForwardingMethod

    public init(address: IPAddress, port: UInt16, weight: UInt32 = 1, forwarding: ForwardingMethod = .masquerade) {
        self.address = address
        self.port = port
        self.weight = weight
        self.forwarding = forwarding
    }

    /// What identifies a real server within its service.
    public struct Key: Sendable, Hashable, Comparable {
        public let address: IPAddress
        public let port: UInt16
        public static func < (lhs: Key, rhs: Key) -> Bool {
            // IPv4 by value: the byte arrays below are allocated per comparison,
            // and every reconcile sorts each service's servers.
            if case .v4(let a) = lhs.address, case .v4(let b) = rhs.address {
                return (a.value, lhs.port) < (b.value, rhs.port)
            }
            let (a, b) = (lhs.address.bytes, rhs.address.bytes)
            if a.count != b.count { return a.count < b.count }
            if a != b { return a.lexicographicallyPrecedes(b) }
            return lhs.port < rhs.port
        }
    }

    public var key: Key { Key(address: address, port: port) }

    /// "10.0.1.2:8080", "[fd00::2]:8080".
    public var endpoint: String { Self.endpoint(address, port) }

    public var description: String { "\(endpoint) weight \(weight)" }

    static func endpoint(_ address: IPAddress, _ port: UInt16) -> String {
        address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
    }
}

/// A virtual service and its real servers: what a load balancer holds for
/// one VIP:port (or firewall mark).
public struct VirtualService: Sendable, Hashable, Codable, CustomStringConvertible {
    public var key: ServiceKey
    public var scheduler: Scheduler
    public var schedulerFlags: SchedulerFlags
    /// Persistence: a client keeps its real server for this many seconds
    /// after its last connection ends; nil for none.
    public var persistence: UInt32?
    public var realServers: [RealServer]

    public init(key: ServiceKey, scheduler: Scheduler = .roundRobin, schedulerFlags: SchedulerFlags = [],
                persistence: UInt32? = nil, realServers: [RealServer] = []) {
        self.key = key
        self.scheduler = scheduler
        self.schedulerFlags = schedulerFlags
        self.persistence = persistence
        self.realServers = realServers
    }

    public var description: String {
        var text = "\(key) \(scheduler)"
        if let persistence { text += " persistent \(persistence)" }
        return text + " -> [" + realServers.map(\.description).joined(separator: ", ") + "]"
    }

    /// The same service with its real servers in a canonical order, for
    /// comparisons that must not depend on the kernel's order.
    public var sorted: VirtualService {
        var copy = self
        copy.realServers.sort { $0.key < $1.key }
        return copy
    }

    /// Equal as services, ignoring real servers.
    func sameSettings(as other: VirtualService) -> Bool {
        scheduler == other.scheduler && schedulerFlags == other.schedulerFlags && persistence == other.persistence
    }
}

/// One change to a load balancer, as reconcile plans and applies it.
public enum LoadBalancerOperation: Sendable, Hashable, CustomStringConvertible {
    /// Creates the service (without real servers; they follow as addRealServer).
    case addService(VirtualService)
    /// Changes scheduler, flags or persistence of an existing service.
    case editService(VirtualService)
    case deleteService(ServiceKey)
    case addRealServer(RealServer, service: ServiceKey)
    /// Changes weight or forwarding of an existing real server.
    case editRealServer(RealServer, service: ServiceKey)
    /// Weight 0: the scheduler stops choosing it; its connections go on.
    case quiesceRealServer(RealServer, service: ServiceKey)
    case deleteRealServer(RealServer.Key, service: ServiceKey)

    public var description: String {
        switch self {
        case .addService(let s): "add service \(s.key) \(s.scheduler)"
        case .editService(let s): "edit service \(s.key) \(s.scheduler)"
        case .deleteService(let key): "delete service \(key)"
        case .addRealServer(let r, let key): "add real server \(r) to \(key)"
        case .editRealServer(let r, let key): "edit real server \(r) of \(key)"
        case .quiesceRealServer(let r, let key): "quiesce real server \(r.endpoint) of \(key)"
        case .deleteRealServer(let r, let key): "delete real server \(RealServer.endpoint(r.address, r.port)) of \(key)"
        }
    }
}

/// What a reconcile did, in the order it did it.
public struct ReconcileChanges: Sendable, Hashable {
    public var operations: [LoadBalancerOperation]
    /// Connection-tracking entries deleted after the change because they
    /// were NATed to a backend it removed (the nftables back end; IPVS
    /// expires its own entries, see `IPVSSysctls`).
    public var connectionsDeleted: Int
    /// Why deleting those entries failed, when it did; the back end tries
    /// again on a later reconcile while the backend stays removed.
    public var connectionCleanupError: String?

    public init(operations: [LoadBalancerOperation] = [], connectionsDeleted: Int = 0, connectionCleanupError: String? = nil) {
        self.operations = operations
        self.connectionsDeleted = connectionsDeleted
        self.connectionCleanupError = connectionCleanupError
    }

    public var isEmpty: Bool { operations.isEmpty && connectionsDeleted == 0 && connectionCleanupError == nil }
}

/// What every load-balancer back end (IPVS, nftables) does.
///
/// A back end owns its balancer in its namespace: reconcile removes any
/// service it finds there that is not desired.
public protocol LoadBalancerBackend: AnyObject {
    /// What the kernel holds now, services sorted by key, each with its real
    /// servers sorted by address and port.
    func services() throws -> [VirtualService]

    /// Makes the kernel hold exactly `desired`, changing only what differs
    /// (see `ReconcilePlan`). Reads the kernel first: nothing is assumed to
    /// still be there from an earlier call.
    @discardableResult
    func reconcile(to desired: [VirtualService]) throws -> ReconcileChanges

    /// Makes the kernel hold `desired` for the one service `key` (nil:
    /// remove that service), reading and changing nothing of any other
    /// service: the per-change path for an endpoint joining or leaving.
    /// A leaving real server is quiesced before it is deleted, as in
    /// `reconcile(to:)`.
    @discardableResult
    func reconcile(service key: ServiceKey, to desired: VirtualService?) throws -> ReconcileChanges
}

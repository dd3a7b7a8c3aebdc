import Addressing
import FoundationEssentials

/// How clients find a service's backends, as Docker's `EndpointSpec.Mode`.
public enum EndpointMode: String, Codable, Sendable, Hashable {
    /// The name resolves to one virtual IP per network, balanced over the backends.
    case vip
    /// The name resolves to every backend's address (DNS round robin).
    case dnsrr
}

/// Where a published port answers, as Docker's `PublishMode`.
public enum PublishMode: String, Codable, Sendable, Hashable {
    /// The routing mesh: every host answers, and balances over every backend.
    case ingress
    /// Only hosts where a backend runs answer, and only to their own
    /// backends; the client's source address is kept.
    case host
}

/// The transport protocols a service port can use.
public enum PortProtocol: String, Codable, Sendable, Hashable, CaseIterable {
    case tcp
    case udp
}

/// A port of a service: what its backends listen on and, when published,
/// where the hosts answer for it.
public struct ServicePort: Codable, Sendable, Hashable {
    public var name: String?
    public var `protocol`: PortProtocol
    public var targetPort: UInt16
    /// The port on the hosts; nil when the port is not published.
    public var publishedPort: UInt16?
    public var publishMode: PublishMode

    public init(name: String? = nil, protocol: PortProtocol = .tcp, targetPort: UInt16, publishedPort: UInt16? = nil,
                publishMode: PublishMode = .ingress) {
        self.name = name
        self.protocol = `protocol`
        self.targetPort = targetPort
        self.publishedPort = publishedPort
        self.publishMode = publishMode
    }
}

/// A service's virtual IP on one of its networks.
public struct ServiceVIP: Codable, Sendable, Hashable {
    public var networkID: String
    /// The VIP with the network's prefix length, as Docker shows `Addr`.
    public var address: IPPrefix

    public init(networkID: String, address: IPPrefix) {
        self.networkID = networkID
        self.address = address
    }
}

/// A service as the cluster records it: Docker's service with swarmnet's
/// allocations (VIPs, published ports). Its backends are the endpoints
/// attached with its ID (`EndpointRecord.serviceID`), wherever they run.
public struct ServiceRecord: Codable, Sendable, Hashable {
    public var id: String
    public var name: String
    public var version: UInt64
    public var created: Date
    public var updated: Date
    public var labels: [String: String]
    /// The image named in the spec; swarmnet starts no containers, so it is
    /// only kept for `docker service inspect`.
    public var image: String
    public var replicas: UInt64?
    public var endpointMode: EndpointMode
    /// IDs of the networks the service is attached to, in the spec's order.
    public var networks: [String]
    /// One VIP per network in `vip` mode; none in `dnsrr` mode.
    public var virtualIPs: [ServiceVIP]
    public var ports: [ServicePort]

    public init(id: String, name: String, version: UInt64 = 1, created: Date, updated: Date? = nil, labels: [String: String] = [:],
                image: String = "", replicas: UInt64? = nil, endpointMode: EndpointMode = .vip, networks: [String],
                virtualIPs: [ServiceVIP] = [], ports: [ServicePort] = []) {
        self.id = id
        self.name = name
        self.version = version
        self.created = created
        self.updated = updated ?? created
        self.labels = labels
        self.image = image
        self.replicas = replicas
        self.endpointMode = endpointMode
        self.networks = networks
        self.virtualIPs = virtualIPs
        self.ports = ports
    }

    /// The VIP on a network, if the service has one there.
    public func vip(on networkID: String) -> IPAddress? {
        virtualIPs.first { $0.networkID == networkID }?.address.address
    }

    /// The label that asks for a TCP health check of every backend on this
    /// port (swarmnet starts no containers, so Docker's HEALTHCHECK has no
    /// process to run in).
    public static let healthPortLabel = "com.swarmnet.health.tcp-port"

    /// The port each backend is probed on, if the service asks for it.
    public var healthPort: UInt16? { labels[Self.healthPortLabel].flatMap { UInt16($0) }.flatMap { $0 == 0 ? nil : $0 } }

    /// Whether any port goes through the routing mesh.
    public var usesIngress: Bool { ports.contains { $0.publishedPort != nil && $0.publishMode == .ingress } }
    /// Whether any port is published (either mode): such a service's
    /// backends are also attached to the ingress network.
    public var isPublished: Bool { ports.contains { $0.publishedPort != nil } }
}

/// What `docker service create` asks for, in the fields swarmnet uses.
public struct ServiceRequest: Sendable {
    public struct NetworkAttachment: Sendable {
        public var target: String
        /// A VIP the user asks for on this network (swarmnet's driver option).
        public var requestedVIP: String?

        public init(target: String, requestedVIP: String? = nil) {
            self.target = target
            self.requestedVIP = requestedVIP
        }
    }

    public struct Port: Sendable {
        public var name: String?
        public var `protocol`: String?
        public var targetPort: Int
        public var publishedPort: Int?
        public var publishMode: String?

        public init(name: String? = nil, protocol: String? = nil, targetPort: Int, publishedPort: Int? = nil, publishMode: String? = nil) {
            self.name = name
            self.protocol = `protocol`
            self.targetPort = targetPort
            self.publishedPort = publishedPort
            self.publishMode = publishMode
        }
    }

    public var name: String
    public var labels: [String: String]
    public var image: String
    public var replicas: UInt64?
    public var networks: [NetworkAttachment]
    public var endpointMode: String?
    public var ports: [Port]

    /// A recorded service as a request: its networks and ports replaced
    /// by a rollback's, the rest as they are.
    public init(_ record: ServiceRecord, networks: [String], ports: [ServicePort]) {
        self.init(
            name: record.name, labels: record.labels, image: record.image, replicas: record.replicas,
            networks: networks.map { NetworkAttachment(target: $0) }, endpointMode: record.endpointMode.rawValue,
            ports: ports.map {
                Port(name: $0.name, protocol: $0.protocol.rawValue, targetPort: Int($0.targetPort), publishedPort: $0.publishedPort.map(Int.init),
                     publishMode: $0.publishMode.rawValue)
            })
    }

    public init(name: String, labels: [String: String] = [:], image: String = "", replicas: UInt64? = nil,
                networks: [NetworkAttachment] = [], endpointMode: String? = nil, ports: [Port] = []) {
        self.name = name
        self.labels = labels
        self.image = image
        self.replicas = replicas
        self.networks = networks
        self.endpointMode = endpointMode
        self.ports = ports
    }
}

/// Ports the routing mesh hands out when a published port is not given
/// (Docker's dynamic range).
public enum PublishedPortAllocator {
    public static let dynamicRange: ClosedRange<UInt16> = 30000...32767

    public static func allocate(_ protocol: PortProtocol, taken: Set<String>) throws -> UInt16 {
        for port in dynamicRange where !taken.contains(key(port, `protocol`)) { return port }
        throw ClusterError.exhausted("no free published port left in \(dynamicRange.lowerBound)-\(dynamicRange.upperBound)")
    }

    static func key(_ port: UInt16, _ protocol: PortProtocol) -> String { "\(port)/\(`protocol`.rawValue)" }
}

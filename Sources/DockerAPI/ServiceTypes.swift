import Foundation

// Docker's swarm service JSON (`ServiceSpec`, `Service`), in the fields that
// mean something to a network data plane. Other fields of a request are
// ignored; swarmnet starts no containers (a backend is an endpoint attached
// with the service's name, see `NetworkConnectRequest`).

/// `POST /services/create` and the `Spec` of `GET /services/{id}`.
public struct ServiceSpec: Codable, Sendable, Equatable {
    public var name: String
    public var labels: [String: String]?
    public var taskTemplate: TaskSpec?
    public var mode: ServiceMode?
    public var endpointSpec: EndpointSpec?
    /// Deprecated by Docker in favour of `TaskTemplate.Networks`; still read.
    public var networks: [NetworkAttachmentConfig]?

    enum CodingKeys: String, CodingKey {
        case name = "Name", labels = "Labels", taskTemplate = "TaskTemplate", mode = "Mode", endpointSpec = "EndpointSpec"
        case networks = "Networks"
    }

    public init(name: String, labels: [String: String]? = nil, taskTemplate: TaskSpec? = nil, mode: ServiceMode? = nil,
                endpointSpec: EndpointSpec? = nil) {
        self.name = name
        self.labels = labels
        self.taskTemplate = taskTemplate
        self.mode = mode
        self.endpointSpec = endpointSpec
    }
}

public struct TaskSpec: Codable, Sendable, Equatable {
    public var containerSpec: ContainerSpec?
    public var networks: [NetworkAttachmentConfig]?

    enum CodingKeys: String, CodingKey { case containerSpec = "ContainerSpec", networks = "Networks" }

    public init(containerSpec: ContainerSpec? = nil, networks: [NetworkAttachmentConfig]? = nil) {
        self.containerSpec = containerSpec
        self.networks = networks
    }
}

public struct ContainerSpec: Codable, Sendable, Equatable {
    public var image: String?
    enum CodingKeys: String, CodingKey { case image = "Image" }
    public init(image: String?) { self.image = image }
}

/// A network a service is attached to. swarmnet reads one driver option,
/// `com.swarmnet.vip`, to ask for a particular VIP on that network.
public struct NetworkAttachmentConfig: Codable, Sendable, Equatable {
    public var target: String
    public var aliases: [String]?
    public var driverOpts: [String: String]?

    enum CodingKeys: String, CodingKey { case target = "Target", aliases = "Aliases", driverOpts = "DriverOpts" }

    public init(target: String, aliases: [String]? = nil, driverOpts: [String: String]? = nil) {
        self.target = target
        self.aliases = aliases
        self.driverOpts = driverOpts
    }

    /// The driver option that asks for a VIP.
    public static let vipOption = "com.swarmnet.vip"
}

public struct ServiceMode: Codable, Sendable, Equatable {
    public struct Replicated: Codable, Sendable, Equatable {
        public var replicas: UInt64?
        enum CodingKeys: String, CodingKey { case replicas = "Replicas" }
        public init(replicas: UInt64?) { self.replicas = replicas }
    }

    public var replicated: Replicated?

    enum CodingKeys: String, CodingKey { case replicated = "Replicated" }

    public init(replicated: Replicated?) { self.replicated = replicated }
}

public struct EndpointSpec: Codable, Sendable, Equatable {
    /// "vip" (default) or "dnsrr".
    public var mode: String?
    public var ports: [PortConfig]?

    enum CodingKeys: String, CodingKey { case mode = "Mode", ports = "Ports" }

    public init(mode: String? = nil, ports: [PortConfig]? = nil) {
        self.mode = mode
        self.ports = ports
    }
}

public struct PortConfig: Codable, Sendable, Equatable {
    public var name: String?
    /// "tcp" (default), "udp" (Docker also knows "sctp", which swarmnet refuses).
    public var `protocol`: String?
    public var targetPort: Int
    public var publishedPort: Int?
    /// "ingress" (default) or "host".
    public var publishMode: String?

    enum CodingKeys: String, CodingKey {
        case name = "Name", `protocol` = "Protocol", targetPort = "TargetPort", publishedPort = "PublishedPort", publishMode = "PublishMode"
    }

    public init(name: String? = nil, protocol: String? = "tcp", targetPort: Int, publishedPort: Int? = nil, publishMode: String? = "ingress") {
        self.name = name
        self.protocol = `protocol`
        self.targetPort = targetPort
        self.publishedPort = publishedPort
        self.publishMode = publishMode
    }
}

/// The reply to `POST /services/create` (201).
public struct ServiceCreateResponse: Codable, Sendable {
    public var id: String
    public var warnings: [String]

    enum CodingKeys: String, CodingKey { case id = "ID", warnings = "Warnings" }

    public init(id: String, warnings: [String] = []) {
        self.id = id
        self.warnings = warnings
    }
}

/// A service as `GET /services` and `GET /services/{id}` show it.
public struct ServiceResource: Codable, Sendable {
    public struct Version: Codable, Sendable {
        public var index: UInt64
        enum CodingKeys: String, CodingKey { case index = "Index" }
    }

    public struct Endpoint: Codable, Sendable {
        public var spec: EndpointSpec
        public var ports: [PortConfig]
        public var virtualIPs: [VirtualIP]

        enum CodingKeys: String, CodingKey { case spec = "Spec", ports = "Ports", virtualIPs = "VirtualIPs" }
    }

    public struct VirtualIP: Codable, Sendable {
        public var networkID: String
        public var addr: String
        enum CodingKeys: String, CodingKey { case networkID = "NetworkID", addr = "Addr" }
    }

    public var id: String
    public var version: Version
    public var createdAt: String
    public var updatedAt: String
    public var spec: ServiceSpec
    public var endpoint: Endpoint
    /// swarmnet's addition: the backends (attached endpoints) on every host.
    public var backends: [ServiceBackend]?
    /// Docker's task counts (API 1.41+), here the backends: with it the
    /// docker CLI's `service ls` needs no task listing.
    public var serviceStatus: Status?

    public struct Status: Codable, Sendable {
        public var runningTasks: UInt64
        public var desiredTasks: UInt64
        public var completedTasks: UInt64
        enum CodingKeys: String, CodingKey { case runningTasks = "RunningTasks", desiredTasks = "DesiredTasks", completedTasks = "CompletedTasks" }
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID", version = "Version", createdAt = "CreatedAt", updatedAt = "UpdatedAt", spec = "Spec", endpoint = "Endpoint"
        case backends = "Backends", serviceStatus = "ServiceStatus"
    }

    public init(id: String, version: UInt64, createdAt: String, updatedAt: String, spec: ServiceSpec, ports: [PortConfig],
                virtualIPs: [(networkID: String, addr: String)], backends: [ServiceBackend]?) {
        self.id = id
        self.version = Version(index: version)
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.spec = spec
        self.endpoint = Endpoint(spec: spec.endpointSpec ?? EndpointSpec(mode: "vip", ports: nil), ports: ports,
                                 virtualIPs: virtualIPs.map { VirtualIP(networkID: $0.networkID, addr: $0.addr) })
        self.backends = backends
        // A backend attached to several networks (its service's and ingress) counts once.
        let count = UInt64(Set((backends ?? []).map { "\($0.node) \($0.name)" }).count)
        self.serviceStatus = Status(runningTasks: count, desiredTasks: count, completedTasks: 0)
    }
}

/// One backend of a service: an endpoint attached with the service's name.
public struct ServiceBackend: Codable, Sendable, Equatable {
    public var endpointID: String
    public var name: String
    public var node: String
    public var networkID: String
    public var address: String

    enum CodingKeys: String, CodingKey {
        case endpointID = "EndpointID", name = "Name", node = "Node", networkID = "NetworkID", address = "Address"
    }

    public init(endpointID: String, name: String, node: String, networkID: String, address: String) {
        self.endpointID = endpointID
        self.name = name
        self.node = node
        self.networkID = networkID
        self.address = address
    }
}

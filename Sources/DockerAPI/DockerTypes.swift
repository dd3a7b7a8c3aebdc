import FoundationEssentials

// The Docker Engine API's JSON, for the parts swarmnet serves. Keys are
// Docker's, exactly; fields swarmnet has no use for are omitted on input
// (JSONDecoder ignores them) and given Docker's neutral values on output.

/// `POST /networks/create`.
public struct NetworkCreateRequest: Codable, Sendable {
    public var name: String
    public var driver: String?
    public var ipam: IPAM?
    public var isInternal: Bool?
    public var attachable: Bool?
    public var ingress: Bool?
    public var enableIPv6: Bool?
    public var options: [String: String]?
    public var labels: [String: String]?

    enum CodingKeys: String, CodingKey {
        case name = "Name", driver = "Driver", ipam = "IPAM", isInternal = "Internal", attachable = "Attachable"
        case ingress = "Ingress", enableIPv6 = "EnableIPv6", options = "Options", labels = "Labels"
    }

    public init(name: String, driver: String? = "overlay", ipam: IPAM? = nil, attachable: Bool? = nil,
                options: [String: String]? = nil, labels: [String: String]? = nil) {
        self.name = name
        self.driver = driver
        self.ipam = ipam
        self.attachable = attachable
        self.options = options
        self.labels = labels
    }
}

public struct IPAM: Codable, Sendable, Equatable {
    public var driver: String?
    public var config: [IPAMConfig]?
    public var options: [String: String]?

    enum CodingKeys: String, CodingKey { case driver = "Driver", config = "Config", options = "Options" }

    public init(driver: String? = "default", config: [IPAMConfig]?, options: [String: String]? = [:]) {
        self.driver = driver
        self.config = config
        self.options = options
    }
}

public struct IPAMConfig: Codable, Sendable, Equatable {
    public var subnet: String?
    public var ipRange: String?
    public var gateway: String?

    enum CodingKeys: String, CodingKey { case subnet = "Subnet", ipRange = "IPRange", gateway = "Gateway" }

    public init(subnet: String?, gateway: String?) {
        self.subnet = subnet
        self.gateway = gateway
    }
}

/// The reply to `POST /networks/create` (201).
public struct NetworkCreateResponse: Codable, Sendable {
    public var id: String
    public var warning: String

    enum CodingKeys: String, CodingKey { case id = "Id", warning = "Warning" }

    public init(id: String, warning: String = "") {
        self.id = id
        self.warning = warning
    }
}

/// A network as `GET /networks` and `GET /networks/{id}` show it.
public struct NetworkResource: Codable, Sendable {
    public var name: String
    public var id: String
    /// RFC 3339 with fractional seconds, as Docker writes it.
    public var created: String
    public var scope: String
    public var driver: String
    public var enableIPv4: Bool
    public var enableIPv6: Bool
    public var ipam: IPAM
    public var isInternal: Bool
    public var attachable: Bool
    public var ingress: Bool
    public var configFrom: ConfigReference
    public var configOnly: Bool
    public var containers: [String: EndpointResource]
    public var options: [String: String]
    public var labels: [String: String]
    public var peers: [PeerInfo]?

    enum CodingKeys: String, CodingKey {
        case name = "Name", id = "Id", created = "Created", scope = "Scope", driver = "Driver", enableIPv4 = "EnableIPv4"
        case enableIPv6 = "EnableIPv6", ipam = "IPAM", isInternal = "Internal", attachable = "Attachable", ingress = "Ingress"
        case configFrom = "ConfigFrom", configOnly = "ConfigOnly", containers = "Containers", options = "Options"
        case labels = "Labels", peers = "Peers"
    }

    public init(name: String, id: String, created: String, driver: String, ipam: IPAM, isInternal: Bool, attachable: Bool,
                containers: [String: EndpointResource], options: [String: String], labels: [String: String], peers: [PeerInfo]?) {
        self.name = name
        self.id = id
        self.created = created
        self.scope = "swarm"
        self.driver = driver
        self.enableIPv4 = true
        self.enableIPv6 = false
        self.ipam = ipam
        self.isInternal = isInternal
        self.attachable = attachable
        self.ingress = false
        self.configFrom = ConfigReference(network: "")
        self.configOnly = false
        self.containers = containers
        self.options = options
        self.labels = labels
        self.peers = peers
    }
}

public struct ConfigReference: Codable, Sendable {
    public var network: String
    enum CodingKeys: String, CodingKey { case network = "Network" }
}

/// One attached endpoint under a network's "Containers".
public struct EndpointResource: Codable, Sendable {
    public var name: String
    public var endpointID: String
    public var macAddress: String
    public var ipv4Address: String
    public var ipv6Address: String

    enum CodingKeys: String, CodingKey {
        case name = "Name", endpointID = "EndpointID", macAddress = "MacAddress", ipv4Address = "IPv4Address", ipv6Address = "IPv6Address"
    }

    public init(name: String, endpointID: String, macAddress: String, ipv4Address: String) {
        self.name = name
        self.endpointID = endpointID
        self.macAddress = macAddress
        self.ipv4Address = ipv4Address
        self.ipv6Address = ""
    }
}

/// A host of a swarm network: its node name and data-path address.
public struct PeerInfo: Codable, Sendable {
    public var name: String
    public var ip: String
    enum CodingKeys: String, CodingKey { case name = "Name", ip = "IP" }
    public init(name: String, ip: String) {
        self.name = name
        self.ip = ip
    }
}

/// `POST /networks/{id}/connect`. With no container runtime, "Container"
/// names a network namespace: an `ip netns` name, a path to an nsfs file,
/// or `pid:PID`.
public struct NetworkConnectRequest: Codable, Sendable {
    public var container: String
    public var endpointConfig: EndpointSettings?

    enum CodingKeys: String, CodingKey { case container = "Container", endpointConfig = "EndpointConfig" }

    public init(container: String, ipv4Address: String? = nil, service: String? = nil) {
        self.container = container
        if ipv4Address != nil || service != nil {
            endpointConfig = EndpointSettings(
                ipamConfig: ipv4Address.map { EndpointIPAMConfig(ipv4Address: $0) },
                driverOpts: service.map { [EndpointSettings.serviceOption: $0] })
        }
    }

    /// The service the endpoint becomes a backend of (driver option
    /// `com.swarmnet.service`, so that `docker network connect --driver-opt
    /// com.swarmnet.service=web` works too).
    public var service: String? { endpointConfig?.driverOpts?[EndpointSettings.serviceOption] }
}

public struct EndpointSettings: Codable, Sendable {
    public var ipamConfig: EndpointIPAMConfig?
    public var driverOpts: [String: String]?
    enum CodingKeys: String, CodingKey { case ipamConfig = "IPAMConfig", driverOpts = "DriverOpts" }

    public static let serviceOption = "com.swarmnet.service"
}

public struct EndpointIPAMConfig: Codable, Sendable {
    public var ipv4Address: String?
    enum CodingKeys: String, CodingKey { case ipv4Address = "IPv4Address" }
}

/// `POST /networks/{id}/disconnect`.
public struct NetworkDisconnectRequest: Codable, Sendable {
    public var container: String
    public var force: Bool?
    enum CodingKeys: String, CodingKey { case container = "Container", force = "Force" }
    public init(container: String, force: Bool? = nil) {
        self.container = container
        self.force = force
    }
}

/// `GET /version`.
public struct VersionResponse: Codable, Sendable {
    public var platform: [String: String]
    public var version: String
    public var apiVersion: String
    public var minAPIVersion: String
    public var gitCommit: String
    public var goVersion: String
    public var os: String
    public var arch: String
    public var kernelVersion: String
    public var buildTime: String

    public init(platform: [String: String], version: String, apiVersion: String, minAPIVersion: String, gitCommit: String, goVersion: String, os: String, arch: String, kernelVersion: String, buildTime: String) {
        self.platform = platform
        self.version = version
        self.apiVersion = apiVersion
        self.minAPIVersion = minAPIVersion
        self.gitCommit = gitCommit
        self.goVersion = goVersion
        self.os = os
        self.arch = arch
        self.kernelVersion = kernelVersion
        self.buildTime = buildTime
    }

    enum CodingKeys: String, CodingKey {
        case platform = "Platform", version = "Version", apiVersion = "ApiVersion", minAPIVersion = "MinAPIVersion"
        case gitCommit = "GitCommit", goVersion = "GoVersion", os = "Os", arch = "Arch", kernelVersion = "KernelVersion", buildTime = "BuildTime"
    }
}

/// `GET /info`: the fields `docker info` shows that mean something here.
public struct InfoResponse: Codable, Sendable {
    public var id: String
    public var name: String
    public var ncpu: Int
    public var memTotal: Int64
    public var kernelVersion: String
    public var operatingSystem: String
    public var osType: String
    public var architecture: String
    public var serverVersion: String
    public var containers: Int
    public var images: Int
    public var driver: String
    public var systemTime: String
    public var swarm: SwarmInfo

    public init(id: String, name: String, ncpu: Int, memTotal: Int64, kernelVersion: String, operatingSystem: String, osType: String, architecture: String, serverVersion: String, containers: Int, images: Int, driver: String, systemTime: String, swarm: SwarmInfo) {
        self.id = id
        self.name = name
        self.ncpu = ncpu
        self.memTotal = memTotal
        self.kernelVersion = kernelVersion
        self.operatingSystem = operatingSystem
        self.osType = osType
        self.architecture = architecture
        self.serverVersion = serverVersion
        self.containers = containers
        self.images = images
        self.driver = driver
        self.systemTime = systemTime
        self.swarm = swarm
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID", name = "Name", ncpu = "NCPU", memTotal = "MemTotal", kernelVersion = "KernelVersion"
        case operatingSystem = "OperatingSystem", osType = "OSType", architecture = "Architecture", serverVersion = "ServerVersion"
        case containers = "Containers", images = "Images", driver = "Driver", systemTime = "SystemTime", swarm = "Swarm"
    }
}

public struct SwarmInfo: Codable, Sendable {
    public var nodeID: String
    public var nodeAddr: String
    public var localNodeState: String
    public var controlAvailable: Bool
    public var error: String
    public var nodes: Int
    public var managers: Int
    public var remoteManagers: [RemoteManager]?
    /// The swarm, on managers (without its join tokens).
    public var cluster: SwarmResource?

    public init(nodeID: String, nodeAddr: String, localNodeState: String, controlAvailable: Bool, error: String, nodes: Int, managers: Int,
                remoteManagers: [RemoteManager]? = nil, cluster: SwarmResource? = nil) {
        self.nodeID = nodeID
        self.nodeAddr = nodeAddr
        self.localNodeState = localNodeState
        self.controlAvailable = controlAvailable
        self.error = error
        self.nodes = nodes
        self.managers = managers
        self.remoteManagers = remoteManagers
        self.cluster = cluster
    }

    /// A node that is in no swarm.
    public static let inactive = SwarmInfo(nodeID: "", nodeAddr: "", localNodeState: "inactive", controlAvailable: false, error: "",
                                           nodes: 0, managers: 0)

    enum CodingKeys: String, CodingKey {
        case nodeID = "NodeID", nodeAddr = "NodeAddr", localNodeState = "LocalNodeState", controlAvailable = "ControlAvailable"
        case error = "Error", nodes = "Nodes", managers = "Managers", remoteManagers = "RemoteManagers", cluster = "Cluster"
    }
}

/// Docker's error body.
public struct ErrorResponse: Codable, Sendable {
    public var message: String
}

extension Date {
    /// RFC 3339 with fractional seconds in UTC, as Docker writes times.
    public var rfc3339: String { formatted(Self.rfc3339Style) }

    /// A value, so shared without a lock: making an ISO8601DateFormatter
    /// per date was a quarter of `network ls` at 1,000 networks.
    private static let rfc3339Style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
}

import FoundationEssentials

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
    public var updateConfig: UpdateConfigSpec?
    public var rollbackConfig: UpdateConfigSpec?

    enum CodingKeys: String, CodingKey {
        case name = "Name", labels = "Labels", taskTemplate = "TaskTemplate", mode = "Mode", endpointSpec = "EndpointSpec"
        case networks = "Networks", updateConfig = "UpdateConfig", rollbackConfig = "RollbackConfig"
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

/// Docker's `TaskTemplate`.
public struct TaskSpec: Codable, Sendable, Equatable {
    public var containerSpec: ContainerSpec?
    public var resources: ResourceRequirements?
    public var restartPolicy: RestartPolicySpec?
    public var placement: PlacementSpec?
    public var networks: [NetworkAttachmentConfig]?
    public var forceUpdate: UInt64?

    enum CodingKeys: String, CodingKey {
        case containerSpec = "ContainerSpec", resources = "Resources", restartPolicy = "RestartPolicy", placement = "Placement"
        case networks = "Networks", forceUpdate = "ForceUpdate"
    }

    public init(containerSpec: ContainerSpec? = nil, resources: ResourceRequirements? = nil, restartPolicy: RestartPolicySpec? = nil,
                placement: PlacementSpec? = nil, networks: [NetworkAttachmentConfig]? = nil, forceUpdate: UInt64? = nil) {
        self.containerSpec = containerSpec
        self.resources = resources
        self.restartPolicy = restartPolicy
        self.placement = placement
        self.networks = networks
        self.forceUpdate = forceUpdate
    }
}

public struct ContainerSpec: Codable, Sendable, Equatable {
    public var image: String?
    public var labels: [String: String]?
    /// Replaces the image's entrypoint.
    public var command: [String]?
    public var args: [String]?
    public var hostname: String?
    public var env: [String]?
    public var dir: String?
    public var user: String?
    public var mounts: [ServiceMount]?
    public var stopSignal: String?
    /// Nanoseconds.
    public var stopGracePeriod: Int64?
    public var healthcheck: HealthcheckConfig?
    public var readOnly: Bool?

    enum CodingKeys: String, CodingKey {
        case image = "Image", labels = "Labels", command = "Command", args = "Args", hostname = "Hostname", env = "Env", dir = "Dir"
        case user = "User", mounts = "Mounts", stopSignal = "StopSignal", stopGracePeriod = "StopGracePeriod"
        case healthcheck = "Healthcheck", readOnly = "ReadOnly"
    }

    public init(image: String?) { self.image = image }
}

public struct ServiceMount: Codable, Sendable, Equatable {
    public var type: String?
    public var source: String?
    public var target: String
    public var readOnly: Bool?

    enum CodingKeys: String, CodingKey { case type = "Type", source = "Source", target = "Target", readOnly = "ReadOnly" }

    public init(type: String?, source: String?, target: String, readOnly: Bool?) {
        self.type = type
        self.source = source
        self.target = target
        self.readOnly = readOnly
    }
}

public struct ResourceRequirements: Codable, Sendable, Equatable {
    public struct Amounts: Codable, Sendable, Equatable {
        public var nanoCPUs: Int64?
        public var memoryBytes: Int64?
        enum CodingKeys: String, CodingKey { case nanoCPUs = "NanoCPUs", memoryBytes = "MemoryBytes" }
        public init(nanoCPUs: Int64?, memoryBytes: Int64?) {
            self.nanoCPUs = nanoCPUs
            self.memoryBytes = memoryBytes
        }
    }

    public var limits: Amounts?
    public var reservations: Amounts?
    enum CodingKeys: String, CodingKey { case limits = "Limits", reservations = "Reservations" }
    public init(limits: Amounts?, reservations: Amounts?) {
        self.limits = limits
        self.reservations = reservations
    }
}

public struct RestartPolicySpec: Codable, Sendable, Equatable {
    /// "none", "on-failure" or "any".
    public var condition: String?
    public var delay: Int64?
    public var maxAttempts: UInt64?
    public var window: Int64?
    enum CodingKeys: String, CodingKey { case condition = "Condition", delay = "Delay", maxAttempts = "MaxAttempts", window = "Window" }
    public init(condition: String?, delay: Int64?, maxAttempts: UInt64?, window: Int64?) {
        self.condition = condition
        self.delay = delay
        self.maxAttempts = maxAttempts
        self.window = window
    }
}

public struct PlacementSpec: Codable, Sendable, Equatable {
    public struct Preference: Codable, Sendable, Equatable {
        public struct Spread: Codable, Sendable, Equatable {
            public var spreadDescriptor: String
            enum CodingKeys: String, CodingKey { case spreadDescriptor = "SpreadDescriptor" }
            public init(spreadDescriptor: String) { self.spreadDescriptor = spreadDescriptor }
        }
        public var spread: Spread?
        enum CodingKeys: String, CodingKey { case spread = "Spread" }
        public init(spread: Spread?) { self.spread = spread }
    }

    public var constraints: [String]?
    public var preferences: [Preference]?
    enum CodingKeys: String, CodingKey { case constraints = "Constraints", preferences = "Preferences" }
    public init(constraints: [String]?, preferences: [Preference]?) {
        self.constraints = constraints
        self.preferences = preferences
    }
}

/// `UpdateConfig` and `RollbackConfig`.
public struct UpdateConfigSpec: Codable, Sendable, Equatable {
    public var parallelism: UInt64?
    public var delay: Int64?
    /// "pause", "continue" or "rollback".
    public var failureAction: String?
    public var monitor: Int64?
    public var maxFailureRatio: Double?
    /// "stop-first" or "start-first".
    public var order: String?

    enum CodingKeys: String, CodingKey {
        case parallelism = "Parallelism", delay = "Delay", failureAction = "FailureAction", monitor = "Monitor"
        case maxFailureRatio = "MaxFailureRatio", order = "Order"
    }

    public init(parallelism: UInt64?, delay: Int64?, failureAction: String?, monitor: Int64?, maxFailureRatio: Double?, order: String?) {
        self.parallelism = parallelism
        self.delay = delay
        self.failureAction = failureAction
        self.monitor = monitor
        self.maxFailureRatio = maxFailureRatio
        self.order = order
    }
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

        /// Read as a signed number first: Foundation's decoder reports a
        /// negative count for an unsigned field only as "not valid JSON",
        /// which names neither the field nor the value.
        public init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            guard let count = try container.decodeIfPresent(Int64.self, forKey: .replicas) else {
                replicas = nil
                return
            }
            guard count >= 0 else {
                throw DecodingError.dataCorruptedError(forKey: .replicas, in: container, debugDescription: "replicas must be 0 or more, not \(count)")
            }
            replicas = UInt64(count)
        }
    }

    /// `{}`: one task on every node that fits.
    public struct Global: Codable, Sendable, Equatable {
        public init() {}
    }

    public var replicated: Replicated?
    public var global: Global?

    enum CodingKeys: String, CodingKey { case replicated = "Replicated", global = "Global" }

    public init(replicated: Replicated? = nil, global: Global? = nil) {
        self.replicated = replicated
        self.global = global
    }
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
    /// Swarm mode: the spec before the last update, and where the update stands.
    public var previousSpec: ServiceSpec?
    public var updateStatus: UpdateStatus?

    public struct UpdateStatus: Codable, Sendable {
        public var state: String
        public var startedAt: String?
        public var completedAt: String?
        public var message: String
        enum CodingKeys: String, CodingKey { case state = "State", startedAt = "StartedAt", completedAt = "CompletedAt", message = "Message" }
        public init(state: String, startedAt: String?, completedAt: String?, message: String) {
            self.state = state
            self.startedAt = startedAt
            self.completedAt = completedAt
            self.message = message
        }
    }

    public struct Status: Codable, Sendable {
        public var runningTasks: UInt64
        public var desiredTasks: UInt64
        public var completedTasks: UInt64
        enum CodingKeys: String, CodingKey { case runningTasks = "RunningTasks", desiredTasks = "DesiredTasks", completedTasks = "CompletedTasks" }
        public init(runningTasks: UInt64, desiredTasks: UInt64, completedTasks: UInt64) {
            self.runningTasks = runningTasks
            self.desiredTasks = desiredTasks
            self.completedTasks = completedTasks
        }
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID", version = "Version", createdAt = "CreatedAt", updatedAt = "UpdatedAt", spec = "Spec", endpoint = "Endpoint"
        case backends = "Backends", serviceStatus = "ServiceStatus", previousSpec = "PreviousSpec", updateStatus = "UpdateStatus"
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

/// The reply to `POST /services/{id}/update`.
public struct ServiceUpdateResponse: Codable, Sendable {
    public var warnings: [String]
    enum CodingKeys: String, CodingKey { case warnings = "Warnings" }
    public init(warnings: [String] = []) { self.warnings = warnings }
}

/// A task as `GET /tasks` and `GET /tasks/{id}` show it.
public struct TaskResource: Codable, Sendable {
    public struct Status: Codable, Sendable {
        public struct ContainerStatus: Codable, Sendable {
            public var containerID: String?
            public var pid: Int32?
            public var exitCode: Int32?
            enum CodingKeys: String, CodingKey { case containerID = "ContainerID", pid = "PID", exitCode = "ExitCode" }
            public init(containerID: String?, pid: Int32?, exitCode: Int32?) {
                self.containerID = containerID
                self.pid = pid
                self.exitCode = exitCode
            }
        }

        public var timestamp: String
        public var state: String
        public var message: String
        public var err: String?
        public var containerStatus: ContainerStatus?

        enum CodingKeys: String, CodingKey {
            case timestamp = "Timestamp", state = "State", message = "Message", err = "Err", containerStatus = "ContainerStatus"
        }

        public init(timestamp: String, state: String, message: String, err: String?, containerStatus: ContainerStatus?) {
            self.timestamp = timestamp
            self.state = state
            self.message = message
            self.err = err
            self.containerStatus = containerStatus
        }
    }

    public struct NetworkAttachment: Codable, Sendable {
        public struct Network: Codable, Sendable {
            public var id: String
            enum CodingKeys: String, CodingKey { case id = "ID" }
        }
        public var network: Network
        public var addresses: [String]
        enum CodingKeys: String, CodingKey { case network = "Network", addresses = "Addresses" }
        public init(networkID: String, addresses: [String]) {
            network = Network(id: networkID)
            self.addresses = addresses
        }
    }

    public var id: String
    public var version: ServiceResource.Version
    public var createdAt: String
    public var updatedAt: String
    public var name: String
    public var labels: [String: String]
    public var spec: TaskSpec
    public var serviceID: String
    public var slot: UInt64?
    public var nodeID: String?
    public var status: Status
    public var desiredState: String
    public var networksAttachments: [NetworkAttachment]

    enum CodingKeys: String, CodingKey {
        case id = "ID", version = "Version", createdAt = "CreatedAt", updatedAt = "UpdatedAt", name = "Name", labels = "Labels"
        case spec = "Spec", serviceID = "ServiceID", slot = "Slot", nodeID = "NodeID", status = "Status", desiredState = "DesiredState"
        case networksAttachments = "NetworksAttachments"
    }

    public init(id: String, version: UInt64, createdAt: String, updatedAt: String, name: String, spec: TaskSpec, serviceID: String,
                slot: UInt64?, nodeID: String?, status: Status, desiredState: String, networksAttachments: [NetworkAttachment]) {
        self.id = id
        self.version = ServiceResource.Version(index: version)
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.name = name
        labels = [:]
        self.spec = spec
        self.serviceID = serviceID
        self.slot = slot
        self.nodeID = nodeID
        self.status = status
        self.desiredState = desiredState
        self.networksAttachments = networksAttachments
    }
}

/// Swarm mode's services and tasks (the orchestrated side of `/services`,
/// and `/tasks`). Outside a swarm the daemon's network-only services answer.
public protocol ServiceOrchestration: Sendable {
    /// Whether this node orchestrates now (it is a manager of a swarm).
    func isActive() async -> Bool
    /// Docker's refusal when this node is a swarm worker (nil otherwise):
    /// a worker answers no service or task call.
    func workerRefusal() async -> String?
    func createService(_ spec: ServiceSpec) async throws -> ServiceCreateResponse
    func listServices(filters: [String: [String]], status: Bool) async throws -> [ServiceResource]
    func inspectService(_ reference: String) async throws -> ServiceResource
    func updateService(_ reference: String, version: UInt64, rollback: Bool, _ spec: ServiceSpec) async throws -> ServiceUpdateResponse
    func removeService(_ reference: String) async throws
    func listTasks(filters: [String: [String]]) async throws -> [TaskResource]
    func inspectTask(_ reference: String) async throws -> TaskResource
    /// `docker service logs SERVICE|TASK`: Docker's multiplexed stream, each
    /// line with its swarm details (node, service and task IDs).
    func logs(service: String?, task: String?, options: LogOptions) async throws -> [UInt8]
    /// `--follow`: the same stream, then the lines written since, until
    /// the client leaves.
    func followLogs(service: String?, task: String?, options: LogOptions) async throws -> AsyncThrowingStream<[UInt8], Error>
}

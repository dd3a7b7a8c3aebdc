import Cluster
import FoundationEssentials

/// What a task runs: the container part of a swarm task's spec (Docker's
/// `ContainerSpec` and `Resources`), or of `docker run`.
public struct TaskSpec: Codable, Sendable, Equatable {
    public var name: String
    public var image: String
    /// Replaces the image's Entrypoint (`--entrypoint`).
    public var entrypoint: [String]?
    /// Replaces the image's Cmd.
    public var command: [String]?
    /// Added to (and overriding) the image's Env.
    public var env: [String]
    public var workingDir: String?
    public var user: String?
    /// Default: the first 12 characters of the task ID, as Docker.
    public var hostname: String?
    public var labels: [String: String]
    public var mounts: [MountSpec]
    public var readOnlyRootFS: Bool
    public var memoryLimit: Int64?
    public var nanoCPUs: Int64?
    public var pidsLimit: Int64?
    /// Replaces the image's health check; `["NONE"]` turns it off.
    public var healthcheck: HealthConfig?
    public var stopSignal: String?
    /// Seconds between the stop signal and SIGKILL (Docker's default 10).
    public var stopTimeout: Double?
    public var networks: [NetworkAttachmentSpec]
    /// The log's cap before it rotates (`--log-opt max-size`), and how many
    /// files are kept (`max-file`); nil: 10 MiB and 3.
    public var logMaxBytes: Int64?
    public var logMaxFiles: Int?
    /// `docker run --rm`: the task is removed once it ends (by the API
    /// layer, on the executor's report; the executor itself only reports).
    public var autoRemove: Bool?
    /// Swarm's rule for service tasks: an unhealthy task fails (it is
    /// stopped and reported failed, and the orchestrator replaces it).
    /// A plain container (`docker run`) only reports its health.
    public var failWhenUnhealthy: Bool?

    public init(name: String, image: String, entrypoint: [String]? = nil, command: [String]? = nil, env: [String] = [],
                workingDir: String? = nil, user: String? = nil, hostname: String? = nil, labels: [String: String] = [:],
                mounts: [MountSpec] = [], readOnlyRootFS: Bool = false, memoryLimit: Int64? = nil, nanoCPUs: Int64? = nil,
                pidsLimit: Int64? = nil, healthcheck: HealthConfig? = nil, stopSignal: String? = nil, stopTimeout: Double? = nil,
                networks: [NetworkAttachmentSpec] = []) {
        self.name = name
        self.image = image
        self.entrypoint = entrypoint
        self.command = command
        self.env = env
        self.workingDir = workingDir
        self.user = user
        self.hostname = hostname
        self.labels = labels
        self.mounts = mounts
        self.readOnlyRootFS = readOnlyRootFS
        self.memoryLimit = memoryLimit
        self.nanoCPUs = nanoCPUs
        self.pidsLimit = pidsLimit
        self.healthcheck = healthcheck
        self.stopSignal = stopSignal
        self.stopTimeout = stopTimeout
        self.networks = networks
    }
}

/// A mount in a task: a host directory (bind), a named local volume
/// (a directory the daemon keeps), or a tmpfs.
public struct MountSpec: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case bind, volume, tmpfs }
    public var kind: Kind
    public var source: String
    public var target: String
    public var readOnly: Bool

    public init(kind: Kind, source: String, target: String, readOnly: Bool = false) {
        self.kind = kind
        self.source = source
        self.target = target
        self.readOnly = readOnly
    }
}

/// A network the task joins, by name or ID, with its DNS aliases.
public struct NetworkAttachmentSpec: Codable, Sendable, Equatable {
    public var network: String
    public var aliases: [String]
    public var address: String?
    /// The service the task is a backend of on this network.
    public var service: String?

    public init(network: String, aliases: [String] = [], address: String? = nil, service: String? = nil) {
        self.network = network
        self.aliases = aliases
        self.address = address
        self.service = service
    }
}

/// Where a task is attached: what the network layer allocated.
public struct NetworkAttachment: Codable, Sendable, Equatable {
    public var network: String
    public var networkID: String
    public var endpointID: String
    /// `10.0.1.5/24`.
    public var address: String
    public var gateway: String?
    public var mac: String

    public init(network: String, networkID: String, endpointID: String, address: String, gateway: String?, mac: String) {
        self.network = network
        self.networkID = networkID
        self.endpointID = endpointID
        self.address = address
        self.gateway = gateway
        self.mac = mac
    }
}

/// The network side of a task, which the node agent provides: the task's
/// namespace is attached to its networks before the container starts (as
/// CNI does), so DNS and the load balancers know its addresses from its
/// first packet.
public protocol TaskNetworking: Sendable {
    /// Attaches the namespace to every network; on failure nothing stays
    /// attached. The endpoints are no service backends (in no balancer or
    /// DNS answer, on any host) until `setHealth` says so: a task's
    /// process is not there yet to answer.
    func attach(namespace: String, task: String, networks: [NetworkAttachmentSpec]) async throws -> [NetworkAttachment]
    /// Detaches every endpoint in the namespace.
    func detach(namespace: String) async
    /// Whether the task's endpoints are service backends: true once it
    /// runs (with a health check: once that passes), false whenever its
    /// health check fails and before it stops.
    func setHealth(namespace: String, healthy: Bool) async
}

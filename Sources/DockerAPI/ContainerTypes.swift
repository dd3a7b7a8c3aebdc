import FoundationEssentials

// The Docker Engine API's container and image JSON, for `docker run -d`,
// `ps`, `inspect`, `logs`, `stop`, `rm`, `load`, `import` and `image
// ls|inspect|rm|tag`. Keys are Docker's.

/// `POST /containers/create`: Docker's `Config` with `HostConfig` and
/// `NetworkingConfig` beside it.
public struct ContainerCreateRequest: Codable, Sendable {
    public var hostname: String?
    public var user: String?
    public var env: [String]?
    public var cmd: [String]?
    public var entrypoint: [String]?
    public var image: String?
    public var workingDir: String?
    public var labels: [String: String]?
    public var stopSignal: String?
    public var stopTimeout: Int?
    public var healthcheck: HealthcheckConfig?
    public var tty: Bool?
    public var hostConfig: HostConfig?
    public var networkingConfig: NetworkingConfig?

    enum CodingKeys: String, CodingKey {
        case hostname = "Hostname", user = "User", env = "Env", cmd = "Cmd", entrypoint = "Entrypoint", image = "Image"
        case workingDir = "WorkingDir", labels = "Labels", stopSignal = "StopSignal", stopTimeout = "StopTimeout"
        case healthcheck = "Healthcheck", tty = "Tty", hostConfig = "HostConfig", networkingConfig = "NetworkingConfig"
    }

    public init(image: String, cmd: [String]? = nil, networkMode: String? = nil) {
        self.image = image
        self.cmd = cmd
        if let networkMode { hostConfig = HostConfig(networkMode: networkMode) }
    }
}

public struct HealthcheckConfig: Codable, Sendable, Equatable {
    public var test: [String]?
    public var interval: Int64?
    public var timeout: Int64?
    public var startPeriod: Int64?
    public var retries: Int?

    enum CodingKeys: String, CodingKey {
        case test = "Test", interval = "Interval", timeout = "Timeout", startPeriod = "StartPeriod", retries = "Retries"
    }

    public init(test: [String]?, interval: Int64? = nil, timeout: Int64? = nil, startPeriod: Int64? = nil, retries: Int? = nil) {
        self.test = test
        self.interval = interval
        self.timeout = timeout
        self.startPeriod = startPeriod
        self.retries = retries
    }
}

public struct HostConfig: Codable, Sendable {
    public var binds: [String]?
    public var networkMode: String?
    public var memory: Int64?
    public var nanoCpus: Int64?
    public var pidsLimit: Int64?
    public var readonlyRootfs: Bool?
    public var mounts: [MountPoint]?
    public var tmpfs: [String: String]?
    public var autoRemove: Bool?
    public var privileged: Bool?
    public var portBindings: [String: [PortBinding]]?
    public var logConfig: LogConfig?

    enum CodingKeys: String, CodingKey {
        case binds = "Binds", networkMode = "NetworkMode", memory = "Memory", nanoCpus = "NanoCpus", pidsLimit = "PidsLimit"
        case readonlyRootfs = "ReadonlyRootfs", mounts = "Mounts", tmpfs = "Tmpfs", autoRemove = "AutoRemove"
        case privileged = "Privileged", portBindings = "PortBindings", logConfig = "LogConfig"
    }

    public init(networkMode: String? = nil) { self.networkMode = networkMode }
}

/// `--log-driver` and `--log-opt`: only json-file (with max-size and
/// max-file) is served.
public struct LogConfig: Codable, Sendable {
    public var type: String?
    public var config: [String: String]?
    enum CodingKeys: String, CodingKey { case type = "Type", config = "Config" }
}

public struct PortBinding: Codable, Sendable {
    public var hostIP: String?
    public var hostPort: String?
    enum CodingKeys: String, CodingKey { case hostIP = "HostIp", hostPort = "HostPort" }
}

public struct MountPoint: Codable, Sendable {
    public var type: String?
    public var source: String?
    public var target: String?
    public var readOnly: Bool?

    enum CodingKeys: String, CodingKey { case type = "Type", source = "Source", target = "Target", readOnly = "ReadOnly" }

    public init(type: String?, source: String?, target: String?, readOnly: Bool?) {
        self.type = type
        self.source = source
        self.target = target
        self.readOnly = readOnly
    }
}

public struct NetworkingConfig: Codable, Sendable {
    public var endpointsConfig: [String: ContainerEndpointConfig]?
    enum CodingKeys: String, CodingKey { case endpointsConfig = "EndpointsConfig" }
}

public struct ContainerEndpointConfig: Codable, Sendable {
    public var aliases: [String]?
    public var ipamConfig: EndpointIPAMConfig?
    enum CodingKeys: String, CodingKey { case aliases = "Aliases", ipamConfig = "IPAMConfig" }
}

public struct ContainerCreateResponse: Codable, Sendable {
    public var id: String
    public var warnings: [String]
    enum CodingKeys: String, CodingKey { case id = "Id", warnings = "Warnings" }

    public init(id: String, warnings: [String] = []) {
        self.id = id
        self.warnings = warnings
    }
}

/// One row of `GET /containers/json`.
public struct ContainerSummary: Codable, Sendable {
    public var id: String
    public var names: [String]
    public var image: String
    public var imageID: String
    public var command: String
    public var created: Int64
    public var state: String
    public var status: String
    public var ports: [String]
    public var labels: [String: String]
    public var hostConfig: [String: String]
    public var networkSettings: ContainerNetworkSettings
    public var mounts: [String]

    enum CodingKeys: String, CodingKey {
        case id = "Id", names = "Names", image = "Image", imageID = "ImageID", command = "Command", created = "Created"
        case state = "State", status = "Status", ports = "Ports", labels = "Labels", hostConfig = "HostConfig"
        case networkSettings = "NetworkSettings", mounts = "Mounts"
    }

    public init(id: String, names: [String], image: String, imageID: String, command: String, created: Int64, state: String,
                status: String, labels: [String: String], networkMode: String, networks: [String: ContainerNetwork]) {
        self.id = id
        self.names = names
        self.image = image
        self.imageID = imageID
        self.command = command
        self.created = created
        self.state = state
        self.status = status
        self.ports = []
        self.labels = labels
        self.hostConfig = ["NetworkMode": networkMode]
        self.networkSettings = ContainerNetworkSettings(networks: networks)
        self.mounts = []
    }
}

public struct ContainerNetworkSettings: Codable, Sendable {
    public var networks: [String: ContainerNetwork]
    enum CodingKeys: String, CodingKey { case networks = "Networks" }
}

public struct ContainerNetwork: Codable, Sendable {
    public var networkID: String
    public var endpointID: String
    public var gateway: String
    public var ipAddress: String
    public var ipPrefixLen: Int
    public var macAddress: String
    public var aliases: [String]?

    enum CodingKeys: String, CodingKey {
        case networkID = "NetworkID", endpointID = "EndpointID", gateway = "Gateway", ipAddress = "IPAddress"
        case ipPrefixLen = "IPPrefixLen", macAddress = "MacAddress", aliases = "Aliases"
    }

    public init(networkID: String, endpointID: String, gateway: String, ipAddress: String, ipPrefixLen: Int, macAddress: String,
                aliases: [String]?) {
        self.networkID = networkID
        self.endpointID = endpointID
        self.gateway = gateway
        self.ipAddress = ipAddress
        self.ipPrefixLen = ipPrefixLen
        self.macAddress = macAddress
        self.aliases = aliases
    }
}

/// `GET /containers/{id}/json`.
public struct ContainerInspect: Codable, Sendable {
    public var id: String
    public var created: String
    public var path: String
    public var args: [String]
    public var state: ContainerState
    public var image: String
    public var name: String
    public var restartCount: Int
    public var driver: String
    public var platform: String
    public var config: ContainerConfigView
    public var hostConfig: HostConfig
    public var networkSettings: ContainerNetworkSettings
    public var mounts: [MountPoint]
    public var logPath: String
    public var hostnamePath: String
    public var hostsPath: String
    public var resolvConfPath: String
    /// swarmnet's addition: the task's states, as swarmkit's TaskStatus.
    public var taskHistory: [TaskStatusView]?

    enum CodingKeys: String, CodingKey {
        case id = "Id", created = "Created", path = "Path", args = "Args", state = "State", image = "Image", name = "Name"
        case restartCount = "RestartCount", driver = "Driver", platform = "Platform", config = "Config", hostConfig = "HostConfig"
        case networkSettings = "NetworkSettings", mounts = "Mounts", logPath = "LogPath", hostnamePath = "HostnamePath"
        case hostsPath = "HostsPath", resolvConfPath = "ResolvConfPath", taskHistory = "TaskHistory"
    }

    public init(id: String, created: String, path: String, args: [String], state: ContainerState, image: String, name: String,
                config: ContainerConfigView, hostConfig: HostConfig, networks: [String: ContainerNetwork], mounts: [MountPoint],
                directory: String) {
        self.id = id
        self.created = created
        self.path = path
        self.args = args
        self.state = state
        self.image = image
        self.name = name
        self.restartCount = 0
        self.driver = "overlay"
        self.platform = "linux"
        self.config = config
        self.hostConfig = hostConfig
        self.networkSettings = ContainerNetworkSettings(networks: networks)
        self.mounts = mounts
        self.logPath = directory + "/container.log"
        self.hostnamePath = directory + "/hostname"
        self.hostsPath = directory + "/hosts"
        self.resolvConfPath = directory + "/resolv.conf"
    }
}

/// One task state with its time and message (swarmkit's TaskStatus
/// fields: State, Timestamp, Message, Err).
public struct TaskStatusView: Codable, Sendable {
    public var state: String
    public var timestamp: String
    public var message: String
    public var err: String?
    enum CodingKeys: String, CodingKey { case state = "State", timestamp = "Timestamp", message = "Message", err = "Err" }

    public init(state: String, timestamp: String, message: String, err: String?) {
        self.state = state
        self.timestamp = timestamp
        self.message = message
        self.err = err
    }
}

public struct ContainerState: Codable, Sendable {
    public var status: String
    public var running: Bool
    public var paused: Bool
    public var restarting: Bool
    public var oomKilled: Bool
    public var dead: Bool
    public var pid: Int32
    public var exitCode: Int32
    public var error: String
    public var startedAt: String
    public var finishedAt: String
    public var health: ContainerHealth?

    enum CodingKeys: String, CodingKey {
        case status = "Status", running = "Running", paused = "Paused", restarting = "Restarting", oomKilled = "OOMKilled"
        case dead = "Dead", pid = "Pid", exitCode = "ExitCode", error = "Error", startedAt = "StartedAt", finishedAt = "FinishedAt"
        case health = "Health"
    }

    public init(status: String, running: Bool, oomKilled: Bool, pid: Int32, exitCode: Int32, error: String, startedAt: String,
                finishedAt: String, health: ContainerHealth?) {
        self.status = status
        self.running = running
        self.paused = false
        self.restarting = false
        self.oomKilled = oomKilled
        self.dead = false
        self.pid = pid
        self.exitCode = exitCode
        self.error = error
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.health = health
    }
}

public struct ContainerHealth: Codable, Sendable {
    public var status: String
    public var failingStreak: Int
    public var log: [ContainerHealthResult]
    enum CodingKeys: String, CodingKey { case status = "Status", failingStreak = "FailingStreak", log = "Log" }

    public init(status: String, failingStreak: Int, log: [ContainerHealthResult]) {
        self.status = status
        self.failingStreak = failingStreak
        self.log = log
    }
}

public struct ContainerHealthResult: Codable, Sendable {
    public var start: String
    public var end: String
    public var exitCode: Int32
    public var output: String
    enum CodingKeys: String, CodingKey { case start = "Start", end = "End", exitCode = "ExitCode", output = "Output" }

    public init(start: String, end: String, exitCode: Int32, output: String) {
        self.start = start
        self.end = end
        self.exitCode = exitCode
        self.output = output
    }
}

/// The container's `Config` as inspect shows it.
public struct ContainerConfigView: Codable, Sendable {
    public var hostname: String
    public var user: String
    public var env: [String]
    public var cmd: [String]?
    public var entrypoint: [String]?
    public var image: String
    public var workingDir: String
    public var labels: [String: String]
    public var tty: Bool
    public var healthcheck: HealthcheckConfig?
    public var stopSignal: String?

    enum CodingKeys: String, CodingKey {
        case hostname = "Hostname", user = "User", env = "Env", cmd = "Cmd", entrypoint = "Entrypoint", image = "Image"
        case workingDir = "WorkingDir", labels = "Labels", tty = "Tty", healthcheck = "Healthcheck", stopSignal = "StopSignal"
    }

    public init(hostname: String, user: String, env: [String], cmd: [String]?, entrypoint: [String]?, image: String, workingDir: String,
                labels: [String: String], healthcheck: HealthcheckConfig?, stopSignal: String?) {
        self.hostname = hostname
        self.user = user
        self.env = env
        self.cmd = cmd
        self.entrypoint = entrypoint
        self.image = image
        self.workingDir = workingDir
        self.labels = labels
        self.tty = false
        self.healthcheck = healthcheck
        self.stopSignal = stopSignal
    }
}

/// `POST /containers/{id}/wait`.
public struct ContainerWaitResponse: Codable, Sendable {
    public var statusCode: Int32
    public var error: WaitError?
    public struct WaitError: Codable, Sendable {
        public var message: String
        enum CodingKeys: String, CodingKey { case message = "Message" }
    }
    enum CodingKeys: String, CodingKey { case statusCode = "StatusCode", error = "Error" }

    public init(statusCode: Int32, error: String?) {
        self.statusCode = statusCode
        self.error = error.map { WaitError(message: $0) }
    }
}

/// What `docker logs` asks for.
public struct LogOptions: Sendable {
    /// From the query of `GET /containers/{id}/logs` (and the service and
    /// task logs): stdout, stderr, follow, timestamps, tail, since, until.
    public init(query: [String: String]) throws {
        self.init(
            stdout: ContainerRoutes.flag(query["stdout"]), stderr: ContainerRoutes.flag(query["stderr"]),
            follow: ContainerRoutes.flag(query["follow"]), timestamps: ContainerRoutes.flag(query["timestamps"]),
            tail: query["tail"].flatMap { Int($0) }, since: query["since"].flatMap(ContainerRoutes.time),
            until: query["until"].flatMap(ContainerRoutes.time))
        guard stdout || stderr else { throw APIError(.badRequest, "Bad parameters: you must choose at least one stream") }
    }

    /// Docker's multiplexed stream frame: the stream (1 stdout, 2 stderr),
    /// three zero bytes, the payload's length (big-endian), the payload.
    public static func frame(stderr: Bool, _ payload: [UInt8]) -> [UInt8] {
        let length = UInt32(payload.count)
        return [stderr ? 2 : 1, 0, 0, 0, UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
            + payload
    }

    public var stdout: Bool
    public var stderr: Bool
    public var follow: Bool
    public var timestamps: Bool
    /// Lines from the end; nil for all.
    public var tail: Int?
    public var since: Date?
    public var until: Date?

    public init(stdout: Bool = true, stderr: Bool = true, follow: Bool = false, timestamps: Bool = false, tail: Int? = nil,
                since: Date? = nil, until: Date? = nil) {
        self.stdout = stdout
        self.stderr = stderr
        self.follow = follow
        self.timestamps = timestamps
        self.tail = tail
        self.since = since
        self.until = until
    }
}

// MARK: - Images

/// One row of `GET /images/json`.
public struct ImageSummary: Codable, Sendable {
    public var id: String
    public var parentID: String
    public var repoTags: [String]
    public var repoDigests: [String]
    public var created: Int64
    public var size: Int64
    public var sharedSize: Int64
    public var labels: [String: String]?
    public var containers: Int

    enum CodingKeys: String, CodingKey {
        case id = "Id", parentID = "ParentId", repoTags = "RepoTags", repoDigests = "RepoDigests", created = "Created"
        case size = "Size", sharedSize = "SharedSize", labels = "Labels", containers = "Containers"
    }

    public init(id: String, repoTags: [String], created: Int64, size: Int64, labels: [String: String]?, containers: Int) {
        self.id = id
        self.parentID = ""
        self.repoTags = repoTags
        self.repoDigests = []
        self.created = created
        self.size = size
        self.sharedSize = -1
        self.labels = labels
        self.containers = containers
    }
}

/// `GET /images/{name}/json`.
public struct ImageInspect: Codable, Sendable {
    public var id: String
    public var repoTags: [String]
    public var repoDigests: [String]
    public var parent: String
    public var comment: String
    public var created: String
    public var config: ContainerConfigView
    public var architecture: String
    public var os: String
    public var size: Int64
    public var rootFS: RootFSView
    public var graphDriver: GraphDriver

    public struct RootFSView: Codable, Sendable {
        public var type: String
        public var layers: [String]
        enum CodingKeys: String, CodingKey { case type = "Type", layers = "Layers" }
    }

    public struct GraphDriver: Codable, Sendable {
        public var name: String
        public var data: [String: String]
        enum CodingKeys: String, CodingKey { case name = "Name", data = "Data" }
    }

    enum CodingKeys: String, CodingKey {
        case id = "Id", repoTags = "RepoTags", repoDigests = "RepoDigests", parent = "Parent", comment = "Comment"
        case created = "Created", config = "Config", architecture = "Architecture", os = "Os", size = "Size", rootFS = "RootFS"
        case graphDriver = "GraphDriver"
    }

    public init(id: String, repoTags: [String], comment: String, created: String, config: ContainerConfigView, architecture: String,
                os: String, size: Int64, layers: [String], layerDirectories: [String]) {
        self.id = id
        self.repoTags = repoTags
        self.repoDigests = []
        self.parent = ""
        self.comment = comment
        self.created = created
        self.config = config
        self.architecture = architecture
        self.os = os
        self.size = size
        self.rootFS = RootFSView(type: "layers", layers: layers)
        self.graphDriver = GraphDriver(name: "overlay2", data: ["LowerDir": layerDirectories.reversed().joined(separator: ":")])
    }
}

/// One entry of `DELETE /images/{name}`'s answer.
public struct ImageDeleteResponseItem: Codable, Sendable {
    public var untagged: String?
    public var deleted: String?
    enum CodingKeys: String, CodingKey { case untagged = "Untagged", deleted = "Deleted" }

    public init(untagged: String?, deleted: String?) {
        self.untagged = untagged
        self.deleted = deleted
    }
}

/// The containers and images Docker's API serves, behind the router.
public protocol ContainerBackend: Sendable {
    func createContainer(name: String?, _ request: ContainerCreateRequest) async throws -> ContainerCreateResponse
    func startContainer(_ reference: String) async throws
    func stopContainer(_ reference: String, timeout: Double?) async throws -> Bool
    func killContainer(_ reference: String, signal: String) async throws
    func waitContainer(_ reference: String) async throws -> ContainerWaitResponse
    func removeContainer(_ reference: String, force: Bool) async throws
    func listContainers(all: Bool) async throws -> [ContainerSummary]
    func inspectContainer(_ reference: String) async throws -> ContainerInspect
    /// Docker's multiplexed log stream (stdout 1, stderr 2), whole or
    /// followed.
    func containerLogs(_ reference: String, options: LogOptions) async throws -> AsyncThrowingStream<[UInt8], Error>

    /// `docker load`: the tarball is in `archive` (a file descriptor).
    func loadImages(archive: SpooledBody, quiet: Bool) async throws -> [String]
    func importImage(archive: SpooledBody, repository: String?, tag: String?, changes: [String], message: String?) async throws -> String
    func listImages() async throws -> [ImageSummary]
    func inspectImage(_ reference: String) async throws -> ImageInspect
    func removeImage(_ reference: String, force: Bool) async throws -> [ImageDeleteResponseItem]
    func tagImage(_ reference: String, repository: String, tag: String?) async throws
}

import FoundationEssentials

// Services and tasks as the managers keep them in the replicated store
// (collections `services` and `tasks`), shaped after swarmkit's
// api/specs.proto and api/objects.proto. The network side of a service
// (VIPs, published ports) is its `ServiceRecord`, under the same ID.

/// What a task runs: the container part of Docker's `TaskTemplate`.
public struct ContainerTemplate: Codable, Sendable, Equatable {
    public var image: String
    /// Replaces the image's entrypoint (`docker service create --entrypoint`).
    public var command: [String]?
    /// Replaces the image's Cmd (the arguments after the image).
    public var args: [String]?
    public var env: [String]
    public var dir: String?
    public var user: String?
    public var hostname: String?
    public var labels: [String: String]
    public var healthcheck: HealthConfig?
    public var stopSignal: String?
    /// Nanoseconds between the stop signal and SIGKILL (Docker's default 10 s).
    public var stopGracePeriod: Int64?
    public var mounts: [MountTemplate]
    public var readOnly: Bool

    public init(image: String, command: [String]? = nil, args: [String]? = nil, env: [String] = [], dir: String? = nil,
                user: String? = nil, hostname: String? = nil, labels: [String: String] = [:], healthcheck: HealthConfig? = nil,
                stopSignal: String? = nil, stopGracePeriod: Int64? = nil, mounts: [MountTemplate] = [], readOnly: Bool = false) {
        self.image = image
        self.command = command
        self.args = args
        self.env = env
        self.dir = dir
        self.user = user
        self.hostname = hostname
        self.labels = labels
        self.healthcheck = healthcheck
        self.stopSignal = stopSignal
        self.stopGracePeriod = stopGracePeriod
        self.mounts = mounts
        self.readOnly = readOnly
    }
}

/// A mount of a service's tasks: `bind`, `volume` or `tmpfs`.
public struct MountTemplate: Codable, Sendable, Equatable {
    public var type: String
    public var source: String
    public var target: String
    public var readOnly: Bool

    public init(type: String, source: String, target: String, readOnly: Bool) {
        self.type = type
        self.source = source
        self.target = target
        self.readOnly = readOnly
    }
}

/// CPU in nano-CPUs and memory in bytes, as Docker's `Resources`.
public struct ResourceAmounts: Codable, Sendable, Equatable {
    public var nanoCPUs: Int64
    public var memoryBytes: Int64

    public init(nanoCPUs: Int64 = 0, memoryBytes: Int64 = 0) {
        self.nanoCPUs = nanoCPUs
        self.memoryBytes = memoryBytes
    }

    public static func + (lhs: ResourceAmounts, rhs: ResourceAmounts) -> ResourceAmounts {
        ResourceAmounts(nanoCPUs: lhs.nanoCPUs + rhs.nanoCPUs, memoryBytes: lhs.memoryBytes + rhs.memoryBytes)
    }
}

/// When a task that ended is replaced (`--restart-condition`, …).
public struct RestartPolicy: Codable, Sendable, Equatable {
    public enum Condition: String, Codable, Sendable {
        case none
        case onFailure = "on-failure"
        case any
    }

    public var condition: Condition
    /// Nanoseconds between a task's end and its replacement's start
    /// (Docker's default 5 s).
    public var delay: Int64
    /// 0: no limit.
    public var maxAttempts: UInt64
    /// Nanoseconds over which attempts are counted; 0: the whole history.
    public var window: Int64

    public static let defaultDelay: Int64 = 5_000_000_000

    public init(condition: Condition = .any, delay: Int64 = RestartPolicy.defaultDelay, maxAttempts: UInt64 = 0, window: Int64 = 0) {
        self.condition = condition
        self.delay = delay
        self.maxAttempts = maxAttempts
        self.window = window
    }
}

/// Where a service's tasks may go: constraints (`node.labels.zone==a`) and
/// spread preferences (`spread=node.labels.zone`).
public struct Placement: Codable, Sendable, Equatable {
    public var constraints: [String]
    /// The node attributes to spread over, in order (`node.labels.zone`).
    public var spreadOver: [String]

    public init(constraints: [String] = [], spreadOver: [String] = []) {
        self.constraints = constraints
        self.spreadOver = spreadOver
    }
}

/// A network a service's tasks join, with their extra DNS aliases.
public struct NetworkTarget: Codable, Sendable, Equatable {
    /// The network's ID.
    public var network: String
    public var aliases: [String]

    public init(network: String, aliases: [String] = []) {
        self.network = network
        self.aliases = aliases
    }
}

/// Everything a task is made from: Docker's `TaskTemplate`. A task keeps
/// the template it was made from, so the orchestrator sees which tasks an
/// update has not reached yet.
public struct TaskTemplate: Codable, Sendable, Equatable {
    public var container: ContainerTemplate
    public var reservations: ResourceAmounts
    public var limits: ResourceAmounts
    public var restartPolicy: RestartPolicy
    public var placement: Placement
    public var networks: [NetworkTarget]
    /// `docker service update --force` bumps it: tasks are replaced though
    /// nothing else changed.
    public var forceUpdate: UInt64

    public init(container: ContainerTemplate, reservations: ResourceAmounts = ResourceAmounts(), limits: ResourceAmounts = ResourceAmounts(),
                restartPolicy: RestartPolicy = RestartPolicy(), placement: Placement = Placement(), networks: [NetworkTarget] = [],
                forceUpdate: UInt64 = 0) {
        self.container = container
        self.reservations = reservations
        self.limits = limits
        self.restartPolicy = restartPolicy
        self.placement = placement
        self.networks = networks
        self.forceUpdate = forceUpdate
    }
}

/// How a service's tasks are replaced after a change (`UpdateConfig`,
/// `RollbackConfig`).
public struct UpdatePolicy: Codable, Sendable, Equatable {
    public enum Order: String, Codable, Sendable {
        case stopFirst = "stop-first"
        case startFirst = "start-first"
    }

    public enum FailureAction: String, Codable, Sendable {
        case pause, `continue`, rollback
    }

    /// Tasks replaced at once; 0: all of them.
    public var parallelism: UInt64
    /// Nanoseconds between two batches.
    public var delay: Int64
    public var order: Order
    public var failureAction: FailureAction
    /// Nanoseconds a new task must keep running to count as a success.
    public var monitor: Int64
    /// The share of failed tasks tolerated before `failureAction` applies.
    public var maxFailureRatio: Double

    public init(parallelism: UInt64 = 1, delay: Int64 = 0, order: Order = .stopFirst, failureAction: FailureAction = .pause,
                monitor: Int64 = 5_000_000_000, maxFailureRatio: Double = 0) {
        self.parallelism = parallelism
        self.delay = delay
        self.order = order
        self.failureAction = failureAction
        self.monitor = monitor
        self.maxFailureRatio = maxFailureRatio
    }
}

public enum ServiceMode: Codable, Sendable, Equatable {
    case replicated(replicas: UInt64)
    /// One task on every node that fits.
    case global
}

/// What the operator asked for: Docker's `ServiceSpec` minus the endpoint
/// (which the service's `ServiceRecord` holds).
public struct ServiceDefinition: Codable, Sendable, Equatable {
    public var name: String
    public var labels: [String: String]
    public var task: TaskTemplate
    public var mode: ServiceMode
    public var update: UpdatePolicy
    public var rollback: UpdatePolicy

    public init(name: String, labels: [String: String] = [:], task: TaskTemplate, mode: ServiceMode = .replicated(replicas: 1),
                update: UpdatePolicy = UpdatePolicy(), rollback: UpdatePolicy = UpdatePolicy()) {
        self.name = name
        self.labels = labels
        self.task = task
        self.mode = mode
        self.update = update
        self.rollback = rollback
    }
}

/// Where a service's rolling update stands (Docker's `UpdateStatus`).
public struct UpdateProgress: Codable, Sendable, Equatable {
    public enum State: String, Codable, Sendable {
        case updating, paused, completed
        case rollbackStarted = "rollback_started"
        case rollbackPaused = "rollback_paused"
        case rollbackCompleted = "rollback_completed"
    }

    public var state: State
    public var startedAt: Date
    public var completedAt: Date?
    public var message: String

    public init(state: State, startedAt: Date, completedAt: Date? = nil, message: String) {
        self.state = state
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.message = message
    }
}

/// A service under orchestration. Key: the service's ID.
public struct SwarmService: Codable, Sendable, Equatable {
    public static let collection = "services"

    public var id: String
    public var createdAt: Date
    public var updatedAt: Date
    public var spec: ServiceDefinition
    /// The spec before the last update: what `docker service rollback`
    /// returns to.
    public var previousSpec: ServiceDefinition?
    /// The published ports before the last update (they live with the
    /// service's network side): what a rollback publishes again.
    public var previousPorts: [ServicePort]?
    /// Bumped whenever `spec.task` changes: tasks made from an older
    /// template are replaced by the rolling update.
    public var templateVersion: UInt64
    public var updateStatus: UpdateProgress?

    public init(id: String, createdAt: Date, spec: ServiceDefinition) {
        self.id = id
        self.createdAt = createdAt
        updatedAt = createdAt
        self.spec = spec
        templateVersion = 1
    }
}

/// What a task's node reports about it (swarmkit's `TaskStatus`).
public struct TaskStatus: Codable, Sendable, Equatable {
    public var state: TaskState
    public var timestamp: Date
    public var message: String
    public var error: String?
    public var containerID: String?
    public var pid: Int32?
    public var exitCode: Int32?

    public init(state: TaskState, timestamp: Date, message: String, error: String? = nil, containerID: String? = nil,
                pid: Int32? = nil, exitCode: Int32? = nil) {
        self.state = state
        self.timestamp = timestamp
        self.message = message
        self.error = error
        self.containerID = containerID
        self.pid = pid
        self.exitCode = exitCode
    }
}

/// A task's address on one of its networks, as its node attached it.
public struct TaskAddress: Codable, Sendable, Equatable {
    public var networkID: String
    /// `10.0.1.5/24`.
    public var address: String

    public init(networkID: String, address: String) {
        self.networkID = networkID
        self.address = address
    }
}

/// One run of one slot of a service (or of a global service on one
/// node). Key: the task's ID. The control role writes everything but
/// `status` and `addresses`, which the task's node reports.
public struct SwarmTask: Codable, Sendable, Equatable {
    public static let collection = "tasks"

    public var id: String
    public var serviceID: String
    public var serviceName: String
    /// 1…N for a replicated service; 0 for a global one (its node says
    /// which task it is).
    public var slot: UInt64
    /// nil until the scheduler places it.
    public var nodeID: String?
    public var template: TaskTemplate
    /// The service's `templateVersion` the task was made from.
    public var templateVersion: UInt64
    /// What the orchestrator wants: `running`, or `shutdown` once the task
    /// is replaced, scaled away or its service removed (`remove`).
    public var desiredState: TaskState
    public var status: TaskStatus
    public var addresses: [TaskAddress]
    public var createdAt: Date
    public var updatedAt: Date
    /// A restarted task waits for its restart delay before it is placed.
    public var notBefore: Date?
    /// When its node first reported it running: a rolling update's monitor
    /// window counts from there.
    public var runningSince: Date?

    public init(id: String, service: SwarmService, slot: UInt64, nodeID: String? = nil, now: Date, notBefore: Date? = nil) {
        self.id = id
        serviceID = service.id
        serviceName = service.spec.name
        self.slot = slot
        self.nodeID = nodeID
        template = service.spec.task
        templateVersion = service.templateVersion
        desiredState = .running
        status = TaskStatus(state: .new, timestamp: now, message: "created")
        addresses = []
        createdAt = now
        updatedAt = now
        self.notBefore = notBefore
    }

    /// The task with its node's report applied: its state moves forward,
    /// never back. Nil when the report changes nothing.
    public func recording(_ report: TaskReport, at now: Date) -> SwarmTask? {
        guard report.status.state >= status.state, report.status != status || (!report.addresses.isEmpty && report.addresses != addresses)
        else { return nil }
        var task = self
        task.status = report.status
        if !report.addresses.isEmpty { task.addresses = report.addresses }
        if report.status.state == .running && task.runningSince == nil { task.runningSince = report.status.timestamp }
        task.updatedAt = now
        return task
    }

    /// Which place of its service the task fills: its slot (replicated),
    /// or its node (global). A replacement fills the same place.
    public var place: String { slot > 0 ? "slot \(slot)" : "node \(nodeID ?? "")" }

    /// The task's name as Docker shows it: `web.2` (global: `web.NODEID`).
    public var name: String { slot > 0 ? "\(serviceName).\(slot)" : "\(serviceName).\(nodeID ?? "")" }

    /// The orchestrator still counts it as one of the service's tasks.
    public var isWanted: Bool { desiredState <= .running }
    /// It may run, or run soon (placed or not, not ended).
    public var isLive: Bool { isWanted && !status.state.isTerminal }
}

/// What a node says about one of its tasks, in its heartbeat.
public struct TaskReport: Codable, Sendable, Equatable {
    public var taskID: String
    public var status: TaskStatus
    public var addresses: [TaskAddress]

    public init(taskID: String, status: TaskStatus, addresses: [TaskAddress] = []) {
        self.taskID = taskID
        self.status = status
        self.addresses = addresses
    }
}

/// What a node is told to run: the tasks assigned to it and what the
/// orchestrator wants of each.
public struct TaskAssignment: Codable, Sendable, Equatable {
    public var taskID: String
    public var name: String
    public var serviceID: String
    public var slot: UInt64
    public var template: TaskTemplate
    public var desiredState: TaskState

    public init(_ task: SwarmTask) {
        taskID = task.id
        name = task.name
        serviceID = task.serviceID
        slot = task.slot
        template = task.template
        desiredState = task.desiredState
    }
}

/// The node's side of the dispatcher: it runs what it is assigned and
/// reports what happens to it, through the node's heartbeats.
public protocol TaskAgent: Sendable {
    /// The task states that changed since the managers last recorded them.
    func unreportedChanges() async -> [TaskReport]
    /// The managers recorded these reports.
    func acknowledge(_ reports: [TaskReport]) async
    /// Every task the dispatcher assigns to this node, with what it wants
    /// of each. `retained` are the node's ended tasks the managers keep in
    /// their history: their containers stay, stopped, with their logs.
    /// The node's other tasks are stopped and removed.
    func assign(_ tasks: [TaskAssignment], retaining retained: Set<String>) async
    /// The log lines of the request's tasks that run (or ran) here.
    func logs(_ request: LogRequest) async -> [LogEntry]
    /// The node left the swarm (or was removed from it): every task's
    /// container is stopped and removed, as Docker's node does when it
    /// leaves. Returns once they are gone.
    func removeAll() async
}

/// A manager asks a node for the logs of some of its tasks (`docker service
/// logs`), through the dispatcher: the request rides on a heartbeat answer
/// and the node posts the lines back on its session.
public struct LogRequest: Codable, Sendable, Equatable {
    public var id: String
    public var taskIDs: [String]
    public var stdout: Bool
    public var stderr: Bool
    /// Lines from the end of each task's log; nil for all.
    public var tail: Int?
    public var since: Date?

    public init(id: String, taskIDs: [String], stdout: Bool, stderr: Bool, tail: Int?, since: Date?) {
        self.id = id
        self.taskIDs = taskIDs
        self.stdout = stdout
        self.stderr = stderr
        self.tail = tail
        self.since = since
    }
}

/// One line of a task's log, as a node sends it to the managers.
public struct LogEntry: Codable, Sendable, Equatable {
    public var taskID: String
    /// RFC 3339 with nanoseconds.
    public var time: String
    public var stderr: Bool
    public var text: Data

    public init(taskID: String, time: String, stderr: Bool, text: Data) {
        self.taskID = taskID
        self.time = time
        self.stderr = stderr
        self.text = text
    }
}

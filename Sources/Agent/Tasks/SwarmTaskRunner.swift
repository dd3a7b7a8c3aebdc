import Cluster
import FoundationEssentials
import Logging
import TaskExecution

/// The node agent's side of swarm tasks: runs what the dispatcher assigns
/// to this node as containers (the executor attaches their networks
/// first), stops what it no longer wants, and reports every state change
/// in the next heartbeat. It never writes cluster state: the managers
/// decide, it reports.
public actor SwarmTaskRunner: TaskAgent {
    /// The container label that names the swarm task, as Docker's.
    public static let taskLabel = "com.docker.swarm.task.id"

    private let executor: TaskExecutor
    private let logger: Logger
    private var wake: @Sendable () -> Void = {}
    /// The latest state of each task here, and what the managers recorded.
    private var latest: [String: TaskReport] = [:]
    private var acknowledged: [String: TaskReport] = [:]
    /// Task ID → the executor's container ID.
    private var containers: [String: String] = [:]
    /// Tasks being started, stopped or removed right now.
    private var busy: Set<String> = []
    /// How long a task stays out of its balancers before its stop signal:
    /// time for every host to hear of it (gossip takes a few hundred
    /// milliseconds).
    static let leaveSettle: Duration = .seconds(1)
    /// The log text one reply carries at most (base64 in JSON grows it by
    /// a third).
    static let maxLogReplyBytes = 600 << 10

    public init(executor: TaskExecutor, logger: Logger) {
        self.executor = executor
        self.logger = logger
    }

    /// Follows the executor, and takes over the swarm tasks a previous run
    /// left (they are reported, and stopped if no longer assigned).
    public func start(wake: @escaping @Sendable () -> Void) async {
        self.wake = wake
        await executor.addListener { [weak self] record in
            guard record.spec.labels[Self.taskLabel] != nil else { return }
            Task { await self?.observe(record) }
        }
        for record in await executor.list() { observe(record) }
    }

    private func observe(_ record: TaskRecord) {
        guard let taskID = record.spec.labels[Self.taskLabel] else { return }
        containers[taskID] = record.id
        // As swarmkit's: a task with a health check is running once it is
        // healthy; until then it is starting (a rolling update waits for
        // it, and it is no backend yet).
        var state = record.state, message = record.message
        if state == .running, record.healthcheck != nil, record.health?.status != "healthy" {
            (state, message) = (.starting, "starting")
        }
        let report = TaskReport(
            taskID: taskID,
            status: TaskStatus(state: state, timestamp: record.history?.last?.timestamp ?? record.created, message: message,
                               error: record.error, containerID: record.id, pid: record.pid, exitCode: record.exitCode),
            addresses: record.attachments.map { TaskAddress(networkID: $0.networkID, address: $0.address) })
        guard latest[taskID] != report else { return }
        latest[taskID] = report
        wake()
    }

    public func unreportedChanges() -> [TaskReport] {
        latest.values.filter { acknowledged[$0.taskID] != $0 }.sorted { $0.taskID < $1.taskID }
    }

    public func acknowledge(_ reports: [TaskReport]) {
        for report in reports { acknowledged[report.taskID] = report }
    }

    public func assign(_ tasks: [TaskAssignment], retaining retained: Set<String>) {
        let assigned = Dictionary(tasks.map { ($0.taskID, $0) }, uniquingKeysWith: { first, _ in first })
        for task in tasks where !busy.contains(task.taskID) {
            let ended = latest[task.taskID]?.status.state.isTerminal ?? false
            if task.desiredState == .running {
                guard containers[task.taskID] == nil, latest[task.taskID] == nil else { continue }
                busy.insert(task.taskID)
                Task { await run(task) }
            } else if let container = containers[task.taskID], !ended {
                busy.insert(task.taskID)
                Task { await stop(task, container: container) }
            } else if containers[task.taskID] == nil && latest[task.taskID] == nil {
                // Stopped before it ever started here.
                report(task.taskID, .shutdown, "shutdown before it started")
            }
        }
        // Tasks the managers no longer assign or keep here: stopped and
        // removed.
        for (taskID, container) in containers where assigned[taskID] == nil && !retained.contains(taskID) && !busy.contains(taskID) {
            busy.insert(taskID)
            Task { await discard(taskID, container: container, settle: Self.leaveSettle) }
        }
        for taskID in latest.keys where assigned[taskID] == nil && containers[taskID] == nil && !busy.contains(taskID) {
            latest[taskID] = nil
            acknowledged[taskID] = nil
        }
    }

    public func logs(_ request: LogRequest) async -> [LogEntry] {
        var streams: Set<TaskLogLine.Stream> = []
        if request.stdout { streams.insert(.stdout) }
        if request.stderr { streams.insert(.stderr) }
        var entries: [LogEntry] = []
        for taskID in request.taskIDs {
            guard let container = containers[taskID] else { continue }
            let files = await executor.logFiles(container)
            for line in TaskLog.read(files: files, streams: streams, since: request.since, tail: request.tail) {
                entries.append(LogEntry(taskID: taskID, time: line.time, stderr: line.stream == .stderr, text: Data(line.text)))
            }
        }
        // A reply must fit the managers' 1 MiB request bound: the newest
        // lines are kept.
        var bytes = 0
        var kept = entries.count
        while kept > 0, bytes + entries[kept - 1].text.count + 96 < Self.maxLogReplyBytes {
            bytes += entries[kept - 1].text.count + 96
            kept -= 1
        }
        return Array(entries[kept...])
    }

    public func removeAll() async {
        for (taskID, container) in containers {
            busy.insert(taskID)
            // Gone at once, as Docker's node removes them when it leaves:
            // no settle out of the balancers, this node leaves them all.
            await discard(taskID, container: container, settle: nil)
        }
    }

    private func report(_ taskID: String, _ state: TaskState, _ message: String, error: String? = nil) {
        latest[taskID] = TaskReport(taskID: taskID, status: TaskStatus(state: state, timestamp: Date(), message: message, error: error))
        wake()
    }

    private func run(_ task: TaskAssignment) async {
        defer { busy.remove(task.taskID) }
        report(task.taskID, .accepted, "accepted")
        do {
            let record = try await executor.create(Self.containerSpec(task))
            containers[task.taskID] = record.id
            _ = try await executor.start(record.id)
            logger.info("task started", metadata: ["task": "\(task.name)", "id": "\(task.taskID.prefix(12))"])
        } catch {
            // Rejected here (a missing image, a bad mount): the orchestrator
            // replaces it, as its restart policy says.
            if containers[task.taskID] == nil || latest[task.taskID]?.status.state.isTerminal != true {
                report(task.taskID, .rejected, "preparing failed", error: "\(error)")
            }
            logger.warning("task rejected", metadata: ["task": "\(task.name)", "error": "\(error)"])
        }
    }

    private func stop(_ task: TaskAssignment, container: String) async {
        defer { busy.remove(task.taskID) }
        let grace = task.template.container.stopGracePeriod.map { Double($0) / 1e9 }
        do {
            try await executor.leaveServices(container, settle: Self.leaveSettle)
            try await executor.stop(container, timeout: grace)
        } catch {
            logger.warning("stopping a task", metadata: ["task": "\(task.name)", "error": "\(error)"])
        }
    }

    /// Stops and removes a task's container, first out of its balancers
    /// for `settle` when given.
    private func discard(_ taskID: String, container: String, settle: Duration?) async {
        defer { busy.remove(taskID) }
        do {
            if let settle { try await executor.leaveServices(container, settle: settle) }
            try await executor.remove(container, force: true)
        } catch {
            logger.warning("removing a task no longer assigned here", metadata: ["task": "\(taskID.prefix(12))", "error": "\(error)"])
        }
        containers[taskID] = nil
        latest[taskID] = nil
        acknowledged[taskID] = nil
    }

    /// The container a task runs: Docker's naming (`web.1.TASKID`) and
    /// labels, its networks joined as a backend of its service, and
    /// Swarm's rule that an unhealthy task fails.
    static func containerSpec(_ task: TaskAssignment) -> TaskSpec {
        let container = task.template.container
        var labels = container.labels
        labels[taskLabel] = task.taskID
        labels["com.docker.swarm.task.name"] = "\(task.name).\(task.taskID)"
        labels["com.docker.swarm.service.id"] = task.serviceID
        var spec = TaskSpec(
            name: "\(task.name).\(task.taskID)", image: container.image, entrypoint: container.command, command: container.args,
            env: container.env, workingDir: container.dir, user: container.user, hostname: container.hostname, labels: labels,
            mounts: container.mounts.map {
                MountSpec(kind: MountSpec.Kind(rawValue: $0.type) ?? .volume, source: $0.source, target: $0.target, readOnly: $0.readOnly)
            },
            readOnlyRootFS: container.readOnly,
            memoryLimit: task.template.limits.memoryBytes > 0 ? task.template.limits.memoryBytes : nil,
            nanoCPUs: task.template.limits.nanoCPUs > 0 ? task.template.limits.nanoCPUs : nil,
            healthcheck: container.healthcheck, stopSignal: container.stopSignal,
            stopTimeout: container.stopGracePeriod.map { Double($0) / 1e9 },
            networks: task.template.networks.map { NetworkAttachmentSpec(network: $0.network, aliases: $0.aliases, service: task.serviceID) })
        spec.failWhenUnhealthy = true
        return spec
    }
}

import Cluster
import DockerAPI
import TaskExecution
import FoundationEssentials
import SystemBasics
import Logging

/// Docker's container and image API over the executor and the image store:
/// `docker load|import|image …` and `docker run -d|ps|inspect|logs|stop|rm`
/// on one node. Translates Docker's JSON to a task spec and back, and the
/// executor's errors to Docker's statuses (here, at the edge).
public final class ContainerService: ContainerBackend {
    public let images: ImageStore
    public let executor: TaskExecutor
    let logger: Logger

    public init(images: ImageStore, executor: TaskExecutor, logger: Logger) {
        self.images = images
        self.executor = executor
        self.logger = logger
    }

    /// Opens the node's image store and task executor under its state
    /// directory; the daemon's networks serve the tasks' endpoints.
    public static func open(configuration: NodeConfiguration, networking: NodeDaemon, shimPath: String, logger: Logger) throws -> ContainerService {
        let images = try ImageStore(root: configuration.stateDirectory + "/images")
        let executor = try TaskExecutor(
            root: configuration.stateDirectory + "/tasks", images: images,
            runtime: OCIRuntime(binary: configuration.runtime, root: configuration.runtimeRoot), shimPath: shimPath,
            networking: networking, namespacePrefix: configuration.namespacePrefix + "t-", logger: logger)
        return ContainerService(images: images, executor: executor, logger: logger)
    }

    /// Before the API serves: `--rm` containers are removed when they end,
    /// and tasks a previous run left are adopted (or reported ended).
    public func start() async {
        let executor = executor
        let logger = logger
        await executor.addListener { record in
            guard record.spec.autoRemove == true, record.state.isTerminal else { return }
            Task {
                do {
                    try await executor.remove(record.id, force: true)
                } catch {
                    logger.warning("removing a --rm container that ended", metadata: ["task": "\(record.shortID)", "error": "\(error)"])
                }
            }
        }
        await executor.adopt()
    }

    // MARK: - Containers

    public func createContainer(name: String?, _ request: ContainerCreateRequest) async throws -> ContainerCreateResponse {
        let (spec, warnings) = try Self.taskSpec(name: name ?? Self.randomName(), request)
        let record = try await mapping { try await executor.create(spec) }
        return ContainerCreateResponse(id: record.id, warnings: warnings)
    }

    public func startContainer(_ reference: String) async throws {
        _ = try await mapping { try await executor.start(reference) }
    }

    public func stopContainer(_ reference: String, timeout: Double?) async throws -> Bool {
        try await mapping {
            let record = try await executor.task(reference)
            guard !record.state.isTerminal else { return false }
            try await executor.stop(reference, timeout: timeout)
            return true
        }
    }

    public func killContainer(_ reference: String, signal: String) async throws {
        try await mapping { try await executor.kill(reference, signal: signal) }
    }

    public func waitContainer(_ reference: String) async throws -> ContainerWaitResponse {
        let record = try await mapping { try await executor.waitUntilEnded(reference) }
        return ContainerWaitResponse(statusCode: record.exitCode ?? -1, error: nil)
    }

    public func removeContainer(_ reference: String, force: Bool) async throws {
        try await mapping { try await executor.remove(reference, force: force) }
    }

    public func listContainers(all: Bool) async throws -> [ContainerSummary] {
        let now = Date()
        return await executor.list().filter { all || !$0.state.isTerminal }.reversed().map { record in
            ContainerSummary(
                id: record.id, names: ["/" + record.spec.name], image: record.spec.image, imageID: record.imageID,
                command: record.args.joined(separator: " "), created: Int64(record.created.timeIntervalSince1970),
                state: Self.dockerState(record), status: Self.status(record, now: now), labels: record.spec.labels,
                networkMode: record.spec.networks.first?.network ?? "none", networks: Self.networks(record))
        }
    }

    public func inspectContainer(_ reference: String) async throws -> ContainerInspect {
        let record = try await mapping { try await executor.task(reference) }
        let health = record.health.map { health in
            ContainerHealth(status: health.status, failingStreak: health.failingStreak, log: health.log.map {
                ContainerHealthResult(start: $0.start.rfc3339, end: $0.end.rfc3339, exitCode: $0.exitCode, output: $0.output)
            })
        }
        let state = ContainerState(
            status: Self.dockerState(record), running: record.state == .running, oomKilled: record.oomKilled,
            pid: record.state == .running ? record.pid ?? 0 : 0, exitCode: record.exitCode ?? 0, error: record.error ?? "",
            startedAt: record.startedAt.map(\.rfc3339) ?? "0001-01-01T00:00:00Z",
            finishedAt: record.finishedAt.map(\.rfc3339) ?? "0001-01-01T00:00:00Z", health: health)
        var hostConfig = HostConfig(networkMode: record.spec.networks.first?.network ?? "none")
        hostConfig.memory = record.spec.memoryLimit ?? 0
        hostConfig.nanoCpus = record.spec.nanoCPUs ?? 0
        hostConfig.pidsLimit = record.spec.pidsLimit
        hostConfig.readonlyRootfs = record.spec.readOnlyRootFS
        let mounts = record.spec.mounts.map {
            MountPoint(type: $0.kind.rawValue, source: $0.source, target: $0.target, readOnly: $0.readOnly)
        }
        let config = ContainerConfigView(
            hostname: record.hostname, user: record.spec.user ?? "", env: record.env, cmd: record.spec.command,
            entrypoint: record.spec.entrypoint, image: record.spec.image, workingDir: record.spec.workingDir ?? "",
            labels: record.spec.labels, healthcheck: record.healthcheck.map(Self.healthcheck), stopSignal: record.spec.stopSignal)
        var inspected = ContainerInspect(
            id: record.id, created: record.created.rfc3339, path: record.args.first ?? "", args: Array(record.args.dropFirst()),
            state: state, image: record.imageID, name: "/" + record.spec.name, config: config, hostConfig: hostConfig,
            networks: Self.networks(record), mounts: mounts, directory: await executor.directory(record.id))
        inspected.taskHistory = record.history?.map {
            TaskStatusView(state: $0.state.rawValue, timestamp: $0.timestamp.rfc3339, message: $0.message, err: $0.error)
        }
        return inspected
    }

    /// One log line in Docker's multiplexed stream.
    static func frame(_ line: TaskLogLine, timestamps: Bool) -> [UInt8] {
        LogOptions.frame(stderr: line.stream == .stderr, (timestamps ? Array((line.time + " ").utf8) : []) + line.text)
    }

    public func containerLogs(_ reference: String, options: LogOptions) async throws -> AsyncThrowingStream<[UInt8], Error> {
        let executor = executor
        let record = try await mapping { try await executor.task(reference) }
        let files = await executor.logFiles(record.id)
        var streams: Set<TaskLogLine.Stream> = []
        if options.stdout { streams.insert(.stdout) }
        if options.stderr { streams.insert(.stderr) }
        let lines = TaskLog.read(files: files, streams: streams, since: options.since, until: options.until, tail: options.tail)
        let wanted = streams
        return AsyncThrowingStream { continuation in
            var first: [UInt8] = []
            for line in lines { first += Self.frame(line, timestamps: options.timestamps) }
            if !first.isEmpty { continuation.yield(first) }
            guard options.follow, let current = files.last else {
                continuation.finish()
                return
            }
            // Follows the current file from its end, until the task ends
            // (and its last lines are read) or the client leaves.
            let follower = Task {
                var offset = FileTree.size(current) ?? 0
                var pending: [UInt8] = []
                while !Task.isCancelled {
                    let ended = (try? await executor.task(record.id).state.isTerminal) ?? true
                    if let (data, size) = FileTree.read(current, after: offset) {
                        offset = size
                        pending += data
                        if let lastNewline = pending.lastIndex(of: UInt8(ascii: "\n")) {
                            let complete = pending[...lastNewline]
                            var framed: [UInt8] = []
                            for line in TaskLog.parse(complete, streams: wanted, until: options.until) {
                                framed += Self.frame(line, timestamps: options.timestamps)
                            }
                            pending.removeSubrange(...lastNewline)
                            if !framed.isEmpty { continuation.yield(framed) }
                        }
                    }
                    if ended { break }
                    try? await Task.sleep(for: .milliseconds(100))
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in follower.cancel() }
        }
    }

    // MARK: - Images

    public func loadImages(archive: SpooledBody, quiet: Bool) async throws -> [String] {
        let images = images
        return try await mapping {
            try await NodeDaemon.blocking {
                try images.load(FileRegion(descriptor: archive.descriptor, length: archive.length))
            }
        }
    }

    public func importImage(archive: SpooledBody, repository: String?, tag: String?, changes: [String], message: String?) async throws -> String {
        var reference: ImageReference?
        if let repository {
            reference = try mapping { try ImageReference(parsing: tag.map { repository + ":" + $0 } ?? repository) }
        }
        let defaults = try mapping { try ImageChanges.apply(changes, to: ImageRuntimeConfig()) }
        let images = images
        let image = try await mapping {
            try await NodeDaemon.blocking { [reference] in
                try images.importRootFS(FileRegion(descriptor: archive.descriptor, length: archive.length), tag: reference,
                                        defaults: defaults, comment: message)
            }
        }
        return image.id
    }

    public func listImages() async throws -> [ImageSummary] {
        let tasks = await executor.list()
        return images.list().map { image in
            ImageSummary(
                id: image.id, repoTags: image.tags.map(\.description), created: Self.unixTime(image.config.created),
                size: image.size, labels: image.config.config?.labels, containers: tasks.filter { $0.imageID == image.id }.count)
        }
    }

    public func inspectImage(_ reference: String) async throws -> ImageInspect {
        let image = try mapping { try images.image(reference) }
        let config = image.config.config
        let view = ContainerConfigView(
            hostname: "", user: config?.user ?? "", env: config?.env ?? [], cmd: config?.cmd, entrypoint: config?.entrypoint,
            image: "", workingDir: config?.workingDir ?? "", labels: config?.labels ?? [:],
            healthcheck: config?.healthcheck.map(Self.healthcheck), stopSignal: config?.stopSignal)
        return ImageInspect(
            id: image.id, repoTags: image.tags.map(\.description), comment: image.config.history?.last?.comment ?? "",
            created: image.config.created ?? "", config: view, architecture: image.config.architecture ?? "amd64",
            os: image.config.os ?? "linux", size: image.size, layers: image.config.rootfs.diffIDs,
            layerDirectories: images.layerDirectories(image))
    }

    public func removeImage(_ reference: String, force: Bool) async throws -> [ImageDeleteResponseItem] {
        let tasks = await executor.list()
        let images = images
        let removed = try await mapping {
            try await NodeDaemon.blocking {
                try images.remove(reference, force: force) { id in
                    tasks.first { $0.imageID == id }.map { "container \($0.shortID)" }
                }
            }
        }
        return removed.map { ImageDeleteResponseItem(untagged: $0.untagged, deleted: $0.deleted) }
    }

    public func tagImage(_ reference: String, repository: String, tag: String?) async throws {
        let target = try mapping { try ImageReference(parsing: tag.map { repository + ":" + $0 } ?? repository) }
        try mapping { try images.tag(reference, as: target) }
    }

    // MARK: - Translation

    /// Docker's create request as a task spec, with the warnings Docker's
    /// CLI prints for what is accepted but not done.
    static func taskSpec(name: String, _ request: ContainerCreateRequest) throws -> (TaskExecution.TaskSpec, [String]) {
        guard name.first.map({ $0.isLetter || $0.isNumber }) == true,
              name.allSatisfy({ $0.isLetter || $0.isNumber || "_.-".contains($0) }) else {
            throw ControlError(.invalidArgument, "Invalid container name (\(name)), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        }
        guard let image = request.image, !image.isEmpty else { throw ControlError(.invalidArgument, "Config.Image is required: name an image") }
        if request.tty == true {
            throw ControlError(.invalidArgument, "swarmnet runs containers detached, without a terminal: drop -t/-i and use -d")
        }
        var warnings: [String] = []
        let host = request.hostConfig ?? HostConfig()
        var networks: [NetworkAttachmentSpec] = []
        let mode = host.networkMode ?? "default"
        switch mode {
        case "default", "bridge", "none", "":
            break
        case "host":
            throw ControlError(.invalidArgument, "network mode host is not supported: a task has its own network namespace")
        default:
            if mode.hasPrefix("container:") { throw ControlError(.invalidArgument, "network mode \(mode) is not supported") }
            let config = request.networkingConfig?.endpointsConfig?[mode]
            networks.append(NetworkAttachmentSpec(network: mode, aliases: config?.aliases ?? [],
                                                  address: config?.ipamConfig?.ipv4Address.flatMap { $0.isEmpty ? nil : $0 }))
        }
        for (network, config) in (request.networkingConfig?.endpointsConfig ?? [:]).sorted(by: { $0.key < $1.key })
        where network != mode && !["default", "bridge", "none", "host"].contains(network) {
            networks.append(NetworkAttachmentSpec(network: network, aliases: config.aliases ?? [],
                                                  address: config.ipamConfig?.ipv4Address.flatMap { $0.isEmpty ? nil : $0 }))
        }
        // `--label com.swarmnet.service=NAME`: the task is a backend of that
        // service on the networks they share (as `docker network connect
        // --driver-opt com.swarmnet.service=NAME` makes a namespace one).
        if let service = request.labels?[EndpointSettings.serviceOption] {
            for index in networks.indices { networks[index].service = service }
        }
        if mode == "default" || mode == "bridge" {
            warnings.append("swarmnet has no bridge network: the container has only loopback; give it an overlay network with --network")
        }
        var mounts: [MountSpec] = []
        for bind in host.binds ?? [] {
            let parts = bind.split(separator: ":").map(String.init)
            guard parts.count == 2 || parts.count == 3 else {
                throw ControlError(.invalidArgument, "invalid volume specification: '\(bind)' (SOURCE:TARGET[:ro])")
            }
            mounts.append(MountSpec(kind: parts[0].hasPrefix("/") ? .bind : .volume, source: parts[0], target: parts[1],
                                    readOnly: parts.count == 3 && parts[2].split(separator: ",").contains("ro")))
        }
        for mount in host.mounts ?? [] {
            guard let kind = MountSpec.Kind(rawValue: mount.type ?? "volume"), let target = mount.target else {
                throw ControlError(.invalidArgument, "invalid mount: type \(mount.type ?? "-") is not bind, volume or tmpfs, or it has no target")
            }
            mounts.append(MountSpec(kind: kind, source: mount.source ?? "", target: target, readOnly: mount.readOnly ?? false))
        }
        for target in (host.tmpfs ?? [:]).keys.sorted() { mounts.append(MountSpec(kind: .tmpfs, source: "tmpfs", target: target)) }
        if !(host.portBindings ?? [:]).isEmpty {
            warnings.append("published ports are not supported for containers (create a service with -p instead); none was published")
        }
        if host.privileged == true { throw ControlError(.invalidArgument, "privileged containers are not supported") }
        let nonEmpty: (String?) -> String? = { $0?.isEmpty == false ? $0 : nil }
        let positive: (Int64?) -> Int64? = { ($0 ?? 0) > 0 ? $0 : nil }
        let healthcheck: HealthConfig? = request.healthcheck.map {
            HealthConfig(test: $0.test, interval: $0.interval, timeout: $0.timeout, startPeriod: $0.startPeriod, retries: $0.retries)
        }
        var spec = TaskExecution.TaskSpec(name: name, image: image, entrypoint: request.entrypoint, command: request.cmd,
                                          env: request.env ?? [])
        spec.workingDir = nonEmpty(request.workingDir)
        spec.user = nonEmpty(request.user)
        spec.hostname = nonEmpty(request.hostname)
        spec.labels = request.labels ?? [:]
        spec.mounts = mounts
        spec.readOnlyRootFS = host.readonlyRootfs ?? false
        spec.memoryLimit = positive(host.memory)
        spec.nanoCPUs = positive(host.nanoCpus)
        spec.pidsLimit = positive(host.pidsLimit)
        spec.healthcheck = healthcheck
        spec.stopSignal = nonEmpty(request.stopSignal)
        spec.stopTimeout = request.stopTimeout.map(Double.init)
        spec.networks = networks
        spec.autoRemove = host.autoRemove == true ? true : nil
        if let log = host.logConfig {
            if let type = log.type, !type.isEmpty, type != "json-file" {
                throw ControlError(.invalidArgument, "log driver \(type) is not supported: tasks log as json-file")
            }
            for (key, value) in log.config ?? [:] {
                switch key {
                case "max-size":
                    guard let bytes = Self.byteSize(value) else { throw ControlError(.invalidArgument, "invalid log-opt max-size=\(value): use a size such as 10m") }
                    spec.logMaxBytes = bytes
                case "max-file":
                    guard let count = Int(value) else { throw ControlError(.invalidArgument, "invalid log-opt max-file=\(value): a number") }
                    spec.logMaxFiles = count
                default:
                    throw ControlError(.invalidArgument, "unknown log opt '\(key)' for the json-file log driver (max-size and max-file are supported)")
                }
            }
        }
        return (spec, warnings)
    }

    /// Docker's sizes: `512`, `10k`, `10m`, `1g` (powers of 1024).
    static func byteSize(_ text: String) -> Int64? {
        let lowered = text.lowercased().trimming(" \t")
        let units: [Character: Int64] = ["b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30]
        var digits = Substring(lowered)
        var multiplier: Int64 = 1
        if let last = digits.last, let unit = units[last] {
            multiplier = unit
            digits = digits.dropLast()
        }
        guard let number = Int64(digits), number > 0 else { return nil }
        return number * multiplier
    }

    static func networks(_ record: TaskRecord) -> [String: ContainerNetwork] {
        var result: [String: ContainerNetwork] = [:]
        for attachment in record.attachments {
            let parts = attachment.address.split(separator: "/")
            result[attachment.network] = ContainerNetwork(
                networkID: attachment.networkID, endpointID: attachment.endpointID, gateway: attachment.gateway ?? "",
                ipAddress: String(parts[0]), ipPrefixLen: parts.count > 1 ? Int(parts[1]) ?? 0 : 0, macAddress: attachment.mac,
                aliases: record.spec.networks.first { $0.network == attachment.network || $0.network == attachment.networkID }?.aliases)
        }
        return result
    }

    static func dockerState(_ record: TaskRecord) -> String {
        switch record.state {
        case .running: "running"
        case _ where record.state.isTerminal: "exited"
        default: "created"
        }
    }

    /// `Up 5 seconds (healthy)`, `Exited (1) 3 minutes ago`, `Created`.
    static func status(_ record: TaskRecord, now: Date) -> String {
        switch dockerState(record) {
        case "running":
            let health = record.health.map { " (\($0.status == "starting" ? "health: starting" : $0.status))" } ?? ""
            return "Up \(humanDuration(now.timeIntervalSince(record.startedAt ?? record.created)))\(health)"
        case "exited":
            return "Exited (\(record.exitCode ?? -1)) \(humanDuration(now.timeIntervalSince(record.finishedAt ?? now))) ago"
        default:
            return "Created"
        }
    }

    /// Docker's `units.HumanDuration`.
    static func humanDuration(_ seconds: Double) -> String {
        let s = Int(seconds)
        switch s {
        case ..<1: return "Less than a second"
        case 1: return "1 second"
        case ..<60: return "\(s) seconds"
        case ..<120: return "About a minute"
        case ..<3600: return "\(s / 60) minutes"
        case ..<7200: return "About an hour"
        case ..<(48 * 3600): return "\(s / 3600) hours"
        case ..<(7 * 24 * 3600 * 2): return "\(s / 86400) days"
        default: return "\(s / (7 * 86400)) weeks"
        }
    }

    static func healthcheck(_ config: HealthConfig) -> HealthcheckConfig {
        HealthcheckConfig(test: config.test, interval: config.interval, timeout: config.timeout, startPeriod: config.startPeriod,
                          retries: config.retries)
    }

    /// An image config's `created` (RFC 3339, with or without a fraction)
    /// as Unix seconds; 0 when absent or unreadable.
    static func unixTime(_ text: String?) -> Int64 {
        guard let text else { return 0 }
        let date = (try? Date(text, strategy: Self.rfc3339Fractional)) ?? (try? Date(text, strategy: Self.rfc3339Whole))
        return Int64(date?.timeIntervalSince1970 ?? 0)
    }

    private static let rfc3339Fractional = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
    private static let rfc3339Whole = Date.ISO8601FormatStyle()

    /// Docker's way of naming an unnamed container: adjective_scientist.
    static func randomName() -> String {
        let adjectives = ["admiring", "bold", "brave", "calm", "eager", "focused", "gallant", "happy", "keen", "lucid", "nifty",
                          "quirky", "serene", "stoic", "vibrant", "zealous"]
        let names = ["babbage", "cerf", "dijkstra", "hopper", "kahn", "lamport", "liskov", "lovelace", "metcalfe", "ritchie",
                     "shannon", "thompson", "torvalds", "turing", "wozniak", "postel"]
        return "\(adjectives.randomElement()!)_\(names.randomElement()!)_\(Int.random(in: 0..<10000))"
    }

    // MARK: - Errors: the executor's, in the core's vocabulary (ControlError)

    func mapping<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw Self.controlError(error)
        }
    }

    func mapping<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw Self.controlError(error)
        }
    }

    static func controlError(_ error: Error) -> Error {
        switch error {
        case let error as ControlError: return error
        case let error as ExecutorError:
            switch error {
            case .noSuchImage, .noSuchTask: return ControlError(.notFound, error.description)
            case .conflict: return ControlError(.conflict, error.description)
            case .invalid: return ControlError(.invalidArgument, error.description)
            case .runtime: return ControlError(.internal, error.description)
            }
        case let error as ImageError:
            switch error {
            case .notFound: return ControlError(.notFound, error.description)
            case .inUse, .ambiguous: return ControlError(.conflict, error.description)
            case .storage: return ControlError(.internal, error.description)
            default: return ControlError(.invalidArgument, error.description)
            }
        default:
            return ControlError(.internal, "\(error)")
        }
    }
}

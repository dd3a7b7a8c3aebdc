#if canImport(Glibc)
import Glibc
#endif
import CExecutorShim
import Dispatch
import FoundationEssentials
import SystemBasics
import Cluster
import Logging
import Namespaces

/// Runs tasks as containers on this node, one OCI bundle each, as
/// swarmkit's executor drives containerd: prepare (image, network
/// namespace attached to the task's networks, overlayfs root, bundle, `runc
/// create` under a shim), start (`runc start`), watch the exit, stop
/// (StopSignal, then SIGKILL after the grace period) and remove. It never
/// restarts a task: that is the orchestrator's decision.
///
/// Each task lives in `ROOT/ID/`: task.json (the record), bundle/ (config.json
/// and the rootfs mount point), upper/ and work/ (overlayfs), hosts,
/// resolv.conf, hostname, container.log, and the shim's files.
public actor TaskExecutor {
    public let root: String
    public let images: ImageStore
    public let runtime: OCIRuntime
    let shimPath: String
    let networking: any TaskNetworking
    let namespacePrefix: String
    let logger: Logger
    private var tasks: [String: TaskRecord] = [:]
    private var stopping: Set<String> = []
    /// Tasks taken out of their services' balancers before their stop:
    /// their health checks no longer put them back.
    private var draining: Set<String> = []
    /// Tasks whose end `finished` is recording (it releases their kernel
    /// objects across awaits); a removal waits for it, or the two would
    /// release the same mount, namespace and directory at once.
    private var finishing: Set<String> = []
    /// Tasks stopped because they turned unhealthy (`failWhenUnhealthy`):
    /// they end failed, not shut down.
    private var unhealthy: Set<String> = []
    private var healthChecks: [String: Task<Void, Never>] = [:]
    private let exits = ExitWatcher()
    private var listeners: [@Sendable (TaskRecord) -> Void] = []

    public init(root: String, images: ImageStore, runtime: OCIRuntime, shimPath: String, networking: any TaskNetworking,
                namespacePrefix: String, logger: Logger) throws {
        self.root = root
        self.images = images
        self.runtime = runtime
        self.shimPath = shimPath
        self.networking = networking
        self.namespacePrefix = namespacePrefix
        self.logger = logger
        try FileTree.makeDirectory(root)
        try FileTree.makeDirectory(runtime.root)
    }

    /// Called after each state change of a task (on the executor).
    public func addListener(_ listener: @escaping @Sendable (TaskRecord) -> Void) {
        listeners.append(listener)
    }

    private func notify(_ record: TaskRecord) {
        for listener in listeners { listener(record) }
    }

    // MARK: - Reading

    public func list() -> [TaskRecord] {
        tasks.values.sorted { $0.created < $1.created }
    }

    /// A task by ID, unique ID prefix, or name.
    public func task(_ reference: String) throws -> TaskRecord {
        let name = reference.hasPrefix("/") ? String(reference.dropFirst()) : reference
        if let task = tasks[reference] { return task }
        if let task = tasks.values.first(where: { $0.spec.name == name }) { return task }
        let matches = tasks.values.filter { $0.id.hasPrefix(reference) }
        guard !reference.isEmpty, matches.count == 1 else {
            if matches.count > 1 { throw ExecutorError.invalid("multiple containers found with provided prefix: \(reference)") }
            throw ExecutorError.noSuchTask(reference)
        }
        return matches[0]
    }

    /// The task's log files, oldest first.
    public func logFiles(_ id: String) -> [String] {
        let base = directory(id) + "/container.log"
        var files = [base]
        var index = 1
        while FileTree.exists("\(base).\(index)") {
            files.insert("\(base).\(index)", at: 0)
            index += 1
        }
        return files
    }

    public func directory(_ id: String) -> String { root + "/" + id }

    // MARK: - Create

    /// Prepares a task up to "ready": its process exists (runc create) but
    /// has not started. On any error nothing of it is left.
    public func create(_ spec: TaskSpec) async throws -> TaskRecord {
        try TaskBundle.validate(spec)
        if tasks.values.contains(where: { $0.spec.name == spec.name }) {
            throw ExecutorError.conflict("Conflict. The container name \"/\(spec.name)\" is already in use. You have to remove (or rename) that container to be able to reuse that name.")
        }
        let image: Image
        do {
            image = try images.image(spec.image)
        } catch ImageError.notFound {
            throw ExecutorError.noSuchImage(spec.image)
        }
        let id = Identifier.make()
        let hostname = spec.hostname?.isEmpty == false ? spec.hostname! : String(id.prefix(12))
        let imageConfig = image.config.config
        var record = TaskRecord(
            id: id, spec: spec, imageID: image.id,
            args: try TaskBundle.processArguments(spec: spec, image: imageConfig),
            env: TaskBundle.environment(spec: spec, image: imageConfig, hostname: hostname),
            stopSignal: spec.stopSignal ?? imageConfig?.stopSignal, hostname: hostname, created: Date(), state: .preparing, message: "preparing", error: nil,
            startedAt: nil, finishedAt: nil, exitCode: nil, oomKilled: false, pid: nil,
            namespace: "/run/netns/\(namespacePrefix)\(id.prefix(12))", attachments: [],
            healthcheck: Self.healthcheck(spec: spec, image: imageConfig), health: nil, history: nil)
        record.transition(to: .preparing, message: "preparing")
        let directory = directory(id)
        try FileTree.makeDirectory(directory)
        tasks[id] = record
        do {
            try persist(record)
            try await Self.blocking { [name = namespacePrefix + id.prefix(12)] in _ = try NetworkNamespace.create(named: name) }
            // No backend yet: it becomes one when it runs, or once healthy.
            record.attachments = try await networking.attach(namespace: record.namespace, task: spec.name, networks: spec.networks)
            tasks[id] = record
            let layers = images.layerDirectories(image)
            let volumes = root + "/../volumes"
            try await Self.blocking { [record] in
                try Self.prepareFilesystem(record, directory: directory, layers: layers, volumes: volumes)
            }
            let logLimits = ["SWARMNET_LOG_MAX_SIZE=\(spec.logMaxBytes ?? 10 << 20)", "SWARMNET_LOG_MAX_FILES=\(spec.logMaxFiles ?? 3)"]
            let pid = try await Self.blocking { [runtime, shimPath] in
                try Self.createContainer(id: id, directory: directory, runtime: runtime, shimPath: shimPath, environment: logLimits)
            }
            record.pid = pid
            record.transition(to: .ready, message: "created")
            tasks[id] = record
            try persist(record)
            watchShim(id)
            notify(record)
            logger.info("task created", metadata: ["task": "\(record.shortID)", "name": "\(spec.name)", "image": "\(spec.image)"])
            return record
        } catch {
            await release(record, removeDirectory: true)
            tasks[id] = nil
            // The network layer's errors keep their own meaning (a network
            // not found is the caller's mistake, not the runtime's).
            throw error
        }
    }

    /// Starts a created task's process.
    public func start(_ reference: String) async throws -> TaskRecord {
        var record = try task(reference)
        switch record.state {
        case .running: return record
        case .ready: break
        default:
            throw ExecutorError.conflict("container \(record.shortID) is \(record.state.rawValue): only a created container starts (the orchestrator makes a new task instead)")
        }
        record.transition(to: .starting, message: "starting")
        tasks[record.id] = record
        do {
            try await Self.blocking { [runtime, id = record.id] in try runtime.start(id) }
        } catch {
            record = tasks[record.id] ?? record
            record.error = "\(error)"
            tasks[record.id] = record
            try? await stop(record.id, timeout: 0)
            throw ExecutorError.runtime("starting container \(record.shortID): \(error)")
        }
        guard var current = tasks[record.id], !current.state.isTerminal else { return tasks[record.id] ?? record }
        current.transition(to: .running, message: "started")
        current.startedAt = Date()
        if let healthcheck = current.healthcheck { current.health = HealthStatus(); startHealthChecks(current.id, healthcheck) }
        tasks[current.id] = current
        try? persist(current)
        // Before the task is reported running: a rolling update retires
        // the old task only after that.
        if await serveWithoutHealthCheck(current) { current = tasks[current.id] ?? current }
        notify(current)
        return current
    }

    /// A running task without a health check is a backend of its services
    /// (Docker activates the service binding once the container starts); one
    /// with a health check becomes one when it passes. Whether it was made one.
    @discardableResult
    private func serveWithoutHealthCheck(_ record: TaskRecord) async -> Bool {
        guard record.healthcheck == nil, !record.attachments.isEmpty, !draining.contains(record.id) else { return false }
        await networking.setHealth(namespace: record.namespace, healthy: true)
        return true
    }

    // MARK: - Stop and remove

    /// Takes a running task out of its services' balancers and DNS answers
    /// on every host, and waits `settle` for that to spread, before it is
    /// stopped (Swarm's order of shutdown): clients stop reaching it while
    /// its process still answers, and no connection lands on a task that
    /// is going away.
    public func leaveServices(_ reference: String, settle: Duration) async throws {
        let record = try task(reference)
        guard record.state == .running, !record.attachments.isEmpty else { return }
        draining.insert(record.id)
        await networking.setHealth(namespace: record.namespace, healthy: false)
        try? await Task.sleep(for: settle)
    }

    /// Sends the stop signal, and SIGKILL once `timeout` (default: the
    /// spec's, else 10 s) has passed; returns when the process has ended.
    public func stop(_ reference: String, timeout: Double? = nil) async throws {
        let record = try task(reference)
        guard !record.state.isTerminal else { return }
        stopping.insert(record.id)
        let grace = timeout ?? record.spec.stopTimeout ?? 10
        let signal = record.stopSignal ?? "SIGTERM"
        if record.state == .ready || grace <= 0 {
            try? await Self.blocking { [runtime] in try runtime.kill(record.id, signal: "SIGKILL", all: true) }
        } else {
            try? await Self.blocking { [runtime] in try runtime.kill(record.id, signal: signal) }
        }
        if await waitForExit(record.id, seconds: max(grace, 0)) { return }
        try? await Self.blocking { [runtime] in try runtime.kill(record.id, signal: "SIGKILL", all: true) }
        if await waitForExit(record.id, seconds: 10) { return }
        throw ExecutorError.runtime("container \(record.shortID) did not stop after SIGKILL")
    }

    /// Removes a task: its container, namespace, endpoints, root filesystem
    /// and directory (logs included). A live task needs `force`.
    public func remove(_ reference: String, force: Bool) async throws {
        let record = try task(reference)
        if !record.state.isTerminal {
            guard force else {
                throw ExecutorError.conflict("You cannot remove a running container \(record.id). Stop the container before attempting removal or force remove")
            }
            try await stop(record.id, timeout: 0)
        }
        while finishing.contains(record.id) { try? await Task.sleep(for: .milliseconds(10)) }
        guard let current = tasks[record.id] else { return }
        exits.unwatch(key: record.id)
        await release(current, removeDirectory: true)
        tasks[record.id] = nil
        logger.info("task removed", metadata: ["task": "\(record.shortID)"])
    }

    /// Signals the task's process (`docker kill`).
    public func kill(_ reference: String, signal: String) async throws {
        let record = try task(reference)
        guard record.state == .running || record.state == .ready else {
            throw ExecutorError.conflict("Container \(record.id) is not running")
        }
        // runc takes KILL, SIGKILL and 9 alike.
        try await Self.blocking { [runtime] in try runtime.kill(record.id, signal: signal) }
    }

    /// Returns once the task has ended (`docker wait`).
    public func waitUntilEnded(_ reference: String) async throws -> TaskRecord {
        let record = try task(reference)
        while !(tasks[record.id]?.state.isTerminal ?? true) {
            try await Task.sleep(for: .milliseconds(50))
        }
        return tasks[record.id] ?? record
    }

    // MARK: - Exits

    private func watchShim(_ id: String) {
        guard let text = try? FileTree.read(directory(id) + "/shim.pid"),
              let pid = pid_t(String(decoding: text, as: UTF8.self).filter(\.isNumber)) else {
            Task { await self.finished(id) }
            return
        }
        exits.watch(key: id, pid: pid) { [weak self] in
            // Reaps the shim when it is our child (not when adopted).
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
            guard let self else { return }
            Task { await self.finished(id) }
        }
    }

    /// The shim ended: records how the task ended and frees what it held.
    private func finished(_ id: String) async {
        guard var record = tasks[id], !record.state.isTerminal, !finishing.contains(id) else { return }
        finishing.insert(id)
        defer { finishing.remove(id) }
        healthChecks.removeValue(forKey: id)?.cancel()
        let directory = directory(id)
        let exit = (try? FileTree.read(directory + "/exit.json")).flatMap { try? JSONDecoder().decode(ExitFile.self, from: Data($0)) }
        record.oomKilled = Self.oomKilled(id)
        record.exitCode = exit?.exitCode ?? 255
        record.finishedAt = Date()
        draining.remove(id)
        if unhealthy.remove(id) != nil {
            stopping.remove(id)
            record.transition(to: .failed, message: "failed", error: "task: container unhealthy (exit \(record.exitCode!))")
        } else if stopping.remove(id) != nil {
            record.transition(to: .shutdown, message: "shutdown")
        } else if exit == nil {
            record.transition(to: .failed, message: "failed", error: "the task's shim ended without recording an exit status")
        } else if record.exitCode == 0 {
            record.transition(to: .complete, message: "finished")
        } else {
            record.transition(to: .failed, message: "failed", error: record.oomKilled
                ? "task: non-zero exit (\(record.exitCode!)): OOM killed" : "task: non-zero exit (\(record.exitCode!))")
        }
        if let health = record.health, health.status == "unhealthy", record.state == .failed || record.state == .shutdown,
           record.error?.contains("unhealthy") != true {
            record.error = (record.error ?? "") + " (unhealthy container)"
        }
        // Released first, then reported: whoever sees the task ended finds
        // its namespace, endpoints and mount already gone.
        await release(record, removeDirectory: false)
        tasks[id] = record
        try? persist(record)
        notify(record)
        logger.info("task ended", metadata: ["task": "\(record.shortID)", "state": "\(record.state.rawValue)",
                                             "exit": "\(record.exitCode ?? -1)"])
    }

    /// Waits up to `seconds` for the task's end (which `finished` records
    /// when the shim exits).
    private func waitForExit(_ id: String, seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while !(tasks[id]?.state.isTerminal ?? true) {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// Frees what a task held in the kernel and on disk: the runtime's
    /// container, the root filesystem mount, endpoints and namespace; with
    /// `removeDirectory`, its directory too.
    private func release(_ record: TaskRecord, removeDirectory: Bool) async {
        let directory = directory(record.id)
        try? await Self.blocking { [runtime] in try runtime.delete(record.id, force: true) }
        await networking.detach(namespace: record.namespace)
        await Self.blocking {
            _ = cex_umount(directory + "/bundle/rootfs", cex_mnt_detach())
            try? NetworkNamespace.path(record.namespace).delete()
            if removeDirectory {
                try? FileTree.remove(directory)
            } else {
                for scratch in ["upper", "work", "bundle"] { try? FileTree.remove(directory + "/" + scratch) }
            }
        }
    }

    // MARK: - Adoption after a restart

    /// Reads the tasks a previous daemon left. A task whose shim still
    /// runs is watched again; one that ended meanwhile is reported with its
    /// real exit status at once, and one whose shim died is stopped and
    /// reported failed (never shown as running when it is not).
    public func adopt() async {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        for id in names where id.count == 64 {
            guard let bytes = try? FileTree.read(directory(id) + "/task.json"),
                  let record = try? Self.decoder.decode(TaskRecord.self, from: Data(bytes)) else {
                logger.warning("a task directory without a readable record; left alone", metadata: ["task": "\(id.prefix(12))"])
                continue
            }
            tasks[id] = record
            if record.state.isTerminal { continue }
            if record.state == .preparing {
                // The daemon died while preparing it: nothing ran.
                await release(record, removeDirectory: true)
                tasks[id] = nil
                continue
            }
            if let text = try? FileTree.read(directory(id) + "/shim.pid"),
               let pid = pid_t(String(decoding: text, as: UTF8.self).filter(\.isNumber)),
               Self.isShim(pid, of: id) {
                watchShim(id)
                if record.state == .running, let healthcheck = record.healthcheck { startHealthChecks(id, healthcheck) }
                // The previous daemon may have died between starting it and
                // making it a backend (a no-op when it had done so).
                if record.state == .running { await serveWithoutHealthCheck(record) }
                logger.info("adopted a running task", metadata: ["task": "\(record.shortID)", "state": "\(record.state.rawValue)"])
                continue
            }
            if !FileTree.exists(directory(id) + "/exit.json") {
                // The shim is gone but the container may not be: it has no
                // log or exit status any more, so it is stopped.
                try? await Self.blocking { [runtime] in try runtime.kill(id, signal: "SIGKILL", all: true) }
            }
            await finished(id)
        }
    }

    /// Whether `pid` is the shim of task `id` (and not a reused pid).
    static func isShim(_ pid: pid_t, of id: String) -> Bool {
        guard let bytes = try? FileTree.read("/proc/\(pid)/cmdline") else { return false }
        let arguments = bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return arguments.first?.hasSuffix("swarmnet-shim") == true && arguments.contains(id)
    }

    // MARK: - Health checks

    private func startHealthChecks(_ id: String, _ config: HealthConfig) {
        healthChecks[id]?.cancel()
        healthChecks[id] = Task { [weak self] in
            let interval = Double(config.interval ?? 30_000_000_000) / 1e9
            let timeout = Double(config.timeout ?? 30_000_000_000) / 1e9
            let startPeriod = Double(config.startPeriod ?? 0) / 1e9
            let retries = config.retries ?? 3
            let started = ContinuousClock.now
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
                if Task.isCancelled { return }
                guard let self else { return }
                let inStartPeriod = ContinuousClock.now - started < .milliseconds(Int(startPeriod * 1000))
                await self.probe(id, config: config, timeout: timeout, retries: retries, inStartPeriod: inStartPeriod)
            }
        }
    }

    /// Runs the health check once in the container and applies Docker's
    /// rule: `retries` consecutive failures make it unhealthy, except that
    /// failures during the start period do not count; one success makes it
    /// healthy.
    private func probe(_ id: String, config: HealthConfig, timeout: Double, retries: Int, inStartPeriod: Bool) async {
        guard let test = config.test, let kind = test.first, kind != "NONE", tasks[id]?.state == .running else { return }
        let command = kind == "CMD-SHELL" ? ["/bin/sh", "-c", test.dropFirst().joined(separator: " ")] : Array(test.dropFirst())
        let start = Date()
        let result: (Int32, String)
        do {
            let outcome = try await Self.blocking { [runtime] in try runtime.exec(id, command, timeout: timeout) }
            result = (outcome.exitCode, String(outcome.text.prefix(4096)))
        } catch {
            result = (-1, "Health check exceeded timeout (\(timeout)s): \(error)")
        }
        guard var record = tasks[id], record.state == .running else { return }
        var health = record.health ?? HealthStatus()
        health.log.append(HealthResult(start: start, end: Date(), exitCode: result.0, output: result.1))
        if health.log.count > 5 { health.log.removeFirst(health.log.count - 5) }
        let before = health.status
        if result.0 == 0 {
            health.status = "healthy"
            health.failingStreak = 0
        } else if !inStartPeriod || health.status != "starting" {
            health.failingStreak += 1
            if health.failingStreak >= retries { health.status = "unhealthy" }
        }
        record.health = health
        tasks[id] = record
        if health.status != before {
            // Written when the status moves, not per probe: a probe every
            // few hundred milliseconds would fsync as often.
            try? persist(record)
            logger.info("task health changed", metadata: ["task": "\(record.shortID)", "health": "\(health.status)"])
            if !draining.contains(id) { await networking.setHealth(namespace: record.namespace, healthy: health.status == "healthy") }
            notify(record)
            if health.status == "unhealthy", record.spec.failWhenUnhealthy == true {
                unhealthy.insert(id)
                try? await stop(id)
            }
        }
    }

    static func healthcheck(spec: TaskSpec, image: ImageRuntimeConfig?) -> HealthConfig? {
        var merged = image?.healthcheck
        if let own = spec.healthcheck {
            if let test = own.test, !test.isEmpty { merged = HealthConfig(test: test) ; merged?.retries = own.retries }
            if merged == nil { merged = HealthConfig(test: nil) }
            if let value = own.interval, value > 0 { merged?.interval = value }
            if let value = own.timeout, value > 0 { merged?.timeout = value }
            if let value = own.startPeriod, value > 0 { merged?.startPeriod = value }
            if let value = own.retries, value > 0 { merged?.retries = value }
        }
        guard let merged, let test = merged.test, let kind = test.first, kind != "NONE" else { return nil }
        return merged
    }

    // MARK: - Blocking steps

    /// Mounts the root filesystem and writes the bundle and the files the
    /// container bind-mounts.
    static func prepareFilesystem(_ record: TaskRecord, directory: String, layers: [String], volumes: String) throws {
        let rootfs = directory + "/bundle/rootfs"
        // The upper directory's root is the container's / (overlayfs takes
        // its owner and mode): 0755, as a root filesystem's.
        for path in [directory + "/upper", rootfs, directory + "/empty"] { try FileTree.makeDirectory(path, mode: 0o755) }
        try FileTree.makeDirectory(directory + "/work")
        // overlayfs lists the top layer first; an image with no layer gets
        // an empty lower directory.
        let lower = layers.isEmpty ? [directory + "/empty"] : layers.reversed()
        let options = "lowerdir=\(lower.joined(separator: ":")),upperdir=\(directory)/upper,workdir=\(directory)/work"
        guard options.utf8.count < 4000 else {
            throw ExecutorError.runtime("the image has too many layers (\(layers.count)) for one overlayfs mount")
        }
        guard cex_mount("overlay", rootfs, "overlay", 0, options) == 0 else {
            throw ExecutorError.runtime("mounting the root filesystem (overlayfs): \(String(cString: strerror(errno)))")
        }
        let user = try TaskBundle.resolveUser(record.spec.user ?? nil, rootfs: rootfs)
        let hostResolv = (try? FileTree.read("/etc/resolv.conf")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        try FileTree.writeAtomically(Array(TaskBundle.hostsFile(hostname: record.hostname, attachments: record.attachments).utf8),
                                     to: directory + "/hosts", mode: 0o644)
        try FileTree.writeAtomically(Array(TaskBundle.resolvConf(attachments: record.attachments, host: hostResolv).utf8),
                                     to: directory + "/resolv.conf", mode: 0o644)
        try FileTree.writeAtomically(Array("\(record.hostname)\n".utf8), to: directory + "/hostname", mode: 0o644)
        for mount in record.spec.mounts where mount.kind == .volume {
            try FileTree.makeDirectory(volumes + "/" + mount.source + "/_data", mode: 0o755)
        }
        let spec = TaskBundle.spec(
            record: record, user: user, workingDir: record.spec.workingDir ?? "", taskDirectory: directory,
            volumeDirectory: { volumes + "/" + $0 + "/_data" })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileTree.writeAtomically(Array(try encoder.encode(spec)), to: directory + "/bundle/config.json")
    }

    /// Starts the task's shim, which runs `runc create`, and waits for its
    /// answer. Returns the container's pid; an error carries the runtime's
    /// own reason.
    static func createContainer(id: String, directory: String, runtime: OCIRuntime, shimPath: String, environment: [String]) throws -> Int32 {
        var ready: [Int32] = [0, 0]
        guard cex_pipe_cloexec(&ready) == 0 else { throw ExecutorError.runtime("pipe2: \(String(cString: strerror(errno)))") }
        defer { close(ready[0]) }
        let shimLog = open(directory + "/shim.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        defer { if shimLog >= 0 { close(shimLog) } }
        let arguments = [shimPath, directory] + runtime.createArguments(
            id: id, bundle: directory + "/bundle", pidFile: directory + "/init.pid", logFile: directory + "/runtime.log")
        let shim: pid_t
        do {
            shim = try Subprocess.spawn(arguments, descriptors: [-1, shimLog, shimLog, ready[1]],
                                        environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + environment,
                                        newSession: true)
        } catch {
            close(ready[1])
            throw ExecutorError.runtime("starting the task shim: \(error)")
        }
        close(ready[1])
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        let deadline = Subprocess.monotonicSeconds() + 60
        while Subprocess.monotonicSeconds() < deadline {
            var poller = pollfd(fd: ready[0], events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 1000) > 0 else { continue }
            let got = chunk.withUnsafeMutableBytes { read(ready[0], $0.baseAddress!, $0.count) }
            if got < 0, errno == EINTR { continue }
            if got <= 0 { break }
            answer += chunk[0..<got]
        }
        let text = String(decoding: answer, as: UTF8.self).trimmingTrailingWhitespace()
        if text.hasPrefix("ok "), let pid = Int32(text.dropFirst(3)) { return pid }
        // The shim failed (it exits after saying so) or hangs: it is ours
        // to end and reap.
        Glibc.kill(shim, SIGKILL)
        Subprocess.wait(shim)
        let reason = runtimeError(directory + "/runtime.log") ?? (text.isEmpty ? "the task shim gave no answer" : text)
        throw ExecutorError.runtime("\(runtime.binary) create: \(reason)")
    }

    /// The last error the runtime logged (runc's `--log-format json`).
    static func runtimeError(_ path: String) -> String? {
        guard let bytes = try? FileTree.read(path) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n").reversed() {
            if let object = try? JSONObject.parse(line) as? [String: Any],
               object["level"] as? String == "error", let message = object["msg"] as? String {
                return message
            }
        }
        return nil
    }

    /// Whether the kernel OOM-killed a process of the task (cgroup v1's
    /// memory.oom_control, or v2's memory.events), read before the runtime
    /// removes the cgroup.
    static func oomKilled(_ id: String) -> Bool {
        for path in ["/sys/fs/cgroup/memory/swarmnet/\(id)/memory.oom_control", "/sys/fs/cgroup/swarmnet/\(id)/memory.events"] {
            guard let bytes = try? FileTree.read(path) else { continue }
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count == 2, fields[0] == "oom_kill", let count = Int(fields[1]), count > 0 { return true }
            }
        }
        return false
    }

    private func persist(_ record: TaskRecord) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        try FileTree.writeAtomically(Array(try encoder.encode(record)), to: directory(record.id) + "/task.json")
    }

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    /// Runs blocking work (the runtime's commands, mounts, file writes) on
    /// a thread of its own, off the cooperative pool.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
        }
    }

    static func blocking(_ body: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                body()
                continuation.resume()
            }
        }
    }
}

/// What the shim writes when the container's init ends (`exitCode`; its
/// `finishedAt` is for people reading the file).
struct ExitFile: Codable {
    var exitCode: Int32
}

import Cluster
import Control
import DockerAPI
import FoundationEssentials

/// `docker service logs`: the leader hands each node a request on its next
/// heartbeat answer, the node posts the lines back on its session, and the
/// manager that serves the CLI merges them by time into Docker's stream,
/// each line with its node, service and task IDs (the CLI prints them as
/// `web.1.TASKID@NODE | …`). Workers listen on no port: the session they
/// keep with the leader is the only way to them.
extension SwarmRuntime {
    public func logs(service: String?, task: String?, options: LogOptions) async throws -> [UInt8] {
        Self.frames(try await logEntries(service: service, task: task, options: options), options: options)
    }

    /// `--follow`: what is there, then each second what was written since,
    /// until the client leaves. Tasks that start later (a scale, a
    /// replacement) join the stream. A node answers from the start of the
    /// `since` second, so lines already sent are recognised and skipped.
    public func followLogs(service: String?, task: String?, options: LogOptions) async throws -> AsyncThrowingStream<[UInt8], Error> {
        _ = try await chosenTasks(service: service, task: task) // an unknown service is an error, not an empty stream
        let (stream, continuation) = AsyncThrowingStream<[UInt8], Error>.makeStream()
        let poller = Task { [weak self] in
            var window = options
            var sent: Set<String> = []
            while !Task.isCancelled, let self {
                let entries: [(entry: LogEntry, task: SwarmTask)]
                do { entries = try await self.logEntries(service: service, task: task, options: window) } catch {
                    continuation.finish(throwing: error)
                    return
                }
                let fresh = entries.filter { !sent.contains(Self.key($0.entry)) }
                if !fresh.isEmpty { continuation.yield(Self.frames(fresh, options: options)) }
                if let newest = entries.last?.entry.time, let second = LogTime.wholeSecond(newest) {
                    // The next window starts at the newest line's second.
                    let edge = String(newest.prefix(19))
                    sent = Set(entries.filter { $0.entry.time >= edge }.map { Self.key($0.entry) })
                    window.since = second
                }
                window.tail = nil
                try? await Task.sleep(for: .seconds(1))
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in poller.cancel() }
        return stream
    }

    /// The tasks a log request names: a service's (all of them, so ended
    /// ones still show), or one task.
    private func chosenTasks(service: String?, task: String?) async throws -> (SwarmStore, [SwarmTask]) {
        let store = try await currentStore()
        let all = store.tasks()
        if let service {
            let id = try Self.resolveService(service, in: store.services()).object.id
            return (store, all.map(\.object).filter { $0.serviceID == id })
        } else if let task {
            return (store, [try Self.resolveTask(task, in: all).object])
        }
        return (store, [])
    }

    /// The lines of the chosen tasks, by time, each with its task.
    private func logEntries(service: String?, task: String?, options: LogOptions) async throws -> [(entry: LogEntry, task: SwarmTask)] {
        let (store, chosen) = try await chosenTasks(service: service, task: task)
        var byNode: [String: [String]] = [:]
        for task in chosen { if let node = task.nodeID { byNode[node, default: []].append(task.id) } }
        let fetch = LogFetch(tasks: byNode, stdout: options.stdout, stderr: options.stderr, tail: options.tail, since: options.since)
        let entries = try await fetchLogs(fetch, store)
        let tasks = Dictionary(chosen.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        return entries.sorted(by: { $0.time < $1.time }).compactMap { entry in
            guard let task = tasks[entry.taskID] else { return nil }
            if let until = options.until, let second = LogTime.wholeSecond(entry.time), second > until { return nil }
            return (entry, task)
        }
    }

    /// Docker's multiplexed stream of the lines, each with its node,
    /// service and task IDs (and its time, with `--timestamps`).
    private static func frames(_ entries: [(entry: LogEntry, task: SwarmTask)], options: LogOptions) -> [UInt8] {
        var stream: [UInt8] = []
        for (entry, task) in entries {
            var payload: [UInt8] = []
            if options.timestamps { payload += Array((entry.time + " ").utf8) }
            payload += Array("com.docker.swarm.node.id=\(task.nodeID ?? ""),com.docker.swarm.service.id=\(task.serviceID),com.docker.swarm.task.id=\(task.id) ".utf8)
            payload += Array(entry.text)
            stream += LogOptions.frame(stderr: entry.stderr, payload)
        }
        return stream
    }

    private static func key(_ entry: LogEntry) -> String {
        "\(entry.taskID) \(entry.time) \(entry.stderr) \(entry.text.base64EncodedString())"
    }

    /// On the leader, directly; elsewhere, through the leader.
    private func fetchLogs(_ fetch: LogFetch, _ store: SwarmStore) async throws -> [LogEntry] {
        guard !fetch.tasks.isEmpty, let raft = membership?.raft else { return [] }
        let leader = await raft.leader()
        if leader == raft.id { return await collectLogs(fetch) }
        guard let endpoint = managerView(store).endpointsByRaftID[leader] else { throw ControlError.noLeader }
        let (status, body) = try await managerRequest(.POST, endpoint, "/swarmnet/logs/fetch", body: SwarmStore.encode(fetch))
        guard status == 200 else {
            let message = (try? JSONDecoder().decode(ErrorBody.self, from: Data(body)))?.message ?? "status \(status)"
            throw ControlError(.unavailable, "the leader could not collect the logs: \(message)")
        }
        return try JSONDecoder().decode([LogEntry].self, from: Data(body))
    }

    /// The leader asks every node at once; a node that does not answer
    /// within three heartbeats (a dead one) contributes nothing.
    func collectLogs(_ fetch: LogFetch) async -> [LogEntry] {
        await withTaskGroup(of: [LogEntry].self) { group in
            for (node, taskIDs) in fetch.tasks {
                let request = LogRequest(id: Identifier.swarm(), taskIDs: taskIDs, stdout: fetch.stdout, stderr: fetch.stderr,
                                         tail: fetch.tail, since: fetch.since)
                group.addTask { await self.requestLogs(request, from: node) }
            }
            var all: [LogEntry] = []
            for await part in group { all += part }
            return all
        }
    }

    private func requestLogs(_ request: LogRequest, from node: String) async -> [LogEntry] {
        let period = membership?.store?.swarm()?.object.settings.heartbeatPeriod ?? SwarmSettings().heartbeatPeriod
        return await withCheckedContinuation { continuation in
            logWaiters[request.id] = (node, continuation)
            pendingLogRequests[node, default: []].append(request)
            Task { [weak self] in
                try? await Task.sleep(for: period * 3 + .seconds(2))
                await self?.expireLogRequest(request.id, node: node)
            }
        }
    }

    private func expireLogRequest(_ id: String, node: String) {
        pendingLogRequests[node]?.removeAll { $0.id == id }
        logWaiters.removeValue(forKey: id)?.continuation.resume(returning: [])
    }

    /// A node's reply, taken only from the node it was asked of.
    func deliverLogs(_ reply: LogReply, from node: String) {
        guard let waiter = logWaiters[reply.id], waiter.node == node else { return }
        logWaiters[reply.id] = nil
        waiter.continuation.resume(returning: reply.entries)
    }
}

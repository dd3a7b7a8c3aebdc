import Cluster
import FoundationEssentials

/// What the orchestrator wants written, in one store transaction.
public struct OrchestrationChanges: Sendable, Equatable {
    public var createdTasks: [SwarmTask] = []
    public var updatedTasks: [SwarmTask] = []
    public var deletedTasks: [String] = []
    public var updatedServices: [SwarmService] = []

    public init() {}

    public var isEmpty: Bool { createdTasks.isEmpty && updatedTasks.isEmpty && deletedTasks.isEmpty && updatedServices.isEmpty }

    /// The tasks as they stand once these changes are applied to `tasks`.
    public func applied(to tasks: [SwarmTask]) -> [SwarmTask] {
        var byID = Dictionary(tasks.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        for id in deletedTasks { byID[id] = nil }
        for task in updatedTasks + createdTasks { byID[task.id] = task }
        return Array(byID.values)
    }

    /// Takes in the scheduler's placements: a task created in this pass
    /// stays a creation, any other becomes (or stays) an update.
    public mutating func absorb(_ scheduled: [SwarmTask]) {
        let placed = Dictionary(scheduled.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var remaining = placed
        createdTasks = createdTasks.map { remaining.removeValue(forKey: $0.id) ?? $0 }
        updatedTasks = updatedTasks.map { remaining.removeValue(forKey: $0.id) ?? $0 }
        updatedTasks += scheduled.filter { remaining[$0.id] != nil }
    }
}

/// Keeps each service's tasks what its spec asks, as swarmkit's replicated
/// and global orchestrators, restart supervisor, updater and task reaper
/// do together. Pure and stateless: it reads the services, tasks and nodes
/// the store holds and returns the changes, so a new leader carries on
/// where the last one stopped. Time and IDs are injected.
public struct Orchestrator {
    public var now: Date
    /// Ended tasks kept per slot (`docker swarm update --task-history-limit`).
    public var historyLimit: Int
    public var newID: () -> String

    public init(now: Date, historyLimit: Int, newID: @escaping () -> String) {
        self.now = now
        self.historyLimit = historyLimit
        self.newID = newID
    }

    public func reconcile(services: [SwarmService], tasks: [SwarmTask], nodes: [SwarmNode]) -> OrchestrationChanges {
        var plan = Plan(tasks: tasks)
        let nodesByID = Dictionary(nodes.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        let servicesByID = Dictionary(services.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        reap(&plan, services: servicesByID, nodes: nodesByID)
        for service in services.sorted(by: { $0.id < $1.id }) {
            var service = service
            leaveUnusableNodes(&plan, service: service, nodes: nodesByID)
            superviseRestarts(&plan, service: service)
            switch service.spec.mode {
            case .replicated(let replicas): scale(&plan, service: service, replicas: replicas)
            case .global: followNodes(&plan, service: service, nodes: nodes)
            }
            let before = service
            rollUpdate(&plan, service: &service)
            if service != before { plan.changes.updatedServices.append(service) }
            pruneHistory(&plan, service: service, nodes: nodesByID)
        }
        return plan.result()
    }

    // MARK: - Steps

    /// Tasks of removed services are stopped, then deleted once they ended
    /// or their node cannot say so any more.
    func reap(_ plan: inout Plan, services: [String: SwarmService], nodes: [String: SwarmNode]) {
        for task in plan.all where services[task.serviceID] == nil {
            let nodeGone = task.nodeID.flatMap { nodes[$0] }.map { $0.state == .down } ?? true
            if task.status.state.isTerminal || nodeGone {
                plan.delete(task.id)
            } else if task.desiredState != .remove {
                var stopped = task
                stopped.desiredState = .remove
                plan.update(stopped, now: now)
            }
        }
    }

    /// Tasks on a node that is down, drained or gone are shut down (the
    /// slot is filled elsewhere); so are tasks whose node no longer meets
    /// the service's constraints, as Docker does after a label change.
    func leaveUnusableNodes(_ plan: inout Plan, service: SwarmService, nodes: [String: SwarmNode]) {
        let constraints = (try? Constraint.parse(service.spec.task.placement.constraints)) ?? []
        for task in plan.tasks(of: service.id) where task.isWanted {
            guard let nodeID = task.nodeID else { continue }
            let node = nodes[nodeID]
            let reason: String?
            if node == nil {
                reason = "node removed"
            } else if node!.state == .down {
                reason = "node is down"
            } else if node!.availability == .drain {
                reason = "node is drained"
            } else if !constraints.allSatisfy({ $0.isSatisfied(by: node!) }) {
                reason = "node no longer meets the constraints"
            } else {
                reason = nil
            }
            guard let reason else { continue }
            var stopped = task
            stopped.desiredState = .shutdown
            if !stopped.status.state.isTerminal && (node == nil || node!.state == .down) {
                // Its node cannot report any more; say what happened.
                stopped.status.message = reason
            }
            plan.update(stopped, now: now)
        }
    }

    /// A task that ended is replaced in its slot after the restart delay,
    /// when the restart policy allows; otherwise it stays as it ended and
    /// keeps its slot.
    func superviseRestarts(_ plan: inout Plan, service: SwarmService) {
        let policy = service.spec.task.restartPolicy
        for task in plan.tasks(of: service.id) where task.desiredState == .running && task.status.state.isTerminal {
            let failed = task.status.state != .complete
            let allowed: Bool
            switch policy.condition {
            case .none: allowed = false
            case .onFailure: allowed = failed
            case .any: allowed = true
            }
            guard allowed, attemptsLeft(plan, task: task, policy: policy) else { continue }
            var ended = task
            ended.desiredState = .shutdown
            plan.update(ended, now: now)
            // A start-first update's new task that failed while the old one
            // still runs in its slot: the slot is held, and the update's
            // failure action decides what comes next.
            if plan.tasks(of: service.id).contains(where: { $0.id != task.id && $0.place == task.place && $0.isLive }) { continue }
            let delay = Double(policy.delay) / 1e9
            plan.create(replacement(for: task, service: service, notBefore: delay > 0 ? now.addingTimeInterval(delay) : nil))
        }
    }

    func attemptsLeft(_ plan: Plan, task: SwarmTask, policy: RestartPolicy) -> Bool {
        guard policy.maxAttempts > 0 else { return true }
        let windowStart = policy.window > 0 ? now.addingTimeInterval(-Double(policy.window) / 1e9) : .distantPast
        let ended = plan.tasks(of: task.serviceID).filter {
            $0.place == task.place && $0.status.state.isTerminal && $0.status.timestamp >= windowStart
        }
        // The first run is not a restart.
        return ended.count <= policy.maxAttempts
    }

    /// Replicated: exactly `replicas` slots hold a wanted task; the
    /// highest slots go first when scaling down.
    func scale(_ plan: inout Plan, service: SwarmService, replicas: UInt64) {
        let wanted = plan.tasks(of: service.id).filter(\.isWanted)
        let occupied = Set(wanted.map(\.slot))
        if occupied.count > replicas {
            for slot in occupied.sorted(by: >).prefix(occupied.count - Int(replicas)) {
                for task in wanted where task.slot == slot {
                    var stopped = task
                    stopped.desiredState = .shutdown
                    plan.update(stopped, now: now)
                }
            }
        } else if occupied.count < replicas {
            var slot: UInt64 = 1
            var missing = Int(replicas) - occupied.count
            while missing > 0 {
                if !occupied.contains(slot) {
                    plan.create(SwarmTask(id: newID(), service: service, slot: slot, now: now))
                    missing -= 1
                }
                slot += 1
            }
        }
    }

    /// Global: one wanted task on each node that takes tasks and meets
    /// the constraints.
    func followNodes(_ plan: inout Plan, service: SwarmService, nodes: [SwarmNode]) {
        let constraints = (try? Constraint.parse(service.spec.task.placement.constraints)) ?? []
        let covered = Set(plan.tasks(of: service.id).filter(\.isWanted).compactMap(\.nodeID))
        for node in nodes.sorted(by: { $0.id < $1.id })
        where node.acceptsTasks && !covered.contains(node.id) && constraints.allSatisfy({ $0.isSatisfied(by: node) }) {
            plan.create(SwarmTask(id: newID(), service: service, slot: 0, nodeID: node.id, now: now))
        }
    }

    /// Rolling update: tasks made from an older template are replaced,
    /// `parallelism` at a time, each batch once the last is running and
    /// the delay has passed. A new task that fails applies the failure
    /// action (pause, continue, or rollback to the previous spec).
    func rollUpdate(_ plan: inout Plan, service: inout SwarmService) {
        // A task already running the service's template (a rollback to the
        // spec it was made from) is adopted, not replaced: swarmkit
        // compares specs, not versions. `--force` changes the template.
        for task in plan.tasks(of: service.id).filter(\.isWanted)
        where task.templateVersion != service.templateVersion && task.template == service.spec.task {
            var adopted = task
            adopted.templateVersion = service.templateVersion
            plan.update(adopted, now: now)
        }
        let tasks = plan.tasks(of: service.id).filter(\.isWanted)
        let outdated = tasks.filter { $0.templateVersion != service.templateVersion }
        let current = tasks.filter { $0.templateVersion == service.templateVersion }
        let rollingBack = service.updateStatus?.state == .rollbackStarted
        let policy = rollingBack ? service.spec.rollback : service.spec.update

        if !outdated.isEmpty, [nil, .completed, .rollbackCompleted].contains(service.updateStatus?.state) {
            service.updateStatus = UpdateProgress(state: .updating, startedAt: now, message: "update in progress")
        }
        guard service.updateStatus?.state == .updating || rollingBack else { return }

        // The tasks this update made. One that fails before it has run for
        // the monitor period counts against the failure ratio (one that
        // fails later is an ordinary restart); past the ratio, the failure
        // action.
        let started = service.updateStatus?.startedAt ?? .distantPast
        let made = plan.tasks(of: service.id).filter { $0.templateVersion == service.templateVersion && $0.createdAt >= started }
        let monitor = Double(policy.monitor) / 1e9
        let failedNew = made.filter { task in
            guard task.status.state == .failed || task.status.state == .rejected else { return false }
            return task.runningSince.map { task.status.timestamp.timeIntervalSince($0) <= monitor } ?? true
        }
        let places = max(Set(tasks.map(\.place)).count, 1)
        if let failure = failedNew.first, Double(failedNew.count) / Double(places) > policy.maxFailureRatio {
            switch (policy.failureAction, rollingBack) {
            case (.pause, false):
                service.updateStatus?.state = .paused
                service.updateStatus?.message = "update paused due to failure or early termination of task \(failure.id)"
                return
            case (.pause, true):
                service.updateStatus?.state = .rollbackPaused
                service.updateStatus?.message = "rollback paused due to failure or early termination of task \(failure.id)"
                return
            case (.rollback, false):
                if let previous = service.previousSpec {
                    service.previousSpec = service.spec
                    service.spec = previous
                    service.templateVersion += 1
                    service.updatedAt = now
                    service.updateStatus = UpdateProgress(
                        state: .rollbackStarted, startedAt: now,
                        message: "update rolled back due to failure or early termination of task \(failure.id)")
                    return
                }
            default:
                break
            }
        }

        // Every task replaced: the update is complete once the last new
        // task has run for the monitor period, as swarmkit's updater keeps
        // watching for failures that long.
        if outdated.isEmpty {
            if let lastRunning = made.compactMap(\.runningSince).max(), now < lastRunning.addingTimeInterval(monitor) { return }
            service.updateStatus = UpdateProgress(
                state: rollingBack ? .rollbackCompleted : .completed, startedAt: started, completedAt: now,
                message: rollingBack ? "rollback completed" : "update completed")
            return
        }

        // start-first: an old task leaves its slot once its replacement runs.
        for old in outdated {
            let replaced = current.contains { $0.place == old.place && $0.status.state == .running }
            if replaced {
                var stopped = old
                stopped.desiredState = .shutdown
                plan.update(stopped, now: now)
            }
        }
        // New tasks of this update that are not running yet: the batch in flight.
        let inFlight = current.filter { $0.status.state < .running && $0.createdAt >= started }.count
        let lastStarted = current.filter { $0.status.state == .running && $0.createdAt >= started }.map(\.status.timestamp).max()
        if let lastStarted, now < lastStarted.addingTimeInterval(Double(policy.delay) / 1e9) { return }
        let batch = policy.parallelism == 0 ? outdated.count : max(Int(policy.parallelism) - inFlight, 0)
        let waiting = outdated.filter { old in
            !current.contains { $0.place == old.place }
        }.sorted { ($0.slot, $0.nodeID ?? "") < ($1.slot, $1.nodeID ?? "") }
        for old in waiting.prefix(batch) {
            if policy.order == .stopFirst {
                var stopped = old
                stopped.desiredState = .shutdown
                plan.update(stopped, now: now)
            }
            plan.create(replacement(for: old, service: service, notBefore: nil))
        }
    }

    /// Keeps `historyLimit` ended tasks per slot (per node for a global
    /// service), deleting the oldest. A task shut down on a node that is
    /// down or gone counts as ended: its node cannot report it any more
    /// (and stops its copy if it comes back).
    func pruneHistory(_ plan: inout Plan, service: SwarmService, nodes: [String: SwarmNode]) {
        let ended = plan.tasks(of: service.id).filter { task in
            let nodeLost = task.nodeID.map { nodes[$0].map { $0.state == .down } ?? true } ?? true
            return !task.isWanted && (task.status.state.isTerminal || nodeLost)
        }
        for (_, history) in Dictionary(grouping: ended, by: \.place) where history.count > historyLimit {
            for task in history.sorted(by: { $0.createdAt < $1.createdAt }).prefix(history.count - max(historyLimit, 0)) {
                plan.delete(task.id)
            }
        }
    }

    func replacement(for task: SwarmTask, service: SwarmService, notBefore: Date?) -> SwarmTask {
        SwarmTask(id: newID(), service: service, slot: task.slot, nodeID: task.slot == 0 ? task.nodeID : nil, now: now, notBefore: notBefore)
    }

    // MARK: - The working set

    /// The tasks as the steps change them, and the changes so far.
    struct Plan {
        private var byID: [String: SwarmTask]
        private var order: [String]
        var changes = OrchestrationChanges()
        private var created: Set<String> = []
        private var updated: Set<String> = []

        init(tasks: [SwarmTask]) {
            byID = Dictionary(tasks.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            order = tasks.map(\.id).sorted()
        }

        var all: [SwarmTask] { order.compactMap { byID[$0] } }

        func tasks(of service: String) -> [SwarmTask] { all.filter { $0.serviceID == service } }

        mutating func create(_ task: SwarmTask) {
            var task = task
            task.status = TaskStatus(state: .pending, timestamp: task.createdAt, message: "pending task scheduling")
            byID[task.id] = task
            order.append(task.id)
            created.insert(task.id)
        }

        mutating func update(_ task: SwarmTask, now: Date) {
            guard byID[task.id] != task else { return }
            var task = task
            task.updatedAt = now
            byID[task.id] = task
            if !created.contains(task.id) { updated.insert(task.id) }
        }

        mutating func delete(_ id: String) {
            guard byID.removeValue(forKey: id) != nil else { return }
            if created.remove(id) == nil { changes.deletedTasks.append(id) }
            updated.remove(id)
        }

        func result() -> OrchestrationChanges {
            var result = changes
            result.createdTasks = order.filter { created.contains($0) }.compactMap { byID[$0] }
            result.updatedTasks = order.filter { updated.contains($0) }.compactMap { byID[$0] }
            return result
        }
    }
}

import Cluster
import Control
import FoundationEssentials
import ReplicatedStore

/// The control role's orchestration on the leader (orchestrator, then
/// scheduler, one batch of store writes per pass), and the dispatcher's
/// two halves: what each node is told to run, and what it reports.
extension SwarmRuntime {
    /// One pass: reads the services, tasks and nodes, and writes what the
    /// orchestrator and the scheduler decide. Everything it needs is in the
    /// store, so a new leader picks up where the last one stopped.
    func orchestrate(_ store: SwarmStore) async {
        // Nothing changed since a pass that had nothing to do: wait for a
        // change, or a second (restart delays and update delays are due in
        // time, not on a change).
        let index = store.raft.store.appliedIndex
        if let idle = idleOrchestration, idle.index == index, ContinuousClock.now - idle.at < .seconds(1) { return }
        idleOrchestration = nil
        let services = store.services()
        let tasks = store.tasks()
        guard !services.isEmpty || !tasks.isEmpty else {
            idleOrchestration = (index, ContinuousClock.now)
            return
        }
        let nodes = store.nodes().map(\.object)
        let historyLimit = Int(store.swarm()?.object.settings.taskHistoryLimit ?? 5)
        let now = Date()
        var changes = Orchestrator(now: now, historyLimit: historyLimit, newID: Identifier.swarm)
            .reconcile(services: services.map(\.object), tasks: tasks.map(\.object), nodes: nodes)

        changes.absorb(Scheduler.schedule(tasks: changes.applied(to: tasks.map(\.object)), nodes: nodes,
                                          hostPorts: hostModePorts(store), now: now))
        guard !changes.isEmpty else {
            idleOrchestration = (index, ContinuousClock.now)
            return
        }

        let taskVersions = Dictionary(tasks.map { ($0.object.id, $0.version) }, uniquingKeysWith: { first, _ in first })
        let serviceVersions = Dictionary(services.map { ($0.object.id, $0.version) }, uniquingKeysWith: { first, _ in first })
        var operations = changes.updatedServices.map { SwarmStore.update($0, version: serviceVersions[$0.id]) }
        operations += changes.createdTasks.map(SwarmStore.create)
        operations += changes.updatedTasks.map { SwarmStore.update($0, version: taskVersions[$0.id]) }
        operations += changes.deletedTasks.map {
            StoreOperation.delete(collection: SwarmTask.collection, key: $0, expectedVersion: taskVersions[$0])
        }
        do {
            try await store.write(batches: operations)
            logger.debug("orchestrated", metadata: [
                "created": "\(changes.createdTasks.count)", "updated": "\(changes.updatedTasks.count)",
                "deleted": "\(changes.deletedTasks.count)"])
        } catch {
            // A task changed under us (a node's report): the next pass
            // works from the new state.
            logger.debug("orchestration pass not written", metadata: ["error": "\(error)"])
        }
    }

    /// Each service's host-mode published ports, from its allocation
    /// record (the network side of the service).
    func hostModePorts(_ store: SwarmStore) -> [String: Set<Scheduler.HostPort>] {
        var ports: [String: Set<Scheduler.HostPort>] = [:]
        for (id, record) in clusterState(store).0.services {
            let published = record.ports.filter { $0.publishMode == .host }.compactMap { port in
                port.publishedPort.map { Scheduler.HostPort(protocol: port.protocol, port: $0) }
            }
            if !published.isEmpty { ports[id] = Set(published) }
        }
        return ports
    }

    /// The tasks each node must act on: those it should run, and those it
    /// should stop that have not ended yet.
    static func assignments(_ tasks: [SwarmTask]) -> (assigned: [String: [TaskAssignment]], retained: [String: [String]]) {
        var byNode: [String: [TaskAssignment]] = [:]
        var retained: [String: [String]] = [:]
        for task in tasks {
            guard let node = task.nodeID, task.status.state >= .assigned || task.desiredState > .running else { continue }
            guard task.desiredState == .running || !task.status.state.isTerminal else {
                // Ended and kept in the history: `service logs` still
                // reads it until the history limit drops it.
                retained[node, default: []].append(task.id)
                continue
            }
            byNode[node, default: []].append(TaskAssignment(task))
        }
        return (byNode, retained)
    }

    /// A node's reports: each moves its task forward (never back), and
    /// only for tasks assigned to that node. False when they could not be
    /// written: the node sends them again.
    func record(_ reports: [TaskReport], from nodeID: String, _ store: SwarmStore) async -> Bool {
        for _ in 0..<3 {
            var operations: [StoreOperation] = []
            for report in reports {
                guard let current = store.raft.store.get(SwarmTask.collection, report.taskID).flatMap({
                    SwarmStore.decode($0) as SwarmStore.Versioned<SwarmTask>?
                }) else { continue }
                guard current.object.nodeID == nodeID, let task = current.object.recording(report, at: Date()) else { continue }
                operations.append(SwarmStore.update(task, version: current.version))
            }
            guard !operations.isEmpty else { return true }
            do {
                try await store.write(batches: operations)
                return true
            } catch {
                // The orchestrator wrote one of the tasks meanwhile: read again.
                logger.debug("task reports not written", metadata: ["node": "\(nodeID)", "error": "\(error)"])
            }
        }
        return false
    }
}

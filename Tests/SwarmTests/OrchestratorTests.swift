import Cluster
import Control
import Foundation
import Testing

/// The orchestrator and the scheduler as pure functions: given services,
/// tasks and nodes, the changes they ask for. Then a seeded simulation with
/// nodes that die, drain and come back, tasks that fail, scaling and
/// updates, checking Swarm's promises at every step.
@Suite struct OrchestratorTests {
    static let start = Date(timeIntervalSince1970: 1_800_000_000)

    static func node(_ id: String, state: NodeState = .ready, availability: NodeAvailability = .active, labels: [String: String] = [:]) -> SwarmNode {
        var node = SwarmNode(
            id: id, createdAt: start, role: .worker,
            description: .init(hostname: id, os: "linux", architecture: "x86_64", nanoCPUs: 2_000_000_000, memoryBytes: 1 << 30,
                               engineVersion: "test"),
            address: "192.0.2.1", manager: nil)
        node.state = state
        node.availability = availability
        node.labels = labels
        return node
    }

    static func service(_ id: String = "svc", replicas: UInt64 = 3, mode: ServiceMode? = nil, restart: RestartPolicy = RestartPolicy(delay: 0),
                        constraints: [String] = []) -> SwarmService {
        SwarmService(id: id, createdAt: start, spec: ServiceDefinition(
            name: id, task: TaskTemplate(container: ContainerTemplate(image: "busybox"), restartPolicy: restart,
                                         placement: Placement(constraints: constraints)),
            mode: mode ?? .replicated(replicas: replicas)))
    }

    /// The cluster as the store would hold it, with one pass of the
    /// control role (orchestrator then scheduler) applied.
    struct Cluster {
        var services: [SwarmService]
        var nodes: [SwarmNode]
        var tasks: [String: SwarmTask] = [:]
        var now = OrchestratorTests.start
        var nextID = 0
        /// Each service's host-mode published ports.
        var hostPorts: [String: Set<Scheduler.HostPort>] = [:]
        /// Nodes that reject every task they are given (its image is not
        /// there).
        var rejecting: Set<String> = []

        mutating func pass() {
            var counter = nextID
            let changes = Orchestrator(now: now, historyLimit: 5, newID: {
                counter += 1
                return "t\(counter)"
            }).reconcile(services: services, tasks: Array(tasks.values), nodes: nodes)
            nextID = counter
            var all = changes
            all.absorb(Scheduler.schedule(tasks: changes.applied(to: Array(tasks.values)), nodes: nodes, hostPorts: hostPorts, now: now))
            tasks = Dictionary(uniqueKeysWithValues: all.applied(to: Array(tasks.values)).map { ($0.id, $0) })
            for service in all.updatedServices { services = services.map { $0.id == service.id ? service : $0 } }
        }

        /// What the nodes do with their assignments: start what should run,
        /// stop what should not (a node that is down does nothing).
        mutating func nodesAct() {
            for (id, task) in tasks {
                guard let nodeID = task.nodeID, nodes.first(where: { $0.id == nodeID })?.state == .ready else { continue }
                let report: TaskStatus
                if task.desiredState == .running, task.status.state == .assigned {
                    report = rejecting.contains(nodeID)
                        ? TaskStatus(state: .rejected, timestamp: now, message: "preparing failed", error: "No such image: \(task.template.container.image)")
                        : TaskStatus(state: .running, timestamp: now, message: "started")
                } else if task.desiredState > .running, !task.status.state.isTerminal {
                    report = TaskStatus(state: .shutdown, timestamp: now, message: "shutdown")
                } else {
                    continue
                }
                // As the dispatcher records a node's report.
                tasks[id] = task.recording(TaskReport(taskID: id, status: report), at: now) ?? task
            }
        }

        mutating func settle(_ rounds: Int = 6) {
            for _ in 0..<rounds {
                pass()
                nodesAct()
                now = now.addingTimeInterval(1)
            }
        }

        func running(_ service: String = "svc") -> [SwarmTask] {
            tasks.values.filter { $0.serviceID == service && $0.desiredState == .running && $0.status.state == .running }
        }
    }

    @Test func replicasAreSpreadOverTheNodesInSlots() {
        var cluster = Cluster(services: [Self.service(replicas: 6)], nodes: ["a", "b", "c"].map { Self.node($0) })
        cluster.settle()
        let running = cluster.running()
        #expect(running.map(\.slot).sorted() == [1, 2, 3, 4, 5, 6])
        #expect(Dictionary(grouping: running, by: { $0.nodeID! }).mapValues(\.count) == ["a": 2, "b": 2, "c": 2])
    }

    @Test func aDownNodesTasksAreReplacedAndItsCopiesStoppedWhenItReturns() {
        var cluster = Cluster(services: [Self.service(replicas: 3)], nodes: ["a", "b", "c"].map { Self.node($0) })
        cluster.settle()
        cluster.nodes[1].state = .down
        cluster.settle()
        #expect(cluster.running().count == 3)
        #expect(cluster.running().allSatisfy { $0.nodeID != "b" })
        let stale = cluster.tasks.values.filter { $0.nodeID == "b" && $0.status.state == .running }
        #expect(stale.count == 1 && stale.allSatisfy { $0.desiredState == .shutdown }, "the dead node's task is shut down, not forgotten")
        cluster.nodes[1].state = .ready
        cluster.settle()
        #expect(cluster.tasks.values.filter { $0.nodeID == "b" && !$0.status.state.isTerminal }.isEmpty)
        #expect(Set(cluster.running().map(\.slot)).count == 3, "no slot runs twice")
    }

    @Test func restartPolicyDecidesWhetherAnEndedTaskIsReplaced() {
        var cluster = Cluster(services: [Self.service(replicas: 1, restart: RestartPolicy(condition: .onFailure, delay: 5_000_000_000, maxAttempts: 2))],
                              nodes: [Self.node("a")])
        cluster.settle()
        let first = cluster.running()[0]
        // It completes: with on-failure it stays as it ended, in its slot.
        cluster.tasks[first.id]?.status = TaskStatus(state: .complete, timestamp: cluster.now, message: "finished", exitCode: 0)
        cluster.settle()
        #expect(cluster.tasks.count == 1 && cluster.running().isEmpty)

        var failing = Cluster(services: [Self.service(replicas: 1, restart: RestartPolicy(condition: .onFailure, delay: 5_000_000_000, maxAttempts: 2))],
                              nodes: [Self.node("a")])
        failing.settle()
        var attempts = 0
        for _ in 0..<5 {
            guard let task = failing.running().first else { break }
            failing.tasks[task.id]?.status = TaskStatus(state: .failed, timestamp: failing.now, message: "failed", error: "exit 1", exitCode: 1)
            failing.pass()
            // The replacement waits for the restart delay before it is placed.
            let waiting = failing.tasks.values.filter { $0.isLive && $0.nodeID == nil }
            if let replacement = waiting.first {
                #expect(replacement.notBefore == failing.now.addingTimeInterval(5))
                attempts += 1
            }
            failing.now = failing.now.addingTimeInterval(6)
            failing.settle(2)
        }
        #expect(attempts == 2, "max-attempts 2 allows two restarts")
    }

    /// The dispatcher's rule for a node's report: a task's state moves
    /// forward only, and the first report of it running is kept as the
    /// start of its monitor window.
    @Test func aReportMovesATaskForwardAndRecordsWhenItFirstRan() {
        let start = Self.start
        var task = SwarmTask(id: "t1", service: Self.service(), slot: 1, nodeID: "a", now: start)
        task.status = TaskStatus(state: .assigned, timestamp: start, message: "assigned")
        let running = TaskStatus(state: .running, timestamp: start.addingTimeInterval(2), message: "started")
        let ran = task.recording(TaskReport(taskID: "t1", status: running,
                                            addresses: [TaskAddress(networkID: "n", address: "10.0.0.5/24")]), at: start.addingTimeInterval(3))
        #expect(ran?.status == running && ran?.runningSince == running.timestamp && ran?.addresses.count == 1)
        #expect(ran?.recording(TaskReport(taskID: "t1", status: running), at: start) == nil, "the same report changes nothing")
        let back = TaskStatus(state: .starting, timestamp: start.addingTimeInterval(4), message: "starting")
        #expect(ran?.recording(TaskReport(taskID: "t1", status: back), at: start) == nil, "never back")
        let failed = TaskStatus(state: .failed, timestamp: start.addingTimeInterval(9), message: "failed", exitCode: 1)
        let ended = ran?.recording(TaskReport(taskID: "t1", status: failed), at: start.addingTimeInterval(9))
        #expect(ended?.status.state == .failed && ended?.runningSince == running.timestamp && ended?.addresses.count == 1,
                "the first run's time and the addresses stay")
    }

    @Test func aTaskThatFitsNowhereIsPendingWithTheReasonAndRunsWhenANodeFits() {
        var cluster = Cluster(services: [Self.service(replicas: 1, constraints: ["node.labels.zone==east"])],
                              nodes: [Self.node("a"), Self.node("b", availability: .drain)])
        cluster.settle()
        let pending = cluster.tasks.values.first!
        #expect(pending.status.state == .pending)
        #expect(pending.status.error == "no suitable node (scheduling constraints not satisfied on 1 node; 1 node not available for new tasks)")
        cluster.nodes[0].labels = ["zone": "east"]
        cluster.settle()
        #expect(cluster.running().map(\.nodeID) == ["a"])
    }

    @Test func globalServicesFollowTheNodes() {
        var cluster = Cluster(services: [Self.service(mode: .global)], nodes: [Self.node("a"), Self.node("b")])
        cluster.settle()
        #expect(Set(cluster.running().compactMap(\.nodeID)) == ["a", "b"])
        cluster.nodes.append(Self.node("c"))
        cluster.nodes[0].availability = .drain
        cluster.settle()
        #expect(Set(cluster.running().compactMap(\.nodeID)) == ["b", "c"])
    }

    @Test func aRollingUpdateReplacesParallelismTasksAtATime() {
        var cluster = Cluster(services: [Self.service(replicas: 4)], nodes: ["a", "b"].map { Self.node($0) })
        cluster.settle()
        var service = cluster.services[0]
        service.spec.task.container.env = ["VERSION=2"]
        service.spec.update.parallelism = 2
        service.templateVersion += 1
        service.updateStatus = UpdateProgress(state: .updating, startedAt: cluster.now, message: "update in progress")
        cluster.services = [service]
        cluster.pass()
        let replacing = cluster.tasks.values.filter { $0.templateVersion == 2 && $0.isLive }
        #expect(replacing.count == 2, "one batch of two")
        var rounds = 0
        while rounds < 8 && !(cluster.running().count == 4 && cluster.running().allSatisfy { $0.templateVersion == 2 }) {
            cluster.settle(1)
            rounds += 1
        }
        #expect(cluster.running().count == 4 && cluster.running().allSatisfy { $0.templateVersion == 2 })
        // The last new task has not run for the monitor period (5 s) yet.
        cluster.pass()
        #expect(cluster.services[0].updateStatus?.state == .updating)
        cluster.settle(5)
        #expect(cluster.services[0].updateStatus?.state == .completed)
    }

    /// `--update-monitor`: a new task that fails within the monitor period
    /// of starting counts as the update's failure (here: roll back); one
    /// that fails later is an ordinary restart, and the update completes.
    @Test(arguments: [3.0, 12.0])
    func aFailureCountsAgainstTheUpdateOnlyWithinTheMonitorPeriod(failsAfter: Double) {
        var cluster = Cluster(services: [Self.service(replicas: 1)], nodes: [Self.node("a")])
        cluster.settle()
        var service = cluster.services[0]
        service.previousSpec = service.spec
        service.spec.task.container.env = ["VERSION=2"]
        service.spec.update.failureAction = .rollback
        service.spec.update.monitor = 10_000_000_000
        service.templateVersion += 1
        service.updateStatus = UpdateProgress(state: .updating, startedAt: cluster.now, message: "update in progress")
        cluster.services = [service]
        cluster.settle(2)
        let updated = cluster.running()
        #expect(updated.count == 1 && updated[0].template.container.env == ["VERSION=2"] && updated[0].runningSince != nil)
        // Still watching: not completed while the monitor period runs.
        #expect(cluster.services[0].updateStatus?.state == .updating)

        cluster.now = updated[0].runningSince!.addingTimeInterval(failsAfter)
        if failsAfter > 10 {
            cluster.pass()
            #expect(cluster.services[0].updateStatus?.state == .completed)
        }
        cluster.tasks[updated[0].id]?.status = TaskStatus(state: .failed, timestamp: cluster.now, message: "failed", error: "exit 1", exitCode: 1)
        cluster.settle(3)
        if failsAfter > 10 {
            #expect(cluster.services[0].updateStatus?.state == .completed)
            #expect(cluster.running().map(\.template.container.env) == [["VERSION=2"]], "restarted on the new spec")
        } else {
            #expect(cluster.services[0].updateStatus?.state == .rollbackStarted)
            #expect(cluster.running().map(\.template.container.env) == [[]], "rolled back to the old spec")
        }
    }

    /// Host-mode published ports: one task using a port per node; the
    /// task that fits nowhere says why.
    @Test func hostModePortsPlaceOneTaskPerNode() {
        var cluster = Cluster(services: [Self.service(replicas: 3)], nodes: ["a", "b"].map { Self.node($0) })
        cluster.hostPorts = ["svc": [Scheduler.HostPort(protocol: .tcp, port: 80)]]
        cluster.settle()
        #expect(Set(cluster.running().compactMap(\.nodeID)) == ["a", "b"] && cluster.running().count == 2)
        let pending = cluster.tasks.values.filter { $0.status.state == .pending }
        #expect(pending.count == 1)
        #expect(pending.first?.status.error == "no suitable node (host-mode port already in use on 2 nodes)")
        // Another port, or UDP on the same number, does not clash.
        var other = Self.service("other", replicas: 2)
        other.spec.task.restartPolicy.delay = 0
        cluster.services.append(other)
        cluster.hostPorts["other"] = [Scheduler.HostPort(protocol: .udp, port: 80)]
        cluster.nodes.append(Self.node("c"))
        cluster.settle()
        #expect(cluster.running().count == 3 && Set(cluster.running().compactMap(\.nodeID)) == ["a", "b", "c"])
        #expect(cluster.running("other").count == 2)
    }

    /// A node that rejects a task (its image is not there) is tried after
    /// every other: the task moves on and runs where it can.
    @Test func aRejectedTaskMovesToANodeThatCanStartIt() {
        var cluster = Cluster(services: [Self.service(replicas: 2)], nodes: ["a", "b", "c"].map { Self.node($0) })
        cluster.rejecting = ["a", "b"]
        cluster.settle(8)
        #expect(cluster.running().count == 2 && cluster.running().allSatisfy { $0.nodeID == "c" }, "\(cluster.running().map(\.nodeID))")
        // Once the rejections are older than the scheduler remembers, the
        // nodes are tried again.
        cluster.rejecting = []
        cluster.now = cluster.now.addingTimeInterval(Scheduler.failureMemory + 1)
        cluster.services[0].spec.mode = .replicated(replicas: 3)
        cluster.settle()
        #expect(cluster.running().count == 3 && Set(cluster.running().compactMap(\.nodeID)).count == 2)
    }

    /// A failed update rolls back; the tasks it never reached already run
    /// the rolled-back spec and are kept, not replaced (as swarmkit
    /// compares specs).
    @Test(arguments: [UpdatePolicy.Order.stopFirst, .startFirst])
    func aRollbackKeepsTheTasksThatRunTheRolledBackSpec(order: UpdatePolicy.Order) {
        var cluster = Cluster(services: [Self.service(replicas: 4)], nodes: ["a", "b"].map { Self.node($0) })
        cluster.settle()
        let untouched = Set(cluster.running().map(\.id))
        var service = cluster.services[0]
        service.previousSpec = service.spec
        service.spec.task.container.image = "ghost:latest"
        service.spec.update.failureAction = .rollback
        service.spec.update.order = order
        service.spec.update.parallelism = 2
        service.spec.task.restartPolicy.delay = 0
        service.templateVersion += 1
        service.updateStatus = UpdateProgress(state: .updating, startedAt: cluster.now, message: "update in progress")
        cluster.services = [service]
        cluster.pass()
        let attempt = cluster.tasks.values.filter { $0.template.container.image == "ghost:latest" }.sorted { $0.slot < $1.slot }
        #expect(attempt.count == 2, "parallelism 2: two tasks of the new spec")
        // The first failure starts the rollback; the second is reported
        // after it: neither may leave a slot with two tasks.
        for task in attempt {
            cluster.tasks[task.id]?.status = TaskStatus(state: .rejected, timestamp: cluster.now, message: "rejected", error: "No such image")
            cluster.now = cluster.now.addingTimeInterval(1)
            cluster.pass()
        }
        cluster.settle(8)
        #expect(cluster.services[0].updateStatus?.state == .rollbackCompleted)
        #expect(cluster.running().count == 4 && cluster.running().allSatisfy { $0.template.container.image != "ghost:latest" })
        let kept = Set(cluster.running().map(\.id)).intersection(untouched)
        // Stop-first stopped two old tasks before their replacements
        // failed; start-first kept all four.
        #expect(kept.count == (order == .stopFirst ? 2 : 4), "the tasks the update never replaced stay: \(kept.count)")
        #expect(Dictionary(grouping: cluster.running(), by: \.slot).values.allSatisfy { $0.count == 1 }, "one task per slot")
    }

    /// Tasks shut down on nodes that never come back count against the
    /// history limit like ended ones (they used to stay for good).
    @Test func tasksLeftOnDeadNodesArePrunedWithTheHistory() {
        var cluster = Cluster(services: [Self.service(replicas: 1)], nodes: (0..<8).map { Self.node("n\($0)") })
        cluster.settle()
        for _ in 0..<7 {
            guard let host = cluster.running().first?.nodeID, let index = cluster.nodes.firstIndex(where: { $0.id == host }) else { break }
            cluster.nodes[index].state = .down
            cluster.settle()
        }
        #expect(cluster.running().count == 1)
        let history = cluster.tasks.values.filter { !$0.isWanted }
        #expect(history.count == 5, "history of the slot: \(history.count) tasks")
    }

    /// Seeded runs with faults: nodes die, drain and return, tasks fail,
    /// services scale and update. At every step no slot runs twice (stop-first
    /// updates), and once the faults stop the service converges.
    @Test(arguments: 0..<64) func seededFaultsConverge(seed: UInt64) {
        var random = SplitMix(seed: seed)
        var service = Self.service(replicas: 3)
        // Injected failures would pause an update (Docker's default action);
        // here the update must carry on through them.
        service.spec.update.failureAction = .continue
        var cluster = Cluster(services: [service], nodes: ["a", "b", "c", "d"].map { Self.node($0) })
        var replicas: UInt64 = 3
        for _ in 0..<60 {
            switch random.next() % 8 {
            case 0: cluster.nodes[Int(random.next() % 4)].state = .down
            case 1: cluster.nodes[Int(random.next() % 4)].state = .ready
            case 2: cluster.nodes[Int(random.next() % 4)].availability = random.next() % 2 == 0 ? .drain : .active
            case 3:
                if let task = cluster.running().randomElement(using: &random) {
                    cluster.tasks[task.id]?.status = TaskStatus(state: .failed, timestamp: cluster.now, message: "failed", error: "exit 1")
                }
            case 4:
                replicas = random.next() % 6
                cluster.services[0].spec.mode = .replicated(replicas: replicas)
            case 5:
                cluster.services[0].spec.task.container.env = ["V=\(random.next() % 100)"]
                cluster.services[0].templateVersion += 1
                cluster.services[0].updateStatus = UpdateProgress(state: .updating, startedAt: cluster.now, message: "update in progress")
            default: break
            }
            cluster.pass()
            cluster.nodesAct()
            cluster.now = cluster.now.addingTimeInterval(1)
            let live = cluster.running().filter { task in cluster.nodes.first { $0.id == task.nodeID }?.state == .ready }
            let slots = Dictionary(grouping: live, by: \.slot)
            #expect(slots.values.allSatisfy { $0.count == 1 }, "seed \(seed): a slot runs twice")
        }
        for index in cluster.nodes.indices {
            cluster.nodes[index].state = .ready
            cluster.nodes[index].availability = .active
        }
        cluster.settle(12)
        #expect(cluster.running().count == Int(replicas), "seed \(seed): \(cluster.running().count) running, want \(replicas)")
        #expect(Set(cluster.running().map(\.templateVersion)) == (replicas == 0 ? [] : [cluster.services[0].templateVersion]))
        #expect(cluster.tasks.values.filter { !$0.isWanted }.count <= 5 * 6, "seed \(seed): task history is bounded")
    }
}

/// A small seeded generator (SplitMix64): the same seed, the same run.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

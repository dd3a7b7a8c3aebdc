import Cluster
import FoundationEssentials

/// Places tasks on nodes, as swarmkit's scheduler does: filters (the node
/// takes tasks, the constraints hold, the reservations fit, the service's
/// host-mode ports are free), then away from nodes that recently rejected
/// or kept failing the service's tasks, then the spread preferences, then
/// spread (fewest tasks of the service, then fewest tasks). Pure: the
/// caller writes what it returns.
public enum Scheduler {
    /// A port a service publishes in host mode: only one task using it can
    /// run on a node.
    public struct HostPort: Hashable, Sendable {
        public var `protocol`: PortProtocol
        public var port: UInt16

        public init(protocol: PortProtocol, port: UInt16) {
            self.protocol = `protocol`
            self.port = port
        }
    }

    /// How far back a node's rejections and failures of a service count.
    public static let failureMemory: TimeInterval = 5 * 60
    /// Failures (a task that ran and failed) a node may have of a service
    /// before it is tried last, as swarmkit's `maxFailures`. A single
    /// rejection (the node could not even start it: a missing image, a bad
    /// mount) is enough.
    static let failuresBeforeAvoided = 5

    /// The tasks whose placement or pending reason changed. `hostPorts`:
    /// each service's host-mode published ports.
    public static func schedule(tasks: [SwarmTask], nodes: [SwarmNode], hostPorts: [String: Set<HostPort>] = [:],
                                now: Date) -> [SwarmTask] {
        var load = Load(tasks: tasks, hostPorts: hostPorts, since: now.addingTimeInterval(-failureMemory))
        var changed: [SwarmTask] = []
        let waiting = tasks
            .filter { $0.isLive && $0.status.state <= .pending && ($0.notBefore ?? .distantPast) <= now }
            .sorted { ($0.createdAt, $0.serviceID, $0.slot) < ($1.createdAt, $1.serviceID, $1.slot) }
        let sortedNodes = nodes.sorted { $0.id < $1.id }
        for var task in waiting {
            let placement = place(task, nodes: sortedNodes, load: load)
            switch placement {
            case .node(let node):
                task.nodeID = node.id
                task.status = TaskStatus(state: .assigned, timestamp: now, message: "scheduler assigned task to node")
                task.updatedAt = now
                load.add(task)
                changed.append(task)
            case .none(let reason):
                guard task.status.state != .pending || task.status.error != reason else { continue }
                task.status = TaskStatus(state: .pending, timestamp: now, message: "pending task scheduling", error: reason)
                task.updatedAt = now
                changed.append(task)
            }
        }
        return changed
    }

    enum Placement {
        case node(SwarmNode)
        case none(reason: String)
    }

    static func place(_ task: SwarmTask, nodes: [SwarmNode], load: Load) -> Placement {
        let constraints = (try? Constraint.parse(task.template.placement.constraints)) ?? []
        let ports = load.hostPorts(of: task.serviceID)
        var notAvailable = 0, unsatisfied = 0, insufficient = 0, portsTaken = 0
        var candidates: [SwarmNode] = []
        for node in nodes where task.nodeID == nil || task.nodeID == node.id {
            if !node.acceptsTasks {
                notAvailable += 1
            } else if !constraints.allSatisfy({ $0.isSatisfied(by: node) }) {
                unsatisfied += 1
            } else if !fits(task.template.reservations, on: node, load: load) {
                insufficient += 1
            } else if !ports.isDisjoint(with: load.hostPortsInUse(on: node.id)) {
                portsTaken += 1
            } else {
                candidates.append(node)
            }
        }
        guard !candidates.isEmpty else {
            var reasons: [String] = []
            if unsatisfied > 0 { reasons.append("scheduling constraints not satisfied on \(count(unsatisfied))") }
            if insufficient > 0 { reasons.append("insufficient resources on \(count(insufficient))") }
            if portsTaken > 0 { reasons.append("host-mode port already in use on \(count(portsTaken))") }
            if notAvailable > 0 { reasons.append("\(count(notAvailable)) not available for new tasks") }
            if reasons.isEmpty { reasons.append("no nodes in the swarm") }
            return .none(reason: "no suitable node (\(reasons.joined(separator: "; ")))")
        }
        // A node that could not start this service's task (its image is
        // not there) is tried after every other: the task moves on rather
        // than being rejected by the same node again and again.
        let mistrust = { (node: SwarmNode) in load.mistrust(of: node.id, for: task.serviceID) }
        let leastMistrusted = candidates.map(mistrust).min(by: <)!
        candidates = candidates.filter { mistrust($0) == leastMistrusted }
        for descriptor in task.template.placement.spreadOver {
            candidates = leastLoadedGroup(candidates, by: descriptor, service: task.serviceID, load: load)
        }
        let best = candidates.min { lhs, rhs in
            (load.tasks(of: task.serviceID, on: lhs.id), load.tasks(on: lhs.id)) < (load.tasks(of: task.serviceID, on: rhs.id), load.tasks(on: rhs.id))
        }!
        return .node(best)
    }

    /// The nodes sharing the value of `descriptor` that run the fewest of
    /// the service's tasks (nodes without the attribute form a group of
    /// their own, as swarmkit's spread does).
    static func leastLoadedGroup(_ nodes: [SwarmNode], by descriptor: String, service: String, load: Load) -> [SwarmNode] {
        let groups = Dictionary(grouping: nodes) { $0.attribute(descriptor) ?? "" }
        let chosen = groups.min { lhs, rhs in
            let left = lhs.value.reduce(0) { $0 + load.tasks(of: service, on: $1.id) }
            let right = rhs.value.reduce(0) { $0 + load.tasks(of: service, on: $1.id) }
            return (left, lhs.key) < (right, rhs.key)
        }
        return chosen?.value ?? nodes
    }

    static func fits(_ reservation: ResourceAmounts, on node: SwarmNode, load: Load) -> Bool {
        guard reservation.nanoCPUs > 0 || reservation.memoryBytes > 0 else { return true }
        let used = load.reserved(on: node.id)
        return used.nanoCPUs + reservation.nanoCPUs <= node.description.nanoCPUs
            && used.memoryBytes + reservation.memoryBytes <= node.description.memoryBytes
    }

    static func count(_ nodes: Int) -> String { nodes == 1 ? "1 node" : "\(nodes) nodes" }

    /// What each node runs: counts per service, reserved resources and
    /// host-mode ports of the tasks that are placed and not ended; and what
    /// each node recently rejected or failed, per service.
    struct Load {
        private let servicePorts: [String: Set<HostPort>]
        private var perService: [String: [String: Int]] = [:]
        private var total: [String: Int] = [:]
        private var reservations: [String: ResourceAmounts] = [:]
        private var portsInUse: [String: Set<HostPort>] = [:]
        private var rejections: [String: [String: Int]] = [:]
        private var failures: [String: [String: Int]] = [:]

        init(tasks: [SwarmTask], hostPorts: [String: Set<HostPort>] = [:], since: Date = .distantPast) {
            servicePorts = hostPorts
            for task in tasks {
                add(task)
                guard let node = task.nodeID, task.status.timestamp >= since else { continue }
                switch task.status.state {
                case .rejected: rejections[task.serviceID, default: [:]][node, default: 0] += 1
                case .failed: failures[task.serviceID, default: [:]][node, default: 0] += 1
                default: break
                }
            }
        }

        mutating func add(_ task: SwarmTask) {
            guard let node = task.nodeID, task.isLive else { return }
            perService[task.serviceID, default: [:]][node, default: 0] += 1
            total[node, default: 0] += 1
            reservations[node, default: ResourceAmounts()] = reservations[node, default: ResourceAmounts()] + task.template.reservations
            if let ports = servicePorts[task.serviceID] { portsInUse[node, default: []].formUnion(ports) }
        }

        func tasks(of service: String, on node: String) -> Int { perService[service]?[node] ?? 0 }
        func tasks(on node: String) -> Int { total[node] ?? 0 }
        func reserved(on node: String) -> ResourceAmounts { reservations[node] ?? ResourceAmounts() }
        func hostPorts(of service: String) -> Set<HostPort> { servicePorts[service] ?? [] }
        func hostPortsInUse(on node: String) -> Set<HostPort> { portsInUse[node] ?? [] }

        /// Why not to place the service's next task on the node, in order:
        /// its recent rejections, then its failures once they reach
        /// `failuresBeforeAvoided`. Lower is better; (0, 0) for most nodes.
        func mistrust(of node: String, for service: String) -> (rejections: Int, failures: Int) {
            let failed = failures[service]?[node] ?? 0
            return (rejections[service]?[node] ?? 0, failed >= Scheduler.failuresBeforeAvoided ? failed : 0)
        }
    }
}

import Cluster
import Foundation

/// Places tasks on nodes, as swarmkit's scheduler does: filters (the node
/// takes tasks, the constraints hold, the reservations fit), then the
/// spread preferences, then spread (fewest tasks of the service, then
/// fewest tasks). Pure: the caller writes what it returns.
public enum Scheduler {
    /// The tasks whose placement or pending reason changed.
    public static func schedule(tasks: [SwarmTask], nodes: [SwarmNode], now: Date) -> [SwarmTask] {
        var load = Load(tasks: tasks)
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
        var notAvailable = 0, unsatisfied = 0, insufficient = 0
        var candidates: [SwarmNode] = []
        for node in nodes where task.nodeID == nil || task.nodeID == node.id {
            if !node.acceptsTasks {
                notAvailable += 1
            } else if !constraints.allSatisfy({ $0.isSatisfied(by: node) }) {
                unsatisfied += 1
            } else if !fits(task.template.reservations, on: node, load: load) {
                insufficient += 1
            } else {
                candidates.append(node)
            }
        }
        guard !candidates.isEmpty else {
            var reasons: [String] = []
            if unsatisfied > 0 { reasons.append("scheduling constraints not satisfied on \(count(unsatisfied))") }
            if insufficient > 0 { reasons.append("insufficient resources on \(count(insufficient))") }
            if notAvailable > 0 { reasons.append("\(count(notAvailable)) not available for new tasks") }
            if reasons.isEmpty { reasons.append("no nodes in the swarm") }
            return .none(reason: "no suitable node (\(reasons.joined(separator: "; ")))")
        }
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

    /// What each node runs: counts per service and reserved resources of
    /// the tasks that are placed and not ended.
    struct Load {
        private var perService: [String: [String: Int]] = [:]
        private var total: [String: Int] = [:]
        private var reservations: [String: ResourceAmounts] = [:]

        init(tasks: [SwarmTask]) {
            for task in tasks { add(task) }
        }

        mutating func add(_ task: SwarmTask) {
            guard let node = task.nodeID, task.isLive else { return }
            perService[task.serviceID, default: [:]][node, default: 0] += 1
            total[node, default: 0] += 1
            reservations[node, default: ResourceAmounts()] = reservations[node, default: ResourceAmounts()] + task.template.reservations
        }

        func tasks(of service: String, on node: String) -> Int { perService[service]?[node] ?? 0 }
        func tasks(on node: String) -> Int { total[node] ?? 0 }
        func reserved(on node: String) -> ResourceAmounts { reservations[node] ?? ResourceAmounts() }
    }
}

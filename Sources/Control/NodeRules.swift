import Cluster

/// What the managers allow operators to do to nodes, with Docker's
/// messages. Pure checks over the store's objects.
public enum NodeRules {
    /// Finds a node by full ID, hostname or name, or unique ID prefix, as
    /// Docker's API resolves a node reference.
    public static func resolve(_ reference: String, in nodes: [SwarmNode]) throws(ControlError) -> SwarmNode {
        if let node = nodes.first(where: { $0.id == reference }) { return node }
        let named = nodes.filter { $0.name == reference || $0.description.hostname == reference }
        if named.count == 1 { return named[0] }
        if named.count > 1 {
            throw ControlError(.invalidArgument, "node \(reference) is ambiguous (\(named.count) matches found)")
        }
        let prefixed = reference.isEmpty ? [] : nodes.filter { $0.id.hasPrefix(reference) }
        if prefixed.count == 1 { return prefixed[0] }
        if prefixed.count > 1 {
            throw ControlError(.invalidArgument, "node \(reference) is ambiguous (\(prefixed.count) matches found)")
        }
        throw ControlError(.notFound, "node \(reference) not found")
    }

    /// Checks a `docker node update`; returns the node as updated.
    public static func update(_ node: SwarmNode, role: SwarmRole, availability: NodeAvailability, labels: [String: String],
                              name: String?, among nodes: [SwarmNode]) throws(ControlError) -> SwarmNode {
        if node.desiredRole == .manager, role == .worker {
            let managers = nodes.filter { $0.desiredRole == .manager }
            if managers.count <= 1 {
                throw ControlError.rpc(.failedPrecondition, "FailedPrecondition", "attempting to demote the last manager of the swarm")
            }
            // Demoting a manager must leave a quorum of the managers that are up.
            let reachable = managers.filter { $0.id != node.id && $0.state == .ready }.count
            if reachable < (managers.count - 1) / 2 + 1 {
                throw ControlError.rpc(
                    .failedPrecondition, "FailedPrecondition",
                    "can't remove node \(node.id) from the raft cluster: it would leave \(reachable) reachable managers out of \(managers.count - 1), less than a quorum")
            }
        }
        var updated = node
        updated.desiredRole = role
        updated.availability = availability
        updated.labels = labels
        updated.name = name.flatMap { $0.isEmpty ? nil : $0 }
        return updated
    }

    /// Checks a `docker node rm [--force]`.
    public static func checkRemoval(_ node: SwarmNode, force: Bool) throws(ControlError) {
        if node.role == .manager || node.desiredRole == .manager {
            throw ControlError.rpc(
                .failedPrecondition, "FailedPrecondition",
                "node \(node.id) is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal")
        }
        if !force && node.state != .down {
            throw ControlError.rpc(.failedPrecondition, "FailedPrecondition", "node \(node.id) is not down and can't be removed")
        }
    }

    /// Checks `docker swarm leave` on a manager: refused without `force`
    /// when it is the last manager or when leaving breaks the quorum.
    public static func checkLeave(managers: [SwarmNode], leaving: String, force: Bool) throws(ControlError) {
        guard !force else { return }
        if managers.count <= 1 {
            throw ControlError(
                .unavailable,
                "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. ")
        }
        let reachable = managers.filter { $0.id != leaving && $0.state == .ready }.count
        let quorum = managers.count / 2 + 1
        if reachable < quorum {
            throw ControlError(
                .unavailable,
                "You are attempting to leave the swarm on a node that is participating as a manager. Removing this node leaves \(reachable) managers out of \(managers.count). Without a Raft quorum your swarm will be inaccessible. The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message.")
        }
    }
}

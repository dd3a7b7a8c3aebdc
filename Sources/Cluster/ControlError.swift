/// Why a request was refused, in gRPC's terms as swarmkit reports them:
/// the one error vocabulary of the core (control role, node agent,
/// executor adapters). Only the API edge (DockerAPI) maps the kind to an
/// HTTP status; the message is what the docker CLI prints.
public struct ControlError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        case invalidArgument
        case notFound
        case failedPrecondition
        case conflict
        /// No leader, no quorum, not a manager.
        case unavailable
        case permissionDenied
        /// The caller's node was removed from the swarm (`docker node rm`).
        case removed
        /// The node failed at something that should have worked (the
        /// kernel or the runtime refused): not the caller's fault.
        case `internal`
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// Docker's text for a swarmkit gRPC error (`rpc error: code = … desc = …`),
    /// which the CLI prints as it is.
    public static func rpc(_ kind: Kind, _ code: String, _ text: String) -> ControlError {
        ControlError(kind, "rpc error: code = \(code) desc = \(text)")
    }

    public static let noLeader = rpc(
        .unavailable, "Unknown",
        "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online.")

    public static let alreadyInSwarm = ControlError(
        .unavailable, "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.")

    public static let notManager = ControlError(
        .unavailable,
        "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.")

    public static func removed(_ node: String) -> ControlError {
        ControlError(.removed, "node \(node) was removed from the swarm")
    }

    public static let invalidToken = rpc(.invalidArgument, "InvalidArgument", "A valid join token is necessary to join this cluster")

    /// The object changed since the version the request names.
    public static let outOfSequence = rpc(.conflict, "Unknown", "update out of sequence")
}

extension ControlError {
    /// The control role's kind for a refusal of the cluster's allocation
    /// rules (networks, endpoints, services' VIPs and ports).
    public init(_ error: ClusterError) {
        switch error {
        case .nameInUse, .conflict: self.init(.conflict, error.description)
        case .invalidRequest, .overlap: self.init(.invalidArgument, error.description)
        case .exhausted: self.init(.unavailable, error.description)
        case .notFound: self.init(.notFound, error.description)
        case .forbidden: self.init(.permissionDenied, error.description)
        }
    }
}

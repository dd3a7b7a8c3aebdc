import Cluster
import Foundation

// What nodes and managers say to each other on the manager endpoint (TCP
// 2377, TLS). JSON bodies, bounded by the server's limits.
//
//   GET  /swarmnet/ca         the root CA certificate (no client certificate needed)
//   POST /swarmnet/join       JoinRequest → JoinResponse (join token instead of a certificate)
//   POST /swarmnet/heartbeat  Heartbeat → HeartbeatResponse (a node's certificate)
//   POST /swarmnet/renew      RenewRequest → RenewResponse (a node's certificate): a new
//                             certificate for the role the operators want (promote,
//                             demote), or the same role before the old one expires
//   GET  /swarmnet/raft       the Raft members (a manager's certificate)

struct JoinRequest: Codable, Sendable {
    var token: String
    var csrPEM: String
    var description: SwarmNode.Description
    /// The address the node is reached at (its advertise address).
    var address: String
    /// For a manager: where its endpoint and Raft will listen.
    var endpoint: String?
    var raftAddress: String?
    var availability: NodeAvailability?
    /// The node's daemon identity (the owner of its sandboxes and
    /// endpoints): the managers let a node allocate only in its own name.
    var engineID: String
}

struct RaftPeer: Codable, Sendable, Hashable {
    var id: UInt64
    var address: String
}

struct JoinResponse: Codable, Sendable {
    var nodeID: String
    var clusterID: String
    var role: SwarmRole
    var certificatePEM: String
    var managers: [String]
    var gossipKeys: [String]
    /// For a manager: its Raft ID and the members to start with.
    var raftID: UInt64?
    var raftPeers: [RaftPeer]?
}

struct Heartbeat: Codable, Sendable {
    var address: String
    /// What changed in the node's tasks since its last acknowledged report.
    var reports: [TaskReport]?
    /// A worker's revision of the cluster's definitions (0: none yet); the
    /// answer carries them when the store's moved on. Managers send none:
    /// they read their own replica.
    var definitionsRevision: UInt64?
}

struct HeartbeatResponse: Codable, Sendable {
    /// Nanoseconds until the next heartbeat is due.
    var periodNanoseconds: Int64
    var managers: [String]
    var gossipKeys: [String]
    /// The role the operators want for the node (`docker node promote`,
    /// `demote`); the node renews its certificate when it differs.
    var desiredRole: SwarmRole
    /// The dispatcher's word: every task assigned to the node that it must
    /// run or stop. Tasks of the node's that are not here are stopped and
    /// removed.
    var tasks: [TaskAssignment]?
    /// The node's ended tasks the history keeps: their containers stay
    /// (stopped, with their logs) until the history drops them.
    var retainedTasks: [String]?
    /// False when the node's reports could not be written: it sends them again.
    var reportsRecorded: Bool?
    /// The engine IDs of the nodes marked down: their endpoints leave this
    /// node's balancers and DNS answers at once, before gossip's failure
    /// detector reaches the same verdict.
    var downEngines: [String]?
    /// Managers want the logs of some of the node's tasks: it posts them
    /// to `/swarmnet/logs` on the same session.
    var logRequests: [LogRequest]?
    /// The cluster's definitions, when the node's revision is not the
    /// store's.
    var definitions: ClusterDefinitions?
}

/// A node's answer to a log request.
struct LogReply: Codable, Sendable {
    var id: String
    var entries: [LogEntry]
}

/// A manager asks the leader for the logs of tasks on several nodes.
struct LogFetch: Codable, Sendable {
    /// Node ID → the tasks there.
    var tasks: [String: [String]]
    var stdout: Bool
    var stderr: Bool
    var tail: Int?
    var since: Date?
}

struct RenewRequest: Codable, Sendable {
    var csrPEM: String
    /// Where the node's manager endpoint and Raft will listen, should it
    /// become a manager.
    var endpoint: String
    var raftAddress: String
}

struct RenewResponse: Codable, Sendable {
    var role: SwarmRole
    var certificatePEM: String
    var managers: [String]
    /// For a manager: its Raft ID and the members to start with.
    var raftID: UInt64?
    var raftPeers: [RaftPeer]?
}

/// A follower's answer to a heartbeat: the leader takes them.
struct NotLeader: Codable, Sendable {
    var leader: String?
}

struct ErrorBody: Codable, Sendable {
    var message: String
}

import Cluster
import FoundationEssentials

// What nodes and managers say to each other on the manager endpoint (TCP
// 2377, TLS). JSON bodies, bounded by the server's limits.
//
//   GET  /swarmnet/ca         the root CA certificate (no client certificate needed)
//   POST /swarmnet/join       JoinRequest → JoinResponse (join token instead of a certificate)
//   POST /swarmnet/heartbeat  Heartbeat → HeartbeatResponse (a node's certificate)
//   POST /swarmnet/work       WorkWatch → NodeWork (a node's certificate): a long poll,
//                             answered when the node's work differs from what it holds
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
    /// False when the node's reports could not be written: it sends them again.
    var reportsRecorded: Bool?
    /// Managers want the logs of some of the node's tasks: it posts them
    /// to `/swarmnet/logs` on the same session.
    var logRequests: [LogRequest]?
    /// The node's work as of the answer.
    var work: NodeWork
}

/// What the dispatcher has for one node, as of one index of the store.
/// Heartbeat answers and the work watch both carry it; a node takes only
/// work newer than what it holds, since the two may arrive out of order.
struct NodeWork: Codable, Sendable {
    /// The store's applied index it was read at.
    var index: UInt64
    /// A digest of `tasks`, `retainedTasks` and `downEngines`: the node
    /// sends it back on the watch, and the manager holds the watch until
    /// its own digest differs.
    var digest: UInt64
    /// The dispatcher's word: every task assigned to the node that it must
    /// run or stop. Tasks of the node's that are not here are stopped and
    /// removed.
    var tasks: [TaskAssignment]
    /// The node's ended tasks the history keeps: their containers stay
    /// (stopped, with their logs) until the history drops them.
    var retainedTasks: [String]
    /// The engine IDs of the nodes marked down: their endpoints leave this
    /// node's balancers and DNS answers at once, before gossip's failure
    /// detector reaches the same verdict.
    var downEngines: [String]
    /// The cluster's definitions, when the node's revision is not the
    /// store's (a worker's: managers read their own replica).
    var definitions: ClusterDefinitions?

    /// FNV-1a over the sorted-key JSON of what the digest covers: the same
    /// work gives the same digest on every manager, and across leaders.
    static func digest(tasks: [TaskAssignment], retained: [String], downEngines: [String]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for part in [SwarmStore.encode(tasks), SwarmStore.encode(retained), SwarmStore.encode(downEngines)] {
            for byte in part + [0] {
                hash ^= UInt64(byte)
                hash &*= 0x0000_0100_0000_01b3
            }
        }
        return hash
    }
}

/// A node waits for its work to change: the manager answers once its
/// digest differs from `digest` at an index not below `index`, or after
/// `holdNanoseconds` (bounded by the manager) with the same work.
struct WorkWatch: Codable, Sendable {
    var digest: UInt64?
    /// The store index of the work the node holds.
    var index: UInt64?
    /// As in `Heartbeat`.
    var definitionsRevision: UInt64?
    var holdNanoseconds: Int64
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

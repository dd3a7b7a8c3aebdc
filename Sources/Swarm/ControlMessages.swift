import Cluster
import Foundation

// What nodes and managers say to each other on the manager endpoint (TCP
// 2377, TLS). JSON bodies, bounded by the server's limits.
//
//   GET  /swarmnet/ca         the root CA certificate (no client certificate needed)
//   POST /swarmnet/join       JoinRequest → JoinResponse (join token instead of a certificate)
//   POST /swarmnet/heartbeat  Heartbeat → HeartbeatResponse (a node's certificate)
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
}

struct HeartbeatResponse: Codable, Sendable {
    /// Nanoseconds until the next heartbeat is due.
    var periodNanoseconds: Int64
    var managers: [String]
    var gossipKeys: [String]
}

/// A follower's answer to a heartbeat: the leader takes them.
struct NotLeader: Codable, Sendable {
    var leader: String?
}

struct ErrorBody: Codable, Sendable {
    var message: String
}

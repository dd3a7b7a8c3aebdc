import Cluster
import FoundationEssentials

/// What a node keeps of its swarm membership on its own disk
/// (`STATE/swarm/state.json`), beside its certificates: enough to rejoin
/// the swarm it knew after a restart, without a join token.
struct LocalSwarmState: Codable, Sendable, Equatable {
    var nodeID: String
    var clusterID: String
    var role: SwarmRole
    /// Where the manager endpoint listens (managers): HOST:PORT.
    var listenHost: String
    var listenPort: Int
    /// The address other nodes reach this one at.
    var advertiseAddress: String
    /// Managers' endpoints, as last heard (HOST:PORT).
    var managers: [String]
    /// Managers: this member's Raft ID, and the members it started with.
    var raftID: UInt64?
    var raftPeers: [RaftPeer]?
    /// The swarm's gossip keys, as last heard (the first encrypts).
    var gossipKeys: [String] = []

    var endpoint: String { "\(advertiseAddress):\(listenPort)" }
    var raftPort: Int { listenPort + 1 }
    var raftAddress: String { "\(advertiseAddress):\(raftPort)" }

    static func load(directory: String) throws -> LocalSwarmState? {
        let path = directory + "/state.json"
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(LocalSwarmState.self, from: data)
        } catch {
            throw SwarmRuntimeError("the swarm state \(path) is damaged (\(error)); remove \(directory) to leave the swarm")
        }
    }

    func save(directory: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try encoder.encode(self).write(to: URL(fileURLWithPath: directory + "/state.json"), options: .atomic)
    }
}

/// A failure of the runtime around the control role (files, ports,
/// another node's answer), with what went wrong.
struct SwarmRuntimeError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

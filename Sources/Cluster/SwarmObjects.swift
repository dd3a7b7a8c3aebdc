import FoundationEssentials

// The swarm's own objects, as the managers keep them in the replicated
// store (collections `swarm` and `nodes`). JSON-encoded; the store's
// object version is their Docker `Version.Index`.

/// The swarm: its identity, settings, root CA and join tokens. One object,
/// key `SwarmObject.key`.
public struct SwarmObject: Codable, Sendable, Equatable {
    public static let collection = "swarm"
    public static let key = "cluster"

    public var id: String
    public var createdAt: Date
    public var updatedAt: Date
    public var settings: SwarmSettings
    public var rootCACertificatePEM: String
    /// The CA's private key: the managers sign node certificates with it.
    public var rootCAKeyPEM: String
    public var workerToken: String
    public var managerToken: String
    public var defaultAddressPool: [String]
    public var subnetSize: UInt32
    public var dataPathPort: UInt32
    /// AES-256 gossip keys (base64), the first one encrypting: gossip is
    /// always encrypted in a swarm, and nodes get the keys over their TLS
    /// session (join, heartbeats).
    public var gossipKeys: [String]
    /// Where the rotation of `gossipKeys` stands.
    public var gossipKeyRotation: GossipKeyRotation

    public init(id: String, createdAt: Date, settings: SwarmSettings, rootCACertificatePEM: String, rootCAKeyPEM: String,
                workerToken: String, managerToken: String, defaultAddressPool: [String], subnetSize: UInt32, dataPathPort: UInt32,
                gossipKeys: [String]) {
        self.gossipKeys = gossipKeys
        gossipKeyRotation = GossipKeyRotation(step: .stable, since: createdAt)
        self.id = id
        self.createdAt = createdAt
        updatedAt = createdAt
        self.settings = settings
        self.rootCACertificatePEM = rootCACertificatePEM
        self.rootCAKeyPEM = rootCAKeyPEM
        self.workerToken = workerToken
        self.managerToken = managerToken
        self.defaultAddressPool = defaultAddressPool
        self.subnetSize = subnetSize
        self.dataPathPort = dataPathPort
    }
}

/// The step a gossip key rotation is at (see `GossipKeySchedule`), and
/// since when.
public struct GossipKeyRotation: Codable, Sendable, Equatable {
    public enum Step: String, Codable, Sendable {
        /// One key.
        case stable
        /// A new key is installed second: every node opens it, none seals with it yet.
        case installed
        /// The new key seals; the old one still opens.
        case using
    }

    public var step: Step
    public var since: Date

    public init(step: Step, since: Date) {
        self.step = step
        self.since = since
    }
}

/// What `docker swarm update` changes.
public struct SwarmSettings: Codable, Sendable, Equatable {
    public var name = "default"
    public var labels: [String: String] = [:]
    public var taskHistoryLimit: Int64 = 5
    /// How often each node reports to the managers; a node that misses
    /// `SwarmSettings.missedHeartbeats` periods is marked down. Docker's
    /// default is 5 s (a dead node is down after about 15 s); ours is
    /// 750 ms, so a dead node is down within 3 s (`docker swarm update
    /// --dispatcher-heartbeat` changes it).
    public var heartbeatPeriod: Duration = .milliseconds(750)
    public var nodeCertificateValidity: Duration = .seconds(90 * 24 * 3600)
    public var snapshotInterval: UInt64 = 10_000
    public var electionTick = 10
    public var heartbeatTick = 1

    /// Periods a node may miss before it is marked down.
    public static let missedHeartbeats = 3

    public init() {}
}

public enum NodeAvailability: String, Codable, Sendable, CaseIterable {
    case active, pause, drain
}

public enum NodeState: String, Codable, Sendable {
    case unknown, down, ready, disconnected
}

/// A member of the swarm. Key: its node ID (CN of its certificate).
public struct SwarmNode: Codable, Sendable, Equatable {
    public static let collection = "nodes"

    public var id: String
    public var createdAt: Date
    public var updatedAt: Date
    /// Set by operators (`docker node update`): the role they want, the
    /// availability, labels.
    public var desiredRole: SwarmRole
    public var availability: NodeAvailability
    public var labels: [String: String]
    public var name: String?
    /// The role the node's certificate carries now.
    public var role: SwarmRole
    public var description: Description
    public var state: NodeState
    public var stateMessage: String?
    /// The address the node reaches the managers from (its advertise
    /// address).
    public var address: String
    /// Managers: where the manager endpoint and Raft listen, and the Raft
    /// member ID.
    public var manager: ManagerInfo?
    /// The node's daemon identity: what its endpoint records name as their
    /// node.
    public var engineID: String?

    public struct Description: Codable, Sendable, Equatable {
        public var hostname: String
        public var os: String
        public var architecture: String
        public var nanoCPUs: Int64
        public var memoryBytes: Int64
        public var engineVersion: String

        public init(hostname: String, os: String, architecture: String, nanoCPUs: Int64, memoryBytes: Int64, engineVersion: String) {
            self.hostname = hostname
            self.os = os
            self.architecture = architecture
            self.nanoCPUs = nanoCPUs
            self.memoryBytes = memoryBytes
            self.engineVersion = engineVersion
        }
    }

    public struct ManagerInfo: Codable, Sendable, Equatable {
        /// HOST:PORT of the manager endpoint (2377).
        public var endpoint: String
        /// HOST:PORT of Raft.
        public var raftAddress: String
        public var raftID: UInt64

        public init(endpoint: String, raftAddress: String, raftID: UInt64) {
            self.endpoint = endpoint
            self.raftAddress = raftAddress
            self.raftID = raftID
        }
    }

    public init(id: String, createdAt: Date, role: SwarmRole, description: Description, address: String, manager: ManagerInfo?) {
        self.id = id
        self.createdAt = createdAt
        updatedAt = createdAt
        desiredRole = role
        availability = .active
        labels = [:]
        self.role = role
        self.description = description
        state = .ready
        self.address = address
        self.manager = manager
    }
}

/// Mirrors `NodeRole` of the identity layer; kept here so that the object
/// model needs no certificate library.
public enum SwarmRole: String, Codable, Sendable, CaseIterable {
    case manager, worker
}

/// A node removed with `docker node rm`: its certificate is refused from
/// then on, though it has not expired. Key: the node ID.
public struct RemovedNode: Codable, Sendable, Equatable {
    public static let collection = "removed-nodes"

    public var id: String
    public var removedAt: Date
    /// Its daemon's identity: the allocations it held are released.
    public var engineID: String?

    public init(id: String, removedAt: Date, engineID: String?) {
        self.id = id
        self.removedAt = removedAt
        self.engineID = engineID
    }
}

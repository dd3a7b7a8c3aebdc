import FoundationEssentials

// The Docker Engine API's swarm objects, as the stock CLI sends and reads
// them (`docker swarm …`, `docker node …`, the Swarm part of `docker info`).
// Times are Docker's RFC 3339 strings; durations are nanoseconds.

/// `POST /swarm/init`.
public struct SwarmInitRequest: Codable, Sendable {
    public var listenAddr: String?
    public var advertiseAddr: String?
    public var dataPathAddr: String?
    public var dataPathPort: UInt32?
    public var forceNewCluster: Bool?
    public var spec: SwarmSpec?
    public var defaultAddrPool: [String]?
    public var subnetSize: UInt32?

    public init(listenAddr: String? = nil, advertiseAddr: String? = nil) {
        self.listenAddr = listenAddr
        self.advertiseAddr = advertiseAddr
    }

    enum CodingKeys: String, CodingKey {
        case listenAddr = "ListenAddr", advertiseAddr = "AdvertiseAddr", dataPathAddr = "DataPathAddr", dataPathPort = "DataPathPort"
        case forceNewCluster = "ForceNewCluster", spec = "Spec", defaultAddrPool = "DefaultAddrPool", subnetSize = "SubnetSize"
    }
}

/// `POST /swarm/join`.
public struct SwarmJoinRequest: Codable, Sendable {
    public var listenAddr: String?
    public var advertiseAddr: String?
    public var dataPathAddr: String?
    public var remoteAddrs: [String]?
    public var joinToken: String?
    public var availability: String?

    public init(remoteAddrs: [String], joinToken: String) {
        self.remoteAddrs = remoteAddrs
        self.joinToken = joinToken
    }

    enum CodingKeys: String, CodingKey {
        case listenAddr = "ListenAddr", advertiseAddr = "AdvertiseAddr", dataPathAddr = "DataPathAddr", remoteAddrs = "RemoteAddrs"
        case joinToken = "JoinToken", availability = "Availability"
    }
}

/// The swarm's settings (`docker swarm update` edits them).
public struct SwarmSpec: Codable, Sendable, Equatable {
    public var name: String?
    public var labels: [String: String]?
    public var orchestration: Orchestration?
    public var raft: RaftConfig?
    public var dispatcher: DispatcherConfig?
    public var caConfig: CAConfig?
    public var taskDefaults: [String: String]?
    public var encryptionConfig: EncryptionConfig?

    public init() {}

    public struct Orchestration: Codable, Sendable, Equatable {
        public var taskHistoryRetentionLimit: Int64?
        public init(taskHistoryRetentionLimit: Int64?) { self.taskHistoryRetentionLimit = taskHistoryRetentionLimit }
        enum CodingKeys: String, CodingKey { case taskHistoryRetentionLimit = "TaskHistoryRetentionLimit" }
    }

    public struct RaftConfig: Codable, Sendable, Equatable {
        public var snapshotInterval: UInt64?
        public var keepOldSnapshots: UInt64?
        public var logEntriesForSlowFollowers: UInt64?
        public var electionTick: Int?
        public var heartbeatTick: Int?
        public init(snapshotInterval: UInt64?, keepOldSnapshots: UInt64?, logEntriesForSlowFollowers: UInt64?, electionTick: Int?, heartbeatTick: Int?) {
            self.snapshotInterval = snapshotInterval
            self.keepOldSnapshots = keepOldSnapshots
            self.logEntriesForSlowFollowers = logEntriesForSlowFollowers
            self.electionTick = electionTick
            self.heartbeatTick = heartbeatTick
        }
        enum CodingKeys: String, CodingKey {
            case snapshotInterval = "SnapshotInterval", keepOldSnapshots = "KeepOldSnapshots"
            case logEntriesForSlowFollowers = "LogEntriesForSlowFollowers", electionTick = "ElectionTick", heartbeatTick = "HeartbeatTick"
        }
    }

    public struct DispatcherConfig: Codable, Sendable, Equatable {
        /// Nanoseconds.
        public var heartbeatPeriod: Int64?
        public init(heartbeatPeriod: Int64?) { self.heartbeatPeriod = heartbeatPeriod }
        enum CodingKeys: String, CodingKey { case heartbeatPeriod = "HeartbeatPeriod" }
    }

    public struct CAConfig: Codable, Sendable, Equatable {
        /// Nanoseconds.
        public var nodeCertExpiry: Int64?
        public init(nodeCertExpiry: Int64?) { self.nodeCertExpiry = nodeCertExpiry }
        enum CodingKeys: String, CodingKey { case nodeCertExpiry = "NodeCertExpiry" }
    }

    public struct EncryptionConfig: Codable, Sendable, Equatable {
        public var autoLockManagers: Bool?
        public init(autoLockManagers: Bool?) { self.autoLockManagers = autoLockManagers }
        enum CodingKeys: String, CodingKey { case autoLockManagers = "AutoLockManagers" }
    }

    enum CodingKeys: String, CodingKey {
        case name = "Name", labels = "Labels", orchestration = "Orchestration", raft = "Raft", dispatcher = "Dispatcher"
        case caConfig = "CAConfig", taskDefaults = "TaskDefaults", encryptionConfig = "EncryptionConfig"
    }
}

public struct ObjectVersion: Codable, Sendable, Equatable {
    public var index: UInt64
    public init(index: UInt64) { self.index = index }
    enum CodingKeys: String, CodingKey { case index = "Index" }
}

public struct JoinTokens: Codable, Sendable {
    public var worker: String
    public var manager: String
    public init(worker: String, manager: String) {
        self.worker = worker
        self.manager = manager
    }
    enum CodingKeys: String, CodingKey { case worker = "Worker", manager = "Manager" }
}

public struct TLSInfo: Codable, Sendable {
    public var trustRoot: String
    public var certIssuerSubject: String
    public var certIssuerPublicKey: String
    public init(trustRoot: String, certIssuerSubject: String, certIssuerPublicKey: String) {
        self.trustRoot = trustRoot
        self.certIssuerSubject = certIssuerSubject
        self.certIssuerPublicKey = certIssuerPublicKey
    }
    enum CodingKeys: String, CodingKey {
        case trustRoot = "TrustRoot", certIssuerSubject = "CertIssuerSubject", certIssuerPublicKey = "CertIssuerPublicKey"
    }
}

/// `GET /swarm` (with the join tokens) and the `Cluster` of `docker info`
/// (without them).
public struct SwarmResource: Codable, Sendable {
    public var id: String
    public var version: ObjectVersion
    public var createdAt: String
    public var updatedAt: String
    public var spec: SwarmSpec
    public var tlsInfo: TLSInfo
    public var rootRotationInProgress: Bool
    public var defaultAddrPool: [String]
    public var subnetSize: UInt32
    public var dataPathPort: UInt32
    public var joinTokens: JoinTokens?

    public init(id: String, version: ObjectVersion, createdAt: String, updatedAt: String, spec: SwarmSpec, tlsInfo: TLSInfo,
                defaultAddrPool: [String], subnetSize: UInt32, dataPathPort: UInt32, joinTokens: JoinTokens?) {
        self.id = id
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.spec = spec
        self.tlsInfo = tlsInfo
        rootRotationInProgress = false
        self.defaultAddrPool = defaultAddrPool
        self.subnetSize = subnetSize
        self.dataPathPort = dataPathPort
        self.joinTokens = joinTokens
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID", version = "Version", createdAt = "CreatedAt", updatedAt = "UpdatedAt", spec = "Spec", tlsInfo = "TLSInfo"
        case rootRotationInProgress = "RootRotationInProgress", defaultAddrPool = "DefaultAddrPool", subnetSize = "SubnetSize"
        case dataPathPort = "DataPathPort", joinTokens = "JoinTokens"
    }
}

/// `POST /swarm/update`'s query.
public struct SwarmUpdateFlags: Sendable {
    public var version: UInt64
    public var rotateWorkerToken: Bool
    public var rotateManagerToken: Bool
    public init(version: UInt64, rotateWorkerToken: Bool, rotateManagerToken: Bool) {
        self.version = version
        self.rotateWorkerToken = rotateWorkerToken
        self.rotateManagerToken = rotateManagerToken
    }
}

/// What a node's operator sets (`docker node update`).
public struct NodeSpec: Codable, Sendable, Equatable {
    public var name: String?
    public var labels: [String: String]?
    public var role: String
    public var availability: String

    public init(name: String? = nil, labels: [String: String]? = nil, role: String, availability: String) {
        self.name = name
        self.labels = labels
        self.role = role
        self.availability = availability
    }

    enum CodingKeys: String, CodingKey { case name = "Name", labels = "Labels", role = "Role", availability = "Availability" }
}

public struct NodeDescription: Codable, Sendable {
    public var hostname: String
    public var platform: Platform
    public var resources: Resources
    public var engine: Engine
    public var tlsInfo: TLSInfo?

    public struct Platform: Codable, Sendable {
        public var architecture: String
        public var os: String
        public init(architecture: String, os: String) {
            self.architecture = architecture
            self.os = os
        }
        enum CodingKeys: String, CodingKey { case architecture = "Architecture", os = "OS" }
    }

    public struct Resources: Codable, Sendable {
        public var nanoCPUs: Int64
        public var memoryBytes: Int64
        public init(nanoCPUs: Int64, memoryBytes: Int64) {
            self.nanoCPUs = nanoCPUs
            self.memoryBytes = memoryBytes
        }
        enum CodingKeys: String, CodingKey { case nanoCPUs = "NanoCPUs", memoryBytes = "MemoryBytes" }
    }

    public struct Engine: Codable, Sendable {
        public var engineVersion: String
        public init(engineVersion: String) { self.engineVersion = engineVersion }
        enum CodingKeys: String, CodingKey { case engineVersion = "EngineVersion" }
    }

    public init(hostname: String, platform: Platform, resources: Resources, engine: Engine, tlsInfo: TLSInfo?) {
        self.hostname = hostname
        self.platform = platform
        self.resources = resources
        self.engine = engine
        self.tlsInfo = tlsInfo
    }

    enum CodingKeys: String, CodingKey {
        case hostname = "Hostname", platform = "Platform", resources = "Resources", engine = "Engine", tlsInfo = "TLSInfo"
    }
}

public struct NodeStatus: Codable, Sendable {
    public var state: String
    public var message: String?
    public var addr: String
    public init(state: String, message: String?, addr: String) {
        self.state = state
        self.message = message
        self.addr = addr
    }
    enum CodingKeys: String, CodingKey { case state = "State", message = "Message", addr = "Addr" }
}

public struct ManagerStatus: Codable, Sendable {
    public var leader: Bool
    public var reachability: String
    public var addr: String
    public init(leader: Bool, reachability: String, addr: String) {
        self.leader = leader
        self.reachability = reachability
        self.addr = addr
    }
    enum CodingKeys: String, CodingKey { case leader = "Leader", reachability = "Reachability", addr = "Addr" }
}

/// `GET /nodes` and `GET /nodes/{id}`.
public struct NodeResource: Codable, Sendable {
    public var id: String
    public var version: ObjectVersion
    public var createdAt: String
    public var updatedAt: String
    public var spec: NodeSpec
    public var description: NodeDescription
    public var status: NodeStatus
    public var managerStatus: ManagerStatus?

    public init(id: String, version: ObjectVersion, createdAt: String, updatedAt: String, spec: NodeSpec, description: NodeDescription,
                status: NodeStatus, managerStatus: ManagerStatus?) {
        self.id = id
        self.version = version
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.spec = spec
        self.description = description
        self.status = status
        self.managerStatus = managerStatus
    }

    enum CodingKeys: String, CodingKey {
        case id = "ID", version = "Version", createdAt = "CreatedAt", updatedAt = "UpdatedAt", spec = "Spec"
        case description = "Description", status = "Status", managerStatus = "ManagerStatus"
    }
}

/// A manager as `docker info` lists it.
public struct RemoteManager: Codable, Sendable {
    public var nodeID: String
    public var addr: String
    public init(nodeID: String, addr: String) {
        self.nodeID = nodeID
        self.addr = addr
    }
    enum CodingKeys: String, CodingKey { case nodeID = "NodeID", addr = "Addr" }
}


/// What the daemon provides behind `/swarm` and `/nodes`.
public protocol SwarmBackend: Sendable {
    /// The Swarm part of `GET /info`.
    func swarmInfo() async -> SwarmInfo
    func initialize(_ request: SwarmInitRequest) async throws -> String
    func join(_ request: SwarmJoinRequest) async throws
    func leave(force: Bool) async throws
    func inspectSwarm() async throws -> SwarmResource
    func updateSwarm(_ spec: SwarmSpec, _ flags: SwarmUpdateFlags) async throws
    func listNodes(filters: [String: [String]]) async throws -> [NodeResource]
    func inspectNode(_ reference: String) async throws -> NodeResource
    func updateNode(_ reference: String, version: UInt64, _ spec: NodeSpec) async throws
    func removeNode(_ reference: String, force: Bool) async throws
    /// This manager's Raft member as `swarmnet debug raft` shows it (JSON).
    func debugRaft() async throws -> [UInt8]
}

import FoundationEssentials

// swarmnet's own debugging endpoints, beside the Docker API paths:
//   GET /swarmnet/debug/overlay/{network}   desired peers beside the kernel's entries
//   GET /swarmnet/debug/peers               the nodes this node knows
//   GET /swarmnet/debug/table/{network}/{table}   a gossip table as this node holds it
//   GET /swarmnet/debug/lb[?service=NAME]   desired balancer entries beside the kernel's
//   GET /swarmnet/debug/dns/{name}[?container=NS]   what the embedded DNS answers
//   GET /swarmnet/gossip/keys, POST /swarmnet/gossip/keys   the gossip keyring (rotation)

/// One remote endpoint as this host should program it, and what the kernel has.
public struct OverlayPeerStatus: Codable, Sendable, Equatable {
    public var address: String?
    public var mac: String
    /// The VTEP the endpoint lives behind, per the cluster (nil: not desired).
    public var desiredVTEP: String?
    /// The FDB entry's destination on vxlan0 (nil: missing).
    public var fdbVTEP: String?
    /// The neighbour entry's MAC for the address (nil: missing).
    public var neighbourMAC: String?
    /// "ok", "missing", "wrong" or "extra".
    public var status: String

    public init(address: String?, mac: String, desiredVTEP: String?, fdbVTEP: String?, neighbourMAC: String?, status: String) {
        self.address = address
        self.mac = mac
        self.desiredVTEP = desiredVTEP
        self.fdbVTEP = fdbVTEP
        self.neighbourMAC = neighbourMAC
        self.status = status
    }
}

/// `swarmnet debug overlay NETWORK` for one host.
public struct OverlayDebugReport: Codable, Sendable {
    public var node: String
    public var dataPathAddress: String
    public var network: String
    public var networkID: String
    public var vni: UInt32
    public var sandbox: String
    public var sandboxExists: Bool
    public var localEndpoints: [String]
    public var peers: [OverlayPeerStatus]

    public init(node: String, dataPathAddress: String, network: String, networkID: String, vni: UInt32, sandbox: String,
                sandboxExists: Bool, localEndpoints: [String], peers: [OverlayPeerStatus]) {
        self.node = node
        self.dataPathAddress = dataPathAddress
        self.network = network
        self.networkID = networkID
        self.vni = vni
        self.sandbox = sandbox
        self.sandboxExists = sandboxExists
        self.localEndpoints = localEndpoints
        self.peers = peers
    }
}

/// A node as this node's membership layer sees it.
public struct PeerNode: Codable, Sendable {
    public var name: String
    public var address: String
    public var state: String
    public var incarnation: UInt64?
    public var networks: [String]

    public init(name: String, address: String, state: String, incarnation: UInt64?, networks: [String]) {
        self.name = name
        self.address = address
        self.state = state
        self.incarnation = incarnation
        self.networks = networks
    }
}

/// One gossip table entry as this node holds it.
public struct TableEntryView: Codable, Sendable {
    public var key: String
    public var owner: String
    public var lamportTime: UInt64
    /// False while the owner is failed (suspended) or for a tombstone.
    public var visible: Bool
    public var deleting: Bool
    public var value: String?

    public init(key: String, owner: String, lamportTime: UInt64, visible: Bool, deleting: Bool, value: String?) {
        self.key = key
        self.owner = owner
        self.lamportTime = lamportTime
        self.visible = visible
        self.deleting = deleting
        self.value = value
    }
}

/// One balanced service in one table: desired backends beside the kernel's.
public struct BalancerEntryStatus: Codable, Sendable, Equatable {
    /// "TCP 10.0.1.2:0" (port 0: every port) or "TCP 0.0.0.0:8080" (a published port).
    public var service: String
    /// Backends "ADDRESS:PORT weight W" as desired and as the kernel holds them.
    public var desired: [String]?
    public var kernel: [String]?
    /// "ok", "missing", "wrong" or "extra".
    public var status: String

    public init(service: String, desired: [String]?, kernel: [String]?, status: String) {
        self.service = service
        self.desired = desired
        self.kernel = kernel
        self.status = status
    }
}

/// One balancer table on this host (a workload's VIPs, or the mesh's ports).
public struct BalancerTableReport: Codable, Sendable {
    public var node: String
    /// "nftables ip swarmnet", ...
    public var backend: String
    public var table: String
    /// The namespace the table lives in (a path; the daemon's own for the mesh).
    public var namespace: String
    public var error: String?
    public var entries: [BalancerEntryStatus]

    public init(node: String, backend: String, table: String, namespace: String, error: String?, entries: [BalancerEntryStatus]) {
        self.node = node
        self.backend = backend
        self.table = table
        self.namespace = namespace
        self.error = error
        self.entries = entries
    }
}

/// `swarmnet debug dns NAME`: what the embedded servers of this host's
/// workloads answer for a name.
public struct DNSDebugReport: Codable, Sendable {
    public struct Answer: Codable, Sendable {
        /// The workload namespace (path) whose server answers.
        public var workload: String
        public var network: String
        public var mode: String
        public var addresses: [String]
        /// Whether the workload's server is running.
        public var serving: Bool

        public init(workload: String, network: String, mode: String, addresses: [String], serving: Bool) {
            self.workload = workload
            self.network = network
            self.mode = mode
            self.addresses = addresses
            self.serving = serving
        }
    }

    public var node: String
    public var name: String
    public var answers: [Answer]
    /// Where other names are forwarded.
    public var upstreams: [String]

    public init(node: String, name: String, answers: [Answer], upstreams: [String]) {
        self.node = node
        self.name = name
        self.answers = answers
        self.upstreams = upstreams
    }
}

/// One key of the gossip keyring, by fingerprint (a key is never shown).
public struct GossipKeyView: Codable, Sendable, Equatable {
    public var fingerprint: String
    /// The key this node encrypts with; the others only decrypt.
    public var primary: Bool

    public init(fingerprint: String, primary: Bool) {
        self.fingerprint = fingerprint
        self.primary = primary
    }
}

/// What the daemon provides for swarmnet's debugging endpoints.
public protocol SwarmnetDebugBackend: Sendable {
    func debugOverlay(network: String) async throws -> OverlayDebugReport
    func debugPeers() async throws -> [PeerNode]
    func debugTable(network: String, table: String) async throws -> [TableEntryView]
    func debugLoadBalancers(service: String?) async throws -> [BalancerTableReport]
    func debugDNS(name: String, container: String?) async throws -> DNSDebugReport
    func gossipKeys() async throws -> [GossipKeyView]
}

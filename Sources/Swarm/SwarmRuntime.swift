import Addressing
import Cluster
import Control
import Crypto
import DockerAPI
import FoundationEssentials
import Glibc
import GossipRuntime
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Raft
import RaftRuntime
import RaftTransport
import ReplicatedStore
import Synchronization
import SwarmIdentity
import X509

/// This node's part in a swarm: nothing (not in a swarm), a worker, or a
/// manager. A manager runs a Raft member holding the swarm's objects, the
/// manager endpoint (TCP 2377, TLS) that nodes join through and send their
/// heartbeats to, and, while it leads, the dispatcher's liveness checks.
/// Every node sends heartbeats to the managers over mutual TLS.
///
/// Requests are checked by `Control`'s pure rules and written as one store
/// operation each; this actor does the I/O around them.
public actor SwarmRuntime {
    public struct Configuration: Sendable {
        /// `STATE/swarm`: certificates, Raft's log, the local state.
        public var directory: String
        public var hostname: String
        /// The default advertise address: the node's data-path address.
        public var defaultAddress: String
        public var engineVersion: String
        public var defaultPort = 2377
        /// Raft's timings (tests and benchmarks may shorten them).
        public var raftOptions = RaftServer.Options()
        /// How often the leader rotates the swarm's gossip key (Swarm
        /// rotates its network keys every 12 hours).
        public var gossipKeyRotation: Duration = .seconds(12 * 3600)
        /// The daemon's own identity (the node its endpoint records name).
        public var engineID: String
        /// Told what the data plane needs whenever it changes: the gossip
        /// keys and the managers' addresses (nil: the node left the swarm).
        public var onNetworking: @Sendable (SwarmNetworking?) async -> Void = { _ in }
        /// Told the cluster's definitions (networks, services' VIPs and
        /// ports) whenever their revision moves: on managers from the
        /// store (the changed records), on workers from the leader's
        /// heartbeat answers (all of them). False when the daemon cannot
        /// take a change (it is not at the change's base): it is then
        /// handed all of them.
        public var onClusterDefinitions: @Sendable (DefinitionsUpdate) async -> Bool = { _ in true }
        /// The daemon's networks and allocations from before the swarm:
        /// `swarm init` makes them the swarm's first ones.
        public var localClusterState: @Sendable () async -> ClusterState = { ClusterState() }
        /// This host's routes, which a network's subnet may not overlap
        /// (the ingress network made for a service's published port).
        public var hostRoutes: @Sendable () async throws -> [IPPrefix] = { [] }
        /// The first IPv4 address of a network interface (`--advertise-addr
        /// eth0`, `--listen-addr eth0:2377`), nil if it has none.
        public var interfaceAddress: @Sendable (String) -> String? = { _ in nil }
        /// Told the engine IDs of the nodes the managers marked down, when
        /// they change: their endpoints leave the balancers and DNS at once.
        public var onDownNodes: @Sendable (Set<String>) async -> Void = { _ in }
        /// Runs the tasks the dispatcher assigns to this node.
        public var taskAgent: (any TaskAgent)?
        /// The daemon's view of services and networks, for the network
        /// side of a service's JSON (its VIPs, ports and backends).
        public var networkSide: (any DockerBackend)?

        public init(directory: String, hostname: String, defaultAddress: String, engineVersion: String, engineID: String) {
            self.directory = directory
            self.hostname = hostname
            self.defaultAddress = defaultAddress
            self.engineVersion = engineVersion
            self.engineID = engineID
        }
    }

    /// What the data plane takes from the swarm.
    public struct SwarmNetworking: Sendable, Equatable {
        public var isManager: Bool
        public var gossipKeys: [String]
        /// The managers' addresses (hosts only): gossip joins through them.
        public var managerHosts: [String]
    }

    /// A node in a swarm.
    struct Membership {
        var local: LocalSwarmState
        var identity: NodeIdentity
        /// Managers only.
        var raft: RaftServer?
        var tasks: [Task<Void, Never>] = []
        var store: SwarmStore? { raft.map(SwarmStore.init) }
        /// The dispatcher's word this node has taken.
        var work = HeldWork()
        /// The manager that answered the last heartbeat (the leader): the
        /// work watch waits on it.
        var dispatcher: String?
    }

    let configuration: Configuration
    let logger: Logger
    var membership: Membership?
    /// Why this node left its swarm without being asked (removed), shown
    /// as the Error of `docker info` until it joins again.
    var lastError = ""
    /// The manager endpoint's server, while this node is a manager.
    var endpointTask: Task<Void, Never>?
    /// The leader's duties, while this node is a manager.
    var leaderTask: Task<Void, Never>?
    /// The managers and settings heartbeats carry (`managerView`).
    var managerViewCache: ManagerView?
    /// The digests of nodes' work, at the index they were read at.
    var workDigests: (index: UInt64, byNode: [String: UInt64]) = (0, [:])
    /// Work from a heartbeat or the watch, waiting to be applied in order.
    var pendingWork: NodeWork?
    var applyingWork = false
    var workApplied: [CheckedContinuation<Void, Never>] = []
    /// The allocations decoded from the store, refreshed per revision
    /// (`clusterState`).
    var decodedAllocations = DecodedAllocations()
    /// The allocation revision last handed to the daemon.
    var definitionsPublished: UInt64?
    /// Endpoint changes waiting for the next transaction, and whether one
    /// is being written (`batched`).
    var endpointChanges: [EndpointChange] = []
    var writingEndpointChanges = false
    /// Raft's TLS contexts (a renewed certificate replaces them).
    let raftTLS = RaftTLS()
    /// A join or init in progress: a second one is refused.
    var changing = false
    /// The leader's table of node heartbeats.
    var liveness = NodeLiveness(period: SwarmSettings().heartbeatPeriod, missed: SwarmSettings.missedHeartbeats)
    var leading = false
    /// The store index of the last orchestration pass that changed nothing,
    /// and when it ran.
    var idleOrchestration: (index: UInt64, at: ContinuousClock.Instant)?
    /// On the leader: log requests waiting for their node's next heartbeat,
    /// and the callers waiting for the answers (by request ID).
    var pendingLogRequests: [String: [LogRequest]] = [:]
    var logWaiters: [String: (node: String, continuation: CheckedContinuation<[LogEntry], Never>)] = [:]
    /// The heartbeat loop's wait, which a task change cuts short.
    var heartbeatWait: CheckedContinuation<Void, Never>?
    var heartbeatRequested = false
    /// Heartbeats sent, and the number of the last one answered (a worker
    /// waits for an answer to a heartbeat sent after its question).
    var heartbeatsSent: UInt64 = 0
    var heartbeatAnswered: UInt64 = 0
    /// Monotonic time for liveness, from this origin.
    let origin = ContinuousClock.now
    var now: Duration { origin.duration(to: .now) }
    /// What the Raft port's TLS checks (the store of this manager).
    let raftAuthority = RaftAuthority()

    public init(configuration: Configuration, logger: Logger) {
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "component"] = "swarm"
        self.logger = logger
    }

    var identityDirectory: String { configuration.directory + "/certificates" }
    var raftDirectory: String { configuration.directory + "/raft" }

    // MARK: - Start, init, join, leave

    /// Resumes the swarm this node was in before it restarted.
    public func start() async throws {
        guard let local = try LocalSwarmState.load(directory: configuration.directory) else { return }
        guard let identity = try NodeIdentity.load(directory: identityDirectory) else {
            throw SwarmRuntimeError("\(configuration.directory) has a swarm state but no certificates; remove it to leave the swarm")
        }
        var membership = Membership(local: local, identity: identity)
        if local.role == .manager {
            membership.raft = try await startRaft(local: local, identity: identity, joinExisting: true)
            try await startEndpoint(local: local, identity: identity)
        }
        self.membership = membership
        startLoops()
        await notifyNetworking()
        logger.info("rejoined the swarm", metadata: ["node": "\(local.nodeID)", "role": "\(local.role)", "cluster": "\(local.clusterID)"])
    }

    /// Whether this node is in a swarm.
    public var isInSwarm: Bool { membership != nil }

    /// Stops everything (the daemon is stopping); the membership stays on disk.
    public func shutdown() async {
        endpointTask?.cancel()
        endpointTask = nil
        leaderTask?.cancel()
        leaderTask = nil
        managerViewCache = nil
        decodedAllocations = DecodedAllocations()
        definitionsPublished = nil
        guard let membership else { return }
        for task in membership.tasks { task.cancel() }
        await membership.raft?.stop()
        raftAuthority.set(nil)
        self.membership = nil
        leading = false
        liveness.forgetAll()
    }

    public func initialize(_ request: SwarmInitRequest) async throws(ControlError) -> String {
        if request.forceNewCluster == true, membership != nil { return try await forceNewCluster() }
        guard membership == nil, !changing else { throw ControlError.alreadyInSwarm }
        changing = true
        defer { changing = false }
        let (listenHost, listenPort) = try Self.listenAddress(request.listenAddr, defaultPort: configuration.defaultPort, interface: configuration.interfaceAddress)
        let advertise = try Self.advertiseAddress(request.advertiseAddr, default: configuration.defaultAddress, interface: configuration.interfaceAddress)
        let pool = request.defaultAddrPool ?? []
        let subnetSize = request.subnetSize.flatMap { $0 == 0 ? nil : $0 } ?? 24
        guard (16...29).contains(subnetSize) else {
            throw ControlError(.invalidArgument, "invalid subnet size \(subnetSize): it must be between 16 and 29")
        }
        do {
            let now = Date()
            let authority = try CertificateAuthority.create(now: now)
            let clusterID = Identifier.swarm(), nodeID = Identifier.swarm()
            var settings = SwarmSettings()
            if let spec = request.spec { try Self.apply(spec, to: &settings) }
            let (key, csrPEM) = try NodeIdentity.makeRequest()
            let certificate = try authority.issue(
                for: try CertificateSigningRequest(pemEncoded: csrPEM), nodeID: nodeID, role: .manager, clusterID: clusterID,
                validity: settings.nodeCertificateValidity.timeInterval, now: now)
            let identity = try NodeIdentity(key: key, certificate: certificate, rootCA: authority.certificate)
            var local = LocalSwarmState(
                nodeID: nodeID, clusterID: clusterID, role: .manager, listenHost: listenHost, listenPort: listenPort,
                advertiseAddress: advertise, managers: [], raftID: UInt64.random(in: 1...UInt64.max), raftPeers: nil)
            local.managers = [local.endpoint]
            local.raftPeers = [RaftPeer(id: local.raftID!, address: local.raftAddress)]
            let der = authority.certificateDER
            let swarm = SwarmObject(
                id: clusterID, createdAt: now, settings: settings, rootCACertificatePEM: authority.certificatePEM,
                rootCAKeyPEM: authority.keyPEM, workerToken: JoinToken.generate(caCertificateDER: der).description,
                managerToken: JoinToken.generate(caCertificateDER: der).description,
                defaultAddressPool: pool.isEmpty ? ["10.0.0.0/8"] : pool, subnetSize: subnetSize,
                dataPathPort: request.dataPathPort.flatMap { $0 == 0 ? nil : $0 } ?? 4789,
                gossipKeys: [Self.newGossipKey()])
            local.gossipKeys = swarm.gossipKeys
            var node = SwarmNode(
                id: nodeID, createdAt: now, role: .manager, description: describeSelf(), address: advertise,
                manager: .init(endpoint: local.endpoint, raftAddress: local.raftAddress, raftID: local.raftID!))
            node.engineID = configuration.engineID

            try? FileManager.default.removeItem(atPath: configuration.directory)
            try identity.save(directory: identityDirectory)
            let raft = try await startRaft(local: local, identity: identity, joinExisting: false)
            do {
                // The only voter: no reason to wait out an election timeout.
                try await waitForLeader(raft, campaigning: true)
                // The daemon's networks and allocations from before the
                // swarm become the swarm's, in the same transaction.
                let seed = SwarmStore.operations(from: ClusterState(), to: await configuration.localClusterState())
                try await SwarmStore(raft: raft).write(.transaction([
                    .create(collection: SwarmObject.collection, key: SwarmObject.key, value: SwarmStore.encode(swarm)),
                    SwarmStore.create(node),
                    .create(collection: RaftServer.memberAddressCollection, key: String(local.raftID!), value: Array(local.raftAddress.utf8)),
                    .create(collection: AllocationRevision.collection, key: AllocationRevision.key, value: AllocationRevision.value()),
                ] + seed))
                try await startEndpoint(local: local, identity: identity)
                try local.save(directory: configuration.directory)
            } catch {
                await raft.stop()
                try? FileManager.default.removeItem(atPath: configuration.directory)
                throw error
            }
            membership = Membership(local: local, identity: identity, raft: raft)
            lastError = ""
            startLoops()
            await notifyNetworking()
            logger.info("initialized a swarm", metadata: ["cluster": "\(clusterID)", "node": "\(nodeID)", "endpoint": "\(local.endpoint)"])
            return nodeID
        } catch let error as ControlError {
            throw error
        } catch {
            throw ControlError(.unavailable, "swarm init failed: \(error)")
        }
    }

    /// `docker swarm init --force-new-cluster` on a manager: the swarm goes
    /// on with this manager as its only Raft voter, keeping everything the
    /// store held (nodes, networks, tokens, the CA). The other managers stay
    /// listed, unreachable, until they are demoted or removed.
    func forceNewCluster() async throws(ControlError) -> String {
        guard let current = membership, !changing else { throw ControlError.alreadyInSwarm }
        guard let raft = current.raft, let raftID = current.local.raftID else { throw ControlError.notManager }
        changing = true
        defer { changing = false }
        do {
            let (index, data) = raft.store.snapshot()
            let term = await raft.statusReport().term
            await shutdown()
            try RaftServer.forceNewCluster(dataDirectory: raftDirectory, id: raftID, snapshot: data, index: index, term: term)
            var local = current.local
            local.raftPeers = [RaftPeer(id: raftID, address: local.raftAddress)]
            let server = try await startRaft(local: local, identity: current.identity, joinExisting: true)
            try await waitForLeader(server, campaigning: true)
            let store = SwarmStore(raft: server)
            // The old members' addresses go, so nothing dials them any more,
            // and the other managers are workers now (down): if one comes
            // back, it takes a worker's certificate and stops its Raft member.
            let others = server.store.list(RaftServer.memberAddressCollection).filter { $0.key != String(raftID) }
            var changes: [StoreOperation] = others.map {
                .delete(collection: RaftServer.memberAddressCollection, key: $0.key, expectedVersion: $0.version)
            }
            for versioned in store.nodes() where versioned.object.id != local.nodeID && versioned.object.manager != nil {
                var node = versioned.object
                node.role = .worker
                node.desiredRole = .worker
                node.manager = nil
                node.state = .down
                node.stateMessage = "left the Raft group: another manager forced a new cluster"
                node.updatedAt = Date()
                changes.append(SwarmStore.update(node, version: versioned.version))
            }
            if !changes.isEmpty { try await store.write(.transaction(changes)) }
            try await startEndpoint(local: local, identity: current.identity)
            try local.save(directory: configuration.directory)
            membership = Membership(local: local, identity: current.identity, raft: server)
            startLoops()
            await notifyNetworking()
            logger.notice("forced a new cluster: this manager is the only Raft voter", metadata: ["snapshotIndex": "\(index)"])
            return local.nodeID
        } catch let error as ControlError {
            throw error
        } catch {
            throw ControlError(.unavailable, "--force-new-cluster failed: \(error)")
        }
    }

    public func join(_ request: SwarmJoinRequest) async throws(ControlError) {
        guard membership == nil, !changing else { throw ControlError.alreadyInSwarm }
        changing = true
        defer { changing = false }
        let token: JoinToken
        do {
            token = try JoinToken(parsing: request.joinToken ?? "")
        } catch {
            throw ControlError(.invalidArgument, "\(error)")
        }
        guard let remotes = request.remoteAddrs, !remotes.isEmpty else {
            throw ControlError(.invalidArgument, "at least 1 RemoteAddr is required to join")
        }
        let (listenHost, listenPort) = try Self.listenAddress(request.listenAddr, defaultPort: configuration.defaultPort, interface: configuration.interfaceAddress)
        let advertise = try Self.advertiseAddress(request.advertiseAddr, default: configuration.defaultAddress, interface: configuration.interfaceAddress)
        var lastError = ControlError(.unavailable, "no manager answered")
        for remote in remotes {
            let address = remote.contains(":") ? remote : "\(remote):\(configuration.defaultPort)"
            do {
                try await join(through: address, token: token, listenHost: listenHost, listenPort: listenPort, advertise: advertise,
                               availability: request.availability.flatMap(NodeAvailability.init(rawValue:)))
                return
            } catch let error as ControlError {
                lastError = error
                // A refusal is the swarm's answer; only an unreachable manager is worth another try.
                if error.kind != .unavailable { throw error }
            } catch {
                lastError = ControlError(.unavailable, "\(error)")
            }
        }
        throw lastError
    }

    private func join(through manager: String, token: JoinToken, listenHost: String, listenPort: Int, advertise: String,
                      availability: NodeAvailability?) async throws {
        // 1. The manager's CA, taken without trusting anything, is checked
        //    against the token's digest before any secret is sent.
        let anonymous = ControlClient(context: try ControlTLS.clientContext(identity: nil, root: nil))
        let caAnswer = try await anonymous.request(.GET, manager, "/swarmnet/ca")
        guard caAnswer.status == 200, let root = try? Certificate(pemEncoded: String(decoding: caAnswer.body, as: UTF8.self)) else {
            throw ControlError(.unavailable, "\(manager) is not a swarm manager (it answered \(caAnswer.status) for the CA certificate)")
        }
        guard token.matches(caCertificateDER: root.derBytes) else {
            throw ControlError(.invalidArgument, "remote CA does not match fingerprint. Expected: \(token.caDigest)")
        }
        // 2. The token and a CSR, over TLS that verifies the manager
        //    against that CA.
        let (key, csrPEM) = try NodeIdentity.makeRequest()
        let join = JoinRequest(
            token: token.description, csrPEM: csrPEM, description: describeSelf(), address: advertise,
            endpoint: "\(advertise):\(listenPort)", raftAddress: "\(advertise):\(listenPort + 1)", availability: availability,
            engineID: configuration.engineID)
        let verified = ControlClient(context: try ControlTLS.clientContext(identity: nil, root: root), timeout: .seconds(30))
        let answer = try await verified.request(.POST, manager, "/swarmnet/join", body: SwarmStore.encode(join))
        guard answer.status == 200 else { throw Self.remoteError(answer, from: manager) }
        let response = try JSONDecoder().decode(JoinResponse.self, from: Data(answer.body))
        let identity = try NodeIdentity(key: key, certificate: try Certificate(pemEncoded: response.certificatePEM), rootCA: root)
        guard identity.peer.nodeID == response.nodeID, identity.peer.clusterID == response.clusterID else {
            throw ControlError(.unavailable, "manager \(manager) issued a certificate for another node")
        }
        let local = LocalSwarmState(
            nodeID: response.nodeID, clusterID: response.clusterID, role: response.role, listenHost: listenHost, listenPort: listenPort,
            advertiseAddress: advertise, managers: response.managers.isEmpty ? [manager] : response.managers,
            raftID: response.raftID, raftPeers: response.raftPeers, gossipKeys: response.gossipKeys)
        try? FileManager.default.removeItem(atPath: configuration.directory)
        try identity.save(directory: identityDirectory)
        var membership = Membership(local: local, identity: identity)
        do {
            if local.role == .manager {
                let raft = try await startRaft(local: local, identity: identity, joinExisting: true)
                membership.raft = raft
                try await waitForSwarmState(raft)
                try await startEndpoint(local: local, identity: identity)
            }
            try local.save(directory: configuration.directory)
        } catch {
            await membership.raft?.stop()
            try? FileManager.default.removeItem(atPath: configuration.directory)
            throw error
        }
        self.membership = membership
        lastError = ""
        startLoops()
        await notifyNetworking()
        logger.info("joined a swarm", metadata: ["cluster": "\(local.clusterID)", "node": "\(local.nodeID)", "role": "\(local.role)",
                                                 "through": "\(manager)"])
    }

    public func leave(force: Bool) async throws(ControlError) {
        guard let membership, !changing else {
            throw ControlError(.unavailable, "This node is not part of a swarm")
        }
        changing = true
        defer { changing = false }
        if let store = membership.store, let raft = membership.raft {
            let managers = store.nodes().map(\.object).filter { $0.role == .manager }
            try NodeRules.checkLeave(managers: managers, leaving: membership.local.nodeID, force: force)
            if managers.count > 1, let me = store.node(membership.local.nodeID) {
                // The node stays listed (down), as Docker's does, until `node rm`.
                var node = me.object
                node.role = .worker
                node.desiredRole = .worker
                node.manager = nil
                node.state = .down
                node.stateMessage = "left the swarm"
                try? await store.write(SwarmStore.update(node, version: me.version))
                do {
                    try await raft.removeMember(raft.id)
                } catch {
                    logger.warning("could not leave the Raft group cleanly", metadata: ["error": "\(error)"])
                }
            }
        }
        await forgetSwarm()
        logger.info("left the swarm")
    }

    /// Out of the swarm, left or removed: the loops stop, the tasks'
    /// containers go, the swarm's files go, and the data plane leaves it.
    func forgetSwarm() async {
        await shutdown()
        await configuration.taskAgent?.removeAll()
        try? FileManager.default.removeItem(atPath: configuration.directory)
        await configuration.onNetworking(nil)
    }

    // MARK: - Pieces

    /// Tells the data plane the swarm's gossip keys and managers.
    func notifyNetworking() async {
        guard let local = membership?.local else { return }
        let hosts = local.managers.compactMap { $0.split(separator: ":").first.map(String.init) }
        await configuration.onNetworking(SwarmNetworking(isManager: local.role == .manager, gossipKeys: local.gossipKeys, managerHosts: hosts))
    }

    static func newGossipKey() -> String {
        GossipKey.random().base64
    }

    /// A request to a manager endpoint with this node's certificate (a
    /// worker's endpoint allocations, log fetches).
    func managerRequest(_ method: HTTPMethod, _ address: String, _ path: String, body: [UInt8]?) async throws -> (Int, [UInt8]) {
        guard let identity = membership?.identity else { throw ControlError(.unavailable, DockerRouter.notInSwarm) }
        let client = ControlClient(context: try ControlTLS.clientContext(identity: identity, root: identity.rootCA))
        let answer = try await client.request(method, address, path, body: body)
        return (answer.status, answer.body)
    }

    func startRaft(local: LocalSwarmState, identity: NodeIdentity, joinExisting: Bool) async throws -> RaftServer {
        guard let raftID = local.raftID else { throw SwarmRuntimeError("a manager without a Raft ID") }
        var options = configuration.raftOptions
        options.joinExisting = joinExisting
        try raftTLS.update(identity)
        let contexts = raftTLS
        let authority = raftAuthority
        let clusterID = local.clusterID
        let logger = logger
        options.transport.configureSecurity = { channel, isServer in
            let (serverContext, clientContext) = try contexts.current
            if isServer {
                try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext))
            } else {
                try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: clientContext, serverHostname: nil))
            }
            try channel.pipeline.syncOperations.addHandler(PeerAuthorization(
                allow: { peer in authority.refusal(for: peer, clusterID: clusterID) },
                onRefusal: { logger.warning("raft: \($0)") }))
        }
        var peers: [UInt64: PeerAddress] = [:]
        for peer in local.raftPeers ?? [] {
            if let address = try? PeerAddress(parsing: Substring(peer.address)) { peers[peer.id] = address }
        }
        peers[raftID] = PeerAddress(host: local.advertiseAddress, port: local.raftPort)
        try FileManager.default.createDirectory(atPath: raftDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let raft = try RaftServer(id: raftID, peers: peers, dataDirectory: raftDirectory, options: options, logger: logger)
        authority.set(raft)
        do {
            try await raft.start(listenHost: local.listenHost, listenPort: local.raftPort)
        } catch {
            await raft.stop()
            throw SwarmRuntimeError("cannot listen for Raft on \(local.listenHost):\(local.raftPort): \(error)")
        }
        return raft
    }

    /// A new manager serves once it holds the swarm: the leader sends it the
    /// log (or a snapshot) first. Stops the member if that takes too long.
    func waitForSwarmState(_ raft: RaftServer) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while SwarmStore(raft: raft).swarm() == nil {
            guard ContinuousClock.now < deadline else {
                await raft.stop()
                throw ControlError(.unavailable, "this node is a manager now, but the leader did not send the swarm's state within 30 s")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    /// Waits until the group has a leader; `campaigning` asks this member
    /// to stand at once.
    func waitForLeader(_ raft: RaftServer, campaigning: Bool = false) async throws {
        if campaigning { raft.campaign() }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if await raft.leader() != noNode { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ControlError.noLeader
    }

    /// What this node tells the managers about itself.
    nonisolated func describeSelf() -> SwarmNode.Description {
        var name = utsname()
        uname(&name)
        let machine = withUnsafeBytes(of: name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return SwarmNode.Description(
            hostname: configuration.hostname, os: "linux", architecture: machine,
            nanoCPUs: Int64(ProcessInfo.processInfo.activeProcessorCount) * 1_000_000_000,
            memoryBytes: Int64(ProcessInfo.processInfo.physicalMemory), engineVersion: configuration.engineVersion)
    }

    static func remoteError(_ answer: ControlClient.Response, from manager: String) -> ControlError {
        let message = (try? JSONDecoder().decode(ErrorBody.self, from: Data(answer.body)))?.message ?? "status \(answer.status)"
        switch answer.status {
        case 400: return ControlError(.invalidArgument, message)
        case 403: return ControlError(.permissionDenied, message)
        case 404: return ControlError(.notFound, message)
        case 409: return ControlError(.conflict, message)
        case 410: return ControlError(.removed, message)
        default: return ControlError(.unavailable, "manager \(manager): \(message)")
        }
    }

    /// `ListenAddr`: HOST:PORT, HOST or :PORT, where HOST is an IPv4
    /// address or an interface name; the default is 0.0.0.0:2377.
    static func listenAddress(_ text: String?, defaultPort: Int,
                              interface: (String) -> String? = { _ in nil }) throws(ControlError) -> (String, Int) {
        guard let text, !text.isEmpty else { return ("0.0.0.0", defaultPort) }
        var host = text, port = defaultPort
        if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            guard let p = Int(text[text.index(after: colon)...]), (1...65534).contains(p) else {
                throw ControlError(.invalidArgument, "invalid listen address \(text): the port must be a number from 1 to 65534")
            }
            port = p
        }
        if host.isEmpty { host = "0.0.0.0" }
        if !isIPv4(host), isInterfaceName(host), let address = interface(host) { host = address }
        guard isIPv4(host) else {
            throw ControlError(.invalidArgument, "invalid listen address \(text): give an IPv4 address or a network interface that has one")
        }
        return (host, port)
    }

    /// `AdvertiseAddr`: an IPv4 address or an interface name, with an
    /// optional port (ignored: the listen port is advertised).
    static func advertiseAddress(_ text: String?, default fallback: String,
                                 interface: (String) -> String? = { _ in nil }) throws(ControlError) -> String {
        guard let text, !text.isEmpty else { return fallback }
        var host = text.split(separator: ":", maxSplits: 1).first.map(String.init) ?? text
        if !isIPv4(host), isInterfaceName(host), let address = interface(host) { host = address }
        guard isIPv4(host), host != "0.0.0.0", !host.hasPrefix("127.") else {
            throw ControlError(.invalidArgument,
                               "advertise address must be a non-zero IPv4 address or a network interface with one, that other nodes can reach, not '\(text)'")
        }
        return host
    }

    /// What Linux accepts as an interface name (IFNAMSIZ, no '/' or blanks).
    static func isInterfaceName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count < 16 && !text.contains("/") && !text.contains(where: \.isWhitespace) && !text.contains(":")
    }

    /// An IPv4 address in its canonical form (no leading zeros).
    static func isIPv4(_ text: String) -> Bool {
        (try? IPv4Address(parsing: text))?.description == text
    }

    /// Applies the parts of a Docker swarm spec that swarmnet uses.
    static func apply(_ spec: SwarmSpec, to settings: inout SwarmSettings) throws(ControlError) {
        if let name = spec.name, !name.isEmpty, name != "default" {
            throw ControlError(.invalidArgument, "swarm spec must be named \"default\"")
        }
        settings.labels = spec.labels ?? settings.labels
        if let limit = spec.orchestration?.taskHistoryRetentionLimit {
            guard limit >= 0 else { throw ControlError(.invalidArgument, "task history retention limit must be non-negative") }
            settings.taskHistoryLimit = limit
        }
        // The CLI sends zeros for what it leaves at the default.
        if let period = spec.dispatcher?.heartbeatPeriod, period != 0 {
            guard period >= 100_000_000 else {
                throw ControlError(.invalidArgument, "heartbeat period must be at least 100ms (swarmnet allows sub-second periods)")
            }
            settings.heartbeatPeriod = .nanoseconds(period)
        }
        if let expiry = spec.caConfig?.nodeCertExpiry, expiry != 0 {
            guard expiry >= 3_600_000_000_000 else { throw ControlError(.invalidArgument, "minimum certificate expiry time is 1h0m0s") }
            settings.nodeCertificateValidity = .nanoseconds(expiry)
        }
        if let raft = spec.raft {
            if let interval = raft.snapshotInterval, interval != 0 { settings.snapshotInterval = interval }
            if let tick = raft.electionTick, tick != 0 { settings.electionTick = tick }
            if let tick = raft.heartbeatTick, tick != 0 { settings.heartbeatTick = tick }
        }
        if spec.encryptionConfig?.autoLockManagers == true {
            throw ControlError(.invalidArgument, "swarmnet does not lock managers (--autolock is not supported)")
        }
    }
}

/// The TLS contexts of Raft's connections, made from the node's current
/// certificate.
final class RaftTLS: Sendable {
    private let contexts = Mutex<(server: NIOSSLContext, client: NIOSSLContext)?>(nil)

    func update(_ identity: NodeIdentity) throws {
        let server = try ControlTLS.mutualContext(identity, server: true)
        let client = try ControlTLS.mutualContext(identity, server: false)
        contexts.withLock { $0 = (server, client) }
    }

    var current: (server: NIOSSLContext, client: NIOSSLContext) {
        get throws {
            guard let contexts = contexts.withLock({ $0 }) else { throw SwarmRuntimeError("no certificate for Raft yet") }
            return contexts
        }
    }
}

/// Who may connect to this manager's Raft port: managers of this swarm
/// that have not been removed.
final class RaftAuthority: Sendable {
    private let raft = Mutex<RaftServer?>(nil)

    func set(_ server: RaftServer?) { raft.withLock { $0 = server } }

    func refusal(for peer: PeerIdentity, clusterID: String) -> String? {
        guard peer.clusterID == clusterID else { return "\(peer) belongs to another swarm (\(peer.clusterID))" }
        guard peer.role == .manager else { return "\(peer) is not a manager" }
        if let raft = raft.withLock({ $0 }), SwarmStore(raft: raft).isRemoved(peer.nodeID) {
            return "\(peer) was removed from the swarm"
        }
        return nil
    }
}

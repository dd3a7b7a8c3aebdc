import Cluster
import Control
import DockerAPI
import FoundationEssentials
import NIOCore
import NIOHTTP1
import RaftRuntime
import RaftTransport
import SwarmIdentity
import X509

/// The manager endpoint (TCP 2377, TLS): joins, heartbeats, the CA. Every
/// route but `ca` and `join` needs a verified node certificate of this
/// swarm whose node has not been removed.
extension SwarmRuntime {
    /// Binds the endpoint; the server runs in a task of the membership.
    func startEndpoint(local: LocalSwarmState, identity: NodeIdentity) async throws {
        var server = UnixHTTPServer(
            listen: .tcp(host: local.listenHost, port: local.listenPort), logger: logger,
            limits: HTTPServerLimits(maxBodyBytes: 1 << 20, idleTimeout: .seconds(10), bodyTimeout: .seconds(10), maxConnections: 4096),
            handler: { [weak self] request in
                guard let self else { return Self.answer(.serviceUnavailable, ErrorBody(message: "the manager is stopping")) }
                return await self.serve(request)
            })
        server.security = ControlTLS.endpointSecurity(try ControlTLS.endpointContext(identity))
        let bound = AsyncStream<Result<Void, any Error>>.makeStream()
        let task = Task { [logger] in
            do {
                try await server.run(ready: { bound.continuation.yield(.success(())) })
            } catch {
                bound.continuation.yield(.failure(error))
                logger.error("the manager endpoint stopped", metadata: ["error": "\(error)"])
            }
        }
        for await result in bound.stream {
            if case .failure(let error) = result {
                throw SwarmRuntimeError("cannot listen on \(local.listenHost):\(local.listenPort): \(error)")
            }
            break
        }
        endpointTask = task
    }

    func serve(_ request: HTTPRequest) async -> HTTPResponse {
        let path = request.uri.split(separator: "?").first.map(String.init) ?? request.uri
        do {
            switch (request.method, path) {
            case (.GET, "/swarmnet/ca"):
                guard let membership else { throw ControlError.notManager }
                return HTTPResponse(status: .ok, headers: ["Content-Type": "application/x-pem-file"],
                                    body: ByteBuffer(string: membership.identity.rootCAPEM))
            case (.POST, "/swarmnet/join"):
                return Self.answer(.ok, try await admit(try Self.decode(JoinRequest.self, request.body)))
            case (.POST, "/swarmnet/heartbeat"):
                let peer = try authenticate(request)
                return try await heartbeat(from: peer, try Self.decode(Heartbeat.self, request.body))
            case (.POST, "/swarmnet/work"):
                let peer = try authenticate(request)
                return try await watchWork(of: peer, try Self.decode(WorkWatch.self, request.body))
            case (_, _) where path.hasPrefix("/swarmnet/cluster/"):
                // Endpoint allocation, for the node the certificate names.
                let peer = try authenticate(request)
                guard let engineID = membership?.store?.node(peer.nodeID)?.object.engineID else {
                    throw ControlError(.permissionDenied, "\(peer) has no engine identity on record")
                }
                let (status, body) = try await serveAllocation(request.method, path, body: Array(request.body.readableBytesView),
                                                               engineID: engineID)
                return HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: ByteBuffer(bytes: body))
            case (.POST, "/swarmnet/logs"):
                // A node's answer to a log request it was handed.
                let peer = try authenticate(request)
                deliverLogs(try Self.decode(LogReply.self, request.body), from: peer.nodeID)
                return Self.answer(.ok, ErrorBody(message: "ok"))
            case (.POST, "/swarmnet/logs/fetch"):
                let peer = try authenticate(request)
                guard peer.role == .manager else {
                    throw ControlError(.permissionDenied, "\(peer) is not a manager: this call is for managers only")
                }
                let fetch = try Self.decode(LogFetch.self, request.body)
                return Self.answer(.ok, await collectLogs(fetch))
            case (.POST, "/swarmnet/renew"):
                let peer = try authenticate(request)
                return Self.answer(.ok, try await renew(for: peer, try Self.decode(RenewRequest.self, request.body)))
            case (.GET, "/swarmnet/raft"):
                let peer = try authenticate(request)
                guard peer.role == .manager else {
                    throw ControlError(.permissionDenied, "\(peer) is not a manager: this call is for managers only")
                }
                guard let raft = membership?.raft else { throw ControlError.notManager }
                return Self.answer(.ok, await raft.statusReport())
            default:
                return Self.answer(.notFound, ErrorBody(message: "page not found"))
            }
        } catch let error as ControlError {
            return Self.answer(APIError.status(of: error.kind), ErrorBody(message: error.message))
        } catch {
            return Self.answer(.badRequest, ErrorBody(message: "\(error)"))
        }
    }

    /// The caller's identity from its verified certificate.
    func authenticate(_ request: HTTPRequest) throws(ControlError) -> PeerIdentity {
        guard let der = request.peerCertificate else {
            throw ControlError(.permissionDenied, "a node certificate of this swarm is required")
        }
        guard let peer = try? PeerIdentity(der: der) else {
            throw ControlError(.permissionDenied, "the certificate is not a swarm node's")
        }
        guard let membership, peer.clusterID == membership.local.clusterID else {
            throw ControlError(.permissionDenied, "\(peer) belongs to another swarm")
        }
        if let store = membership.store, store.isRemoved(peer.nodeID) {
            throw ControlError.removed(peer.nodeID)
        }
        return peer
    }

    /// A node asks to join with a token: checked, recorded (a manager also
    /// as a Raft learner), and given its certificate.
    func admit(_ request: JoinRequest) async throws(ControlError) -> JoinResponse {
        guard let membership, let store = membership.store, let raft = membership.raft else { throw ControlError.notManager }
        guard let swarm = store.swarm()?.object else { throw ControlError.noLeader }
        guard let token = try? JoinToken(parsing: request.token) else { throw ControlError.invalidToken }
        let role: SwarmRole
        if let worker = try? JoinToken(parsing: swarm.workerToken), token.caDigest == worker.caDigest, token.hasSecret(of: worker) {
            role = .worker
        } else if let manager = try? JoinToken(parsing: swarm.managerToken), token.caDigest == manager.caDigest, token.hasSecret(of: manager) {
            role = .manager
        } else {
            throw ControlError.invalidToken
        }
        let csr = try Self.signingRequest(request.csrPEM)
        let address = try Self.advertiseAddress(request.address, default: "")
        let nodeID = Identifier.swarm()
        var managerInfo: SwarmNode.ManagerInfo?
        if role == .manager {
            guard let endpoint = request.endpoint, let raftAddress = request.raftAddress,
                  let peer = try? PeerAddress(parsing: Substring(raftAddress))
            else { throw ControlError(.invalidArgument, "a manager must say where its endpoint and Raft listen") }
            do {
                let member = try await raft.addMember(id: nil, address: peer, asLearner: true)
                managerInfo = .init(endpoint: endpoint, raftAddress: raftAddress, raftID: member.id)
            } catch {
                throw ControlError(.unavailable, "cannot add the new manager to the Raft group: \(error)")
            }
        }
        let now = Date()
        var node = SwarmNode(id: nodeID, createdAt: now, role: role, description: request.description, address: address, manager: managerInfo)
        node.availability = request.availability ?? .active
        node.engineID = request.engineID
        try await store.write(SwarmStore.create(node))
        liveness.track([nodeID], at: self.now)
        let certificate = try Self.issue(csr, nodeID: nodeID, role: role, swarm: swarm, now: now)
        logger.info("a node joined", metadata: ["node": "\(nodeID)", "hostname": "\(request.description.hostname)", "role": "\(role)"])
        let members = await Self.raftPeers(raft)
        return JoinResponse(
            nodeID: nodeID, clusterID: swarm.id, role: role, certificatePEM: (try? certificate.serializeAsPEM().pemString) ?? "",
            managers: managerEndpoints(), gossipKeys: swarm.gossipKeys, raftID: managerInfo?.raftID,
            raftPeers: role == .manager ? members : nil)
    }

    /// A node's new certificate, for the role the operators want: a node
    /// promoted joins Raft as a learner first (the leader makes it a voter
    /// once it has caught up); a node demoted leaves Raft first.
    func renew(for peer: PeerIdentity, _ request: RenewRequest) async throws(ControlError) -> RenewResponse {
        guard let membership, let store = membership.store, let raft = membership.raft else { throw ControlError.notManager }
        guard let swarm = store.swarm()?.object, let current = store.node(peer.nodeID) else {
            throw ControlError(.permissionDenied, "node \(peer.nodeID) is not a member of the swarm")
        }
        let csr = try Self.signingRequest(request.csrPEM)
        var node = current.object
        let role = node.desiredRole
        if role == .manager, node.manager == nil {
            guard let peerAddress = try? PeerAddress(parsing: Substring(request.raftAddress)) else {
                throw ControlError(.invalidArgument, "invalid Raft address \(request.raftAddress)")
            }
            do {
                let member = try await raft.addMember(id: nil, address: peerAddress, asLearner: true)
                node.manager = .init(endpoint: request.endpoint, raftAddress: request.raftAddress, raftID: member.id)
            } catch {
                throw ControlError(.unavailable, "cannot add the promoted node to the Raft group: \(error)")
            }
        } else if role == .worker, let manager = node.manager {
            do {
                try await raft.removeMember(manager.raftID)
            } catch MembershipError.unknownMember {
                // Already out of the group.
            } catch {
                throw ControlError(.unavailable, "cannot remove the demoted node from the Raft group: \(error)")
            }
            node.manager = nil
        }
        node.role = role
        node.updatedAt = Date()
        if node != current.object { try await store.write(SwarmStore.update(node, version: current.version)) }
        let certificate = try Self.issue(csr, nodeID: peer.nodeID, role: role, swarm: swarm, now: Date())
        logger.info("issued a node certificate", metadata: ["node": "\(peer.nodeID)", "role": "\(role)"])
        let members = await Self.raftPeers(raft)
        return RenewResponse(role: role, certificatePEM: (try? certificate.serializeAsPEM().pemString) ?? "", managers: managerEndpoints(),
                             raftID: node.manager?.raftID, raftPeers: role == .manager ? members : nil)
    }

    /// A joining or renewing node's request, read before anything is
    /// recorded for it.
    static func signingRequest(_ pem: String) throws(ControlError) -> CertificateSigningRequest {
        do {
            return try CertificateSigningRequest(pemEncoded: pem)
        } catch {
            throw ControlError(.invalidArgument, "the certificate signing request is not valid PEM: \(error)")
        }
    }

    /// A node certificate signed with the swarm's CA (from the store).
    static func issue(_ csr: CertificateSigningRequest, nodeID: String, role: SwarmRole, swarm: SwarmObject,
                      now: Date) throws(ControlError) -> Certificate {
        do {
            let authority = try CertificateAuthority(certificatePEM: swarm.rootCACertificatePEM, keyPEM: swarm.rootCAKeyPEM)
            return try authority.issue(for: csr, nodeID: nodeID, role: role == .manager ? .manager : .worker, clusterID: swarm.id,
                                       validity: swarm.settings.nodeCertificateValidity.timeInterval, now: now)
        } catch {
            throw ControlError(.invalidArgument, "cannot issue a certificate: \(error)")
        }
    }

    /// The Raft members with their addresses, for a manager to start with.
    static func raftPeers(_ raft: RaftServer) async -> [RaftPeer] {
        await raft.members().compactMap { member in member.address.map { RaftPeer(id: member.id, address: $0.description) } }
    }

    func managerEndpoints() -> [String] {
        membership?.store.map { managerView($0).endpoints } ?? []
    }

    /// What heartbeat answers carry, decoded once per change of the store
    /// rather than per heartbeat: decoding every node for every heartbeat
    /// made the leader's work grow with the square of the nodes.
    struct ManagerView: Sendable {
        var index: UInt64
        var endpoints: [String]
        var endpointsByRaftID: [UInt64: String]
        var heartbeatPeriod: Duration
        var gossipKeys: [String]
        /// Each node's tasks, as the dispatcher hands them out.
        var assignments: [String: [TaskAssignment]]
        /// Each node's ended tasks that the history keeps.
        var retained: [String: [String]]
        /// The engine IDs of the nodes marked down.
        var downEngines: [String]
    }

    func managerView(_ store: SwarmStore) -> ManagerView {
        let index = store.raft.store.appliedIndex
        if let cached = managerViewCache, cached.index == index { return cached }
        let nodes = store.nodes().map(\.object)
        let managers = nodes.compactMap { $0.role == .manager ? $0.manager : nil }
        let swarm = store.swarm()?.object
        let dispatch = Self.assignments(store.tasks().map(\.object))
        let view = ManagerView(
            index: index, endpoints: managers.map(\.endpoint).sorted(),
            endpointsByRaftID: Dictionary(managers.map { ($0.raftID, $0.endpoint) }, uniquingKeysWith: { first, _ in first }),
            heartbeatPeriod: swarm?.settings.heartbeatPeriod ?? SwarmSettings().heartbeatPeriod, gossipKeys: swarm?.gossipKeys ?? [],
            assignments: dispatch.assigned, retained: dispatch.retained,
            downEngines: nodes.filter { $0.state == .down }.compactMap(\.engineID).sorted())
        managerViewCache = view
        return view
    }

    static func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer) throws(ControlError) -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(body.readableBytesView))
        } catch {
            throw ControlError(.invalidArgument, "malformed request: \(error)")
        }
    }

    static func answer<T: Encodable>(_ status: HTTPResponseStatus, _ value: T) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: ByteBuffer(bytes: SwarmStore.encode(value)))
    }

}

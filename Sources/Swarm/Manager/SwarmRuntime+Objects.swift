import Cluster
import Control
import DockerAPI
import FoundationEssentials
import RaftRuntime
import SwarmIdentity
import SwiftASN1
import X509

/// The manager's answers about the swarm and its nodes, and the changes
/// operators make to them (one store write each).
extension SwarmRuntime {
    func managerStore() throws(ControlError) -> SwarmStore {
        guard let membership else { throw ControlError(.unavailable, DockerRouter.notInSwarm) }
        guard let store = membership.store else { throw ControlError.notManager }
        return store
    }

    /// The store for a read that must see every write committed before it
    /// (the CLI reads an object's version, then updates with it): a
    /// ReadIndex round with the leader first. Without a leader the read is
    /// served from this manager's replica as it is.
    func currentStore() async throws(ControlError) -> SwarmStore {
        let store = try managerStore()
        if await store.hasLeader() { try? await store.raft.linearizableBarrier() }
        return store
    }

    public func swarmInfo() async -> SwarmInfo {
        guard let membership else {
            var info = SwarmInfo.inactive
            info.error = lastError
            return info
        }
        let local = membership.local
        var info = SwarmInfo(
            nodeID: local.nodeID, nodeAddr: local.advertiseAddress, localNodeState: "active", controlAvailable: local.role == .manager,
            error: "", nodes: 0, managers: 0,
            remoteManagers: [])
        if let store = membership.store {
            let nodes = store.nodes().map(\.object)
            info.nodes = nodes.count
            info.managers = nodes.filter { $0.role == .manager }.count
            info.remoteManagers = nodes.compactMap { node in node.manager.map { RemoteManager(nodeID: node.id, addr: $0.endpoint) } }
            if let swarm = store.swarm() {
                var cluster = resource(swarm)
                cluster.joinTokens = nil
                info.cluster = cluster
            }
        } else {
            info.remoteManagers = local.managers.map { RemoteManager(nodeID: "", addr: $0) }
        }
        return info
    }

    public func inspectSwarm() async throws(ControlError) -> SwarmResource {
        let store = try await currentStore()
        guard let swarm = store.swarm() else { throw ControlError.noLeader }
        return resource(swarm)
    }

    public func updateSwarm(_ spec: SwarmSpec, _ flags: SwarmUpdateFlags) async throws(ControlError) {
        let store = try await currentStore()
        guard let current = store.swarm() else { throw ControlError.noLeader }
        guard current.version == flags.version else { throw ControlError.outOfSequence }
        var swarm = current.object
        try Self.apply(spec, to: &swarm.settings)
        let der = try rootCA(swarm).derBytes
        if flags.rotateWorkerToken { swarm.workerToken = JoinToken.generate(caCertificateDER: der).description }
        if flags.rotateManagerToken { swarm.managerToken = JoinToken.generate(caCertificateDER: der).description }
        swarm.updatedAt = Date()
        try await store.write(SwarmStore.update(swarm, version: current.version))
    }

    func rootCA(_ swarm: SwarmObject) throws(ControlError) -> Certificate {
        do {
            return try Certificate(pemEncoded: swarm.rootCACertificatePEM)
        } catch {
            throw ControlError(.unavailable, "the swarm's root CA certificate is damaged: \(error)")
        }
    }

    func resource(_ swarm: SwarmStore.Versioned<SwarmObject>) -> SwarmResource {
        let object = swarm.object
        var spec = SwarmSpec()
        spec.name = object.settings.name
        spec.labels = object.settings.labels
        spec.orchestration = .init(taskHistoryRetentionLimit: object.settings.taskHistoryLimit)
        spec.raft = .init(snapshotInterval: object.settings.snapshotInterval, keepOldSnapshots: 0, logEntriesForSlowFollowers: 500,
                          electionTick: object.settings.electionTick, heartbeatTick: object.settings.heartbeatTick)
        spec.dispatcher = .init(heartbeatPeriod: object.settings.heartbeatPeriod.nanoseconds)
        spec.caConfig = .init(nodeCertExpiry: object.settings.nodeCertificateValidity.nanoseconds)
        spec.taskDefaults = [:]
        spec.encryptionConfig = .init(autoLockManagers: false)
        let root = try? Certificate(pemEncoded: object.rootCACertificatePEM)
        let subject = root.map { Data($0.subject.derBytes).base64EncodedString() } ?? ""
        let publicKey = root.map { Data($0.publicKey.derBytes).base64EncodedString() } ?? ""
        return SwarmResource(
            id: object.id, version: ObjectVersion(index: swarm.version), createdAt: object.createdAt.rfc3339,
            updatedAt: object.updatedAt.rfc3339, spec: spec,
            tlsInfo: TLSInfo(trustRoot: object.rootCACertificatePEM, certIssuerSubject: subject, certIssuerPublicKey: publicKey),
            defaultAddrPool: object.defaultAddressPool, subnetSize: object.subnetSize, dataPathPort: object.dataPathPort,
            joinTokens: JoinTokens(worker: object.workerToken, manager: object.managerToken))
    }

    /// This manager's Raft member: term, leader, indexes, members' progress.
    public func debugRaft() async throws(ControlError) -> [UInt8] {
        let store = try managerStore()
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Array((try? encoder.encode(await store.raft.statusReport())) ?? Data())
    }

    // MARK: - Nodes

    public func listNodes(filters: [String: [String]]) async throws(ControlError) -> [NodeResource] {
        for key in filters.keys where !["id", "name", "role", "membership", "label", "node.label"].contains(key) {
            throw ControlError(.invalidArgument, "invalid filter '\(key)'")
        }
        let store = try await currentStore()
        let leader = await membership?.raft?.leader()
        return store.nodes()
            .filter { versioned in
                let node = versioned.object
                return (filters["id"].map { ids in ids.contains { node.id.hasPrefix($0) } } ?? true)
                    && (filters["name"].map { names in names.contains { node.description.hostname.hasPrefix($0) || (node.name ?? "").hasPrefix($0) } } ?? true)
                    && (filters["role"].map { $0.contains(node.role.rawValue) } ?? true)
                    && (filters["membership"].map { $0.contains("accepted") } ?? true)
                    && ((filters["label"] ?? []) + (filters["node.label"] ?? [])).allSatisfy { Self.matches(label: $0, node.labels) }
            }
            .sorted { ($0.object.description.hostname, $0.object.id) < ($1.object.description.hostname, $1.object.id) }
            .map { resource($0, leader: leader) }
    }

    static func matches(label: String, _ labels: [String: String]) -> Bool {
        let parts = label.split(separator: "=", maxSplits: 1).map(String.init)
        guard let key = parts.first else { return true }
        return parts.count == 2 ? labels[key] == parts[1] : labels[key] != nil
    }

    public func inspectNode(_ reference: String) async throws(ControlError) -> NodeResource {
        let store = try await currentStore()
        let node = try NodeRules.resolve(reference, in: store.nodes().map(\.object))
        guard let versioned = store.node(node.id) else { throw ControlError(.notFound, "node \(reference) not found") }
        return resource(versioned, leader: await membership?.raft?.leader())
    }

    public func updateNode(_ reference: String, version: UInt64, _ spec: NodeSpec) async throws(ControlError) {
        let store = try await currentStore()
        let all = store.nodes()
        let node = try NodeRules.resolve(reference, in: all.map(\.object))
        guard let current = all.first(where: { $0.object.id == node.id }) else { throw ControlError(.notFound, "node \(reference) not found") }
        guard current.version == version else { throw ControlError.outOfSequence }
        guard let role = SwarmRole(rawValue: spec.role.lowercased()) else {
            throw ControlError(.invalidArgument, "invalid role '\(spec.role)': it must be manager or worker")
        }
        guard let availability = NodeAvailability(rawValue: spec.availability.lowercased()) else {
            throw ControlError(.invalidArgument, "invalid availability '\(spec.availability)': it must be active, pause or drain")
        }
        var updated = try NodeRules.update(current.object, role: role, availability: availability, labels: spec.labels ?? [:], name: spec.name,
                                           among: all.map(\.object))
        updated.updatedAt = Date()
        if role == .worker, current.object.state == .down, let manager = current.object.manager, let raft = membership?.raft {
            // A dead manager cannot renew its certificate to leave Raft by
            // itself: it leaves now (and takes a worker's certificate when
            // it comes back).
            do {
                try await raft.removeMember(manager.raftID)
            } catch MembershipError.unknownMember {
            } catch {
                throw ControlError(.unavailable, "cannot remove the demoted manager from the Raft group: \(error)")
            }
            updated.role = .worker
            updated.manager = nil
        }
        try await store.write(SwarmStore.update(updated, version: version))
    }

    public func removeNode(_ reference: String, force: Bool) async throws(ControlError) {
        let store = try await currentStore()
        let all = store.nodes()
        let node = try NodeRules.resolve(reference, in: all.map(\.object))
        guard let current = all.first(where: { $0.object.id == node.id }) else { throw ControlError(.notFound, "node \(reference) not found") }
        try NodeRules.checkRemoval(current.object, force: force)
        // The node's addresses are free again in the same transaction (its
        // phantom endpoints used to block `network rm` for good).
        let released = try await mutateCluster { state in
            // Read again on every attempt: a heartbeat may have moved the
            // node on, and the rules decide on what is there now.
            guard let latest = store.node(node.id) else { throw ControlError(.notFound, "node \(reference) not found") }
            try NodeRules.checkRemoval(latest.object, force: force)
            let released = node.engineID.map { state.releaseEndpoints(ofNode: $0) } ?? 0
            return (released, [
                .delete(collection: SwarmNode.collection, key: node.id, expectedVersion: latest.version),
                .create(collection: RemovedNode.collection, key: node.id,
                        value: SwarmStore.encode(RemovedNode(id: node.id, removedAt: Date(), engineID: node.engineID))),
            ])
        }
        liveness.forget(node.id)
        logger.info("removed a node", metadata: ["node": "\(node.id)", "hostname": "\(node.description.hostname)", "endpointsReleased": "\(released)"])
    }

    func resource(_ versioned: SwarmStore.Versioned<SwarmNode>, leader: UInt64?) -> NodeResource {
        let node = versioned.object
        let manager = node.manager.map {
            ManagerStatus(leader: $0.raftID == leader, reachability: node.state == .ready ? "reachable" : "unreachable", addr: $0.endpoint)
        }
        return NodeResource(
            id: node.id, version: ObjectVersion(index: versioned.version), createdAt: node.createdAt.rfc3339, updatedAt: node.updatedAt.rfc3339,
            spec: NodeSpec(name: node.name, labels: node.labels, role: node.desiredRole.rawValue, availability: node.availability.rawValue),
            description: NodeDescription(
                hostname: node.description.hostname,
                platform: .init(architecture: node.description.architecture, os: node.description.os),
                resources: .init(nanoCPUs: node.description.nanoCPUs, memoryBytes: node.description.memoryBytes),
                engine: .init(engineVersion: node.description.engineVersion), tlsInfo: nil),
            status: NodeStatus(state: node.state.rawValue, message: node.stateMessage, addr: node.address),
            managerStatus: node.role == .manager ? manager : nil)
    }
}

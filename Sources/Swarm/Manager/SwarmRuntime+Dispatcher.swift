import Cluster
import Control
import DockerAPI
import FoundationEssentials
import NIOHTTP1
import ReplicatedStore
import SwarmIdentity

/// The dispatcher, on the leader: nodes' heartbeats (liveness, task
/// reports, the work they must do) and the work watch, a long poll that
/// hands a node its new work as soon as the store has it. Without the
/// watch, a replacement task waited up to a heartbeat period for its node
/// to ask.
extension SwarmRuntime {
    /// The longest a watch is held before it is answered unchanged.
    static let maximumWorkHold: Duration = .seconds(10)

    /// A node's heartbeat. Only the leader tracks them; a follower points
    /// the node at the leader.
    func heartbeat(from peer: PeerIdentity, _ heartbeat: Heartbeat) async throws(ControlError) -> HTTPResponse {
        let (store, current) = try dispatcherStore(for: peer)
        if let redirect = await redirectUnlessLeader(store) { return redirect }
        let view = managerView(store)
        liveness.heartbeat(from: peer.nodeID, at: now)
        if current.object.state != .ready || current.object.address != heartbeat.address {
            var node = current.object
            node.state = .ready
            node.stateMessage = nil
            node.updatedAt = Date()
            if (try? Self.advertiseAddress(heartbeat.address, default: "")) != nil { node.address = heartbeat.address }
            try? await store.write(SwarmStore.update(node, version: current.version))
        }
        var recorded = true
        if let reports = heartbeat.reports, !reports.isEmpty {
            recorded = await record(reports, from: peer.nodeID, store)
        }
        let logRequests = pendingLogRequests.removeValue(forKey: peer.nodeID)
        return Self.answer(.ok, HeartbeatResponse(periodNanoseconds: view.heartbeatPeriod.nanoseconds, managers: view.endpoints,
                                                  gossipKeys: view.gossipKeys, desiredRole: current.object.desiredRole,
                                                  reportsRecorded: recorded, logRequests: logRequests,
                                                  work: work(of: peer.nodeID, definitionsRevision: heartbeat.definitionsRevision, store)))
    }

    /// A node's work watch: answered at once when its work differs from
    /// the digest it holds, else when a change in the store makes it
    /// differ, or unchanged after the hold.
    func watchWork(of peer: PeerIdentity, _ watch: WorkWatch) async throws(ControlError) -> HTTPResponse {
        let (store, _) = try dispatcherStore(for: peer)
        if let redirect = await redirectUnlessLeader(store) { return redirect }
        let node = peer.nodeID
        let hold = min(Duration.nanoseconds(max(watch.holdNanoseconds, 0)), Self.maximumWorkHold)
        let held = workDigest(of: node, store)
        if Self.nodeHolds(held, watch) {
            // Changes after the digest's index: each that may touch the
            // node's work has the digest computed again.
            let changes = try? store.raft.store.watch(from: held.index + 1)
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await Task.sleep(for: hold) }
                if let changes {
                    group.addTask { [weak self] in
                        for await event in changes where Self.mayChangeWork(event, of: node) {
                            guard let self, let current = await self.currentWorkDigest(of: node), Self.nodeHolds(current, watch) else { return }
                        }
                    }
                }
                await group.next()
                group.cancelAll()
            }
        }
        return Self.answer(.ok, work(of: node, definitionsRevision: watch.definitionsRevision, store))
    }

    /// The node's work as of this replica's applied index.
    func work(of node: String, definitionsRevision known: UInt64?, _ store: SwarmStore) -> NodeWork {
        let view = managerView(store)
        let tasks = view.assignments[node] ?? [], retained = view.retained[node] ?? []
        // Built only for a worker whose revision is behind: most answers
        // carry the current one.
        var definitions: ClusterDefinitions?
        if let known, known != store.definitionsRevision { definitions = self.definitions(store) }
        return NodeWork(index: view.index, digest: workDigest(of: node, store).digest, tasks: tasks, retainedTasks: retained,
                        downEngines: view.downEngines, definitions: definitions)
    }

    /// The digest of a node's work, computed once per index and node.
    func workDigest(of node: String, _ store: SwarmStore) -> (index: UInt64, digest: UInt64) {
        let view = managerView(store)
        if workDigests.index != view.index { workDigests = (view.index, [:]) }
        if let digest = workDigests.byNode[node] { return (view.index, digest) }
        let digest = NodeWork.digest(tasks: view.assignments[node] ?? [], retained: view.retained[node] ?? [],
                                     downEngines: view.downEngines)
        workDigests.byNode[node] = digest
        return (view.index, digest)
    }

    private func currentWorkDigest(of node: String) -> (index: UInt64, digest: UInt64)? {
        membership?.store.map { workDigest(of: node, $0) }
    }

    /// Whether the node already holds this work, or newer: a manager that
    /// just took the lead may not have applied all the node has seen.
    nonisolated static func nodeHolds(_ work: (index: UInt64, digest: UInt64), _ watch: WorkWatch) -> Bool {
        work.digest == watch.digest || work.index < watch.index ?? 0
    }

    /// Whether a change can alter a node's work: a task of that node, or
    /// any node (one marked down changes everyone's `downEngines`).
    nonisolated static func mayChangeWork(_ event: WatchEvent, of node: String) -> Bool {
        guard case .change(let change) = event else { return true }
        switch change.object.collection {
        case SwarmNode.collection:
            return true
        case SwarmTask.collection:
            let task: SwarmStore.Versioned<SwarmTask>? = SwarmStore.decode(change.object)
            return task?.object.nodeID == node
        default:
            return false
        }
    }

    /// Only the leader tracks nodes: elsewhere the answer points the node
    /// at the leader.
    private func redirectUnlessLeader(_ store: SwarmStore) async -> HTTPResponse? {
        let leaderID = await store.raft.leader()
        guard leaderID != store.raft.id else { return nil }
        return Self.answer(.misdirectedRequest, NotLeader(leader: managerView(store).endpointsByRaftID[leaderID]))
    }

    /// The store, and the node the certificate names: only the members'
    /// own certificates are served.
    private func dispatcherStore(for peer: PeerIdentity) throws(ControlError) -> (SwarmStore, SwarmStore.Versioned<SwarmNode>) {
        guard let store = membership?.store else { throw ControlError.notManager }
        guard let current = store.node(peer.nodeID) else {
            throw ControlError(.permissionDenied, "node \(peer.nodeID) is not a member of the swarm")
        }
        return (store, current)
    }
}

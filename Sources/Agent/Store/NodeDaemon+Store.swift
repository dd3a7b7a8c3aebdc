import Addressing
import Cluster
import DockerAPI
import FoundationEssentials

/// The node agent's side of the cluster store: definitions come from the
/// store (the swarm's managers', or this node's own while it is in no
/// swarm), and addresses are allocated there.
extension NodeDaemon {
    /// Frees an endpoint's address in the store. Best effort: an allocation
    /// that cannot be released now is logged, and a removed node's are
    /// freed with it.
    func releaseAllocation(_ endpointID: String) async {
        do { try await store().release(endpointID: endpointID, node: nodeID) } catch {
            logger.warning("could not release an address in the cluster store", metadata: ["endpoint": "\(endpointID.prefix(12))", "error": "\(error)"])
        }
    }

    /// The cluster store requests go to: the swarm's managers', or this
    /// node's own while it is in no swarm (whose definitions this daemon
    /// takes from the first use on).
    func store() async -> any ClusterStore {
        if let swarmStore { return swarmStore }
        return await watchLocalStore()
    }

    /// Takes the local store's definitions, from now on. The store first
    /// makes its allocations of this node match the endpoints here (a
    /// crash between the store's write and this daemon's, or a lost store
    /// file), before any request of this run allocates.
    @discardableResult
    func watchLocalStore() async -> LocalClusterStore {
        if let localStoreWatch {
            await localStoreWatch.value
            return localStore
        }
        let own = state.endpoints.values.filter { $0.node == nodeID }
        let watch = Task { [localStore, nodeID, logger] in
            do {
                try await localStore.watch(keeping: own, of: nodeID) { [weak self] update in await self?.applyLocalDefinitions(update) ?? true }
            } catch {
                logger.error("the local store's allocations do not match this node's endpoints", metadata: ["error": "\(error)"])
            }
        }
        localStoreWatch = watch
        await watch.value
        return localStore
    }

    /// A network by name or ID. One this node does not know yet (created
    /// a moment ago, on a manager; a worker learns definitions with its
    /// next heartbeat) is asked of the swarm's managers first.
    func knownNetwork(_ reference: String) async throws -> NetworkRecord {
        if (try? state.network(reference)) == nil { await store().synchronizeDefinitions() }
        return try state.network(reference)
    }

    /// This host's IPv4 routes, which a new network's subnet may not
    /// overlap (read on the kernel worker).
    public func hostRoutesForAllocation() async throws -> [IPPrefix] {
        try await worker.run { try Self.hostRoutes() }
    }

    // MARK: - Which store

    /// Entering a swarm (its managers' store) or leaving it (nil). The
    /// swarm's store holds everything from then on: the local store is
    /// emptied (`swarm init` carried what it held into the swarm), and its
    /// definitions give way to the swarm's. After leaving, the local
    /// store's (empty) definitions replace the swarm's, as Docker's
    /// swarm-scoped networks go with the swarm; a network an endpoint here
    /// still uses stays until the endpoint goes.
    public func setClusterStore(_ swarm: (any ClusterStore)?) async {
        swarmStore = swarm
        definitionsRevision = nil
        if swarm != nil {
            do { try await localStore.reset() } catch {
                logger.error("could not empty the local cluster store", metadata: ["error": "\(error)"])
            }
            if let pending = pendingDefinitions {
                pendingDefinitions = nil
                applyDefinitions(.all(pending))
            }
        } else {
            pendingDefinitions = nil
            localStoreWatch = nil
            await watchLocalStore()
        }
    }

    /// The swarm's networks and services (with their VIPs and ports), as
    /// the managers' store has them. Returns false for a change this
    /// daemon cannot take (it is not at the change's base): the caller
    /// then sends them all.
    @discardableResult
    public func applyDefinitions(_ update: DefinitionsUpdate) -> Bool {
        guard isInSwarm else {
            // The swarm runtime's loops may deliver them before it has told
            // this daemon it is in a swarm: kept for that moment (the
            // runtime sends a revision once).
            if case .all(let definitions) = update { pendingDefinitions = definitions }
            return true
        }
        return take(update)
    }

    /// The local store's definitions, while this node is in no swarm.
    func applyLocalDefinitions(_ update: DefinitionsUpdate) -> Bool {
        guard !isInSwarm else { return true }
        return take(update)
    }

    /// A store's definitions replace this node's copies. A network missing
    /// from them that still has an endpoint here is kept until the
    /// endpoint goes (a definition can arrive later than a task's detach).
    private func take(_ update: DefinitionsUpdate) -> Bool {
        switch update {
        case .all(let definitions):
            guard definitions.revision != definitionsRevision else { return true }
            if let current = definitionsRevision, definitions.revision < current { return true } // an older answer, overtaken
            let networks = Dictionary(definitions.networks.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            let services = Dictionary(definitions.services.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
            // Every network and service, those here and those in the
            // definitions: any may have changed.
            var changedNetworks: [String: NetworkRecord?] = networks
            for id in state.networks.keys where networks[id] == nil { changedNetworks[id] = .some(nil) }
            var changedServices: [String: ServiceRecord?] = services
            for id in state.services.keys where services[id] == nil { changedServices[id] = .some(nil) }
            apply(revision: definitions.revision, networks: changedNetworks, services: changedServices)
            return true
        case .changes(let base, let revision, let networks, let services):
            guard definitionsRevision == base else { return false }
            apply(revision: revision, networks: networks, services: services)
            return true
        }
    }

    /// Puts (or removes, for nil) the given networks and services, and
    /// records on disk and wakes the reconciler for those that differ.
    private func apply(revision: UInt64, networks: [String: NetworkRecord?], services: [String: ServiceRecord?]) {
        definitionsRevision = revision
        var next = state
        var touched: [RecordReference] = []
        var localNetworkChanged = false
        // Read once, and only when a network changed.
        var localNetworks: Set<String>?
        for (id, record) in networks where state.networks[id] != record {
            if localNetworks == nil {
                localNetworks = Set(state.endpoints.values.lazy.filter { $0.node == self.nodeID }.map(\.networkID))
            }
            let local = localNetworks!.contains(id)
            // A network gone from the swarm is kept while an endpoint here uses it.
            if record == nil, local { continue }
            next.networks[id] = record
            touched.append(.network(id))
            localNetworkChanged = localNetworkChanged || local || record == nil
        }
        for (id, record) in services where state.services[id] != record {
            next.services[id] = record
            touched.append(.service(id))
        }
        guard !touched.isEmpty else { return }
        do { try commit(next, touching: touched) } catch {
            logger.error("could not record the store's definitions", metadata: ["error": "\(error)"])
            definitionsRevision = nil
            return
        }
        // A full pass where this node's sandboxes may need it: a network
        // with endpoints here changed, or one went (its sandbox, if any, is
        // removed). A network new to the swarm needs nothing here until an
        // endpoint joins it, and a service a change's pass.
        if localNetworkChanged { wake() } else { wakeForChange() }
    }

    /// Whether the swarm's managers hold this node's cluster.
    public var isInSwarm: Bool { swarmStore != nil }

    /// What `swarm init` makes the swarm's first allocations: everything
    /// the local store holds.
    public func clusterStateForSeeding() async -> ClusterState { await localStore.snapshot() }
}

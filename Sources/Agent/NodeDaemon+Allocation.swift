import Addressing
import Cluster
import DockerAPI
import Foundation
import NIOPosix

/// Endpoint address allocation. In a swarm the managers allocate, in Raft
/// (`allocator`); a node in no swarm allocates for itself, alone.
extension NodeDaemon {
    /// Frees an endpoint's address at the swarm's managers; outside a
    /// swarm there is nothing to do (the record is gone). Best effort: an
    /// allocation that cannot be released now is logged, and a removed
    /// node's are freed with it.
    func releaseAllocation(_ endpointID: String) async {
        guard let allocator else { return }
        do { try await allocator.release(endpointID: endpointID, node: nodeID) } catch {
            logger.warning("could not release an address at the swarm's managers", metadata: ["endpoint": "\(endpointID.prefix(12))", "error": "\(error)"])
        }
    }

    /// This host's IPv4 routes, which a new network's subnet may not
    /// overlap (read on the kernel worker).
    public func hostRoutesForAllocation() async throws -> [IPPrefix] {
        try await worker.run { try Self.hostRoutes() }
    }

    // MARK: - In a swarm

    /// Entering a swarm (an allocator) or leaving it (nil). In a swarm the
    /// managers allocate, and their definitions replace this node's.
    public func setClusterAllocator(_ allocator: (any ClusterAllocator)?) {
        self.allocator = allocator
        definitionsRevision = nil
        guard allocator != nil else {
            pendingDefinitions = nil
            return
        }
        if let pending = pendingDefinitions {
            pendingDefinitions = nil
            applyDefinitions(.all(pending))
        }
    }

    /// The swarm's networks and services (with their VIPs and ports), as
    /// the managers' store has them: they replace this node's copies. A
    /// network missing from them that still has an endpoint here is kept
    /// until the endpoint goes (a definition can arrive later than a
    /// task's detach). Returns false for a change this daemon cannot take
    /// (it is not at the change's base): the caller then sends them all.
    @discardableResult
    public func applyDefinitions(_ update: DefinitionsUpdate) -> Bool {
        switch update {
        case .all(let definitions):
            // The swarm runtime's loops may deliver them before it has told
            // this daemon it is in a swarm: kept for that moment (the
            // runtime sends a revision once).
            guard allocator != nil else {
                pendingDefinitions = definitions
                return true
            }
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
            guard allocator != nil, definitionsRevision == base else { return false }
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
            logger.error("could not record the swarm's definitions", metadata: ["error": "\(error)"])
            definitionsRevision = nil
            return
        }
        // A full pass where this node's sandboxes may need it: a network
        // with endpoints here changed, or one went (its sandbox, if any, is
        // removed). A network new to the swarm needs nothing here until an
        // endpoint joins it, and a service a change's pass.
        if localNetworkChanged { wake() } else { wakeForChange() }
    }

    /// Whether the swarm's managers allocate for this node.
    public var isInSwarm: Bool { allocator != nil }

    /// What `swarm init` makes the swarm's first allocations.
    public func clusterStateForSeeding() -> ClusterState { state }

    /// Runs a blocking call (a socket exchange) off Swift's cooperative pool.
    static func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(work)
    }

}

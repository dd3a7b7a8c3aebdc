import Cluster
import DockerAPI
import Foundation
import Gossip
import GossipRuntime
import Overlay

/// The daemon's side of the gossip layer: what it publishes and how it
/// takes the cluster's view (network definitions, remote endpoints).
extension NodeDaemon {
    /// Connects the node to the cluster's gossip: republishes what this node
    /// owns (after a restart, others may hold older versions) and follows
    /// every change until cancelled.
    public func runGossip(_ gossip: ClusterGossip) async {
        self.gossip = gossip
        if let (keys, hosts, port) = swarmGossip { await enterSwarmGossip(keys: keys, managerHosts: hosts, port: port) }
        for endpoint in localEndpoints() { publish(endpoint) }
        // In a swarm the managers hand out the definitions, not gossip.
        if configuration.isManager && allocator == nil {
            for network in state.networks.values { publish(network) }
            for service in state.services.values { publish(service) }
            if let address = configuration.clusterAPIAddress {
                do { try gossip.publish(manager: address) } catch {
                    logger.error("publishing the cluster API address", metadata: ["error": "\(error)"])
                }
            }
        }
        refreshFromGossip()
        for await event in gossip.events() {
            // An endpoint's change is applied by itself: taking the whole
            // view again on each one cost every endpoint in the swarm per
            // attach anywhere (issue 17). Every other event, and every full
            // pass, takes the whole view again.
            if case .table(let change) = event, change.table == ClusterGossip.endpointsTable {
                applyRemoteEndpointChange(change)
            } else {
                refreshFromGossip()
            }
        }
    }

    /// One gossiped endpoint created, changed or deleted on another host:
    /// the remote view follows it, and its network's peers are programmed.
    func applyRemoteEndpointChange(_ change: TableChange) {
        if gossipFollows?.networks != state.networks { followGossipNetworks() }
        guard let gossip, let record = try? ClusterGossip.decode(EndpointRecord.self, change.value), record.node != nodeID,
              gossip.node.networks().contains(record.networkID) else { return }
        let previous = remoteEndpoints[record.id]
        switch change.kind {
        case .created, .updated:
            guard previous != record else { return }
            remoteEndpoints[record.id] = record
        case .deleted:
            guard previous != nil else { return }
            remoteEndpoints[record.id] = nil
        }
        var networks: Set<String> = [record.networkID]
        if let previous { networks.insert(previous.networkID) }
        syncPeersSoon(of: networks, thenWake: record.serviceID != nil || previous?.serviceID != nil)
    }

    /// Takes the cluster's view from gossip: workers replicate the network
    /// definitions; every node learns the endpoints of other hosts.
    func refreshFromGossip() {
        guard let gossip else { return }
        if !configuration.isManager && allocator == nil {
            // Add what the manager published; drop only what it deleted
            // (a tombstone), never what is merely unseen (not yet synced) or
            // suspended (the manager is down), nor a network with endpoints here.
            let view = gossip.networkView()
            var next = state
            for record in view.published { next.networks[record.id] = record }
            for id in view.deleted where !next.endpoints.values.contains(where: { $0.networkID == id }) {
                next.networks[id] = nil
            }
            let services = gossip.serviceView()
            for record in services.published { next.services[record.id] = record }
            for id in services.deleted { next.services[id] = nil }
            if next != state {
                let servicesChanged = next.services != state.services
                try? commit(next)
                if servicesChanged { wakeForChange() }
            }
        }
        if gossipFollows?.networks != state.networks || gossipFollows?.endpoints != state.endpoints { followGossipNetworks() }
        let remote = gossip.endpoints().filter { $0.node != nodeID }
        let updated = Dictionary(remote.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        if updated != remoteEndpoints {
            let changed = Set(updated.values.map(\.networkID)).union(remoteEndpoints.values.map(\.networkID))
                .filter { id in Set(updated.values.filter { $0.networkID == id }) != Set(remoteEndpoints.values.filter { $0.networkID == id }) }
            let backendsChanged = updated.filter { $0.value.serviceID != nil } != remoteEndpoints.filter { $0.value.serviceID != nil }
            remoteEndpoints = updated
            // The balancers move only once the peers are programmed: a
            // new remote backend chosen before its forwarding and
            // neighbour entries exist loses its first packets.
            syncPeersSoon(of: changed, thenWake: backendsChanged)
        }
    }

    /// Follows every network's endpoint table (not only those with local
    /// endpoints, as NetworkDB does): allocation needs the addresses in
    /// use. Callers do it only when the networks or endpoints changed since
    /// the last time: walking every network on each gossip event made a
    /// network create cost more with every network (issue 17). Unchanged
    /// dictionaries compare equal at once (same storage).
    func followGossipNetworks() {
        guard let gossip else { return }
        let joined = Set(gossip.node.networks())
        var followed = true // a failure is tried again on the next event
        for id in state.networks.keys where !joined.contains(id) {
            do { try gossip.node.joinNetwork(id) } catch { followed = false }
        }
        let endpointNetworks = Set(state.endpoints.values.map(\.networkID))
        for id in joined where id != ClusterGossip.clusterNetwork && state.networks[id] == nil && !endpointNetworks.contains(id) {
            do { try gossip.node.leaveNetwork(id) } catch { followed = false }
        }
        gossipFollows = followed ? (state.networks, state.endpoints) : nil
    }

    /// The fast path for a peer change: program just the changed networks'
    /// peers (one FDB and neighbour diff each) without a whole reconciler
    /// pass; the next pass checks everything anyway.
    func syncPeersSoon(of networkIDs: Set<String>, thenWake wakeBalancers: Bool = false) {
        var work: [(OverlayNetwork, [Peer])] = []
        for id in networkIDs {
            guard let record = state.networks[id], let network = try? overlayNetwork(record),
                  state.endpoints.values.contains(where: { $0.networkID == id && $0.node == nodeID }) else { continue }
            work.append((network, peers(of: id)))
        }
        guard !work.isEmpty else {
            if wakeBalancers { wakeForChange() }
            return
        }
        Task { [worker, driver, logger, work] in
            do {
                try await worker.run {
                    for (network, peers) in work where (try? driver.sandbox(for: network).exists) == true {
                        try driver.syncPeers(peers, on: network)
                    }
                }
                if wakeBalancers { self.wakeForChange() }
            } catch {
                logger.warning("peer update failed; the reconciler will retry", metadata: ["error": "\(error)"])
                self.wake()
            }
        }
    }

    func publish(_ endpoint: EndpointRecord) {
        do { try gossip?.publish(endpoint: endpoint) } catch {
            logger.error("publishing endpoint", metadata: ["endpoint": "\(endpoint.id.prefix(12))", "error": "\(error)"])
        }
    }

    func publish(_ service: ServiceRecord) {
        do { try gossip?.publish(service: service) } catch {
            logger.error("publishing service", metadata: ["service": "\(service.name)", "error": "\(error)"])
        }
    }

    /// Publishes a new definition before it is committed: one that gossip
    /// cannot carry (larger than a packet) is refused at the API with what
    /// to change, never recorded here and silently missing elsewhere.
    func publishOrRefuse(_ network: NetworkRecord) throws {
        do { try gossip?.publish(network: network) } catch let error as GossipTableError {
            throw Self.refusal(error, what: "network \(network.name)", fix: "use fewer or shorter labels and options")
        }
    }

    func publishOrRefuse(_ service: ServiceRecord) throws {
        do { try gossip?.publish(service: service) } catch let error as GossipTableError {
            throw Self.refusal(error, what: "service \(service.name)", fix: "use fewer or shorter labels, ports and networks")
        }
    }

    static func refusal(_ error: GossipTableError, what: String, fix: String) -> APIError {
        if case .tooLarge(_, let size, let limit) = error {
            return APIError(.badRequest, "the definition of \(what) is \(size) bytes encoded, more than the \(limit) bytes one gossip message carries to the other nodes: \(fix)")
        }
        return APIError(.internalServerError, "cannot publish \(what) to the other nodes: \(error)")
    }

    func publish(_ network: NetworkRecord) {
        do { try gossip?.publish(network: network) } catch {
            logger.error("publishing network", metadata: ["network": "\(network.name)", "error": "\(error)"])
        }
    }

}

extension NodeDaemon {
    /// Entering a swarm: gossip is encrypted with the swarm's keys from now
    /// on (the first one seals; all open), and joins through the managers.
    /// A node that leaves keeps its keys: it no longer hears the swarm.
    public func enterSwarmGossip(keys: [String], managerHosts: [String], port: Int) async {
        swarmGossip = (keys, managerHosts, port)
        guard let gossip else { return } // applied when gossip starts (runGossip)
        let parsed = keys.compactMap { try? GossipKey(base64: $0) }
        guard let primary = parsed.first else {
            logger.error("the swarm sent no usable gossip key; gossip stays as it was")
            return
        }
        let current = gossip.node.keyring()?.keys ?? []
        if current != parsed {
            gossip.node.replaceKeyring(Keyring(primary: primary, others: Array(parsed.dropFirst())))
            logger.notice("gossip is encrypted with the swarm's keys", metadata: ["primary": "\(primary.fingerprint)"])
        }
        let seeds = managerHosts.compactMap { try? NodeAddress(parsing: "\($0):\(port)") }
        guard !seeds.isEmpty else { return }
        if (try? await gossip.node.join(seeds)) == nil {
            logger.warning("could not reach the managers' gossip yet", metadata: ["seeds": "\(seeds)"])
        }
    }
}

import Cluster
import DockerAPI
import FoundationEssentials
import Gossip
import GossipRuntime
import Overlay

/// The daemon's side of the gossip layer: what it publishes and how it
/// takes the other hosts' endpoints. Gossip runs only in a swarm, always
/// encrypted with the keys the managers hand out: a node in no swarm has
/// no gossip socket at all, so nothing on the underlay can read its
/// endpoints or publish one to it.
extension NodeDaemon {
    /// One gossip session, from entering a swarm (or starting in one) to
    /// leaving it: republishes what this node owns (after a restart,
    /// others may hold older versions) and follows every change until the
    /// session is stopped (`leaveSwarmGossip`) or cancelled.
    public func runGossip(_ gossip: ClusterGossip) async {
        guard let (keys, hosts, port) = swarmGossip else { return } // left the swarm meanwhile
        self.gossip = gossip
        await enterSwarmGossip(keys: keys, managerHosts: hosts, port: port)
        for endpoint in localEndpoints() { publish(endpoint) }
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

    /// Takes the other hosts' endpoints from gossip, whole.
    func refreshFromGossip() {
        guard let gossip else { return }
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
        for id in joined where state.networks[id] == nil && !endpointNetworks.contains(id) {
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

}

extension NodeDaemon {
    /// Entering a swarm, or its keys or managers changing: a running
    /// session is encrypted with the swarm's keys from now on (the first
    /// one seals; all open) and joins through the managers; without one,
    /// the gossip service is asked to start it with these keys.
    public func enterSwarmGossip(keys: [String], managerHosts: [String], port: Int) async {
        swarmGossip = (keys, managerHosts, port)
        guard let gossip else {
            gossipSessionRequest.yield()
            return
        }
        guard let keyring = swarmGossipKeyring() else {
            logger.error("the swarm sent no usable gossip key; gossip stays as it was")
            return
        }
        if gossip.node.keyring()?.keys != keyring.keys {
            gossip.node.replaceKeyring(keyring)
            logger.notice("gossip is encrypted with the swarm's keys", metadata: ["primary": "\(keyring.primary.fingerprint)"])
        }
        let seeds = managerHosts.compactMap { try? NodeAddress(parsing: "\($0):\(port)") }
        guard !seeds.isEmpty else { return }
        if (try? await gossip.node.join(seeds)) == nil {
            logger.warning("could not reach the managers' gossip yet", metadata: ["seeds": "\(seeds)"])
        }
    }

    /// Asks the gossip service for a session again (one failed to start).
    public func requestGossipSession() {
        if swarmGossip != nil && gossip == nil { gossipSessionRequest.yield() }
    }

    /// The keyring a gossip session starts with: the swarm's keys; nil
    /// outside a swarm, or when none of them can be used.
    public func swarmGossipKeyring() -> Keyring? {
        let keys = (swarmGossip?.keys ?? []).compactMap { try? GossipKey(base64: $0) }
        guard let primary = keys.first else { return nil }
        return Keyring(primary: primary, others: Array(keys.dropFirst()))
    }

    /// Leaving the swarm: the session leaves gracefully (the others see
    /// "left", not "failed") and stops, and the other hosts' endpoints are
    /// forgotten. The next swarm starts a new session with its own keys.
    public func leaveSwarmGossip() async {
        swarmGossip = nil
        guard let gossip else { return }
        self.gossip = nil
        await gossip.stop()
        remoteEndpoints = [:]
        gossipFollows = nil
        wake()
    }
}

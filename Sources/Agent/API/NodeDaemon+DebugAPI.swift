#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Cluster
import DockerAPI
import GossipRuntime
import Namespaces
import Netlink
import Overlay

extension NodeDaemon: SwarmnetDebugBackend {
    /// The desired peers of a network on this host beside the FDB and
    /// neighbour entries the kernel holds on the sandbox's vxlan device.
    public func debugOverlay(network reference: String) async throws -> OverlayDebugReport {
        let record = try state.network(reference)
        let network = try overlayNetwork(record)
        let desired = peers(of: record.id)
        let local = state.endpoints.values.filter { $0.networkID == record.id && $0.node == nodeID }
        let sandbox = try driver.sandbox(for: network)
        let kernel: (fdb: [FDBEntry], neighbours: [NeighbourEntry])? = try await worker.run {
            guard sandbox.exists else { return nil }
            let inside = try RouteNetlink(namespace: sandbox)
            guard let vxlan = try? inside.link(named: OverlayDriver.vxlanName) else { return ([], []) }
            return (try inside.fdbEntries(linkIndex: vxlan.index).filter { $0.isSelf && $0.destination != nil },
                    try inside.neighbours(family: AF_INET).filter { $0.linkIndex == vxlan.index && $0.isPermanent })
        }
        return OverlayDebugReport(
            node: configuration.nodeName, dataPathAddress: configuration.dataPathAddress.description, network: record.name,
            networkID: record.id, vni: record.vni, sandbox: sandbox.name ?? sandbox.path, sandboxExists: kernel != nil,
            localEndpoints: local.map { "\($0.name) \($0.address)" }.sorted(),
            peers: Self.compare(desired: desired, fdb: kernel?.fdb ?? [], neighbours: kernel?.neighbours ?? []))
    }

    /// Marks each desired peer ok, missing or wrong, and each kernel entry
    /// no peer explains as extra.
    static func compare(desired: [Peer], fdb: [FDBEntry], neighbours: [NeighbourEntry]) -> [OverlayPeerStatus] {
        let fdbByMAC = Dictionary(fdb.map { ($0.mac, $0.destination) }, uniquingKeysWith: { a, _ in a })
        let neighbourByAddress = Dictionary(neighbours.map { ($0.address, $0.mac) }, uniquingKeysWith: { a, _ in a })
        var rows: [OverlayPeerStatus] = desired.map { peer in
            let fdbVTEP = fdbByMAC[peer.mac] ?? nil
            let neighbourMAC = neighbourByAddress[peer.address] ?? nil
            let status: String
            if fdbVTEP == nil && neighbourMAC == nil { status = "missing" }
            else if fdbVTEP != peer.vtep || neighbourMAC != peer.mac { status = fdbVTEP == nil || neighbourMAC == nil ? "missing" : "wrong" }
            else { status = "ok" }
            return OverlayPeerStatus(address: peer.address.description, mac: peer.mac.description, desiredVTEP: peer.vtep.description,
                                     fdbVTEP: fdbVTEP?.description, neighbourMAC: neighbourMAC?.description, status: status)
        }
        let desiredMACs = Set(desired.map(\.mac))
        let desiredAddresses = Set(desired.map(\.address))
        for entry in fdb where !desiredMACs.contains(entry.mac) {
            rows.append(OverlayPeerStatus(address: nil, mac: entry.mac.description, desiredVTEP: nil,
                                          fdbVTEP: entry.destination?.description, neighbourMAC: nil, status: "extra"))
        }
        for entry in neighbours where !desiredAddresses.contains(entry.address) {
            rows.append(OverlayPeerStatus(address: entry.address.description, mac: entry.mac?.description ?? "-", desiredVTEP: nil,
                                          fdbVTEP: nil, neighbourMAC: entry.mac?.description, status: "extra"))
        }
        return rows
    }

    /// The nodes this node knows: the gossip layer's members with their
    /// state and incarnation (or, running alone, itself and the hosts of
    /// remote endpoints), with the networks each has endpoints on.
    public func debugPeers() async throws -> [PeerNode] {
        let byHost = Dictionary(grouping: remoteEndpoints.values, by: { $0.nodeName ?? $0.node })
        let own = Set(state.endpoints.values.filter { $0.node == nodeID }.map(\.networkID)).sorted()
        if let gossip {
            return gossip.node.members().sorted { $0.name < $1.name }.map { member in
                let networks = member.name == configuration.nodeName ? own : Set((byHost[member.name] ?? []).map(\.networkID)).sorted()
                return PeerNode(name: member.name, address: member.address.description,
                                state: member.name == configuration.nodeName ? "\(member.status) (self)" : "\(member.status)",
                                incarnation: member.incarnation, networks: networks)
            }
        }
        var nodes = [PeerNode(name: configuration.nodeName, address: configuration.dataPathAddress.description, state: "alive (self)",
                              incarnation: nil, networks: own)]
        for (node, endpoints) in byHost.sorted(by: { $0.key < $1.key }) {
            nodes.append(PeerNode(name: node, address: endpoints.first!.vtep.description, state: "known by its endpoints",
                                  incarnation: nil, networks: Set(endpoints.map(\.networkID)).sorted()))
        }
        return nodes
    }

    /// A gossip table as this node holds it, tombstones and suspended
    /// entries included. `network` is a network's name or ID.
    public func debugTable(network reference: String, table: String) async throws -> [TableEntryView] {
        guard let gossip else { throw ControlError(.unavailable, Self.noGossip) }
        let network = (try? state.network(reference).id) ?? reference
        let dump: GossipDump
        do { dump = try gossip.node.dump(network: network, table: table) } catch {
            throw ControlError(.unavailable, "gossip: \(error)")
        }
        return dump.entries.map {
            TableEntryView(key: $0.key, owner: $0.owner, lamportTime: $0.time, visible: $0.visible, deleting: $0.deleting, value: $0.text)
        }
    }
}

extension NodeDaemon {
    static let noGossip = "gossip runs only in a swarm, encrypted with the swarm's keys: this node is in no swarm (or runs with --no-gossip)"

    /// The gossip keyring by fingerprint, primary first: the swarm's keys,
    /// which the managers make and rotate.
    public func gossipKeys() async throws -> [GossipKeyView] {
        guard let keyring = gossip?.node.keyring() else { throw ControlError(.unavailable, Self.noGossip) }
        return keyring.keys.enumerated().map { GossipKeyView(fingerprint: $1.fingerprint, primary: $0 == 0) }
    }
}

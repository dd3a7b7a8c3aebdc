#if canImport(Glibc)
import Glibc
#endif
import Addressing
import DockerAPI
import GossipRuntime
import Namespaces
import Netlink
import Overlay

extension NodeDaemon: SwarmnetDebugBackend {
    /// The desired peers of a network on this host beside the FDB and
    /// neighbour entries the kernel holds on the sandbox's vxlan device.
    public func debugOverlay(network reference: String) async throws -> OverlayDebugReport {
        let record = try Self.mapping { try state.network(reference) }
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
    /// entries included. `network` may be a network's name or ID, or the
    /// cluster-wide gossip network.
    public func debugTable(network reference: String, table: String) async throws -> [TableEntryView] {
        guard let gossip else { throw APIError(.serviceUnavailable, "this node runs without gossip") }
        let network = reference == ClusterGossip.clusterNetwork ? reference : (try? state.network(reference).id) ?? reference
        let dump: GossipDump
        do { dump = try gossip.node.dump(network: network, table: table) } catch {
            throw APIError(.serviceUnavailable, "gossip: \(error)")
        }
        return dump.entries.map {
            TableEntryView(key: $0.key, owner: $0.owner, lamportTime: $0.time, visible: $0.visible, deleting: $0.deleting, value: $0.text)
        }
    }
}

extension NodeDaemon {
    /// The gossip keyring by fingerprint, primary first.
    public func gossipKeys() async throws -> [GossipKeyView] {
        guard let gossip else { throw APIError(.serviceUnavailable, "this node runs without gossip (--no-gossip)") }
        guard let keyring = gossip.node.keyring() else {
            throw APIError(.badRequest, "gossip is not encrypted on this node: start swarmnetd with --gossip-key to use a keyring")
        }
        return keyring.keys.enumerated().map { GossipKeyView(fingerprint: $1.fingerprint, primary: $0 == 0) }
    }

    /// One step of a key rotation: install, use, or remove a key (in that
    /// order when a request names several). A step that fails changes nothing
    /// after it, and the error names the key by fingerprint.
    public func changeGossipKeys(_ request: GossipKeyRequest) async throws -> [GossipKeyView] {
        guard let gossip else { throw APIError(.serviceUnavailable, "this node runs without gossip (--no-gossip)") }
        func key(_ text: String) throws -> GossipKey {
            do { return try GossipKey(base64: text) } catch {
                throw APIError(.badRequest, "invalid gossip key: \(error)")
            }
        }
        let steps = (install: try request.install.map(key), use: try request.use.map(key), remove: try request.remove.map(key))
        guard steps.install != nil || steps.use != nil || steps.remove != nil else {
            throw APIError(.badRequest, "name a key to Install, Use or Remove")
        }
        do {
            if let install = steps.install { try gossip.node.installKey(install) }
            if let use = steps.use { try gossip.node.useKey(use) }
            if let remove = steps.remove { try gossip.node.removeKey(remove) }
        } catch {
            throw APIError(.badRequest, "gossip keyring: \(error)")
        }
        logger.notice("gossip keyring changed", metadata: [
            "installed": "\(steps.install?.fingerprint ?? "-")", "primary": "\(steps.use?.fingerprint ?? "-")",
            "removed": "\(steps.remove?.fingerprint ?? "-")"])
        return try await gossipKeys()
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Addressing
import DockerAPI
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

    /// The nodes this node knows: itself, and the hosts of remote endpoints
    /// (the gossip layer will add members without endpoints).
    public func debugPeers() async throws -> [PeerNode] {
        var nodes = [PeerNode(name: configuration.nodeName, address: configuration.dataPathAddress.description, state: "alive (self)",
                              incarnation: nil, networks: Set(state.endpoints.values.filter { $0.node == nodeID }.map(\.networkID)).sorted())]
        let remote = Dictionary(grouping: remoteEndpoints.values, by: \.node)
        for (node, endpoints) in remote.sorted(by: { $0.key < $1.key }) {
            nodes.append(PeerNode(name: node, address: endpoints.first!.vtep.description, state: "known by its endpoints",
                                  incarnation: nil, networks: Set(endpoints.map(\.networkID)).sorted()))
        }
        return nodes
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Addressing
import FoundationEssentials
import SystemBasics
import Namespaces
import Netlink

/// Programs overlay networks on one host, the way libnetwork's overlay
/// driver lays them out:
///
/// - a sandbox namespace per network holding a bridge (`br0`, with the
///   gateway address) and a vxlan device (`vxlan0`);
/// - the vxlan device created in the underlay namespace, bound to the
///   data-path address, so its UDP socket lives there, but placed in the
///   sandbox (one request with IFLA_NET_NS_FD);
/// - learning off and ARP proxy on: every remote endpoint gets a static FDB
///   entry (MAC → VTEP) and a permanent neighbour entry (IP → MAC), so no
///   packet waits on an L2/L3 miss;
/// - one veth per endpoint, from the bridge into the workload's namespace.
///
/// Every operation is idempotent, and one that fails part-way removes what
/// it made.
public struct OverlayDriver: Sendable {
    /// Serializes sandbox creation across this process's concurrent attaches.
    private static let sandboxCreation = Lock()

    public let underlay: Underlay
    /// Prefixed to every namespace the driver names, so that several hosts
    /// (daemons) on one machine never share one.
    public let namePrefix: String
    /// The node whose sandboxes these are: written on each sandbox's
    /// bridge as its alias (`ownerMark`), so that only sandboxes proven to
    /// be this node's are ever removed as leftovers. nil marks nothing.
    public let owner: String?

    public static let bridgeName = "br0"
    public static let vxlanName = "vxlan0"

    public init(underlay: Underlay, namePrefix: String = "", owner: String? = nil) {
        self.underlay = underlay
        self.namePrefix = namePrefix
        self.owner = owner
    }

    /// The bridge alias that marks a sandbox as `node`'s (`ip -d link show br0` in the sandbox shows it).
    public static func ownerMark(_ node: String) -> String { "swarmnet node \(node)" }

    /// The sandbox namespace of a network on this host.
    public func sandbox(for network: OverlayNetwork) throws -> NetworkNamespace {
        try NetworkNamespace.named("\(namePrefix)ov-\(network.vni)")
    }

    // MARK: - Sandboxes

    /// Makes sure the network's sandbox exists and holds a bridge with the
    /// gateway address and an up vxlan device with the network's VNI. Adopts
    /// what is already there; repairs what is missing or wrong. Returns
    /// whether anything had to be made or repaired.
    @discardableResult
    public func ensureSandbox(_ network: OverlayNetwork) throws -> Bool {
        let sandbox = try sandbox(for: network)
        var created = false
        if !sandbox.exists {
            // Attaches run concurrently; sandboxes are made one at a time, so
            // a file that is there but is no namespace cannot be a create of
            // ours in flight: it is the empty file an interrupted create left
            // (a daemon SIGKILLed between creating it and bind-mounting the
            // namespace onto it). Adopting it would fail every pass (setns:
            // EINVAL), so it is removed and made again.
            try Self.sandboxCreation.withLock {
                guard !sandbox.exists else { return }
                do {
                    try NetworkNamespace.create(named: sandbox.name!)
                } catch NamespaceError.alreadyExists {
                    try sandbox.delete()
                    try NetworkNamespace.create(named: sandbox.name!)
                }
                created = true
            }
        }
        do {
            let inside = try RouteNetlink(namespace: sandbox)
            var changed = created
            if try !inside.link(named: "lo").isUp {
                try inside.linkSet(name: "lo", up: true)
                changed = true
            }
            changed = try ensureBridge(network, in: inside) || changed
            changed = try ensureVXLAN(network, sandbox: sandbox, inside: inside) || changed
            return changed
        } catch {
            if created { try? removeSandbox(network) }
            throw error
        }
    }

    /// Removes the network's sandbox and everything in it. The vxlan device
    /// goes first and synchronously: a namespace is torn down in the
    /// background, and a vxlan device still registered there would make
    /// the next one with its VNI fail with EEXIST (moby's "vxlan: file exists").
    public func removeSandbox(_ network: OverlayNetwork) throws {
        try removeSandbox(vni: network.vni)
    }

    private func ensureBridge(_ network: OverlayNetwork, in inside: RouteNetlink) throws -> Bool {
        let gateway = try IPPrefix(address: network.gateway, length: network.subnet.length)
        var changed = false
        let bridge: Link
        do {
            bridge = try inside.link(named: Self.bridgeName)
        } catch NetlinkError.linkNotFound {
            try inside.linkAdd(LinkSpec(name: Self.bridgeName, kind: .bridge, mtu: network.mtu, up: true))
            bridge = try inside.link(named: Self.bridgeName)
            changed = true
        }
        if !bridge.isUp || bridge.mtu != network.mtu {
            try inside.linkSet(name: Self.bridgeName, up: true, mtu: network.mtu)
            changed = true
        }
        if let owner, bridge.alias != Self.ownerMark(owner) {
            try inside.linkSet(name: Self.bridgeName, alias: Self.ownerMark(owner))
            changed = true
        }
        let addresses = try inside.addresses().filter { $0.linkIndex == bridge.index }
        if !addresses.contains(where: { $0.prefix == gateway }) {
            try inside.addressAdd(gateway, device: Self.bridgeName)
            changed = true
        }
        return changed
    }

    private func ensureVXLAN(_ network: OverlayNetwork, sandbox: NetworkNamespace, inside: RouteNetlink) throws -> Bool {
        if let existing = try? inside.link(named: Self.vxlanName) {
            let vxlan = existing.vxlan
            let matches = vxlan?.vni == network.vni && vxlan?.port == network.port
                && vxlan?.local == underlay.address && vxlan?.learning == false && vxlan?.proxy == true
            if matches {
                let bridgeIndex = try inside.link(named: Self.bridgeName).index
                if !existing.isUp || existing.masterIndex != bridgeIndex || existing.mtu != network.mtu {
                    try inside.linkSet(name: Self.vxlanName, up: true, mtu: network.mtu, master: .some(Self.bridgeName))
                    return true
                }
                return false
            }
            // Settings that cannot change on a live device: make it anew.
            try inside.linkDelete(name: Self.vxlanName)
        }
        try RouteNetlink(namespace: underlay.namespace).linkAdd(LinkSpec(
            name: Self.vxlanName,
            kind: .vxlan(VXLANOptions(
                vni: network.vni, port: network.port, local: underlay.address, underlay: underlay.device,
                learning: false, udpChecksum: false, proxy: true)),
            mtu: network.mtu, namespace: sandbox))
        do {
            try inside.linkSet(name: Self.vxlanName, up: true, master: .some(Self.bridgeName))
        } catch {
            try? inside.linkDelete(name: Self.vxlanName)
            throw error
        }
        return true
    }

    // MARK: - Endpoints

    /// What every endpoint's host-side veth is named with.
    static let hostInterfacePrefix = "ve-"

    /// The host-side veth of an endpoint: "ve-" and the first 8 characters
    /// of its id (15 bytes at most, as interface names must be).
    public static func hostInterfaceName(endpointID: String) -> String {
        hostInterfacePrefix + String(endpointID.filter { $0.isLetter || $0.isNumber }.prefix(8))
    }

    /// Attaches a workload namespace to the network: a veth from the
    /// sandbox bridge into the workload, the endpoint's address and MAC,
    /// the network's MTU and a default route through the gateway. On any
    /// failure the veth (both ends) is removed again.
    @discardableResult
    public func attach(_ endpoint: EndpointSpec, to network: OverlayNetwork) throws -> AttachedEndpoint {
        guard network.subnet.contains(endpoint.address.address), endpoint.address.length == network.subnet.length else {
            throw OverlayError.invalidEndpoint("address \(endpoint.address) is not in network \(network.id)'s subnet \(network.subnet)")
        }
        guard endpoint.address.address != network.gateway else {
            throw OverlayError.invalidEndpoint("address \(endpoint.address.address) is network \(network.id)'s gateway")
        }
        try endpoint.workload.checkExists()
        let sandbox = try sandbox(for: network)
        let inside = try RouteNetlink(namespace: sandbox)
        let workload = try RouteNetlink(namespace: endpoint.workload)
        let hostName = Self.hostInterfaceName(endpointID: endpoint.id)
        let workloadName = try endpoint.interfaceName ?? Self.nextFreeName(in: workload)

        try inside.linkAdd(LinkSpec(
            name: hostName,
            kind: .veth(peer: VethPeer(name: workloadName, namespace: endpoint.workload, up: true,
                                       mtu: network.mtu, address: endpoint.mac)),
            mtu: network.mtu, master: Self.bridgeName, up: true))
        do {
            try workload.addressAdd(endpoint.address, device: workloadName)
            if let via = endpoint.defaultGateway {
                try workload.routeReplace(RouteEntry(destination: nil, gateway: via))
            } else if endpoint.defaultRoute, try !workload.routes(family: endpoint.address.address.family).contains(where: { $0.destination == nil }) {
                try workload.routeAdd(RouteEntry(destination: nil, gateway: network.gateway))
            }
        } catch {
            try? inside.linkDelete(name: hostName)
            throw error
        }
        return AttachedEndpoint(hostInterface: hostName, workloadInterface: workloadName)
    }

    /// Detaches an endpoint: deleting the host-side veth removes both ends,
    /// and with them the address and routes in the workload.
    public func detach(endpointID: String, from network: OverlayNetwork) throws {
        let sandbox = try sandbox(for: network)
        guard sandbox.exists else { return }
        do {
            try RouteNetlink(namespace: sandbox).linkDelete(name: Self.hostInterfaceName(endpointID: endpointID))
        } catch NetlinkError.linkNotFound {}
    }

    static func nextFreeName(in workload: RouteNetlink) throws -> String {
        let taken = Set(try workload.links().map(\.name))
        for index in 0... where !taken.contains("eth\(index)") { return "eth\(index)" }
        fatalError("unreachable")
    }

    // MARK: - Peers

    /// Programs remote endpoints: per peer a static FDB entry on the vxlan
    /// device (MAC → VTEP, replacing any older VTEP for that MAC) and a
    /// permanent neighbour entry (IP → MAC), all in one batch.
    public func addPeers(_ peers: [Peer], to network: OverlayNetwork) throws {
        guard !peers.isEmpty else { return }
        let inside = try RouteNetlink(namespace: sandbox(for: network))
        let index = try inside.link(named: Self.vxlanName).index
        var batch = NetlinkBatch()
        for peer in peers {
            // FDB first, so that by the time ARP is answered the MAC is reachable.
            batch.fdbReplace(FDBEntry(linkIndex: index, mac: peer.mac, destination: peer.vtep))
            batch.neighbourReplace(NeighbourEntry(linkIndex: index, address: peer.address, mac: peer.mac))
        }
        try inside.apply(batch)
    }

    /// Removes remote endpoints' entries; entries already gone are fine.
    public func removePeers(_ peers: [Peer], from network: OverlayNetwork) throws {
        guard !peers.isEmpty else { return }
        let sandbox = try sandbox(for: network)
        guard sandbox.exists else { return }
        let inside = try RouteNetlink(namespace: sandbox)
        let index = try inside.link(named: Self.vxlanName).index
        var batch = NetlinkBatch()
        for peer in peers {
            batch.neighbourDelete(NeighbourEntry(linkIndex: index, address: peer.address, mac: peer.mac))
            batch.fdbDelete(FDBEntry(linkIndex: index, mac: peer.mac, destination: peer.vtep))
        }
        do {
            try inside.apply(batch)
        } catch NetlinkError.batchFailed(let failures, _) where failures.allSatisfy({ $0.error.errno == ENOENT }) {
            // Already absent: the goal is reached.
        }
    }
}

// MARK: - Reconciliation

extension OverlayDriver {
    /// VNIs of the sandboxes this driver's prefix names that exist now,
    /// including ones left by an earlier run.
    public func existingSandboxVNIs() throws -> [UInt32] {
        let prefix = "\(namePrefix)ov-"
        return try NetworkNamespace.list().compactMap { name in
            name.hasPrefix(prefix) ? UInt32(name.dropFirst(prefix.count)) : nil
        }
    }

    /// The node a sandbox's bridge names as its owner; nil when it names
    /// none (no bridge, no mark, or made before sandboxes were marked).
    public func sandboxOwner(vni: UInt32) throws -> String? {
        let sandbox = try NetworkNamespace.named("\(namePrefix)ov-\(vni)")
        guard sandbox.exists else { return nil }
        let bridge: Link
        do { bridge = try RouteNetlink(namespace: sandbox).link(named: Self.bridgeName) } catch NetlinkError.linkNotFound { return nil }
        guard let alias = bridge.alias else { return nil }
        let prefix = Self.ownerMark("")
        return alias.hasPrefix(prefix) ? String(alias.dropFirst(prefix.count)) : nil
    }

    /// Removes the sandbox of a VNI, also one no network record describes
    /// any more (left by a crash). A sandbox already gone is not an error; a
    /// leftover file without a namespace is removed too.
    public func removeSandbox(vni: UInt32) throws {
        let sandbox = try NetworkNamespace.named("\(namePrefix)ov-\(vni)")
        if sandbox.exists {
            do {
                try RouteNetlink(namespace: sandbox).linkDelete(name: Self.vxlanName)
            } catch NetlinkError.linkNotFound {}
        }
        do {
            try sandbox.delete()
        } catch NamespaceError.notFound(_) {}
    }

    /// True when the endpoint's host-side veth is in the sandbox.
    public func hasEndpoint(_ endpointID: String, on network: OverlayNetwork) throws -> Bool {
        let inside = try RouteNetlink(namespace: sandbox(for: network))
        do {
            _ = try inside.link(named: Self.hostInterfaceName(endpointID: endpointID))
            return true
        } catch NetlinkError.linkNotFound {
            return false
        }
    }

    /// What `syncPeers` changed.
    public struct PeerSync: Sendable, Equatable {
        public var added: Int
        public var removed: Int
    }

    /// Makes the vxlan device's static FDB entries and permanent neighbour
    /// entries exactly the desired peers: adds what is missing (or points to
    /// another VTEP), removes what no peer needs. Entries the kernel made
    /// itself (the bridge's own, non-permanent ones) are left alone.
    @discardableResult
    public func syncPeers(_ peers: [Peer], on network: OverlayNetwork) throws -> PeerSync {
        let inside = try RouteNetlink(namespace: sandbox(for: network))
        let index = try inside.link(named: Self.vxlanName).index
        let fdb = try inside.fdbEntries(linkIndex: index).filter { $0.isSelf && $0.isPermanent && $0.destination != nil }
        let neighbours = try inside.neighbours(family: AF_INET).filter { $0.linkIndex == index && $0.isPermanent }
        let haveFDB = Dictionary(fdb.map { ($0.mac, $0.destination!) }, uniquingKeysWith: { a, _ in a })
        let haveNeighbours = Dictionary(neighbours.map { ($0.address, $0.mac) }, uniquingKeysWith: { a, _ in a })
        let wantFDB = Dictionary(peers.map { ($0.mac, $0.vtep) }, uniquingKeysWith: { a, _ in a })
        let wantNeighbours = Dictionary(peers.map { ($0.address, $0.mac) }, uniquingKeysWith: { a, _ in a })

        var batch = NetlinkBatch()
        var sync = PeerSync(added: 0, removed: 0)
        for peer in peers {
            if haveFDB[peer.mac] != peer.vtep {
                batch.fdbReplace(FDBEntry(linkIndex: index, mac: peer.mac, destination: peer.vtep))
                sync.added += 1
            }
            if haveNeighbours[peer.address] != .some(peer.mac) {
                batch.neighbourReplace(NeighbourEntry(linkIndex: index, address: peer.address, mac: peer.mac))
                sync.added += 1
            }
        }
        for entry in fdb where wantFDB[entry.mac] != entry.destination {
            batch.fdbDelete(entry)
            sync.removed += 1
        }
        for entry in neighbours where wantNeighbours[entry.address] == nil {
            batch.neighbourDelete(entry)
            sync.removed += 1
        }
        if batch.count > 0 { try inside.apply(batch) }
        return sync
    }
}

extension OverlayDriver {
    /// The host-side veths in the network's sandbox, by name: one dump,
    /// where asking for each endpoint's veth cost a socket in the sandbox
    /// per endpoint on every pass.
    public func endpointInterfaces(on network: OverlayNetwork) throws -> Set<String> {
        let inside = try RouteNetlink(namespace: sandbox(for: network))
        return Set(try inside.links().map(\.name).filter { $0.hasPrefix(Self.hostInterfacePrefix) })
    }

    /// Deletes endpoint veths in the sandbox that belong to no endpoint in
    /// `endpointIDs` (left by a crash between attach and record, or by a
    /// detach that was recorded but not carried out). `present` is what
    /// `endpointInterfaces` found. Returns how many.
    @discardableResult
    public func removeStrayEndpoints(keeping endpointIDs: [String], on network: OverlayNetwork, present: Set<String>) throws -> Int {
        let keep = Set(endpointIDs.map(Self.hostInterfaceName))
        let strays = present.subtracting(keep)
        guard !strays.isEmpty else { return 0 }
        let inside = try RouteNetlink(namespace: sandbox(for: network))
        var removed = 0
        for name in strays.sorted() {
            do {
                try inside.linkDelete(name: name)
                removed += 1
            } catch NetlinkError.linkNotFound {}
        }
        return removed
    }
}

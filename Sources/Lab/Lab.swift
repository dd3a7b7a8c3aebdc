import Addressing
import Namespaces
import Netlink

/// Simulated hosts on one machine, for the demonstration, the tests and the
/// test bed: each host is a network namespace whose `eth0` is wired to a
/// shared underlay bridge in a namespace of its own, like hosts on one
/// Ethernet segment. Nothing here reaches outside the machine.
public struct Lab: Sendable {
    /// Prefix of every namespace the lab makes; unique per lab.
    public let prefix: String
    public let underlaySubnet: IPPrefix

    public init(prefix: String, underlaySubnet: IPPrefix? = nil) {
        self.prefix = prefix
        // TEST-NET-1 (RFC 5737): documentation space, routed nowhere.
        self.underlaySubnet = underlaySubnet ?? (try! IPPrefix(parsing: "192.0.2.0/24"))
    }

    /// A lab host: its namespace, its underlay device and address.
    public struct Host: Sendable {
        public let name: String
        public let namespace: NetworkNamespace
        public let device: String
        public let address: IPAddress
        public let mtu: UInt32
    }

    public var switchNamespace: NetworkNamespace { get throws { try NetworkNamespace.named("\(prefix)ul") } }

    /// The i-th host (1-based).
    public func host(_ index: Int, mtu: UInt32 = 1500) throws -> Host {
        guard case .v4(let base) = underlaySubnet.network.address else {
            throw NetlinkError.invalidArgument("the lab's underlay must be IPv4")
        }
        return Host(name: "h\(index)", namespace: try NetworkNamespace.named("\(prefix)h\(index)"),
                    device: "eth0", address: .v4(IPv4Address(base.value + UInt32(10 + index))), mtu: mtu)
    }

    /// Makes the underlay switch and `count` hosts. On failure everything
    /// made so far is removed.
    @discardableResult
    public func up(hosts count: Int, mtu: UInt32 = 1500) throws -> [Host] {
        do {
            let switchNamespace = try NetworkNamespace.create(named: try self.switchNamespace.name!)
            let fabric = try RouteNetlink(namespace: switchNamespace)
            try fabric.linkAdd(LinkSpec(name: "br-ul", kind: .bridge, mtu: mtu, up: true))
            var hosts: [Host] = []
            for index in 1...count {
                let host = try host(index, mtu: mtu)
                try NetworkNamespace.create(named: host.namespace.name!)
                try fabric.linkAdd(LinkSpec(
                    name: "port-h\(index)",
                    kind: .veth(peer: VethPeer(name: host.device, namespace: host.namespace, up: true, mtu: mtu)),
                    mtu: mtu, master: "br-ul", up: true))
                let session = try RouteNetlink(namespace: host.namespace)
                try session.linkSet(name: "lo", up: true)
                try session.addressAdd(try IPPrefix(address: host.address, length: underlaySubnet.length), device: host.device)
                hosts.append(host)
            }
            return hosts
        } catch {
            down()
            throw error
        }
    }

    /// Removes every namespace whose name starts with the lab's prefix.
    /// Overlay sandboxes of the lab's hosts carry the prefix too.
    public func down() {
        for name in (try? NetworkNamespace.list()) ?? [] where name.hasPrefix(prefix) {
            try? NetworkNamespace.named(name).delete()
        }
    }
}

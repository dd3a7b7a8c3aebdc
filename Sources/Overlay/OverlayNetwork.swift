import Addressing
import Namespaces

/// One overlay network as every host programs it: its VXLAN identifier,
/// subnet and gateway, UDP port and MTU.
public struct OverlayNetwork: Sendable, Hashable {
    public var id: String
    public var vni: UInt32
    public var subnet: IPPrefix
    public var gateway: IPAddress
    public var port: UInt16
    /// The overlay MTU: the underlay's less 50 bytes of VXLAN-over-IPv4 headers.
    public var mtu: UInt32

    /// VXLAN over IPv4 adds 50 bytes: outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8.
    public static let encapsulationOverhead: UInt32 = 50

    public init(id: String, vni: UInt32, subnet: IPPrefix, gateway: IPAddress, port: UInt16 = 4789, underlayMTU: UInt32 = 1500) throws {
        guard subnet.isNetwork else {
            throw OverlayError.invalidNetwork("subnet \(subnet) has host bits set; did you mean \(subnet.network)?")
        }
        guard subnet.contains(gateway) else {
            throw OverlayError.invalidNetwork("gateway \(gateway) is outside subnet \(subnet)")
        }
        guard (4096...(1 << 24 - 1)).contains(vni) else {
            throw OverlayError.invalidNetwork("VNI \(vni) is outside swarmnet's range 4096...16777215")
        }
        self.id = id
        self.vni = vni
        self.subnet = subnet
        self.gateway = gateway
        self.port = port
        self.mtu = underlayMTU - Self.encapsulationOverhead
    }
}

/// Where a host's overlay traffic leaves it: the namespace that holds the
/// underlay device and the data-path address (the host's own namespace, or
/// a test host's).
public struct Underlay: Sendable {
    public var namespace: NetworkNamespace?
    public var device: String
    public var address: IPAddress

    public init(namespace: NetworkNamespace?, device: String, address: IPAddress) {
        self.namespace = namespace
        self.device = device
        self.address = address
    }
}

/// A remote endpoint as the local host programs it: its overlay address and
/// MAC, and the VTEP (data-path address of its host) that reaches it.
public struct Peer: Sendable, Hashable {
    public var address: IPAddress
    public var mac: MACAddress
    public var vtep: IPAddress

    public init(address: IPAddress, mac: MACAddress, vtep: IPAddress) {
        self.address = address
        self.mac = mac
        self.vtep = vtep
    }
}

/// A workload namespace attached to a network.
public struct EndpointSpec: Sendable {
    /// Stable identifier; names the host-side veth.
    public var id: String
    public var workload: NetworkNamespace
    /// The endpoint's address with the subnet's prefix length.
    public var address: IPPrefix
    public var mac: MACAddress
    /// The interface name in the workload; nil picks eth0, eth1... the first free.
    public var interfaceName: String?
    /// Add a default route through the network's gateway when the workload has none.
    public var defaultRoute: Bool
    /// A next hop on this network that becomes the workload's default route,
    /// replacing any it has: how a routing-mesh backend sends its replies
    /// to outside clients through its own host (as Docker's gateway bridge).
    public var defaultGateway: IPAddress?

    public init(id: String, workload: NetworkNamespace, address: IPPrefix, mac: MACAddress? = nil,
                interfaceName: String? = nil, defaultRoute: Bool = true, defaultGateway: IPAddress? = nil) {
        self.defaultGateway = defaultGateway
        self.id = id
        self.workload = workload
        self.address = address
        if let mac {
            self.mac = mac
        } else if case .v4(let v4) = address.address {
            self.mac = MACAddress(derivedFrom: v4)
        } else {
            self.mac = MACAddress(bytes: [0x02, 0x42] + address.address.bytes.suffix(4))!
        }
        self.interfaceName = interfaceName
        self.defaultRoute = defaultRoute
    }
}

/// What `attach` made, for `detach` and for the operator.
public struct AttachedEndpoint: Sendable, Hashable {
    public var hostInterface: String
    public var workloadInterface: String
}

/// Errors of the overlay driver, naming the network or endpoint.
public enum OverlayError: Error, CustomStringConvertible, Sendable {
    case invalidNetwork(String)
    case invalidEndpoint(String)

    public var description: String {
        switch self {
        case .invalidNetwork(let text): "invalid overlay network: \(text)"
        case .invalidEndpoint(let text): "invalid endpoint: \(text)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CNetlinkShim
import Namespaces

/// A network interface as the kernel reports it (`ip -d link show`).
public struct Link: Sendable, Hashable, Codable {
    public var index: Int32
    public var name: String
    /// The rtnetlink kind: "bridge", "vxlan", "veth", "dummy"; nil for
    /// devices without one (loopback, physical NICs).
    public var kind: String?
    /// IFF_* flags (IFF_UP, IFF_LOWER_UP, ...).
    public var flags: UInt32
    public var mtu: UInt32
    /// The bridge (or other master) this link is enslaved to.
    public var masterIndex: Int32?
    public var address: MACAddress?
    /// IF_OPER_* (RFC 2863 operational state).
    public var operationalState: UInt8
    /// IFLA_LINK: for a veth, the peer's index (in `linkNetnsID`'s namespace
    /// when that is set).
    public var linkIndex: Int32?
    public var linkNetnsID: Int32?
    public var vxlan: VXLANAttributes?
    /// IFLA_IFALIAS (`ip link set NAME alias TEXT`); swarmnet marks the
    /// bridges of its sandboxes with their owner's node ID.
    public var alias: String?

    public var isUp: Bool { flags & UInt32(IFF_UP) != 0 }

    /// "UP", "DOWN", "UNKNOWN"... as `ip link` prints operstate.
    public var operationalStateName: String {
        switch Int32(operationalState) {
        case Int32(IF_OPER_UP): "UP"
        case Int32(IF_OPER_DOWN): "DOWN"
        case Int32(IF_OPER_LOWERLAYERDOWN): "LOWERLAYERDOWN"
        case Int32(IF_OPER_DORMANT): "DORMANT"
        case Int32(IF_OPER_NOTPRESENT): "NOTPRESENT"
        case Int32(IF_OPER_TESTING): "TESTING"
        default: "UNKNOWN"
        }
    }
}

/// The settings of a vxlan device (`ip -d link show` prints them).
public struct VXLANAttributes: Sendable, Hashable, Codable {
    public var vni: UInt32
    /// UDP destination port, host order.
    public var port: UInt16
    /// Source address of encapsulated packets (the data-path address).
    public var local: IPAddress?
    /// Index of the underlay device the socket is bound to.
    public var underlayIndex: Int32?
    public var learning: Bool
    public var udpChecksum: Bool
    public var ttl: UInt8
    /// ARP/ND proxy: the device answers neighbour requests from its own
    /// neighbour table instead of flooding them to every VTEP.
    public var proxy: Bool
}

/// What to create with `linkAdd`: `ip link add NAME [mtu M] [master B]
/// [netns N] [up] type KIND ...`. One request creates and configures the
/// link, so the kernel either makes all of it or nothing.
public struct LinkSpec: Sendable {
    public enum Kind: Sendable {
        case bridge
        case dummy
        case vxlan(VXLANOptions)
        case veth(peer: VethPeer)

        var name: String {
            switch self {
            case .bridge: "bridge"
            case .dummy: "dummy"
            case .vxlan: "vxlan"
            case .veth: "veth"
            }
        }
    }

    public var name: String
    public var kind: Kind
    public var mtu: UInt32?
    /// The bridge to enslave the new link to, by name (in the session's namespace).
    public var master: String?
    public var address: MACAddress?
    public var up: Bool
    /// Create the link straight into this namespace (IFLA_NET_NS_FD). A vxlan
    /// made this way keeps its UDP socket in the session's namespace (the
    /// underlay), exactly as when it is created there and then moved.
    public var namespace: NetworkNamespace?

    public init(name: String, kind: Kind, mtu: UInt32? = nil, master: String? = nil,
                address: MACAddress? = nil, up: Bool = false, namespace: NetworkNamespace? = nil) {
        self.name = name
        self.kind = kind
        self.mtu = mtu
        self.master = master
        self.address = address
        self.up = up
        self.namespace = namespace
    }
}

/// `type vxlan id VNI [local ADDR] [dev UNDERLAY] dstport PORT [no]learning [no]udpcsum`.
public struct VXLANOptions: Sendable {
    public var vni: UInt32
    public var port: UInt16
    public var local: IPAddress?
    /// The underlay device, by name, in the session's namespace.
    public var underlay: String?
    public var learning: Bool
    public var udpChecksum: Bool
    /// 0 lets the kernel choose (inherit).
    public var ttl: UInt8
    /// Answer ARP/ND from the device's neighbour table (libnetwork's setting:
    /// with a permanent entry per remote endpoint nothing is ever flooded).
    public var proxy: Bool

    public init(vni: UInt32, port: UInt16 = 4789, local: IPAddress? = nil, underlay: String? = nil,
                learning: Bool = false, udpChecksum: Bool = false, ttl: UInt8 = 0, proxy: Bool = false) {
        self.vni = vni
        self.port = port
        self.local = local
        self.underlay = underlay
        self.learning = learning
        self.udpChecksum = udpChecksum
        self.ttl = ttl
        self.proxy = proxy
    }
}

/// The other end of a veth pair, made by the same request.
public struct VethPeer: Sendable {
    public var name: String
    /// Where the peer is created; the session's namespace when nil.
    public var namespace: NetworkNamespace?
    public var up: Bool
    public var mtu: UInt32?
    public var address: MACAddress?

    public init(name: String, namespace: NetworkNamespace? = nil, up: Bool = false,
                mtu: UInt32? = nil, address: MACAddress? = nil) {
        self.name = name
        self.namespace = namespace
        self.up = up
        self.mtu = mtu
        self.address = address
    }
}

// MARK: - Parsing

extension Link {
    init(message: NetlinkMessage) throws {
        let header = try message.familyHeader(ifinfomsg.self)
        let attributes = try message.attributes(after: ifinfomsg.self)
        guard let name = attributes.string(Int(IFLA_IFNAME)) else {
            throw NetlinkError.malformedMessage("link \(header.ifi_index) has no IFLA_IFNAME")
        }
        index = header.ifi_index
        self.name = name
        flags = header.ifi_flags
        mtu = attributes.uint32(Int(IFLA_MTU)) ?? 0
        masterIndex = attributes.int32(Int(IFLA_MASTER)).flatMap { $0 == 0 ? nil : $0 }
        address = attributes[Int(IFLA_ADDRESS)].flatMap { MACAddress(bytes: $0) }
        operationalState = attributes.uint8(Int(IFLA_OPERSTATE)) ?? 0
        linkIndex = attributes.int32(Int(IFLA_LINK)).flatMap { $0 == index ? nil : $0 }
        linkNetnsID = attributes.int32(Int(IFLA_LINK_NETNSID))
        alias = attributes.string(Int(IFLA_IFALIAS)).flatMap { $0.isEmpty ? nil : $0 }
        let info = try attributes.nested(Int(IFLA_LINKINFO))
        kind = info?.string(Int(IFLA_INFO_KIND))
        if kind == "vxlan", let data = try info?.nested(Int(IFLA_INFO_DATA)) {
            vxlan = VXLANAttributes(
                vni: data.uint32(Int(IFLA_VXLAN_ID)) ?? 0,
                port: data.bigEndian16(Int(IFLA_VXLAN_PORT)) ?? 0,
                local: (data[Int(IFLA_VXLAN_LOCAL)] ?? data[Int(IFLA_VXLAN_LOCAL6)]).flatMap { IPAddress(bytes: $0) },
                underlayIndex: data.int32(Int(IFLA_VXLAN_LINK)).flatMap { $0 == 0 ? nil : $0 },
                learning: (data.uint8(Int(IFLA_VXLAN_LEARNING)) ?? 0) != 0,
                udpChecksum: (data.uint8(Int(IFLA_VXLAN_UDP_CSUM)) ?? 0) != 0,
                ttl: data.uint8(Int(IFLA_VXLAN_TTL)) ?? 0,
                proxy: (data.uint8(Int(IFLA_VXLAN_PROXY)) ?? 0) != 0)
        }
    }
}

// MARK: - Requests

extension RouteNetlink {
    /// `ip link show`: every link in the namespace.
    public func links() throws -> [Link] {
        var request = NetlinkRequest(type: UInt16(RTM_GETLINK), flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP))
        request.appendStruct(ifinfomsg())
        return try dump(request, operation: "list links in \(namespaceDescription)").compactMap {
            Int($0.type) == RTM_NEWLINK ? try Link(message: $0) : nil
        }
    }

    /// `ip link show NAME`; throws `linkNotFound` when there is none.
    public func link(named name: String) throws -> Link {
        try Validate.interfaceName(name)
        var request = NetlinkRequest(type: UInt16(RTM_GETLINK), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
        request.appendStruct(ifinfomsg())
        request.addAttribute(Int(IFLA_IFNAME), string: name)
        do {
            return try Link(message: query(request, operation: "get link", object: "'\(name)'"))
        } catch NetlinkError.kernel(let error) where error.errno == ENODEV {
            throw NetlinkError.linkNotFound(name: name, namespace: namespaceDescription)
        }
    }

    /// The link with this index, or nil.
    public func link(index: Int32) throws -> Link? {
        var request = NetlinkRequest(type: UInt16(RTM_GETLINK), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
        var header = ifinfomsg()
        header.ifi_index = index
        request.appendStruct(header)
        do {
            return try Link(message: query(request, operation: "get link", object: "#\(index)"))
        } catch NetlinkError.kernel(let error) where error.errno == ENODEV {
            return nil
        }
    }

    /// `ip link add`: creates a link of any supported kind in one request.
    /// Arguments are checked first; names of master and underlay are looked
    /// up; nothing is created when any of it fails.
    public func linkAdd(_ spec: LinkSpec) throws {
        try Validate.interfaceName(spec.name)
        if let mtu = spec.mtu { try Validate.mtu(mtu) }
        var descriptors: [Int32] = []
        defer { descriptors.forEach { close($0) } }

        var request = NetlinkRequest(
            type: UInt16(RTM_NEWLINK), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL))
        var header = ifinfomsg()
        if spec.up {
            header.ifi_flags = UInt32(IFF_UP)
            header.ifi_change = UInt32(IFF_UP)
        }
        request.appendStruct(header)
        request.addAttribute(Int(IFLA_IFNAME), string: spec.name)
        if let mtu = spec.mtu { request.addAttribute(Int(IFLA_MTU), uint32: mtu) }
        if let address = spec.address { request.addAttribute(Int(IFLA_ADDRESS), address.bytes) }
        if let master = spec.master {
            request.addAttribute(Int(IFLA_MASTER), int32: try link(named: master).index)
        }
        if let namespace = spec.namespace {
            let fd = try namespace.openDescriptor()
            descriptors.append(fd)
            request.addAttribute(Int(IFLA_NET_NS_FD), int32: fd)
        }

        switch spec.kind {
        case .bridge, .dummy:
            request.addNested(Int(IFLA_LINKINFO)) { $0.addAttribute(Int(IFLA_INFO_KIND), string: spec.kind.name) }
        case .vxlan(let options):
            try Validate.vni(options.vni)
            guard options.port != 0 else { throw NetlinkError.invalidArgument("vxlan destination port 0 is not a port") }
            let underlayIndex = try options.underlay.map { try link(named: $0).index }
            request.addNested(Int(IFLA_LINKINFO)) { info in
                info.addAttribute(Int(IFLA_INFO_KIND), string: "vxlan")
                info.addNested(Int(IFLA_INFO_DATA)) { data in
                    data.addAttribute(Int(IFLA_VXLAN_ID), uint32: options.vni)
                    switch options.local {
                    case .v4(let address)?: data.addAttribute(Int(IFLA_VXLAN_LOCAL), address.bytes)
                    case .v6(let address)?: data.addAttribute(Int(IFLA_VXLAN_LOCAL6), address.bytes)
                    case nil: break
                    }
                    if let underlayIndex { data.addAttribute(Int(IFLA_VXLAN_LINK), int32: underlayIndex) }
                    data.addAttribute(Int(IFLA_VXLAN_PORT), bigEndian16: options.port)
                    data.addAttribute(Int(IFLA_VXLAN_LEARNING), uint8: options.learning ? 1 : 0)
                    data.addAttribute(Int(IFLA_VXLAN_UDP_CSUM), uint8: options.udpChecksum ? 1 : 0)
                    data.addAttribute(Int(IFLA_VXLAN_TTL), uint8: options.ttl)
                    data.addAttribute(Int(IFLA_VXLAN_PROXY), uint8: options.proxy ? 1 : 0)
                }
            }
        case .veth(let peer):
            try Validate.interfaceName(peer.name)
            if let mtu = peer.mtu { try Validate.mtu(mtu) }
            let peerFD = try peer.namespace.map { try $0.openDescriptor() }
            if let peerFD { descriptors.append(peerFD) }
            request.addNested(Int(IFLA_LINKINFO)) { info in
                info.addAttribute(Int(IFLA_INFO_KIND), string: "veth")
                info.addNested(Int(IFLA_INFO_DATA)) { data in
                    // VETH_INFO_PEER holds a whole ifinfomsg and its attributes.
                    data.addNested(Int(VETH_INFO_PEER)) { peerMessage in
                        // No IFF_UP here: the kernel configures the peer before
                        // the pair is joined and refuses to open it (ENOTCONN).
                        peerMessage.appendStruct(ifinfomsg())
                        peerMessage.addAttribute(Int(IFLA_IFNAME), string: peer.name)
                        if let mtu = peer.mtu { peerMessage.addAttribute(Int(IFLA_MTU), uint32: mtu) }
                        if let address = peer.address { peerMessage.addAttribute(Int(IFLA_ADDRESS), address.bytes) }
                        if let peerFD { peerMessage.addAttribute(Int(IFLA_NET_NS_FD), int32: peerFD) }
                    }
                }
            }
        }
        try execute(request, operation: "create link", object: "\(spec.kind.name) '\(spec.name)' in \(namespaceDescription)")

        if case .veth(let peer) = spec.kind, peer.up {
            // The second step of a veth: bring the peer up where it lives.
            // If that fails the pair is deleted, so no half-made pair stays.
            do {
                let peerSession = try peer.namespace.map { try RouteNetlink(namespace: $0) } ?? self
                try peerSession.linkSet(name: peer.name, up: true)
            } catch {
                try? linkDelete(name: spec.name)
                throw error
            }
        }
    }

    /// `ip link del NAME`.
    public func linkDelete(name: String) throws {
        try Validate.interfaceName(name)
        var request = NetlinkRequest(type: UInt16(RTM_DELLINK), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
        request.appendStruct(ifinfomsg())
        request.addAttribute(Int(IFLA_IFNAME), string: name)
        do {
            try execute(request, operation: "delete link", object: "'\(name)' in \(namespaceDescription)")
        } catch NetlinkError.kernel(let error) where error.errno == ENODEV {
            throw NetlinkError.linkNotFound(name: name, namespace: namespaceDescription)
        }
    }

    /// `ip link set NAME [up|down] [mtu M] [master B|nomaster] [netns N] [name NEW] [alias TEXT]`.
    /// `master: .some(nil)` detaches the link from its master.
    public func linkSet(
        name: String, up: Bool? = nil, mtu: UInt32? = nil, master: String?? = nil,
        namespace: NetworkNamespace? = nil, newName: String? = nil, alias: String? = nil
    ) throws {
        if let mtu { try Validate.mtu(mtu) }
        if let newName { try Validate.interfaceName(newName) }
        let target = try link(named: name)
        var request = NetlinkRequest(type: UInt16(RTM_NEWLINK), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
        var header = ifinfomsg()
        header.ifi_index = target.index
        if let up {
            header.ifi_flags = up ? UInt32(IFF_UP) : 0
            header.ifi_change = UInt32(IFF_UP)
        }
        request.appendStruct(header)
        if let mtu { request.addAttribute(Int(IFLA_MTU), uint32: mtu) }
        if let master {
            request.addAttribute(Int(IFLA_MASTER), int32: try master.map { try link(named: $0).index } ?? 0)
        }
        if let newName { request.addAttribute(Int(IFLA_IFNAME), string: newName) }
        if let alias { request.addAttribute(Int(IFLA_IFALIAS), string: alias) }
        var fd: Int32?
        defer { fd.map { _ = close($0) } }
        if let namespace {
            fd = try namespace.openDescriptor()
            request.addAttribute(Int(IFLA_NET_NS_FD), int32: fd!)
        }
        try execute(request, operation: "set link", object: "'\(name)' in \(namespaceDescription)")
    }
}

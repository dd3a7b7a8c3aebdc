#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Namespaces
import Netlink

/// What the debug commands show, one value per kernel object, with the key
/// names of iproute2's JSON (`ip -j`, `bridge -j`) wherever there is one, so
/// an operator can compare the two outputs directly.
public enum Views {}

public struct NamespaceView: Codable, Sendable, Equatable {
    public var name: String
    public var path: String
    /// False for a leftover file that holds no namespace (an interrupted create).
    public var valid: Bool
}

public struct LinkView: Codable, Sendable, Equatable {
    public var ifindex: Int32
    public var ifname: String
    public var kind: String?
    public var flags: [String]
    public var mtu: UInt32
    public var operstate: String
    public var address: String?
    public var master: String?
    public var link: String?
    public var vxlan: VXLANView?

    public struct VXLANView: Codable, Sendable, Equatable {
        public var id: UInt32
        public var port: UInt16
        public var local: String?
        public var link: String?
        public var learning: Bool
        public var udpcsum: Bool
        public var ttl: UInt8
    }
}

public struct AddressView: Codable, Sendable, Equatable {
    public var ifindex: Int32
    public var ifname: String
    public var family: String
    public var local: String
    public var prefixlen: Int
    public var scope: String
    public var label: String?
}

public struct RouteView: Codable, Sendable, Equatable {
    public var dst: String
    public var gateway: String?
    public var dev: String?
    public var `protocol`: String
    public var scope: String
    public var type: String
    public var metric: UInt32?
    public var prefsrc: String?
    public var table: UInt32
}

public struct NeighbourView: Codable, Sendable, Equatable {
    public var dst: String
    public var lladdr: String?
    public var dev: String
    public var state: [String]
}

public struct FDBView: Codable, Sendable, Equatable {
    public var mac: String
    public var ifname: String
    public var dst: String?
    public var vni: UInt32?
    public var master: String?
    public var flags: [String]
    public var state: String
}

extension Views {
    public static func namespaces() throws -> [NamespaceView] {
        try NetworkNamespace.list().map { name in
            let namespace = try NetworkNamespace.named(name)
            return NamespaceView(name: name, path: namespace.path, valid: namespace.exists)
        }
    }

    public static func links(_ session: RouteNetlink) throws -> [LinkView] {
        let links = try session.links()
        let names = Dictionary(links.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
        return links.map { link in
            LinkView(
                ifindex: link.index, ifname: link.name, kind: link.kind,
                flags: KernelNames.linkFlags(link.flags), mtu: link.mtu, operstate: link.operationalStateName,
                address: link.address?.description,
                master: link.masterIndex.map { names[$0] ?? "#\($0)" },
                // A veth peer in another namespace is known only by index there.
                link: link.linkIndex.map { link.linkNetnsID == nil ? (names[$0] ?? "#\($0)") : "#\($0)@netns\(link.linkNetnsID!)" },
                vxlan: link.vxlan.map { vxlan in
                    LinkView.VXLANView(
                        id: vxlan.vni, port: vxlan.port, local: vxlan.local?.description,
                        // An underlay in another namespace (a sandbox's vxlan) is
                        // known here only by its index there.
                        link: vxlan.underlayIndex.map { index in
                            link.linkNetnsID.map { "#\(index)@netns\($0)" } ?? names[index] ?? "#\(index)"
                        },
                        learning: vxlan.learning, udpcsum: vxlan.udpChecksum, ttl: vxlan.ttl)
                })
        }
    }

    public static func addresses(_ session: RouteNetlink) throws -> [AddressView] {
        let names = try linkNames(session)
        return try session.addresses().map { entry in
            AddressView(
                ifindex: entry.linkIndex, ifname: names[entry.linkIndex] ?? "#\(entry.linkIndex)",
                family: entry.prefix.address.isIPv4 ? "inet" : "inet6",
                local: entry.prefix.address.description, prefixlen: entry.prefix.length,
                scope: KernelNames.scope(entry.scope), label: entry.label)
        }
    }

    public static func routes(_ session: RouteNetlink, allTables: Bool) throws -> [RouteView] {
        let names = try linkNames(session)
        return try session.routes(table: allTables ? nil : RT_MAIN_TABLE).map { route in
            RouteView(
                dst: route.destination.map { $0.length == $0.address.bitWidth ? $0.address.description : $0.description } ?? "default",
                gateway: route.gateway?.description,
                dev: route.outputIndex.map { names[$0] ?? "#\($0)" },
                protocol: KernelNames.routeProtocol(route.routeProtocol),
                scope: KernelNames.scope(route.scope), type: KernelNames.routeType(route.type),
                metric: route.priority, prefsrc: route.preferredSource?.description, table: route.table)
        }
    }

    public static func neighbours(_ session: RouteNetlink) throws -> [NeighbourView] {
        let names = try linkNames(session)
        return try session.neighbours().map { entry in
            NeighbourView(
                dst: entry.address.description, lladdr: entry.mac?.description,
                dev: names[entry.linkIndex] ?? "#\(entry.linkIndex)", state: KernelNames.neighbourState(entry.state))
        }
    }

    public static func fdb(_ session: RouteNetlink, device: String?) throws -> [FDBView] {
        let names = try linkNames(session)
        let index = try device.map { try session.link(named: $0).index }
        return try session.fdbEntries(linkIndex: index).map { entry in
            FDBView(
                mac: entry.mac.description, ifname: names[entry.linkIndex] ?? "#\(entry.linkIndex)",
                dst: entry.destination?.description, vni: entry.vni,
                master: entry.masterIndex.map { names[$0] ?? "#\($0)" },
                flags: KernelNames.neighbourFlags(entry.flags),
                state: entry.isPermanent ? "permanent" : KernelNames.neighbourState(entry.state).joined(separator: ",").lowercased())
        }
    }

    /// The main routing table's number (RT_TABLE_MAIN, 254).
    static let RT_MAIN_TABLE: UInt32 = 254

    private static func linkNames(_ session: RouteNetlink) throws -> [Int32: String] {
        Dictionary(try session.links().map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a })
    }
}

extension Views {
    public static func table(_ views: [NamespaceView]) -> TextTable {
        TextTable(headers: ["NAME", "PATH", "VALID"], rows: views.map { [$0.name, $0.path, $0.valid ? "yes" : "no (not a namespace)"] })
    }

    public static func table(_ views: [LinkView]) -> TextTable {
        TextTable(headers: ["INDEX", "NAME", "KIND", "STATE", "MTU", "MASTER", "MAC", "DETAILS"], rows: views.map { link in
            var details: [String] = []
            if let vxlan = link.vxlan {
                details.append("vni \(vxlan.id) dstport \(vxlan.port)")
                if let local = vxlan.local { details.append("local \(local)") }
                if let dev = vxlan.link { details.append("dev \(dev)") }
                details.append(vxlan.learning ? "learning" : "nolearning")
                details.append(vxlan.udpcsum ? "udpcsum" : "noudpcsum")
            }
            if let peer = link.link, link.kind == "veth" { details.append("peer \(peer)") }
            let state = link.flags.contains("UP") ? "up (\(link.operstate.lowercased()))" : "down"
            return ["\(link.ifindex)", link.ifname, link.kind ?? "-", state, "\(link.mtu)", link.master ?? "-",
                    link.address ?? "-", details.joined(separator: " ")]
        })
    }

    public static func table(_ views: [AddressView]) -> TextTable {
        TextTable(headers: ["DEVICE", "FAMILY", "ADDRESS", "SCOPE"], rows: views.map {
            [$0.ifname, $0.family, "\($0.local)/\($0.prefixlen)", $0.scope]
        })
    }

    public static func table(_ views: [RouteView]) -> TextTable {
        TextTable(headers: ["DESTINATION", "GATEWAY", "DEVICE", "PROTOCOL", "SCOPE", "TYPE", "METRIC", "TABLE"], rows: views.map {
            [$0.dst, $0.gateway ?? "-", $0.dev ?? "-", $0.protocol, $0.scope, $0.type,
             $0.metric.map(String.init) ?? "-", Self.tableName($0.table)]
        })
    }

    public static func table(_ views: [NeighbourView]) -> TextTable {
        TextTable(headers: ["ADDRESS", "MAC", "DEVICE", "STATE"], rows: views.map {
            [$0.dst, $0.lladdr ?? "-", $0.dev, $0.state.joined(separator: ",")]
        })
    }

    public static func table(_ views: [FDBView]) -> TextTable {
        TextTable(headers: ["MAC", "DEVICE", "DESTINATION", "VNI", "MASTER", "FLAGS", "STATE"], rows: views.map {
            [$0.mac, $0.ifname, $0.dst ?? "-", $0.vni.map(String.init) ?? "-", $0.master ?? "-",
             $0.flags.isEmpty ? "-" : $0.flags.joined(separator: ","), $0.state]
        })
    }

    static func tableName(_ table: UInt32) -> String {
        switch table {
        case 254: "main"
        case 255: "local"
        case 253: "default"
        default: "\(table)"
        }
    }
}

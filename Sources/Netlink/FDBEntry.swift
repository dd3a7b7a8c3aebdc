#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CNetlinkShim

/// A bridge forwarding-database entry (`bridge fdb show`). On a vxlan
/// device with NTF_SELF it says which VTEP (remote host) a MAC lives behind;
/// the all-zero MAC lists the VTEPs that receive flooded traffic.
public struct FDBEntry: Sendable, Hashable, Codable {
    public var linkIndex: Int32
    public var mac: MACAddress
    /// The remote VTEP address (NDA_DST), for vxlan entries.
    public var destination: IPAddress?
    public var vni: UInt32?
    public var port: UInt16?
    public var masterIndex: Int32?
    public var vlan: UInt16?
    /// NUD_* state bits.
    public var state: UInt16
    /// NTF_* flags (NTF_SELF: the device's own table, not its master's).
    public var flags: UInt8

    /// A static entry on a vxlan device: MAC → VTEP, as the overlay programs
    /// for each remote endpoint (`bridge fdb append MAC dev VX dst IP self permanent`).
    public init(linkIndex: Int32, mac: MACAddress, destination: IPAddress) {
        self.linkIndex = linkIndex
        self.mac = mac
        self.destination = destination
        state = UInt16(NUD_PERMANENT)
        flags = UInt8(NTF_SELF)
    }

    public var isSelf: Bool { flags & UInt8(NTF_SELF) != 0 }
    public var isPermanent: Bool { state & UInt16(NUD_PERMANENT) != 0 }

    var objectDescription: String {
        "\(mac)\(destination.map { " dst \($0)" } ?? "") dev #\(linkIndex)"
    }
}

extension FDBEntry {
    init(message: NetlinkMessage) throws {
        let header = try message.familyHeader(ndmsg.self)
        let attributes = try message.attributes(after: ndmsg.self)
        guard let bytes = attributes[Int(NDA_LLADDR)], let mac = MACAddress(bytes: bytes) else {
            throw NetlinkError.malformedMessage("fdb entry on link \(header.ndm_ifindex) has no NDA_LLADDR")
        }
        linkIndex = header.ndm_ifindex
        self.mac = mac
        destination = attributes[Int(NDA_DST)].flatMap { IPAddress(bytes: $0) }
        vni = attributes.uint32(Int(NDA_VNI))
        port = attributes.bigEndian16(Int(NDA_PORT))
        masterIndex = attributes.int32(Int(NDA_MASTER))
        vlan = attributes.uint16(Int(NDA_VLAN))
        state = header.ndm_state
        flags = header.ndm_flags
    }

    static func request(type: Int, entry: FDBEntry, flags: Int32) -> NetlinkRequest {
        var request = NetlinkRequest(type: UInt16(type), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK | flags))
        var header = ndmsg()
        header.ndm_family = UInt8(AF_BRIDGE)
        header.ndm_ifindex = entry.linkIndex
        header.ndm_state = entry.state
        header.ndm_flags = entry.flags
        request.appendStruct(header)
        request.addAttribute(Int(NDA_LLADDR), entry.mac.bytes)
        if let destination = entry.destination { request.addAttribute(Int(NDA_DST), destination.bytes) }
        if let vni = entry.vni { request.addAttribute(Int(NDA_VNI), uint32: vni) }
        if let port = entry.port { request.addAttribute(Int(NDA_PORT), bigEndian16: port) }
        return request
    }
}

extension RouteNetlink {
    /// `bridge fdb show [dev DEVICE]`: every FDB entry, or one device's.
    public func fdbEntries(linkIndex: Int32? = nil) throws -> [FDBEntry] {
        var request = NetlinkRequest(type: UInt16(RTM_GETNEIGH), flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP))
        var header = ndmsg()
        header.ndm_family = UInt8(AF_BRIDGE)
        request.appendStruct(header)
        return try dump(request, operation: "list fdb entries in \(namespaceDescription)").compactMap { message in
            guard Int(message.type) == RTM_NEWNEIGH else { return nil }
            let entry = try FDBEntry(message: message)
            return linkIndex == nil || entry.linkIndex == linkIndex ? entry : nil
        }
    }

    /// `bridge fdb append MAC dev DEVICE dst IP self permanent`. Append, not
    /// add: the all-zero MAC takes one entry per flooding destination.
    public func fdbAppend(_ entry: FDBEntry) throws {
        try execute(FDBEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_APPEND),
                    operation: "append fdb entry", object: "\(entry.objectDescription) in \(namespaceDescription)")
    }

    /// `bridge fdb replace MAC dev DEVICE dst IP self permanent`: a unicast
    /// MAC lives behind one VTEP, and a move to another host overwrites it.
    public func fdbReplace(_ entry: FDBEntry) throws {
        try execute(FDBEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_REPLACE),
                    operation: "replace fdb entry", object: "\(entry.objectDescription) in \(namespaceDescription)")
    }

    /// `bridge fdb del MAC dev DEVICE dst IP self`: with a destination,
    /// removes just that one of the MAC's appended destinations.
    public func fdbDelete(_ entry: FDBEntry) throws {
        try execute(FDBEntry.request(type: RTM_DELNEIGH, entry: entry, flags: 0),
                    operation: "delete fdb entry", object: "\(entry.objectDescription) in \(namespaceDescription)")
    }
}

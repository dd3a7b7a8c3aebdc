#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CNetlinkShim

/// A neighbour (ARP/NDP) entry: IP → MAC on a link (`ip neigh show`).
public struct NeighbourEntry: Sendable, Hashable, Codable {
    public var linkIndex: Int32
    public var address: IPAddress
    public var mac: MACAddress?
    /// NUD_* state bits (NUD_PERMANENT for swarmnet's entries).
    public var state: UInt16
    /// NTF_* flags.
    public var flags: UInt8

    /// A permanent entry to program, as the overlay does for each remote endpoint.
    public init(linkIndex: Int32, address: IPAddress, mac: MACAddress) {
        self.linkIndex = linkIndex
        self.address = address
        self.mac = mac
        state = UInt16(NUD_PERMANENT)
        flags = 0
    }

    public var isPermanent: Bool { state & UInt16(NUD_PERMANENT) != 0 }

    var objectDescription: String {
        "\(address)\(mac.map { " lladdr \($0)" } ?? "") dev #\(linkIndex)"
    }
}

extension NeighbourEntry {
    init(message: NetlinkMessage) throws {
        let header = try message.familyHeader(ndmsg.self)
        let attributes = try message.attributes(after: ndmsg.self)
        guard let bytes = attributes[Int(NDA_DST)], let address = IPAddress(bytes: bytes) else {
            throw NetlinkError.malformedMessage("neighbour on link \(header.ndm_ifindex) has no NDA_DST")
        }
        linkIndex = header.ndm_ifindex
        self.address = address
        mac = attributes[Int(NDA_LLADDR)].flatMap { MACAddress(bytes: $0) }
        state = header.ndm_state
        flags = header.ndm_flags
    }

    static func request(type: Int, entry: NeighbourEntry, flags: Int32) -> NetlinkRequest {
        var request = NetlinkRequest(type: UInt16(type), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK | flags))
        var header = ndmsg()
        header.ndm_family = UInt8(entry.address.family)
        header.ndm_ifindex = entry.linkIndex
        header.ndm_state = entry.state
        header.ndm_flags = entry.flags
        request.appendStruct(header)
        request.addAttribute(Int(NDA_DST), entry.address.bytes)
        if let mac = entry.mac, type != RTM_DELNEIGH { request.addAttribute(Int(NDA_LLADDR), mac.bytes) }
        return request
    }
}

extension RouteNetlink {
    /// `ip neigh show`: IPv4 and IPv6 neighbours (bridge FDB entries excluded).
    public func neighbours(family: Int32 = AF_UNSPEC) throws -> [NeighbourEntry] {
        var request = NetlinkRequest(type: UInt16(RTM_GETNEIGH), flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP))
        var header = ndmsg()
        header.ndm_family = UInt8(family)
        request.appendStruct(header)
        return try dump(request, operation: "list neighbours in \(namespaceDescription)").compactMap { message in
            guard Int(message.type) == RTM_NEWNEIGH else { return nil }
            let family = try message.familyHeader(ndmsg.self).ndm_family
            guard family == UInt8(AF_INET) || family == UInt8(AF_INET6) else { return nil }
            return try NeighbourEntry(message: message)
        }
    }

    /// `ip neigh replace ADDRESS lladdr MAC dev DEVICE nud permanent`:
    /// creates or overwrites, so programming the same entry twice is harmless.
    public func neighbourReplace(_ entry: NeighbourEntry) throws {
        guard entry.mac != nil else { throw NetlinkError.invalidArgument("neighbour \(entry.address) needs a MAC address") }
        try execute(NeighbourEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_REPLACE),
                    operation: "replace neighbour", object: "\(entry.objectDescription) in \(namespaceDescription)")
    }

    /// `ip neigh add`: fails with EEXIST when the entry exists.
    public func neighbourAdd(_ entry: NeighbourEntry) throws {
        guard entry.mac != nil else { throw NetlinkError.invalidArgument("neighbour \(entry.address) needs a MAC address") }
        try execute(NeighbourEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_EXCL),
                    operation: "add neighbour", object: "\(entry.objectDescription) in \(namespaceDescription)")
    }

    /// `ip neigh del ADDRESS dev DEVICE`.
    public func neighbourDelete(_ entry: NeighbourEntry) throws {
        try execute(NeighbourEntry.request(type: RTM_DELNEIGH, entry: entry, flags: 0),
                    operation: "delete neighbour", object: "\(entry.objectDescription) in \(namespaceDescription)")
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CNetlinkShim

/// An interface address (`ip addr show`).
public struct AddressEntry: Sendable, Hashable, Codable {
    public var linkIndex: Int32
    /// The local address and its prefix length, as in `10.0.0.1/24`.
    public var prefix: IPPrefix
    /// RT_SCOPE_*: 0 universe (global), 253 link, 254 host.
    public var scope: UInt8
    /// IFA_F_* flags (permanent, deprecated, ...).
    public var flags: UInt32
    public var label: String?
}

extension AddressEntry {
    init(message: NetlinkMessage) throws {
        let header = try message.familyHeader(ifaddrmsg.self)
        let attributes = try message.attributes(after: ifaddrmsg.self)
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer
        // on point-to-point links and equals IFA_LOCAL elsewhere.
        guard let bytes = attributes[Int(IFA_LOCAL)] ?? attributes[Int(IFA_ADDRESS)],
              let address = IPAddress(bytes: bytes) else {
            throw NetlinkError.malformedMessage("address on link \(header.ifa_index) has no IFA_LOCAL/IFA_ADDRESS")
        }
        linkIndex = Int32(bitPattern: header.ifa_index)
        prefix = try IPPrefix(address: address, length: Int(header.ifa_prefixlen))
        scope = header.ifa_scope
        flags = attributes.uint32(Int(IFA_FLAGS)) ?? UInt32(header.ifa_flags)
        label = attributes.string(Int(IFA_LABEL))
    }
}

extension RouteNetlink {
    /// `ip addr show`: every address, of one family (AF_INET, AF_INET6) or all.
    public func addresses(family: Int32 = AF_UNSPEC) throws -> [AddressEntry] {
        var request = NetlinkRequest(type: UInt16(RTM_GETADDR), flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP))
        var header = ifaddrmsg()
        header.ifa_family = UInt8(family)
        request.appendStruct(header)
        return try dump(request, operation: "list addresses in \(namespaceDescription)").compactMap {
            Int($0.type) == RTM_NEWADDR ? try AddressEntry(message: $0) : nil
        }
    }

    /// `ip addr add PREFIX dev DEVICE`.
    public func addressAdd(_ prefix: IPPrefix, device: String) throws {
        try execute(addressRequest(RTM_NEWADDR, prefix, device: device, flags: NLM_F_CREATE | NLM_F_EXCL),
                    operation: "add address", object: "\(prefix) to '\(device)' in \(namespaceDescription)")
    }

    /// `ip addr del PREFIX dev DEVICE`.
    public func addressDelete(_ prefix: IPPrefix, device: String) throws {
        try execute(addressRequest(RTM_DELADDR, prefix, device: device, flags: 0),
                    operation: "delete address", object: "\(prefix) from '\(device)' in \(namespaceDescription)")
    }

    private func addressRequest(_ type: Int, _ prefix: IPPrefix, device: String, flags: Int32) throws -> NetlinkRequest {
        let index = try link(named: device).index
        var request = NetlinkRequest(type: UInt16(type), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK | flags))
        var header = ifaddrmsg()
        header.ifa_family = UInt8(prefix.address.family)
        header.ifa_prefixlen = UInt8(prefix.length)
        header.ifa_index = UInt32(index)
        request.appendStruct(header)
        request.addAttribute(Int(IFA_LOCAL), prefix.address.bytes)
        request.addAttribute(Int(IFA_ADDRESS), prefix.address.bytes)
        return request
    }
}

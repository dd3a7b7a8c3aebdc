#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CNetlinkShim

/// One direction of a tracked connection, as ctnetlink reports it
/// (CTA_TUPLE_ORIG or CTA_TUPLE_REPLY): addresses, protocol and ports.
public struct ConntrackTuple: Sendable, Hashable, CustomStringConvertible {
    public var source: IPAddress
    public var destination: IPAddress
    /// The IPPROTO_* number (6 TCP, 17 UDP, 1 ICMP...).
    public var protocolNumber: UInt8
    /// Ports of TCP, UDP, SCTP, DCCP, UDP-Lite; nil for protocols without ports.
    public var sourcePort: UInt16?
    public var destinationPort: UInt16?
    /// ICMP or ICMPv6 id, type and code (what identifies an ICMP "connection").
    public var icmp: ICMP?

    public struct ICMP: Sendable, Hashable {
        public var id: UInt16
        public var type: UInt8
        public var code: UInt8
        public init(id: UInt16, type: UInt8, code: UInt8) {
            self.id = id
            self.type = type
            self.code = code
        }
    }

    public init(source: IPAddress, destination: IPAddress, protocolNumber: UInt8,
                sourcePort: UInt16? = nil, destinationPort: UInt16? = nil, icmp: ICMP? = nil) {
        self.source = source
        self.destination = destination
        self.protocolNumber = protocolNumber
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.icmp = icmp
    }

    /// "src=10.0.0.1 dst=10.96.0.1 sport=40000 dport=53", conntrack -L's words.
    public var description: String {
        var text = "src=\(source) dst=\(destination)"
        if let sourcePort { text += " sport=\(sourcePort)" }
        if let destinationPort { text += " dport=\(destinationPort)" }
        if let icmp { text += " type=\(icmp.type) code=\(icmp.code) id=\(icmp.id)" }
        return text
    }
}

/// IPS_* status bits of a conntrack entry (CTA_STATUS).
public struct ConntrackStatus: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let expected = ConntrackStatus(rawValue: UInt32(IPS_EXPECTED.rawValue))
    /// Packets went both ways; conntrack -L prints [UNREPLIED] without it.
    public static let seenReply = ConntrackStatus(rawValue: UInt32(IPS_SEEN_REPLY.rawValue))
    /// conntrack -L's [ASSURED]: not dropped early when the table is full.
    public static let assured = ConntrackStatus(rawValue: UInt32(IPS_ASSURED.rawValue))
    public static let confirmed = ConntrackStatus(rawValue: UInt32(IPS_CONFIRMED.rawValue))
    public static let sourceNAT = ConntrackStatus(rawValue: UInt32(IPS_SRC_NAT.rawValue))
    public static let destinationNAT = ConntrackStatus(rawValue: UInt32(IPS_DST_NAT.rawValue))
    public static let dying = ConntrackStatus(rawValue: UInt32(IPS_DYING.rawValue))
}

/// A connection-tracking entry (`conntrack -L`): its original tuple (as the
/// first packet had it), its reply tuple (as replies are expected, so after
/// NAT: a DNATed connection's reply source is the backend), status and mark.
public struct ConntrackEntry: Sendable, Hashable, CustomStringConvertible {
    /// AF_INET or AF_INET6.
    public var family: Int32
    public var original: ConntrackTuple
    public var reply: ConntrackTuple
    public var status: ConntrackStatus
    public var mark: UInt32?
    /// The kernel's id of the entry; a delete that names it removes only
    /// this entry, never a newer one that happens to have the same tuple.
    public var id: UInt32?
    /// The conntrack zone, when not the default one.
    public var zone: UInt16?
    /// Seconds left before the entry expires.
    public var timeout: UInt32?

    public init(family: Int32, original: ConntrackTuple, reply: ConntrackTuple, status: ConntrackStatus = [],
                mark: UInt32? = nil, id: UInt32? = nil, zone: UInt16? = nil, timeout: UInt32? = nil) {
        self.family = family
        self.original = original
        self.reply = reply
        self.status = status
        self.mark = mark
        self.id = id
        self.zone = zone
        self.timeout = timeout
    }

    /// The connection was sent to another address or port than its first
    /// packet asked for: replies come from somewhere else than the original
    /// destination. This is how a load balancer's DNAT shows (the IPS_DST_NAT
    /// bit says the same, but the tuples are what a delete must match).
    public var isDestinationNATed: Bool {
        original.destination != reply.source || original.destinationPort != reply.sourcePort
    }

    public var description: String {
        var text = "\(ConntrackEntry.protocolName(original.protocolNumber)) \(original)"
        if !status.contains(.seenReply) { text += " [UNREPLIED]" }
        text += " \(reply)"
        if status.contains(.assured) { text += " [ASSURED]" }
        if let mark { text += " mark=\(mark)" }
        if let zone { text += " zone=\(zone)" }
        return text
    }

    static func protocolName(_ number: UInt8) -> String {
        switch number {
        case 1: "icmp"
        case 6: "tcp"
        case 17: "udp"
        case 58: "icmpv6"
        case 132: "sctp"
        default: "proto \(number)"
        }
    }
}

/// What `Conntrack.deleteEntries(natedTo:)` deletes: entries destination-NATed
/// to one backend (their reply source is the backend, their original
/// destination is not), optionally only those sent to one VIP, port and
/// protocol. A nil field matches anything.
public struct ConntrackNATMatch: Sendable, Hashable, CustomStringConvertible {
    public var backend: IPAddress
    public var backendPort: UInt16?
    public var protocolNumber: UInt8?
    /// The address clients sent to (the VIP); nil for any (a published
    /// port answers on every local address).
    public var originalDestination: IPAddress?
    public var originalDestinationPort: UInt16?

    public init(backend: IPAddress, backendPort: UInt16? = nil, protocolNumber: UInt8? = nil,
                originalDestination: IPAddress? = nil, originalDestinationPort: UInt16? = nil) {
        self.backend = backend
        self.backendPort = backendPort
        self.protocolNumber = protocolNumber
        self.originalDestination = originalDestination
        self.originalDestinationPort = originalDestinationPort
    }

    public func matches(_ entry: ConntrackEntry) -> Bool {
        guard entry.isDestinationNATed, entry.reply.source == backend else { return false }
        if let backendPort, entry.reply.sourcePort != backendPort { return false }
        if let protocolNumber, entry.original.protocolNumber != protocolNumber { return false }
        if let originalDestination, entry.original.destination != originalDestination { return false }
        if let originalDestinationPort, entry.original.destinationPort != originalDestinationPort { return false }
        return true
    }

    public var description: String {
        var text = "NATed to \(backend)"
        if let backendPort { text += " port \(backendPort)" }
        if let protocolNumber { text += " \(ConntrackEntry.protocolName(protocolNumber))" }
        if let originalDestination { text += " sent to \(originalDestination)" }
        if let originalDestinationPort { text += " port \(originalDestinationPort)" }
        return text
    }
}

// MARK: - Messages

/// ctnetlink's requests and replies. Every value inside a conntrack message
/// is in network byte order (addresses, ports, status, mark, id, zone).
enum ConntrackMessages {
    /// NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_*.
    static func type(_ message: cntl_msg_types) -> UInt16 {
        UInt16(NFNL_SUBSYS_CTNETLINK) << 8 | UInt16(message.rawValue)
    }

    /// `conntrack -L [-f FAMILY]`: a dump of the table; AF_UNSPEC for every family.
    static func dumpRequest(family: Int32) -> NetlinkRequest {
        var request = NetlinkRequest(type: type(IPCTNL_MSG_CT_GET), flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP))
        request.appendStruct(header(family: family))
        return request
    }

    /// `conntrack -C`: the namespace's entry count (IPCTNL_MSG_CT_GET_STATS).
    static func countRequest() -> NetlinkRequest {
        var request = NetlinkRequest(type: type(IPCTNL_MSG_CT_GET_STATS), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
        request.appendStruct(header(family: AF_UNSPEC))
        return request
    }

    /// `conntrack -D` of exactly one entry, named by its original tuple (and
    /// zone and id when known). The tuple is never left out: a delete
    /// without one flushes the whole table.
    static func deleteRequest(_ entry: ConntrackEntry) -> NetlinkRequest {
        var request = NetlinkRequest(type: type(IPCTNL_MSG_CT_DELETE), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
        request.appendStruct(header(family: entry.family))
        request.addNested(Int(CTA_TUPLE_ORIG.rawValue)) { add(entry.original, to: &$0) }
        if let zone = entry.zone { request.addAttribute(Int(CTA_ZONE.rawValue), bigEndian16: zone) }
        if let id = entry.id { request.addAttribute(Int(CTA_ID.rawValue), uint32: id.bigEndian) }
        return request
    }

    private static func header(family: Int32) -> nfgenmsg {
        nfgenmsg(nfgen_family: UInt8(family), version: UInt8(NFNETLINK_V0), res_id: 0)
    }

    private static func add(_ tuple: ConntrackTuple, to request: inout NetlinkRequest) {
        let v4 = tuple.source.isIPv4
        request.addNested(Int(CTA_TUPLE_IP.rawValue)) {
            $0.addAttribute(Int((v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC).rawValue), tuple.source.bytes)
            $0.addAttribute(Int((v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST).rawValue), tuple.destination.bytes)
        }
        request.addNested(Int(CTA_TUPLE_PROTO.rawValue)) {
            $0.addAttribute(Int(CTA_PROTO_NUM.rawValue), uint8: tuple.protocolNumber)
            if let port = tuple.sourcePort { $0.addAttribute(Int(CTA_PROTO_SRC_PORT.rawValue), bigEndian16: port) }
            if let port = tuple.destinationPort { $0.addAttribute(Int(CTA_PROTO_DST_PORT.rawValue), bigEndian16: port) }
            if let icmp = tuple.icmp {
                let (id, type, code) = v4
                    ? (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE)
                    : (CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE)
                $0.addAttribute(Int(id.rawValue), bigEndian16: icmp.id)
                $0.addAttribute(Int(type.rawValue), uint8: icmp.type)
                $0.addAttribute(Int(code.rawValue), uint8: icmp.code)
            }
        }
    }

    /// Parses one IPCTNL_MSG_CT_NEW message of a dump. Anything missing or of
    /// the wrong size is `NetlinkError.malformedMessage`, naming what.
    static func entry(from message: NetlinkMessage) throws -> ConntrackEntry {
        guard message.type == type(IPCTNL_MSG_CT_NEW) else {
            throw NetlinkError.malformedMessage("conntrack dump: message type 0x\(String(message.type, radix: 16)), expected IPCTNL_MSG_CT_NEW")
        }
        let header = try message.familyHeader(nfgenmsg.self)
        let family = Int32(header.nfgen_family)
        guard family == AF_INET || family == AF_INET6 else {
            throw NetlinkError.malformedMessage("conntrack entry of address family \(family)")
        }
        let attributes = try message.attributes(after: nfgenmsg.self)
        guard let original = try attributes.nested(Int(CTA_TUPLE_ORIG.rawValue)) else {
            throw NetlinkError.malformedMessage("conntrack entry without CTA_TUPLE_ORIG")
        }
        guard let reply = try attributes.nested(Int(CTA_TUPLE_REPLY.rawValue)) else {
            throw NetlinkError.malformedMessage("conntrack entry without CTA_TUPLE_REPLY")
        }
        let status = try Self.bigEndian32(attributes, CTA_STATUS.rawValue, "CTA_STATUS")
        return ConntrackEntry(
            family: family,
            original: try tuple(original, family: family, name: "CTA_TUPLE_ORIG"),
            reply: try tuple(reply, family: family, name: "CTA_TUPLE_REPLY"),
            status: ConntrackStatus(rawValue: status ?? 0),
            mark: try Self.bigEndian32(attributes, CTA_MARK.rawValue, "CTA_MARK"),
            id: try Self.bigEndian32(attributes, CTA_ID.rawValue, "CTA_ID"),
            zone: try fixed(attributes, CTA_ZONE.rawValue, 2, "CTA_ZONE").map { UInt16(bigEndian: $0.loadHost(UInt16.self, at: $0.startIndex)) },
            timeout: try Self.bigEndian32(attributes, CTA_TIMEOUT.rawValue, "CTA_TIMEOUT"))
    }

    private static func tuple(_ attributes: Attributes, family: Int32, name: String) throws -> ConntrackTuple {
        guard let ip = try attributes.nested(Int(CTA_TUPLE_IP.rawValue)) else {
            throw NetlinkError.malformedMessage("conntrack \(name) without CTA_TUPLE_IP")
        }
        let v4 = family == AF_INET
        let size = v4 ? 4 : 16
        func address(_ type: ctattr_ip, _ label: String) throws -> IPAddress {
            guard let bytes = try fixed(ip, type.rawValue, size, "\(name) \(label)"), let address = IPAddress(bytes: bytes) else {
                throw NetlinkError.malformedMessage("conntrack \(name) without \(label)")
            }
            return address
        }
        let source = try address(v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC, v4 ? "CTA_IP_V4_SRC" : "CTA_IP_V6_SRC")
        let destination = try address(v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST, v4 ? "CTA_IP_V4_DST" : "CTA_IP_V6_DST")
        guard let proto = try attributes.nested(Int(CTA_TUPLE_PROTO.rawValue)) else {
            throw NetlinkError.malformedMessage("conntrack \(name) without CTA_TUPLE_PROTO")
        }
        guard let number = try fixed(proto, CTA_PROTO_NUM.rawValue, 1, "\(name) CTA_PROTO_NUM")?.first else {
            throw NetlinkError.malformedMessage("conntrack \(name) without CTA_PROTO_NUM")
        }
        func port(_ type: ctattr_l4proto, _ label: String) throws -> UInt16? {
            try fixed(proto, type.rawValue, 2, "\(name) \(label)").map { UInt16(bigEndian: $0.loadHost(UInt16.self, at: $0.startIndex)) }
        }
        let (idType, typeType, codeType) = v4
            ? (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE)
            : (CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE)
        var icmp: ConntrackTuple.ICMP?
        if let id = try port(idType, "ICMP id") {
            guard let type = try fixed(proto, typeType.rawValue, 1, "\(name) ICMP type")?.first,
                  let code = try fixed(proto, codeType.rawValue, 1, "\(name) ICMP code")?.first else {
                throw NetlinkError.malformedMessage("conntrack \(name): ICMP id without type and code")
            }
            icmp = ConntrackTuple.ICMP(id: id, type: type, code: code)
        }
        return ConntrackTuple(
            source: source, destination: destination, protocolNumber: number,
            sourcePort: try port(CTA_PROTO_SRC_PORT, "CTA_PROTO_SRC_PORT"),
            destinationPort: try port(CTA_PROTO_DST_PORT, "CTA_PROTO_DST_PORT"),
            icmp: icmp)
    }

    /// The payload of attribute `type` when present; an error when present
    /// with another size than `size` (a short attribute must not read as absent).
    private static func fixed(_ attributes: Attributes, _ type: UInt32, _ size: Int, _ label: String) throws -> ArraySlice<UInt8>? {
        guard let value = attributes[Int(type)] else { return nil }
        guard value.count == size else {
            throw NetlinkError.malformedMessage("conntrack \(label) has \(value.count) bytes, expected \(size)")
        }
        return value
    }

    private static func bigEndian32(_ attributes: Attributes, _ type: UInt32, _ label: String) throws -> UInt32? {
        try fixed(attributes, type, 4, label).map { UInt32(bigEndian: $0.loadHost(UInt32.self, at: $0.startIndex)) }
    }
}

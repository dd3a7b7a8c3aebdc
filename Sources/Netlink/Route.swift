#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CNetlinkShim

/// A route (`ip route show table all`).
public struct RouteEntry: Sendable, Hashable, Codable {
    public var family: Int32
    /// nil for the default route.
    public var destination: IPPrefix?
    public var gateway: IPAddress?
    public var outputIndex: Int32?
    public var table: UInt32
    /// RTPROT_*: who made the route (kernel, boot, static...).
    public var routeProtocol: UInt8
    /// RT_SCOPE_*.
    public var scope: UInt8
    /// RTN_*: unicast, local, broadcast...
    public var type: UInt8
    public var priority: UInt32?
    public var preferredSource: IPAddress?

    /// A route to add: `ip route add DEST [via GW] [dev DEV] [metric M] [table T]`.
    public init(destination: IPPrefix?, gateway: IPAddress? = nil, outputIndex: Int32? = nil,
                table: UInt32 = RT_TABLE_MAIN.rawValue, priority: UInt32? = nil,
                routeProtocol: UInt8 = UInt8(RTPROT_STATIC)) {
        family = (destination?.address ?? gateway)?.family ?? AF_INET
        self.destination = destination
        self.gateway = gateway
        self.outputIndex = outputIndex
        self.table = table
        self.routeProtocol = routeProtocol
        // A route with a gateway reaches beyond the link; one without stays on it.
        scope = gateway == nil ? UInt8(RT_SCOPE_LINK.rawValue) : UInt8(RT_SCOPE_UNIVERSE.rawValue)
        type = UInt8(RTN_UNICAST)
        self.priority = priority
        preferredSource = nil
    }
}

extension RouteEntry {
    init(message: NetlinkMessage) throws {
        let header = try message.familyHeader(rtmsg.self)
        let attributes = try message.attributes(after: rtmsg.self)
        family = Int32(header.rtm_family)
        if let bytes = attributes[Int(RTA_DST.rawValue)], let address = IPAddress(bytes: bytes) {
            destination = try IPPrefix(address: address, length: Int(header.rtm_dst_len))
        } else if header.rtm_dst_len != 0 {
            throw NetlinkError.malformedMessage("route with /\(header.rtm_dst_len) has no RTA_DST")
        }
        gateway = attributes[Int(RTA_GATEWAY.rawValue)].flatMap { IPAddress(bytes: $0) }
        outputIndex = attributes.int32(Int(RTA_OIF.rawValue))
        table = attributes.uint32(Int(RTA_TABLE.rawValue)) ?? UInt32(header.rtm_table)
        routeProtocol = header.rtm_protocol
        scope = header.rtm_scope
        type = header.rtm_type
        priority = attributes.uint32(Int(RTA_PRIORITY.rawValue))
        preferredSource = attributes[Int(RTA_PREFSRC.rawValue)].flatMap { IPAddress(bytes: $0) }
    }
}

extension RouteNetlink {
    /// `ip route show [table T]`: routes of one family (or all), in one table
    /// (RT_TABLE_MAIN by default, as `ip route` shows) or every table when nil.
    public func routes(family: Int32 = AF_UNSPEC, table: UInt32? = RT_TABLE_MAIN.rawValue) throws -> [RouteEntry] {
        var request = NetlinkRequest(type: UInt16(RTM_GETROUTE), flags: UInt16(NLM_F_REQUEST | NLM_F_DUMP))
        var header = rtmsg()
        header.rtm_family = UInt8(family)
        request.appendStruct(header)
        return try dump(request, operation: "list routes in \(namespaceDescription)").compactMap {
            guard Int($0.type) == RTM_NEWROUTE else { return nil }
            let route = try RouteEntry(message: $0)
            return table == nil || route.table == table ? route : nil
        }
    }

    /// `ip route add`.
    public func routeAdd(_ route: RouteEntry) throws {
        try execute(routeRequest(RTM_NEWROUTE, route, flags: NLM_F_CREATE | NLM_F_EXCL),
                    operation: "add route", object: "\(Self.describe(route)) in \(namespaceDescription)")
    }

    /// `ip route replace`.
    public func routeReplace(_ route: RouteEntry) throws {
        try execute(routeRequest(RTM_NEWROUTE, route, flags: NLM_F_CREATE | NLM_F_REPLACE),
                    operation: "replace route", object: "\(Self.describe(route)) in \(namespaceDescription)")
    }

    /// `ip route del`.
    public func routeDelete(_ route: RouteEntry) throws {
        try execute(routeRequest(RTM_DELROUTE, route, flags: 0),
                    operation: "delete route", object: "\(Self.describe(route)) in \(namespaceDescription)")
    }

    static func describe(_ route: RouteEntry) -> String {
        var text = route.destination.map(\.description) ?? "default"
        if let gateway = route.gateway { text += " via \(gateway)" }
        if let index = route.outputIndex { text += " dev #\(index)" }
        return text
    }

    private func routeRequest(_ type: Int, _ route: RouteEntry, flags: Int32) throws -> NetlinkRequest {
        if route.destination == nil && route.gateway == nil && route.outputIndex == nil {
            throw NetlinkError.invalidArgument("a route needs a destination, a gateway or a device")
        }
        if let gateway = route.gateway, let destination = route.destination, gateway.isIPv4 != destination.address.isIPv4 {
            throw NetlinkError.invalidArgument("gateway \(gateway) and destination \(destination) are of different address families")
        }
        var request = NetlinkRequest(type: UInt16(type), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK | flags))
        var header = rtmsg()
        header.rtm_family = UInt8(route.family)
        header.rtm_dst_len = UInt8(route.destination?.length ?? 0)
        header.rtm_table = route.table < 256 ? UInt8(route.table) : UInt8(RT_TABLE_UNSPEC.rawValue)
        header.rtm_protocol = route.routeProtocol
        header.rtm_scope = route.scope
        header.rtm_type = route.type
        request.appendStruct(header)
        if let destination = route.destination { request.addAttribute(Int(RTA_DST.rawValue), destination.network.address.bytes) }
        if let gateway = route.gateway { request.addAttribute(Int(RTA_GATEWAY.rawValue), gateway.bytes) }
        if let index = route.outputIndex { request.addAttribute(Int(RTA_OIF.rawValue), int32: index) }
        if let priority = route.priority { request.addAttribute(Int(RTA_PRIORITY.rawValue), uint32: priority) }
        if route.table >= 256 { request.addAttribute(Int(RTA_TABLE.rawValue), uint32: route.table) }
        return request
    }
}

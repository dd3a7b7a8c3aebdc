import Addressing
import CIPVSShim
import Netlink

/// Generic netlink framing: a netlink header whose type is the family id,
/// then a 4-byte genlmsghdr (command, version), then attributes.
enum GenericNetlink {
    static func request(family: UInt16, command: Int, version: UInt8, flags: Int32) -> NetlinkRequest {
        var request = NetlinkRequest(type: family, flags: UInt16(flags))
        request.appendStruct(genlmsghdr(cmd: UInt8(command), version: version, reserved: 0))
        return request
    }

    /// CTRL_CMD_GETFAMILY for `name`, addressed to the controller (GENL_ID_CTRL).
    static func familyRequest(name: String) -> NetlinkRequest {
        var request = request(family: cipvs_genl_id_ctrl(), command: Int(CTRL_CMD_GETFAMILY), version: 1,
                              flags: NLM_F_REQUEST | NLM_F_ACK)
        request.addAttribute(Int(CTRL_ATTR_FAMILY_NAME), string: name)
        return request
    }

    /// CTRL_ATTR_FAMILY_ID of the controller's answer.
    static func familyID(from reply: NetlinkMessage) throws -> UInt16 {
        guard let id = try attributes(of: reply).uint16(Int(CTRL_ATTR_FAMILY_ID)) else {
            throw LoadBalancerError.malformedReply("the family reply has no CTRL_ATTR_FAMILY_ID")
        }
        return id
    }

    /// The command byte of a reply.
    static func command(of message: NetlinkMessage) throws -> UInt8 {
        try message.familyHeader(genlmsghdr.self).cmd
    }

    static func attributes(of message: NetlinkMessage) throws -> Attributes {
        do { return try message.attributes(after: genlmsghdr.self) } catch let error as NetlinkError {
            throw LoadBalancerError.malformedReply("\(error)")
        }
    }
}

/// The global IPVS connection timeouts (`ipvsadm --set tcp tcpfin udp`), in
/// seconds. A 0 in a request leaves that timeout as it is.
public struct IPVSTimeouts: Sendable, Hashable, Codable {
    /// Established TCP connections (the kernel's default is 900 s).
    public var tcp: UInt32
    /// TCP after a FIN (default 120 s).
    public var tcpFin: UInt32
    /// UDP (default 300 s).
    public var udp: UInt32

    public init(tcp: UInt32, tcpFin: UInt32, udp: UInt32) {
        self.tcp = tcp
        self.tcpFin = tcpFin
        self.udp = udp
    }
}

/// A real server as the kernel reports it, with its connection counters.
public struct IPVSDestination: Sendable, Hashable {
    public var server: RealServer
    public var activeConnections: UInt32
    public var inactiveConnections: UInt32
    public var persistentConnections: UInt32
}

/// Building IPVS requests and parsing IPVS replies: pure functions, so the
/// bytes are tested without a kernel.
enum IPVSMessage {
    static let version = cipvs_genl_version()
    /// IP_VS_SVC_F_PERSISTENT.
    static let persistentFlag = UInt32(IP_VS_SVC_F_PERSISTENT)
    /// IP_VS_SVC_F_HASHED: set by the kernel on every service it holds.
    static let schedulerFlagMask = SchedulerFlags.fallback.rawValue | SchedulerFlags.hashPort.rawValue

    static func request(family: UInt16, command: Int32, flags: Int32 = NLM_F_REQUEST | NLM_F_ACK) -> NetlinkRequest {
        GenericNetlink.request(family: family, command: Int(command), version: version, flags: flags)
    }

    // MARK: - Services

    /// IPVS_CMD_NEW_SERVICE / SET_SERVICE: identity and every setting (the
    /// kernel requires scheduler, flags, timeout and netmask for both).
    static func service(_ command: Int32, _ service: VirtualService, family: UInt16) -> NetlinkRequest {
        var request = request(family: family, command: command)
        request.addNested(Int(IPVS_CMD_ATTR_SERVICE)) { addServiceSettings(service, to: &$0) }
        return request
    }

    /// IPVS_CMD_DEL_SERVICE: identity only.
    static func deleteService(_ key: ServiceKey, family: UInt16) -> NetlinkRequest {
        var request = request(family: family, command: Int32(IPVS_CMD_DEL_SERVICE))
        request.addNested(Int(IPVS_CMD_ATTR_SERVICE)) { addServiceIdentity(key, to: &$0) }
        return request
    }

    /// IPVS_CMD_GET_SERVICE as a dump: every service of the namespace.
    static func dumpServices(family: UInt16) -> NetlinkRequest {
        request(family: family, command: Int32(IPVS_CMD_GET_SERVICE), flags: NLM_F_REQUEST | NLM_F_DUMP)
    }

    /// In the order ipvsadm (libipvs) writes them: AF, then FWMARK or
    /// PROTOCOL, ADDR (16 bytes, an IPv4 address zero-padded as in union
    /// nf_inet_addr), PORT (network order).
    static func addServiceIdentity(_ key: ServiceKey, to request: inout NetlinkRequest) {
        request.addAttribute(Int(IPVS_SVC_ATTR_AF), uint16: key.family.number)
        switch key {
        case .address(let address, let proto, let port):
            request.addAttribute(Int(IPVS_SVC_ATTR_PROTOCOL), uint16: proto.number)
            request.addAttribute(Int(IPVS_SVC_ATTR_ADDR), inetAddress(address))
            request.addAttribute(Int(IPVS_SVC_ATTR_PORT), bigEndian16: port)
        case .firewallMark(let mark, _):
            request.addAttribute(Int(IPVS_SVC_ATTR_FWMARK), uint32: mark)
        }
    }

    static func addServiceSettings(_ service: VirtualService, to request: inout NetlinkRequest) {
        addServiceIdentity(service.key, to: &request)
        request.addAttribute(Int(IPVS_SVC_ATTR_SCHED_NAME), string: service.scheduler.rawValue)
        var flags = service.schedulerFlags.rawValue & schedulerFlagMask
        if service.persistence != nil { flags |= persistentFlag }
        // mask ~0: every flag takes the value given (the kernel keeps the
        // bits outside the mask from the existing service).
        request.appendAttributeStruct(Int(IPVS_SVC_ATTR_FLAGS), ip_vs_flags(flags: flags, mask: ~0))
        request.addAttribute(Int(IPVS_SVC_ATTR_TIMEOUT), uint32: service.persistence ?? 0)
        // Persistence granularity: one client address (/32 or /128).
        request.addAttribute(Int(IPVS_SVC_ATTR_NETMASK), uint32: service.key.family == .ipv4 ? 0xffff_ffff : 128)
    }

    static func parseService(_ message: NetlinkMessage) throws -> VirtualService? {
        guard try GenericNetlink.command(of: message) == UInt8(IPVS_CMD_NEW_SERVICE),
              let attributes = try nested(GenericNetlink.attributes(of: message), Int(IPVS_CMD_ATTR_SERVICE))
        else { return nil }
        let key = try parseServiceKey(attributes)
        guard let scheduler = attributes.string(Int(IPVS_SVC_ATTR_SCHED_NAME)) else {
            throw LoadBalancerError.malformedReply("service \(key) has no scheduler")
        }
        var flags: UInt32 = 0
        if let raw = attributes[Int(IPVS_SVC_ATTR_FLAGS)], raw.count >= 4 {
            // struct ip_vs_flags in host order; the mask that follows is ~0.
            flags = raw.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        }
        let timeout = attributes.uint32(Int(IPVS_SVC_ATTR_TIMEOUT)) ?? 0
        return VirtualService(
            key: key, scheduler: Scheduler(rawValue: scheduler),
            schedulerFlags: SchedulerFlags(rawValue: flags & schedulerFlagMask),
            persistence: flags & persistentFlag != 0 ? timeout : nil)
    }

    static func parseServiceKey(_ attributes: Attributes) throws -> ServiceKey {
        guard let afNumber = attributes.uint16(Int(IPVS_SVC_ATTR_AF)), let af = AddressFamily(number: afNumber) else {
            throw LoadBalancerError.malformedReply("service without a known address family")
        }
        if let mark = attributes.uint32(Int(IPVS_SVC_ATTR_FWMARK)), mark != 0 {
            return .firewallMark(mark, family: af)
        }
        guard let protoNumber = attributes.uint16(Int(IPVS_SVC_ATTR_PROTOCOL)),
              let raw = attributes[Int(IPVS_SVC_ATTR_ADDR)],
              let port = attributes.bigEndian16(Int(IPVS_SVC_ATTR_PORT))
        else { throw LoadBalancerError.malformedReply("service without protocol, address and port, or firewall mark") }
        guard let proto = TransportProtocol(number: protoNumber) else {
            throw LoadBalancerError.malformedReply("service of protocol \(protoNumber), neither TCP nor UDP")
        }
        return .address(try address(raw, family: af), proto, port: port)
    }

    // MARK: - Destinations

    /// IPVS_CMD_NEW_DEST / SET_DEST: the service's identity and every
    /// setting of the real server (the kernel requires forwarding method,
    /// weight and both thresholds).
    static func destination(_ command: Int32, _ server: RealServer, service: ServiceKey, family: UInt16) -> NetlinkRequest {
        var request = request(family: family, command: command)
        request.addNested(Int(IPVS_CMD_ATTR_SERVICE)) { addServiceIdentity(service, to: &$0) }
        request.addNested(Int(IPVS_CMD_ATTR_DEST)) { dest in
            addDestinationIdentity(server.key, to: &dest)
            dest.addAttribute(Int(IPVS_DEST_ATTR_FWD_METHOD), uint32: server.forwarding.rawValue)
            dest.addAttribute(Int(IPVS_DEST_ATTR_WEIGHT), uint32: server.weight)
            // 0: no connection limits.
            dest.addAttribute(Int(IPVS_DEST_ATTR_U_THRESH), uint32: 0)
            dest.addAttribute(Int(IPVS_DEST_ATTR_L_THRESH), uint32: 0)
        }
        return request
    }

    /// IPVS_CMD_DEL_DEST: service and real server identities.
    static func deleteDestination(_ server: RealServer.Key, service: ServiceKey, family: UInt16) -> NetlinkRequest {
        var request = request(family: family, command: Int32(IPVS_CMD_DEL_DEST))
        request.addNested(Int(IPVS_CMD_ATTR_SERVICE)) { addServiceIdentity(service, to: &$0) }
        request.addNested(Int(IPVS_CMD_ATTR_DEST)) { addDestinationIdentity(server, to: &$0) }
        return request
    }

    /// IPVS_CMD_GET_DEST as a dump of one service's real servers.
    static func dumpDestinations(service: ServiceKey, family: UInt16) -> NetlinkRequest {
        var request = request(family: family, command: Int32(IPVS_CMD_GET_DEST), flags: NLM_F_REQUEST | NLM_F_DUMP)
        request.addNested(Int(IPVS_CMD_ATTR_SERVICE)) { addServiceIdentity(service, to: &$0) }
        return request
    }

    static func addDestinationIdentity(_ server: RealServer.Key, to request: inout NetlinkRequest) {
        request.addAttribute(Int(IPVS_DEST_ATTR_ADDR), inetAddress(server.address))
        request.addAttribute(Int(IPVS_DEST_ATTR_PORT), bigEndian16: server.port)
        request.addAttribute(Int(IPVS_DEST_ATTR_ADDR_FAMILY), uint16: server.address.isIPv4 ? 2 : 10)
    }

    static func parseDestination(_ message: NetlinkMessage, serviceFamily: AddressFamily) throws -> IPVSDestination? {
        guard try GenericNetlink.command(of: message) == UInt8(IPVS_CMD_NEW_DEST),
              let attributes = try nested(GenericNetlink.attributes(of: message), Int(IPVS_CMD_ATTR_DEST))
        else { return nil }
        // IPVS_DEST_ATTR_ADDR_FAMILY exists since Linux 4.x; before, a real
        // server was always of its service's family.
        let family = attributes.uint16(Int(IPVS_DEST_ATTR_ADDR_FAMILY)).flatMap(AddressFamily.init(number:)) ?? serviceFamily
        guard let raw = attributes[Int(IPVS_DEST_ATTR_ADDR)],
              let port = attributes.bigEndian16(Int(IPVS_DEST_ATTR_PORT)),
              let weight = attributes.uint32(Int(IPVS_DEST_ATTR_WEIGHT)),
              let method = attributes.uint32(Int(IPVS_DEST_ATTR_FWD_METHOD))
        else { throw LoadBalancerError.malformedReply("real server without address, port, weight or forwarding method") }
        guard let forwarding = ForwardingMethod(rawValue: method & cipvs_conn_f_fwd_mask()) else {
            throw LoadBalancerError.malformedReply("real server with forwarding method \(method)")
        }
        return IPVSDestination(
            server: RealServer(address: try address(raw, family: family), port: port, weight: weight, forwarding: forwarding),
            activeConnections: attributes.uint32(Int(IPVS_DEST_ATTR_ACTIVE_CONNS)) ?? 0,
            inactiveConnections: attributes.uint32(Int(IPVS_DEST_ATTR_INACT_CONNS)) ?? 0,
            persistentConnections: attributes.uint32(Int(IPVS_DEST_ATTR_PERSIST_CONNS)) ?? 0)
    }

    // MARK: - Configuration

    /// IPVS_CMD_SET_CONFIG with the three timeouts.
    static func setTimeouts(_ timeouts: IPVSTimeouts, family: UInt16) -> NetlinkRequest {
        var request = request(family: family, command: Int32(IPVS_CMD_SET_CONFIG))
        request.addAttribute(Int(IPVS_CMD_ATTR_TIMEOUT_TCP), uint32: timeouts.tcp)
        request.addAttribute(Int(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN), uint32: timeouts.tcpFin)
        request.addAttribute(Int(IPVS_CMD_ATTR_TIMEOUT_UDP), uint32: timeouts.udp)
        return request
    }

    static func parseTimeouts(_ message: NetlinkMessage) throws -> IPVSTimeouts {
        let attributes = try GenericNetlink.attributes(of: message)
        guard let tcp = attributes.uint32(Int(IPVS_CMD_ATTR_TIMEOUT_TCP)),
              let fin = attributes.uint32(Int(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN)),
              let udp = attributes.uint32(Int(IPVS_CMD_ATTR_TIMEOUT_UDP))
        else { throw LoadBalancerError.malformedReply("configuration reply without the three timeouts") }
        return IPVSTimeouts(tcp: tcp, tcpFin: fin, udp: udp)
    }

    // MARK: - Addresses

    /// union nf_inet_addr: 16 bytes, an IPv4 address in the first four.
    static func inetAddress(_ address: IPAddress) -> [UInt8] {
        let bytes = address.bytes
        return bytes + [UInt8](repeating: 0, count: 16 - bytes.count)
    }

    static func address(_ raw: ArraySlice<UInt8>, family: AddressFamily) throws -> IPAddress {
        let length = family == .ipv4 ? 4 : 16
        guard raw.count >= length, let address = IPAddress(bytes: raw.prefix(length)) else {
            throw LoadBalancerError.malformedReply("address of \(raw.count) bytes for \(family)")
        }
        return address
    }

    private static func nested(_ attributes: Attributes, _ type: Int) throws -> Attributes? {
        do { return try attributes.nested(type) } catch let error as NetlinkError {
            throw LoadBalancerError.malformedReply("\(error)")
        }
    }
}

extension NetlinkRequest {
    /// An attribute whose payload is a kernel structure, byte for byte.
    mutating func appendAttributeStruct<T>(_ type: Int, _ value: T) {
        addAttribute(type, withUnsafeBytes(of: value) { Array($0) })
    }
}

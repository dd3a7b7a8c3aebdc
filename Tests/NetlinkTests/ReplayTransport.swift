import CNetlinkShim
@testable import Netlink

/// A transport that records what a session sends and answers from a script,
/// so message building and reply handling are tested without root.
final class ReplayTransport: NetlinkTransport {
    let portID: UInt32 = 4242
    private(set) var sent: [[UInt8]] = []
    private var queued: [[UInt8]] = []
    /// Builds the datagrams that answer one sent datagram.
    var respond: (_ request: [NetlinkMessage]) -> [[UInt8]]

    init(respond: @escaping (_ request: [NetlinkMessage]) -> [[UInt8]] = { requests in
        requests.filter { $0.flags & UInt16(NLM_F_ACK) != 0 }.map { Kernel.ack($0.sequence) }
    }) {
        self.respond = respond
    }

    func send(_ bytes: [UInt8]) throws {
        sent.append(bytes)
        queued += respond(try NetlinkMessage.split(bytes))
    }

    func receive() throws -> [UInt8] {
        guard !queued.isEmpty else { throw NetlinkError.socket(operation: "receive (nothing queued in test)", errno: 11) }
        return queued.removeFirst()
    }
}

/// Builds kernel replies for tests.
enum Kernel {
    static func ack(_ sequence: UInt32, errno: Int32 = 0, message: String? = nil) -> [UInt8] {
        var flags = UInt16(NLM_F_CAPPED)
        if message != nil { flags |= UInt16(NLM_F_ACK_TLVS) }
        var reply = NetlinkRequest(type: UInt16(NLMSG_ERROR), flags: flags)
        reply.setSequence(sequence)
        var payload = NetlinkRequest.hostBytes(-errno)
        // The echoed request header (16 bytes; capped, so no payload).
        payload += [UInt8](repeating: 0, count: 16)
        reply.appendBytes(payload)
        if let message { reply.addAttribute(Int(NLMSGERR_ATTR_MSG.rawValue), string: message) }
        return reply.bytes
    }

    static func done(_ sequence: UInt32, flags: UInt16 = 0) -> [UInt8] {
        var reply = NetlinkRequest(type: UInt16(NLMSG_DONE), flags: UInt16(NLM_F_MULTI) | flags)
        reply.setSequence(sequence)
        reply.appendStruct(Int32(0))
        return reply.bytes
    }

    static func link(_ sequence: UInt32, index: Int32, name: String, flags: UInt16 = UInt16(NLM_F_MULTI),
                     extra: (inout NetlinkRequest) -> Void = { _ in }) -> [UInt8] {
        var reply = NetlinkRequest(type: UInt16(RTM_NEWLINK), flags: flags)
        reply.setSequence(sequence)
        var header = ifinfomsg()
        header.ifi_index = index
        header.ifi_flags = UInt32(IFF_UP)
        reply.appendStruct(header)
        reply.addAttribute(Int(IFLA_IFNAME), string: name)
        reply.addAttribute(Int(IFLA_MTU), uint32: 1450)
        extra(&reply)
        return reply.bytes
    }
}


import CIPVSShim
import Netlink

/// A transport that records what the back end sends and answers from a
/// script, so IPVS requests and reply handling are tested without a kernel.
final class ReplayTransport: NetlinkTransport {
    let portID: UInt32 = 4242
    private(set) var sent: [[UInt8]] = []
    private var queued: [[UInt8]] = []
    /// Builds the datagrams that answer one sent datagram.
    var respond: (_ requests: [NetlinkMessage]) -> [[UInt8]]

    init(respond: @escaping (_ requests: [NetlinkMessage]) -> [[UInt8]]) {
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

    /// Every message sent after the family was resolved, in order.
    var sentMessages: [NetlinkMessage] {
        sent.dropFirst().flatMap { (try? NetlinkMessage.split($0)) ?? [] }
    }
}

/// Kernel replies for tests, laid out as the kernel writes them
/// (net/netlink/genetlink.c ctrl_fill_info, net/netfilter/ipvs/ip_vs_ctl.c
/// ip_vs_genl_fill_service / ip_vs_genl_fill_dest).
enum Kernel {
    static let ipvsFamily: UInt16 = 0x23

    static func ack(_ sequence: UInt32, errno: Int32 = 0) -> [UInt8] {
        var reply = NetlinkRequest(type: UInt16(NLMSG_ERROR), flags: UInt16(NLM_F_CAPPED))
        reply.setSequence(sequence)
        reply.appendBytes(withUnsafeBytes(of: -errno) { Array($0) } + [UInt8](repeating: 0, count: 16))
        return reply.bytes
    }

    static func done(_ sequence: UInt32) -> [UInt8] {
        var reply = NetlinkRequest(type: UInt16(NLMSG_DONE), flags: UInt16(NLM_F_MULTI))
        reply.setSequence(sequence)
        reply.appendBytes([0, 0, 0, 0])
        return reply.bytes
    }

    static func genl(_ sequence: UInt32, family: UInt16, command: Int32, flags: Int32 = NLM_F_MULTI,
                     _ body: (inout NetlinkRequest) -> Void) -> [UInt8] {
        var reply = NetlinkRequest(type: family, flags: UInt16(flags))
        reply.setSequence(sequence)
        reply.appendBytes([UInt8(command), 1, 0, 0])
        body(&reply)
        return reply.bytes
    }

    /// CTRL_CMD_NEWFAMILY answering CTRL_CMD_GETFAMILY "IPVS", then the ack.
    static func family(_ sequence: UInt32) -> [UInt8] {
        genl(sequence, family: UInt16(GENL_ID_CTRL_VALUE), command: Int32(CTRL_CMD_NEWFAMILY), flags: 0) {
            $0.addAttribute(Int(CTRL_ATTR_FAMILY_NAME), string: "IPVS")
            $0.addAttribute(Int(CTRL_ATTR_FAMILY_ID), uint16: ipvsFamily)
            $0.addAttribute(Int(CTRL_ATTR_VERSION), uint32: 1)
            $0.addAttribute(Int(CTRL_ATTR_HDRSIZE), uint32: 0)
            $0.addAttribute(Int(CTRL_ATTR_MAXATTR), uint32: 6)
        } + ack(sequence)
    }

    static let GENL_ID_CTRL_VALUE = 0x10

    static func stats(_ reply: inout NetlinkRequest, _ type: Int) {
        reply.addNested(type) { stats in
            for attribute in [IPVS_STATS_ATTR_CONNS, IPVS_STATS_ATTR_INPKTS, IPVS_STATS_ATTR_OUTPKTS] {
                stats.addAttribute(Int(attribute), uint32: 7)
            }
        }
    }

    static func inet(_ bytes: [UInt8]) -> [UInt8] { bytes + [UInt8](repeating: 0, count: 16 - bytes.count) }
}

#if canImport(Glibc)
import Glibc
#endif
import CLibMnl
import Namespaces
import Netlink

/// A netfilter netlink socket of swarmnet's own inside the table's
/// namespace, for what libnftables does not offer: the ruleset generation
/// (NFT_MSG_GETGEN), which every committed transaction (anyone's, in any
/// table) increments, and sending a batch of nf_tables messages
/// (`NFTNetlinkBatch`) that the kernel commits only if the generation is
/// still the one expected.
final class NFTablesSocket: @unchecked Sendable {
    private let socket: MnlSocket
    private let session: RouteNetlink
    private let place: String
    private var sequence: UInt32 = 1 << 30

    init(namespace: NetworkNamespace?) throws {
        socket = try MnlSocket(namespace: namespace, protocol: 12) // NETLINK_NETFILTER
        session = RouteNetlink(transport: socket, namespace: namespace)
        place = namespace?.description ?? "this namespace"
    }

    func currentGeneration() throws -> UInt32 {
        var request = NetlinkRequest(type: NFTNetlink.type(NFTNetlink.getGeneration), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
        request.appendStruct(NFGenMessage(family: UInt8(AF_UNSPEC)))
        let reply = try session.query(request, operation: "get nftables generation", object: "in \(place)")
        guard let id = try reply.attributes(after: NFGenMessage.self).uint32(NFTNetlink.generationID) else {
            throw LoadBalancerError.malformedReply("NFT_MSG_NEWGEN without NFTA_GEN_ID")
        }
        return UInt32(bigEndian: id)
    }

    /// Sends `batch` as one transaction, committed only while the ruleset
    /// generation is `generation`. Throws `NFTablesError` naming the first
    /// command the kernel refused (the whole batch is then undone), or the
    /// generation check (ERESTART: someone committed in between).
    func commit(_ batch: NFTNetlinkBatch, expecting generation: UInt32) throws {
        let first = sequence
        let datagram = batch.datagram(generation: generation, firstSequence: first)
        sequence &+= UInt32(batch.messages.count + 2)
        socket.reserveSendBuffer(datagram.count)
        try socket.send(datagram)
        var failures: [(index: Int, ack: Acknowledgement)] = []
        while let reply = try socket.receiveIfQueued() {
            for message in try NetlinkMessage.split(reply) where Int32(message.type) == NLMSG_ERROR {
                let ack = try Acknowledgement(message)
                guard ack.errno != 0 else { continue }
                failures.append((Int(message.sequence &- first) - 1, ack))
            }
        }
        guard let failure = failures.min(by: { $0.index < $1.index }) else { return }
        let command: String
        if failure.index < 0 {
            command = failure.ack.errno == ERESTART
                ? "batch expecting ruleset generation \(generation) (another commit came first)" : "batch begin"
        } else if failure.index < batch.messages.count {
            command = batch.source(of: failure.index)
        } else {
            command = "batch end"
        }
        let reason = String(cString: strerror(failure.ack.errno)) + (failure.ack.kernelMessage.map { " (\($0))" } ?? "")
        throw NFTablesError(command: command, message: "Error: \(reason) in \(place)")
    }
}

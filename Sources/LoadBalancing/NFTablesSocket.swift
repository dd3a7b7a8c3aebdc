#if canImport(Glibc)
import Glibc
#endif
import CLibMnl
import CNetlinkShim
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

    /// Over a netfilter socket already opened in `namespace`.
    init(transport: MnlSocket, namespace: NetworkNamespace?) {
        socket = transport
        session = RouteNetlink(transport: transport, namespace: namespace)
        place = namespace?.description ?? "this namespace"
    }

    func currentGeneration() throws -> UInt32 {
        var request = NetlinkRequest(type: NFTNetlink.type(NFT_MSG_GETGEN), flags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
        request.appendStruct(nfgenmsg(nfgen_family: UInt8(AF_UNSPEC), version: UInt8(NFNETLINK_V0), res_id: 0))
        let reply = try session.query(request, operation: "get nftables generation", object: "in \(place)")
        guard let id = try reply.attributes(after: nfgenmsg.self).uint32(attribute(NFTA_GEN_ID)) else {
            throw LoadBalancerError.malformedReply("NFT_MSG_NEWGEN without NFTA_GEN_ID")
        }
        return UInt32(bigEndian: id)
    }

    /// The generation after `generation`: the kernel skips 0, which in a
    /// batch means "do not check".
    static func generation(after generation: UInt32) -> UInt32 { generation == .max ? 1 : generation + 1 }

    /// Sends `batch` as one transaction, committed only while the ruleset
    /// generation is `generation`; returns the generation it made, or nil
    /// when someone else committed right after it too (then the table is
    /// not known to be the model, and the next change reads it). Throws
    /// `NFTablesError` naming the first command the kernel refused (the
    /// whole batch is then undone), or the generation check (ERESTART:
    /// someone committed in between), or a batch that left no trace.
    @discardableResult
    func commit(_ batch: NFTNetlinkBatch, expecting generation: UInt32) throws -> UInt32? {
        guard generation != 0 else {
            throw NFTablesError(command: "(generation check)", message: "generation 0 would switch the kernel's check off")
        }
        let first = sequence
        let datagram = batch.datagram(generation: generation, firstSequence: first)
        let last = first &+ UInt32(batch.messages.count + 1)
        sequence = last &+ 1
        socket.reserveSendBuffer(datagram.count)
        try socket.send(datagram)
        var failures: [(index: Int, ack: Acknowledgement)] = []
        while let reply = try socket.receiveIfQueued() {
            for message in try NetlinkMessage.split(reply) where Int32(message.type) == NLMSG_ERROR {
                // A reply to an earlier request (one whose reading failed) is not this batch's.
                let offset = message.sequence &- first
                guard offset <= last &- first else { continue }
                let ack = try Acknowledgement(message)
                guard ack.errno != 0 else { continue }
                failures.append((Int(offset) - 1, ack))
            }
        }
        if let failure = failures.min(by: { $0.index < $1.index }) {
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
        // The kernel can drop a batch without a word (a message it cannot
        // parse ends the batch silently): the generation says whether it committed.
        let after = try currentGeneration()
        guard after != generation else {
            throw NFTablesError(command: "batch of \(batch.messages.count) messages",
                                message: "the kernel did not commit it (the generation is still \(generation)) in \(place)")
        }
        return after == Self.generation(after: generation) ? after : nil
    }
}

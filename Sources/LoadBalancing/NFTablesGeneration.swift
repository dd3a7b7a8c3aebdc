#if canImport(Glibc)
import Glibc
#endif
import CLibMnl
import Namespaces
import Netlink

/// The namespace's nf_tables ruleset generation (NFT_MSG_GETGEN), which
/// every committed transaction (anyone's, in any table) increments. The
/// per-service path compares it with the generation its own last commit
/// produced: equal, nothing changed behind swarmnet's back and the model
/// can be trusted; different, the table is read again. libnftables does
/// not expose it, so it is asked over a netfilter netlink socket of our own,
/// opened inside the namespace.
final class NFTablesGeneration: @unchecked Sendable {
    private let session: RouteNetlink
    private let place: String
    /// NETLINK_NETFILTER; NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN; NFTA_GEN_ID.
    private static let netlinkNetfilter: Int32 = 12
    private static let getGeneration: UInt16 = 10 << 8 | 16
    private static let generationID = 1

    /// struct nfgenmsg.
    private struct Header {
        var family: UInt8
        var version: UInt8
        var resourceID: UInt16
    }

    init(namespace: NetworkNamespace?) throws {
        session = RouteNetlink(transport: try MnlSocket(namespace: namespace, protocol: Self.netlinkNetfilter), namespace: namespace)
        place = namespace?.description ?? "this namespace"
    }

    func current() throws -> UInt32 {
        var request = NetlinkRequest(type: Self.getGeneration, flags: UInt16(NLM_F_REQUEST | NLM_F_ACK))
        request.appendStruct(Header(family: UInt8(AF_UNSPEC), version: 0, resourceID: 0))
        let reply = try session.query(request, operation: "get nftables generation", object: "in \(place)")
        guard let id = try reply.attributes(after: Header.self).uint32(Self.generationID) else {
            throw LoadBalancerError.malformedReply("NFT_MSG_NEWGEN without NFTA_GEN_ID")
        }
        return UInt32(bigEndian: id)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CNetlinkShim
import Namespaces

/// The kernel's connection-tracking table in one network namespace, over
/// ctnetlink (NETLINK_NETFILTER, subsystem NFNL_SUBSYS_CTNETLINK) through a
/// libmnl socket opened inside that namespace. Methods follow the
/// conntrack tool: `list` is `conntrack -L`, `delete` is `conntrack -D`.
///
/// What it is for: a load balancer that removes a backend deletes the
/// entries that were NATed to it, so that their connections stop reaching
/// it (a UDP client that keeps sending refreshes its entry forever).
/// Safe to share between threads: requests are serialized on the socket.
public final class Conntrack: @unchecked Sendable {
    /// The namespace the socket lives in; nil for the caller's own.
    public let namespace: NetworkNamespace?
    private let session: RouteNetlink

    /// Opens a socket in `namespace`, or in the caller's own when nil.
    public convenience init(namespace: NetworkNamespace? = nil) throws {
        try namespace?.checkExists()
        try self.init(transport: MnlSocket(namespace: namespace, protocol: NETLINK_NETFILTER), namespace: namespace)
    }

    /// A client over any transport; tests pass one that replays replies.
    public init(transport: NetlinkTransport, namespace: NetworkNamespace? = nil) {
        self.namespace = namespace
        // RouteNetlink's exchange, dump and batch machinery serves any netlink protocol.
        session = RouteNetlink(transport: transport, namespace: namespace)
    }

    /// `conntrack -L`: every entry of `family` (AF_INET, AF_INET6; AF_UNSPEC
    /// for both). A malformed entry fails the whole listing: a caller that
    /// deletes by what it read must not act on a guess.
    public func list(family: Int32 = AF_UNSPEC) throws -> [ConntrackEntry] {
        let messages = try session.dump(ConntrackMessages.dumpRequest(family: family),
                                        operation: "list conntrack entries in \(session.namespaceDescription)")
        return try messages.map(ConntrackMessages.entry(from:))
    }

    /// `conntrack -C`: how many entries the namespace holds. Constant time,
    /// where a dump walks the kernel's whole table (shared by every
    /// namespace: about 14 ms on this machine even when this namespace
    /// holds nothing).
    public func count() throws -> Int {
        let reply = try session.query(ConntrackMessages.countRequest(),
                                      operation: "count conntrack entries", object: "in \(session.namespaceDescription)")
        guard let entries = try reply.attributes(after: nfgenmsg.self).uint32(Int(CTA_STATS_GLOBAL_ENTRIES.rawValue)) else {
            throw NetlinkError.malformedMessage("conntrack statistics without CTA_STATS_GLOBAL_ENTRIES")
        }
        return Int(UInt32(bigEndian: entries))
    }

    /// `conntrack -D` of each entry, by its original tuple (and id, so that
    /// a newer entry with the same tuple is left alone). An entry already
    /// gone (ENOENT: it expired, or someone else deleted it) is not an
    /// error. Returns how many were deleted. Sent as batches: few system
    /// calls for many entries.
    @discardableResult
    public func delete(_ entries: [ConntrackEntry]) throws -> Int {
        guard !entries.isEmpty else { return 0 }
        let requests = entries.map(ConntrackMessages.deleteRequest)
        do {
            try session.apply(requests) { ("delete conntrack entry", "\(entries[$0]) in \(self.session.namespaceDescription)") }
            return entries.count
        } catch NetlinkError.batchFailed(let failures, let total) {
            let real = failures.filter { $0.error.errno != ENOENT }
            guard real.isEmpty else { throw NetlinkError.batchFailed(failures: real, total: total) }
            return entries.count - failures.count
        }
    }

    /// Deletes every entry that any of `matches` selects (entries
    /// destination-NATed to a backend), reading the table once. Returns how
    /// many were deleted.
    @discardableResult
    public func deleteEntries(natedTo matches: [ConntrackNATMatch]) throws -> Int {
        guard !matches.isEmpty else { return 0 }
        // Nothing tracked, nothing to delete: skip the dump, which costs the
        // same for an empty namespace as for a full one.
        guard try count() > 0 else { return 0 }
        // One dump per family in play: the kernel filters by family itself.
        let families = Set(matches.map(\.backend.family))
        var selected: [ConntrackEntry] = []
        for family in families.sorted() {
            selected += try list(family: family).filter { entry in matches.contains { $0.matches(entry) } }
        }
        return try delete(selected)
    }
}

import Addressing
import FoundationEssentials
import SystemBasics
import Namespaces

/// The small nftables table that routes packets to IPVS firewall-mark
/// services, for what IPVS cannot match by VIP and port:
///
/// - a VIP balanced on every port: IPVS's port-0 services work only with
///   persistence (the kernel refuses to schedule them otherwise), so, as
///   libnetwork did, packets to the VIP are marked and a firewall-mark
///   service balances them, keeping their destination port;
/// - a published port on any local address (the routing mesh): marked by
///   protocol and port when their destination is local.
///
///     table ip NAME {
///       map vip-marks  { type ipv4_addr . inet_proto : mark }
///       map port-marks { type inet_proto . inet_service : mark }
///       set masquerade-marks { type mark }
///       chain output     { type filter hook output priority mangle; <mark rules> }
///       chain prerouting { type filter hook prerouting priority mangle; <mark rules> }  (routing mesh)
///       chain postrouting { type nat hook postrouting priority srcnat; meta mark @masquerade-marks masquerade }
///     }
///
/// The marks run at mangle priority (-150), before IPVS's LOCAL_OUT hook
/// (-99) and long before its LOCAL_IN hook. The maps hold the allocation
/// itself, so a restarted daemon reads back which mark means what. The
/// table is tiny (an element per VIP or published port), so any
/// difference is repaired by rewriting it whole in one transaction.
struct IPVSMarkTable {
    /// What a mark stands for.
    enum Target: Hashable, Comparable, CustomStringConvertible {
        /// Every port of a VIP, for one protocol.
        case everyPort(IPv4Address, TransportProtocol)
        /// A port on any local address (a published port).
        case publishedPort(TransportProtocol, UInt16)

        var description: String {
            switch self {
            case .everyPort(let vip, let proto): "\(vip) . \(proto.rawValue)"
            case .publishedPort(let proto, let port): "\(proto.rawValue) . \(port)"
            }
        }

        static func < (lhs: Target, rhs: Target) -> Bool { lhs.sortKey.lexicographicallyPrecedes(rhs.sortKey) }

        private var sortKey: [UInt32] {
            switch self {
            case .everyPort(let vip, let proto): [0, vip.value, UInt32(proto.number)]
            case .publishedPort(let proto, let port): [1, UInt32(proto.number), UInt32(port)]
            }
        }

        /// What a desired key needs a mark for, or nil for a plain VIP:port
        /// (which IPVS matches by itself); `serviceKey` is the way back.
        init?(marking key: ServiceKey) throws {
            switch key {
            case .firewallMark:
                throw LoadBalancerError.invalidArgument("service \(key): firewall marks are allocated by the balancer, not asked for")
            case .address(let address, let proto, let port):
                if address == .v4(IPv4Address(0)) {
                    guard port != 0 else { throw LoadBalancerError.invalidArgument("service \(key): a published port cannot be 0") }
                    self = .publishedPort(proto, port)
                    return
                }
                guard port == 0 else { return nil }
                guard case .v4(let vip) = address else {
                    throw LoadBalancerError.invalidArgument("service \(key): every-port VIPs are IPv4 only")
                }
                self = .everyPort(vip, proto)
            }
        }

        /// The service key this target balances for.
        var serviceKey: ServiceKey {
            switch self {
            case .everyPort(let vip, let proto): .address(.v4(vip), proto, port: 0)
            case .publishedPort(let proto, let port): .address(.v4(IPv4Address(0)), proto, port: port)
            }
        }
    }

    /// What the table holds (or should): each target's mark, and which
    /// marks are masqueraded.
    struct Contents: Equatable {
        var marks: [Target: UInt32] = [:]
        var masquerade: Set<UInt32> = []
    }

    let name: String
    let hooks: NFTablesConfiguration.Hooks
    let masqueradesPublishedPorts: Bool

    static let vipMarks = "vip-marks"
    static let portMarks = "port-marks"
    static let masqueradeMarks = "masquerade-marks"

    /// The whole table as one nft transaction that replaces whatever is
    /// there (`add table` first, so the `delete` cannot fail on an absent table).
    func commands(for contents: Contents) -> String {
        let hex = { (mark: UInt32) in "0x" + String(mark, radix: 16) }
        let targets = contents.marks.sorted { $0.key < $1.key }
        let vipElements = targets.compactMap { target, mark -> String? in
            guard case .everyPort(let vip, let proto) = target else { return nil }
            return "\(vip) . \(proto.rawValue) : \(hex(mark))"
        }
        let portElements = targets.compactMap { target, mark -> String? in
            guard case .publishedPort(let proto, let port) = target else { return nil }
            return "\(proto.rawValue) . \(port) : \(hex(mark))"
        }
        let elements = { (list: [String]) in list.isEmpty ? "" : " elements = { \(list.joined(separator: ", ")) };" }
        var lines = [
            "add table ip \(name)",
            "delete table ip \(name)",
            "table ip \(name) {",
            "  map \(Self.vipMarks) { type ipv4_addr . inet_proto : mark;\(elements(vipElements)) }",
            "  map \(Self.portMarks) { type inet_proto . inet_service : mark;\(elements(portElements)) }",
        ]
        // New connections only: later packets find their IPVS connection by
        // address and port, and a reply to one of this host's own outgoing
        // connections (whose source port may be a published one, since
        // nothing listens there) must not be marked and scheduled. Not
        // loopback: IPVS refuses to forward from 127/8 to another host.
        let rules = [
            "ct state new meta mark set ip daddr . meta l4proto map @\(Self.vipMarks);",
            "ct state new fib daddr type local ip daddr != 127.0.0.0/8 meta mark set meta l4proto . th dport map @\(Self.portMarks);",
        ]
        for hook in hookNames {
            lines.append("  chain \(hook) { type filter hook \(hook) priority mangle; policy accept;")
            lines += rules.map { "    " + $0 }
            lines.append("  }")
        }
        if masqueradesPublishedPorts {
            lines.append("  set \(Self.masqueradeMarks) { type mark;\(elements(contents.masquerade.sorted().map(hex))) }")
            lines.append("  chain postrouting { type nat hook postrouting priority srcnat; policy accept;")
            lines.append("    meta mark @\(Self.masqueradeMarks) masquerade;")
            lines.append("  }")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    var hookNames: [String] { hooks == .routingMesh ? ["output", "prerouting"] : ["output"] }

    /// The marks of `nft -j list table ip NAME`, with each chain's rules
    /// (their signatures, `NFTRule.signature`) and hook (for `isIntact`).
    static func parse(json text: String, table: String) throws -> (contents: Contents, chains: [String: [String]], hooks: [String: String]) {
        guard let root = try? JSONObject.parse(text) as? [String: Any],
              let objects = root["nftables"] as? [[String: Any]]
        else { throw LoadBalancerError.malformedReply("nft -j list table ip \(table): not nft's JSON") }
        var contents = Contents()
        var rules: [String: [String]] = [:]
        var hooks: [String: String] = [:]
        for object in objects {
            if let map = object["map"] as? [String: Any], let name = map["name"] as? String {
                for element in map["elem"] as? [[Any]] ?? [] {
                    guard element.count == 2, let key = element[0] as? [String: Any], let parts = key["concat"] as? [Any],
                          parts.count == 2, let mark = (element[1] as? Int).flatMap(UInt32.init(exactly:))
                    else { continue }
                    switch name {
                    case vipMarks:
                        if let vip = (parts[0] as? String).flatMap({ try? IPv4Address(parsing: $0) }),
                           let proto = (parts[1] as? String).flatMap(TransportProtocol.init(rawValue:)) {
                            contents.marks[.everyPort(vip, proto)] = mark
                        }
                    case portMarks:
                        if let proto = (parts[0] as? String).flatMap(TransportProtocol.init(rawValue:)),
                           let port = (parts[1] as? Int).flatMap(UInt16.init(exactly:)) {
                            contents.marks[.publishedPort(proto, port)] = mark
                        }
                    default: break
                    }
                }
            } else if let set = object["set"] as? [String: Any], set["name"] as? String == masqueradeMarks {
                contents.masquerade = Set((set["elem"] as? [Any] ?? []).compactMap { ($0 as? Int).flatMap(UInt32.init(exactly:)) })
            } else if let chain = object["chain"] as? [String: Any], let name = chain["name"] as? String {
                rules[name] = rules[name] ?? []
                hooks[name] = chain["hook"] as? String
            } else if let rule = object["rule"] as? [String: Any], let chain = rule["chain"] as? String {
                rules[chain, default: []].append(NFTRule.signature(expr: rule["expr"] as? [Any] ?? [], comment: rule["comment"] as? String))
            }
        }
        return (contents, rules, hooks)
    }

    /// Whether the chains read back are exactly the ones this table makes,
    /// rule for rule: a rule added, removed or edited in place is noticed.
    func isIntact(chains: [String: [String]], hooks: [String: String]) -> Bool {
        var want: [String: [String]] = [:]
        for hook in hookNames { want[hook] = Self.markRules }
        if masqueradesPublishedPorts { want["postrouting"] = [Self.masqueradeRule] }
        return chains == want && hooks == Dictionary(uniqueKeysWithValues: want.keys.map { ($0, $0) })
    }

    /// The signatures of the rules `commands(for:)` writes, as nft 1.0.6
    /// lists them (`nft -j`).
    static let markRules: [String] = {
        let newOnly = NFTExpr.match(["ct": ["key": "state"]], "in", "new")
        let setMark = { (key: [Any], map: String) -> [String: Any] in
            ["mangle": ["key": NFTExpr.meta("mark"), "value": ["map": ["key": ["concat": key], "data": "@" + map]]]]
        }
        return [
            NFTRule.signature(expr: [newOnly, setMark([NFTExpr.payload("ip", "daddr"), NFTExpr.meta("l4proto")], vipMarks)], comment: nil),
            NFTRule.signature(expr: [
                newOnly,
                NFTExpr.match(["fib": ["result": "type", "flags": ["daddr"]]], "==", "local"),
                NFTExpr.match(NFTExpr.payload("ip", "daddr"), "!=", ["prefix": ["addr": "127.0.0.0", "len": 8]]),
                setMark([NFTExpr.meta("l4proto"), NFTExpr.payload("th", "dport")], portMarks),
            ], comment: nil),
        ]
    }()

    static let masqueradeRule = NFTRule.signature(expr: [
        NFTExpr.match(NFTExpr.meta("mark"), "==", "@" + masqueradeMarks), ["masquerade": JSONNull()],
    ], comment: nil)
}

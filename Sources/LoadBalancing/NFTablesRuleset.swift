import Addressing
import FoundationEssentials
import SystemBasics

/// One rule as swarmnet writes it (`text`, what follows `add rule ip T C`)
/// and as the kernel lists it (`signature`: nft's JSON of its expressions
/// and comment, canonicalized). Rules compare by signature, so a rule read
/// from the kernel equals the rule that programmed it, and an edited rule
/// does not.
struct NFTRule: Hashable, CustomStringConvertible {
    var text: String
    /// The rule's comment (swarmnet keeps scheduler and weight there).
    var comment: String?
    /// "ADDRESS:PORT" of a dnat statement, read back for `services()`.
    var dnat: String?
    private let body: Body

    /// The expressions, built only when the rule is sent or compared with
    /// one read from the kernel (a change renders its service's every rule
    /// but sends only those that differ, and building nft's JSON for all
    /// of them was a fifth of a change's own time), and canonicalized only
    /// when first compared: a table programmed into an empty namespace
    /// never needs that.
    private final class Body {
        private let build: () -> [Any]
        let comment: String?
        init(expr: @escaping () -> [Any], comment: String?) {
            build = expr
            self.comment = comment
        }
        lazy var expr: [Any] = build()
        lazy var signature: String = NFTRule.signature(expr: expr, comment: comment)
    }

    var signature: String { body.signature }
    /// The expressions in nft's JSON form (what `NFTExpressionEncoder` encodes).
    var expressions: [Any] { body.expr }

    /// Two rules swarmnet rendered compare by their text (the renderer
    /// writes one text per rule, so equal texts are equal rules, and texts
    /// are cheap where a signature costs a JSON walk: most of a change's
    /// time at 100 services went there); a rule read from the kernel has
    /// no text and compares by signature.
    static func == (lhs: NFTRule, rhs: NFTRule) -> Bool {
        if lhs.body === rhs.body { return true }
        if !lhs.text.isEmpty, !rhs.text.isEmpty { return lhs.text == rhs.text }
        return lhs.signature == rhs.signature
    }
    func hash(into hasher: inout Hasher) { hasher.combine(signature) }
    var description: String { text.isEmpty ? signature : text }

    /// `expr` is evaluated later, if at all: it must capture constants
    /// only, never a variable the caller changes afterwards.
    init(text: String, expr: @autoclosure @escaping () -> [Any], comment: String? = nil, dnat: String? = nil) {
        self.text = text + (comment.map { " comment \"\($0)\"" } ?? "")
        self.comment = comment
        self.dnat = dnat
        body = Body(expr: expr, comment: comment)
    }

    /// A rule read from the kernel: its text is not known, only its JSON.
    init(kernelExpr expr: [Any], comment: String?, dnat: String?) {
        text = ""
        self.comment = comment
        self.dnat = dnat
        body = Body(expr: { expr }, comment: comment)
    }

    /// Canonical JSON (keys sorted) of a rule's expressions and comment;
    /// counters are zeroed so traffic does not make a rule differ. Written
    /// by hand: Foundation's JSONSerialization made programming 1,000
    /// services five times slower than `nft -f`.
    static func signature(expr: [Any], comment: String?) -> String {
        var out = "{"
        if let comment {
            out += "\"comment\":"
            canonical(comment, into: &out)
            out += ","
        }
        out += "\"expr\":["
        for (index, item) in expr.enumerated() {
            if index > 0 { out += "," }
            if let object = item as? [String: Any], object["counter"] != nil {
                out += "{\"counter\":{\"bytes\":0,\"packets\":0}}"
            } else {
                canonical(item, into: &out)
            }
        }
        return out + "]}"
    }

    private static func canonical(_ value: Any, into out: inout String) {
        switch value {
        case let object as [String: Any]:
            out += "{"
            for (index, key) in object.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                canonical(key, into: &out)
                out += ":"
                canonical(object[key]!, into: &out)
            }
            out += "}"
        case let array as [Any]:
            out += "["
            for (index, item) in array.enumerated() {
                if index > 0 { out += "," }
                canonical(item, into: &out)
            }
            out += "]"
        case let string as String:
            out += "\""
            for character in string.unicodeScalars {
                switch character {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                default: out.unicodeScalars.append(character)
                }
            }
            out += "\""
        case is JSONNull:
            out += "null"
        case let number as Int:
            out += String(number)
        case let flag as Bool:
            out += flag ? "true" : "false"
        case let number as Double:
            out += "\(number)"
        default:
            out += "\(value)"
        }
    }
}

/// A chain: its hook (for base chains) and rules.
struct NFTChain: Hashable {
    /// "nat output -100 accept" for a base chain; nil for a regular one.
    var base: String?
    var rules: [NFTRule]
}

/// An element of a set or map: the set's name, the key as nft writes it
/// ("10.0.0.5 . tcp . 80"), what it maps to, and its comment.
struct NFTElement: Hashable, Comparable {
    var map: String
    var key: String
    /// As nft writes it: "goto CHAIN" in a verdict map, "10.0.1.2 . 8080"
    /// in a data map; nil in a set.
    var data: String?
    var comment: String?

    init(map: String, key: String, data: String? = nil, comment: String? = nil) {
        self.map = map
        self.key = key
        self.data = data
        self.comment = comment
    }

    /// An element of a verdict map that jumps (goto) to `target`.
    init(map: String, key: String, target: String) {
        self.init(map: map, key: key, data: "goto " + target)
    }

    /// The chain a verdict element goes to; "" for any other element.
    var target: String {
        guard let data, data.hasPrefix("goto ") else { return "" }
        return String(data.dropFirst(5))
    }

    /// The element as nft reads it between braces: `KEY [comment "C"] [: DATA]`.
    var text: String {
        var text = key
        if let comment { text += " comment \"\(comment)\"" }
        if let data { text += " : " + data }
        return text
    }

    static func < (a: NFTElement, b: NFTElement) -> Bool {
        (a.map, a.key, a.data ?? "", a.comment ?? "") < (b.map, b.key, b.data ?? "", b.comment ?? "")
    }

    /// "10.0.0.5 . tcp . 80" -> ["10.0.0.5", "tcp", "80"]: split on " . "
    /// by hand (Foundation's `components(separatedBy:)` was a sixth of the
    /// time of programming 10,000 services). Keys, data and types alike.
    static func fields(_ text: String) -> [Substring] {
        var fields: [Substring] = []
        var start = text.startIndex
        var index = text.startIndex
        let utf8 = text.utf8
        while index < text.endIndex {
            if utf8[index] == UInt8(ascii: " "), let dot = utf8.index(index, offsetBy: 1, limitedBy: utf8.endIndex), dot < utf8.endIndex,
               utf8[dot] == UInt8(ascii: "."), let space = utf8.index(dot, offsetBy: 1, limitedBy: utf8.endIndex), space < utf8.endIndex,
               utf8[space] == UInt8(ascii: " ") {
                fields.append(text[start..<index])
                index = utf8.index(after: space)
                start = index
            } else {
                index = utf8.index(after: index)
            }
        }
        fields.append(text[start...])
        return fields
    }
}

/// One service's objects: its service chain, its endpoint chains, and the
/// map element(s) that dispatch to it (the chains layout), or its elements
/// alone (the maps layout: its class, its backends' slots, ...).
struct NFTServiceImage: Hashable {
    var chains: [String: NFTChain] = [:]
    var elements: Set<NFTElement> = []

    /// The class set the service is a member of (maps layout), if any.
    var classSet: String? { elements.first { NFTMapNames.isClassSet($0.map) }?.map }
}

/// What a table holds (read from the kernel) or should hold (rendered from
/// desired state), grouped by service so one service's difference is
/// computed without looking at the others.
struct NFTImage: Hashable {
    var exists: Bool
    /// Set or map name to its type as nft lists it ("ipv4_addr . inet_proto
    /// . inet_service : verdict"; a set's has no " : ").
    var maps: [String: String] = [:]
    /// How a set or map is declared when it is not by `type` (a `typeof`
    /// with numgen in its key lists its type as "integer", which `type`
    /// cannot declare). Rendered images only.
    var declarations: [String: String] = [:]
    /// Chains that belong to no service: the hook chains, the dispatch chain, strays.
    var chains: [String: NFTChain] = [:]
    /// By service id ("tcp-10.0.0.5-80"); change it through `setService`,
    /// which keeps `classMembers`.
    private(set) var services: [String: NFTServiceImage] = [:]
    /// Elements that belong to no service of ours.
    var strayElements: Set<NFTElement> = []
    /// How many services each class set holds (maps layout), so that a
    /// class left empty is found without a walk over every service.
    private(set) var classMembers: [String: Int] = [:]

    init(exists: Bool, maps: [String: String] = [:], chains: [String: NFTChain] = [:],
         services: [String: NFTServiceImage] = [:], strayElements: Set<NFTElement> = []) {
        self.exists = exists
        self.maps = maps
        self.chains = chains
        self.strayElements = strayElements
        for (id, service) in services { setService(id, service) }
    }

    mutating func setService(_ id: String, _ service: NFTServiceImage?) {
        if let old = services[id]?.classSet { classMembers[old, default: 1] -= 1 }
        services[id] = service
        if let new = service?.classSet { classMembers[new, default: 0] += 1 }
    }

    /// The class sets this table declares (maps layout).
    var classSets: Set<String> { Set(maps.keys.filter(NFTMapNames.isClassSet)) }

    /// This image (a wanted structure) plus the chains of `table` that it
    /// does not name: a change of some services leaves strays to a full
    /// reconcile from the kernel.
    func keepingChains(of table: NFTImage) -> NFTImage {
        var all = self
        for (name, chain) in table.chains where chains[name] == nil { all.chains[name] = chain }
        return all
    }

    /// Takes `structure`'s sets, maps and chains, after a commit made them so.
    mutating func adoptStructure(of structure: NFTImage) {
        maps = structure.maps
        for (name, chain) in structure.chains { chains[name] = chain }
    }
}

/// Names of the objects in swarmnet's table.
enum NFTNames {
    static let serviceIPs = "service-ips"
    static let servicePorts = "service-ports"
    /// VIPs balanced on every port (port 0 in the model): keyed by address
    /// and protocol, the destination port kept.
    static let serviceVIPs = "service-vips"
    static let dispatch = "services"
    static let serviceIPsType = "ipv4_addr . inet_proto . inet_service : verdict"
    static let servicePortsType = "inet_proto . inet_service : verdict"
    static let serviceVIPsType = "ipv4_addr . inet_proto : verdict"

    /// "tcp-10.0.0.5-80": names a service's chains.
    static func serviceID(_ key: ServiceKey) -> String {
        guard case .address(let address, let proto, let port) = key else { return "fwm" }
        return "\(proto.rawValue)-\(address)-\(port)"
    }

    static func serviceChain(_ id: String) -> String { "svc-" + id }

    static func endpointChain(_ id: String, _ server: RealServer) -> String { "ep-\(id)-\(server.address)-\(server.port)" }

    /// The service id a chain belongs to, if it is a service or endpoint chain.
    static func serviceID(ofChain name: String) -> String? {
        if name.hasPrefix("svc-") {
            let id = String(name.dropFirst(4))
            return id.split(separator: "-").count == 3 ? id : nil
        }
        if name.hasPrefix("ep-") {
            let parts = name.dropFirst(3).split(separator: "-", omittingEmptySubsequences: false)
            return parts.count == 5 ? parts[0..<3].joined(separator: "-") : nil
        }
        return nil
    }

    /// The comment that keeps a service's scheduler and its flags
    /// ("swarmnet rr 0"): on its service chain's first rule (chains layout)
    /// or its class element (maps layout).
    static func schedulerComment(_ service: VirtualService) -> String {
        "swarmnet \(service.scheduler.rawValue) \(service.schedulerFlags.rawValue)"
    }

    /// The scheduler and flags a `schedulerComment` names, put into `service`.
    static func readSchedulerComment(_ comment: String?, into service: inout VirtualService) {
        let words = comment?.split(separator: " ") ?? []
        guard words.count >= 2, words[0] == "swarmnet" else { return }
        service.scheduler = Scheduler(rawValue: String(words[1]))
        if words.count >= 3, let flags = UInt32(words[2]) { service.schedulerFlags = SchedulerFlags(rawValue: flags) }
    }

    /// "weight 3": a backend's weight, on its DNAT rule or its slots.
    static func weightComment(_ weight: UInt32) -> String { "weight \(weight)" }

    /// The weight a `weightComment` names; 1 when there is none.
    static func weight(fromComment comment: String?) -> UInt32 {
        guard let comment, comment.hasPrefix("weight "), let weight = UInt32(comment.dropFirst(7)) else { return 1 }
        return weight
    }

    /// The key of a service id ("tcp-10.0.0.5-80").
    static func key(ofServiceID id: String) -> ServiceKey? {
        let parts = id.split(separator: "-")
        guard parts.count == 3, let proto = TransportProtocol(rawValue: String(parts[0])),
              let address = try? IPAddress(parsing: parts[1]), let port = UInt16(parts[2]) else { return nil }
        return .address(address, proto, port: port)
    }
}

/// nft's JSON expressions, built the way nft 1.0.6 lists them.
enum NFTExpr {
    static func meta(_ key: String) -> [String: Any] { ["meta": ["key": key]] }
    static func payload(_ proto: String, _ field: String) -> [String: Any] {
        ["payload": ["protocol": proto, "field": field]]
    }
    static func match(_ left: Any, _ op: String, _ right: Any) -> [String: Any] {
        ["match": ["left": left, "op": op, "right": right]]
    }
    static func setMarkOr(_ mark: UInt32) -> [String: Any] {
        ["mangle": ["key": meta("mark"), "value": ["|": [meta("mark"), Int(mark)]]]]
    }
    static func goto(_ chain: String) -> [String: Any] { ["goto": ["target": chain]] }
    static func jump(_ chain: String) -> [String: Any] { ["jump": ["target": chain]] }
}

/// Turns desired services into the table image swarmnet programs. The
/// chains layout (`NFTablesConfiguration.Layout.chains`), after kube-proxy's
/// nftables mode, is described here; the maps layout is in
/// `NFTablesMapLayout.swift`:
///
///     table ip swarmnet {
///       map service-ips   { type ipv4_addr . inet_proto . inet_service : verdict }
///       map service-ports { type inet_proto . inet_service : verdict }     published ports
///       chain output      { type nat hook output priority -100; jump services }
///       chain prerouting  { type nat hook prerouting priority -100; jump services }  (routing mesh)
///       chain postrouting { type nat hook postrouting priority 100; mark & M == M: clear M, masquerade }
///       chain services    { ip daddr . meta l4proto . th dport vmap @service-ips
///                           fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-ports }
///       chain svc-tcp-10.0.0.5-80 { counter comment "swarmnet rr 0"; [mark M]; numgen random mod 3 < 1 goto ep-…; … }
///       chain ep-tcp-10.0.0.5-80-10.0.1.2-8080 { [ip saddr 10.0.1.2 mark M]; meta l4proto tcp dnat to 10.0.1.2:8080 comment "weight 1" }
///     }
///
/// Choosing a backend: kube-proxy uses one `numgen random mod N vmap {…}`
/// per service, an anonymous verdict map each. The kernel's loop check
/// (nf_tables_check_loops) walks every verdict map of the table for each
/// jump it validates, so N anonymous maps make programming quadratic:
/// 10,000 services x 10 backends took 3 min to load with `nft -f` on this
/// machine, against 9.5 s for the cascade swarmnet writes instead, one rule
/// per backend: `numgen random mod R < w goto ep` where R is the weight of
/// this and the later backends (iptables' `statistic` cascade): backend k
/// is chosen with probability w_k / total, exactly.
///
/// Schedulers: rr and lc choose uniformly (nftables keeps no connection
/// counts, so lc is approximated by rr), wrr in proportion to weights, sh
/// and mh by `jhash ip saddr` (a client keeps its backend while the set of
/// backends is unchanged; mh's minimal disruption is not reproduced). The
/// scheduler's name and flags are kept in the service chain's first rule's
/// comment so `services()` reads them back. A weight-0 backend keeps its
/// endpoint chain (read back with its weight) but no rule jumps to it.
struct NFTablesRenderer {
    let configuration: NFTablesConfiguration
    /// The mark bit as nft text ("0x4000"), made once: every service's rules use it.
    let markHex: String

    init(configuration: NFTablesConfiguration) {
        self.configuration = configuration
        markHex = "0x" + String(configuration.masqueradeMark, radix: 16)
    }

    var family: String { "ip" }
    var table: String { configuration.tableName }
    var mark: UInt32 { configuration.masqueradeMark }

    static let unspecified = IPAddress.v4(IPv4Address(0))

    static func isPublishedPort(_ key: ServiceKey) -> Bool {
        if case .address(let address, _, _) = key { return address == unspecified }
        return false
    }

    /// Rejects what this back end cannot program, before anything is sent.
    func validate(_ desired: [VirtualService]) throws {
        try ReconcilePlan.validate(desired)
        for service in desired { try validate(service) }
    }

    private static let schedulers: Set<Scheduler> = [.roundRobin, .weightedRoundRobin, .leastConnections, .sourceHashing, .maglevHashing]

    func validate(_ service: VirtualService) throws {
        try validate(key: service.key)
        guard service.persistence == nil else {
            throw LoadBalancerError.invalidArgument(
                "service \(service.key): persistence is not supported by the nftables back end")
        }
        guard Self.schedulers.contains(service.scheduler) else {
            throw LoadBalancerError.invalidArgument(
                "service \(service.key): scheduler '\(service.scheduler)' is not one of rr, wrr, lc, sh, mh")
        }
        var total: UInt64 = 0
        for server in service.realServers {
            guard server.address.isIPv4 else {
                throw LoadBalancerError.invalidArgument(
                    "service \(service.key): real server \(server.endpoint) is IPv6 in an IPv4 service")
            }
            // Port 0 means every port: for both or for neither.
            guard (server.port == 0) == (Self.port(of: service.key) == 0) else {
                throw LoadBalancerError.invalidArgument(server.port == 0
                    ? "service \(service.key): real server \(server.endpoint) has port 0"
                    : "service \(service.key) balances every port: real server \(server.endpoint) must have port 0 (the connection's port is kept)")
            }
            guard server.forwarding == .masquerade else {
                throw LoadBalancerError.invalidArgument(
                    "service \(service.key): real server \(server.endpoint): nftables only does NAT (masquerade) forwarding")
            }
            total += UInt64(server.weight)
        }
        guard total <= UInt64(UInt32.max) else {
            throw LoadBalancerError.invalidArgument("service \(service.key): the weights add up to more than 2^32-1")
        }
    }

    func validate(key: ServiceKey) throws {
        guard case .address(let address, _, let port) = key else {
            throw LoadBalancerError.invalidArgument(
                "service \(key): firewall-mark services are not supported by the nftables back end (it matches VIP, protocol and port)")
        }
        guard address.isIPv4 else {
            throw LoadBalancerError.invalidArgument(
                "service \(key): IPv6 services are not supported by the nftables back end (its table is family ip)")
        }
        guard port != 0 || !Self.isPublishedPort(key) else {
            throw LoadBalancerError.invalidArgument("service \(key): port 0 (every port) is only for a VIP, not a published port")
        }
    }

    static func port(of key: ServiceKey) -> UInt16? {
        if case .address(_, _, let port) = key { return port }
        return nil
    }

    /// The services as they will be programmed: with local-only published
    /// ports, the backends outside the local prefixes are left out.
    func effective(_ service: VirtualService) -> VirtualService {
        guard Self.isPublishedPort(service.key), case .localBackendsOnly(let prefixes) = configuration.publishedPorts else {
            return service.sorted
        }
        var copy = service.sorted
        copy.realServers.removeAll { server in !prefixes.contains { $0.contains(server.address) } }
        return copy
    }

    // MARK: - Images

    /// The table for `desired`; in the maps layout also with the class
    /// sets `kept` (a table's classes stay until their members have moved).
    func image(for desired: [VirtualService], keepingClasses kept: Set<String> = []) -> NFTImage {
        let services = desired.map { (NFTNames.serviceID($0.key), self.service($0)) }
        var image = structure(classes: kept.union(services.compactMap(\.1.classSet)))
        for (id, service) in services { image.setService(id, service) }
        return image
    }

    /// The table, its sets and maps and its non-service chains; in the
    /// maps layout with a set and a rule for each of `classes`.
    func structure(classes: Set<String> = []) -> NFTImage {
        switch configuration.layout {
        case .chains: chainsStructure()
        case .maps: mapsStructure(classes: classes)
        }
    }

    /// One service's objects (`service` already effective).
    func service(_ service: VirtualService) -> NFTServiceImage {
        switch configuration.layout {
        case .chains: chainsService(service)
        case .maps: mapsService(service)
        }
    }

    /// The table with its hook chains, which send every packet to the
    /// dispatch chain (`services`), and the postrouting chain that
    /// masquerades what a dispatch rule marked (clearing the mark bit).
    func hookChains() -> NFTImage {
        var image = NFTImage(exists: true)
        let jump = NFTRule(text: "jump \(NFTNames.dispatch)", expr: [NFTExpr.jump(NFTNames.dispatch)])
        image.chains["output"] = NFTChain(base: "nat output -100 accept", rules: [jump])
        if configuration.hooks == .routingMesh {
            image.chains["prerouting"] = NFTChain(base: "nat prerouting -100 accept", rules: [jump])
        }
        image.chains["postrouting"] = NFTChain(base: "nat postrouting 100 accept", rules: [
            NFTRule(text: "meta mark & \(markHex) == \(markHex) meta mark set meta mark ^ \(markHex) masquerade", expr: [
                NFTExpr.match(["&": [NFTExpr.meta("mark"), Int(mark)]], "==", Int(mark)),
                ["mangle": ["key": NFTExpr.meta("mark"), "value": ["^": [NFTExpr.meta("mark"), Int(mark)]]]],
                ["masquerade": JSONNull()],
            ]),
        ])
        return image
    }

    private func chainsStructure() -> NFTImage {
        var image = hookChains()
        image.maps = [NFTNames.serviceIPs: NFTNames.serviceIPsType, NFTNames.servicePorts: NFTNames.servicePortsType,
                      NFTNames.serviceVIPs: NFTNames.serviceVIPsType]
        let vipKey: [String: Any] = ["concat": [NFTExpr.payload("ip", "daddr"), NFTExpr.meta("l4proto"), NFTExpr.payload("th", "dport")]]
        let portKey: [String: Any] = ["concat": [NFTExpr.meta("l4proto"), NFTExpr.payload("th", "dport")]]
        let everyPortKey: [String: Any] = ["concat": [NFTExpr.payload("ip", "daddr"), NFTExpr.meta("l4proto")]]
        image.chains[NFTNames.dispatch] = NFTChain(base: nil, rules: [
            NFTRule(text: "ip daddr . meta l4proto . th dport vmap @\(NFTNames.serviceIPs)",
                    expr: [["vmap": ["key": vipKey, "data": "@\(NFTNames.serviceIPs)"]]]),
            // After the per-port map, so a service on one port of a VIP wins.
            NFTRule(text: "ip daddr . meta l4proto vmap @\(NFTNames.serviceVIPs)",
                    expr: [["vmap": ["key": everyPortKey, "data": "@\(NFTNames.serviceVIPs)"]]]),
            NFTRule(text: "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @\(NFTNames.servicePorts)",
                    expr: [
                        NFTExpr.match(["fib": ["flags": ["daddr"], "result": "type"]], "==", "local"),
                        NFTExpr.match(NFTExpr.payload("ip", "daddr"), "!=", ["prefix": ["addr": "127.0.0.0", "len": 8]]),
                        ["vmap": ["key": portKey, "data": "@\(NFTNames.servicePorts)"]],
                    ]),
        ])
        return image
    }

    /// One service's chains and map element (`service` already effective).
    private func chainsService(_ service: VirtualService) -> NFTServiceImage {
        guard case .address(let vip, let proto, let port) = service.key else { return NFTServiceImage() }
        let id = NFTNames.serviceID(service.key)
        let serviceChain = NFTNames.serviceChain(id)
        let published = Self.isPublishedPort(service.key)
        let preserve: Bool = if published, case .localBackendsOnly = configuration.publishedPorts { true } else { false }
        var image = NFTServiceImage()

        var rules = [NFTRule(text: "counter", expr: [["counter": ["bytes": 0, "packets": 0]]],
                             comment: NFTNames.schedulerComment(service))]
        let markAll = NFTRule(text: "meta mark set meta mark | \(markHex)", expr: [NFTExpr.setMarkOr(mark)])
        switch configuration.masquerade {
        case _ where preserve: break
        case .never: break
        case .all: rules.append(markAll)
        case .publishedPorts: if published { rules.append(markAll) }
        case .nonLocalClients:
            rules.append(NFTRule(text: "fib saddr type != local meta mark set meta mark | \(markHex)", expr: [
                NFTExpr.match(["fib": ["flags": ["saddr"], "result": "type"]], "!=", "local"), NFTExpr.setMarkOr(mark),
            ]))
        }
        // Hairpin: a backend reaching itself through the VIP needs its
        // source rewritten, or its reply would bypass the NAT. Only VIP
        // services under `.publishedPorts` need a rule for it; the other
        // policies either mark that connection already or never mark.
        let hairpin = !preserve && !published && configuration.masquerade == .publishedPorts
        let hashing = service.scheduler == .sourceHashing || service.scheduler == .maglevHashing
        let weighted = hashing || service.scheduler == .weightedRoundRobin

        var active: [(chain: String, weight: UInt64)] = []
        for server in service.realServers.sorted(by: { $0.key < $1.key }) {
            let chain = NFTNames.endpointChain(id, server)
            var endpointRules: [NFTRule] = []
            if hairpin {
                endpointRules.append(NFTRule(text: "ip saddr \(server.address) meta mark set meta mark | \(markHex)", expr: [
                    NFTExpr.match(NFTExpr.payload("ip", "saddr"), "==", "\(server.address)"), NFTExpr.setMarkOr(mark),
                ]))
            }
            if port == 0 {
                // Every port: the connection keeps its destination port.
                endpointRules.append(NFTRule(
                    text: "meta l4proto \(proto.rawValue) dnat to \(server.address)",
                    expr: [NFTExpr.match(NFTExpr.meta("l4proto"), "==", proto.rawValue), ["dnat": ["addr": "\(server.address)"]]],
                    comment: NFTNames.weightComment(server.weight), dnat: "\(server.address):0"))
            } else {
                endpointRules.append(NFTRule(
                    text: "meta l4proto \(proto.rawValue) dnat to \(server.address):\(server.port)",
                    expr: [NFTExpr.match(NFTExpr.meta("l4proto"), "==", proto.rawValue),
                           ["dnat": ["addr": "\(server.address)", "port": Int(server.port)]]],
                    comment: NFTNames.weightComment(server.weight), dnat: "\(server.address):\(server.port)"))
            }
            image.chains[chain] = NFTChain(base: nil, rules: endpointRules)
            if server.weight > 0 { active.append((chain, weighted ? UInt64(server.weight) : 1)) }
        }
        var left = active.reduce(0) { $0 + $1.weight }
        for (index, endpoint) in active.enumerated() {
            // A constant: a rule's expressions are built later (NFTRule.init).
            let remaining = left
            if index == active.count - 1 {
                rules.append(NFTRule(text: "goto \(endpoint.chain)", expr: [NFTExpr.goto(endpoint.chain)]))
            } else if hashing {
                rules.append(NFTRule(text: "jhash ip saddr mod \(remaining) < \(endpoint.weight) goto \(endpoint.chain)", expr: [
                    NFTExpr.match(["jhash": ["expr": NFTExpr.payload("ip", "saddr"), "mod": Int(remaining)]], "<", Int(endpoint.weight)),
                    NFTExpr.goto(endpoint.chain),
                ]))
            } else {
                rules.append(NFTRule(text: "numgen random mod \(remaining) < \(endpoint.weight) goto \(endpoint.chain)", expr: [
                    NFTExpr.match(["numgen": ["mod": Int(remaining), "mode": "random", "offset": 0]], "<", Int(endpoint.weight)),
                    NFTExpr.goto(endpoint.chain),
                ]))
            }
            left -= endpoint.weight
        }
        // No backend takes new connections: refuse them here rather than
        // let them reach the VIP unbalanced. Established ones never get here.
        if active.isEmpty { rules.append(NFTRule(text: "drop", expr: [["drop": JSONNull()]])) }
        image.chains[serviceChain] = NFTChain(base: nil, rules: rules)

        let element = published
            ? NFTElement(map: NFTNames.servicePorts, key: "\(proto.rawValue) . \(port)", target: serviceChain)
            : port == 0
            ? NFTElement(map: NFTNames.serviceVIPs, key: "\(vip) . \(proto.rawValue)", target: serviceChain)
            : NFTElement(map: NFTNames.serviceIPs, key: "\(vip) . \(proto.rawValue) . \(port)", target: serviceChain)
        image.elements = [element]
        return image
    }
}

/// One command of a transaction. Commands on a service's own objects (its
/// chains, their rules, its map element) are typed, so they can be sent as
/// nf_tables netlink messages (`NFTNetlinkBatch`); the table's structure
/// (table, maps, hook and dispatch chains, strays) is kept as nft text and
/// goes through libnftables.
enum NFTCommand: Equatable {
    case structure(String)
    case createChain(String)
    case flushChain(String)
    case deleteChain(String)
    case addRule(chain: String, NFTRule)
    case addElement(NFTElement)
    case deleteElement(NFTElement)

    /// The command as nft reads it (`prefix` is "ip TABLE").
    func text(prefix: String) -> String {
        switch self {
        case .structure(let text): text
        case .createChain(let name): "create chain \(prefix) \(name)"
        case .flushChain(let name): "flush chain \(prefix) \(name)"
        case .deleteChain(let name): "delete chain \(prefix) \(name)"
        case .addRule(let chain, let rule): "add rule \(prefix) \(chain) \(rule.text)"
        case .addElement(let element): "add element \(prefix) \(element.map) { \(element.text) }"
        case .deleteElement(let element): "delete element \(prefix) \(element.map) { \(element.key) }"
        }
    }

    var isStructure: Bool {
        if case .structure = self { return true }
        return false
    }
}

/// The one transaction that turns `current` into `desired`, touching only
/// what differs. Phases, in this order inside the transaction:
/// table and maps; stale map elements deleted (nothing dispatches to a
/// leaving service any more); missing chains created empty (every jump
/// target exists before a rule names it); changed chains flushed and
/// rewritten, endpoint chains before service chains; new map elements;
/// chains no longer wanted flushed, then deleted (service chains before
/// endpoint chains, so nothing refers to a chain being deleted).
///
/// Missing chains are made with `create` (EEXIST if present) and old ones
/// flushed or deleted by name (ENOENT if absent), so a transaction built
/// from a stale model fails whole instead of duplicating rules.
///
/// The structure's commands never refer to a service's objects (the
/// dispatch chain names only maps), so they can run as a transaction of
/// their own ahead of the services' commands: see `NFTablesLoadBalancer`.
struct NFTTransaction {
    let family: String
    let table: String

    var prefix: String { "\(family) \(table)" }

    /// The transaction as nft text, one command a line.
    func commands(from current: NFTImage, to desired: NFTImage) -> [String] {
        plan(from: current, to: desired).map { $0.text(prefix: prefix) }
    }

    func plan(from current: NFTImage, to desired: NFTImage) -> [NFTCommand] {
        var phases = Phases()
        if !current.exists { phases.setup.append(.structure("add table \(prefix)")) }
        for (name, type) in desired.maps.sorted(by: { $0.key < $1.key }) where current.maps[name] != type {
            if let old = current.maps[name] { phases.delete.append(.structure(Self.deleteSet(name, type: old, prefix: prefix))) }
            let kind = Self.isMap(type) ? "map" : "set"
            let declaration = desired.declarations[name] ?? "type \(type)"
            phases.setup.append(.structure("add \(kind) \(prefix) \(name) { \(declaration) ; }"))
        }
        for element in current.strayElements.sorted() {
            phases.unmap.append(.structure(NFTCommand.deleteElement(element).text(prefix: prefix)))
        }
        chains(current.chains, desired.chains, structure: true, &phases)
        for id in Set(current.services.keys).union(desired.services.keys).sorted() {
            let have = current.services[id] ?? NFTServiceImage()
            let want = desired.services[id] ?? NFTServiceImage()
            if have == want { continue }
            for element in have.elements.subtracting(want.elements).sorted() {
                phases.unmap.append(.deleteElement(element))
            }
            chains(have.chains, want.chains, structure: false, &phases)
            for element in want.elements.subtracting(have.elements).sorted() {
                phases.map.append(.addElement(element))
            }
        }
        for (name, type) in current.maps.sorted(by: { $0.key < $1.key }) where desired.maps[name] == nil {
            phases.delete.append(.structure(Self.deleteSet(name, type: type, prefix: prefix)))
        }
        return phases.all()
    }

    /// A map's type has a data part ("KEY : DATA"); a set's does not.
    static func isMap(_ type: String) -> Bool { type.contains(" : ") }

    private static func deleteSet(_ name: String, type: String, prefix: String) -> String {
        "delete \(isMap(type) ? "map" : "set") \(prefix) \(name)"
    }

    private struct Phases {
        var setup: [NFTCommand] = []
        var unmap: [NFTCommand] = []
        var create: [NFTCommand] = []
        var rewrite: [(rank: Int, commands: [NFTCommand])] = []
        var map: [NFTCommand] = []
        var removals: [(rank: Int, name: String, flush: NFTCommand, delete: NFTCommand)] = []
        var delete: [NFTCommand] = []

        func all() -> [NFTCommand] {
            let rewritten = rewrite.enumerated().sorted { ($0.element.rank, $0.offset) < ($1.element.rank, $1.offset) }
                .flatMap(\.element.commands)
            let gone = removals.sorted { ($0.rank, $0.name) < ($1.rank, $1.name) }
            return setup + unmap + create + rewritten + map + gone.map(\.flush) + gone.map(\.delete) + delete
        }
    }

    /// Endpoint chains are rewritten first, then service chains, the
    /// dispatch chain, and the hook chains last; removal goes the other way.
    private static func rank(_ name: String) -> Int {
        if name.hasPrefix("ep-") { return 0 }
        if name.hasPrefix("svc-") { return 1 }
        if name == NFTNames.dispatch { return 2 }
        return 3
    }

    /// `structure`: the table's own chains (written as text), else one service's.
    private func chains(_ have: [String: NFTChain], _ want: [String: NFTChain], structure: Bool, _ phases: inout Phases) {
        func command(_ typed: NFTCommand) -> NFTCommand { structure ? .structure(typed.text(prefix: prefix)) : typed }
        for (name, chain) in want.sorted(by: { $0.key < $1.key }) {
            let existing = have[name]
            var commands: [NFTCommand] = []
            if existing == nil || existing?.base != chain.base {
                if existing != nil { phases.create.append(command(.deleteChain(name))) }
                if let base = chain.base {
                    phases.create.append(.structure("create chain \(prefix) \(name) { \(Self.baseSpec(base)) }"))
                } else {
                    phases.create.append(command(.createChain(name)))
                }
                commands = chain.rules.map { command(.addRule(chain: name, $0)) }
            } else if existing?.rules != chain.rules {
                commands = [command(.flushChain(name))] + chain.rules.map { command(.addRule(chain: name, $0)) }
            }
            if !commands.isEmpty { phases.rewrite.append((Self.rank(name), commands)) }
        }
        for name in have.keys where want[name] == nil {
            phases.removals.append((Self.rank(name) == 0 ? 1 : (Self.rank(name) == 1 ? 0 : 2), name,
                                    command(.flushChain(name)), command(.deleteChain(name))))
        }
    }

    /// "nat output -100 accept" -> "type nat hook output priority -100 ; policy accept ;".
    static func baseSpec(_ base: String) -> String {
        let p = base.split(separator: " ")
        guard p.count == 4 else { return base }
        return "type \(p[0]) hook \(p[1]) priority \(p[2]) ; policy \(p[3]) ;"
    }
}

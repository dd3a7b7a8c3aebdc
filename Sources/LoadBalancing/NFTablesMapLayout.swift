import Addressing
import FoundationEssentials
import SystemBasics

/// The maps layout (`NFTablesConfiguration.Layout.maps`): the table has a
/// fixed handful of chains, and a service is nothing but set and map
/// elements.
///
///     table ip swarmnet {
///       set vips-tcp-random-3 { type ipv4_addr . inet_service }      TCP VIP services with 3 slots
///       map vips-tcp-backends { typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport }
///       set idle              { type ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service }  weight-0 backends
///       chain services {
///         ip daddr . tcp dport @vips-tcp-random-3
///             dnat ip to ip daddr . tcp dport . numgen random mod 3 map @vips-tcp-backends
///         …one rule per class in use
///       }
///       (hook chains and postrouting as in the chains layout)
///     }
///     vips-tcp-random-3: 10.0.0.5 . 80 comment "swarmnet rr 0"
///     vips-tcp-backends: 10.0.0.5 . 80 . 0 : 10.0.1.2 . 8080, … . 1 : 10.0.1.3 . 8080, … . 2 : 10.0.1.4 . 8080
///
/// Three shapes (VIP and port; VIP on every port, `vip-addrs`, whose rules
/// match the protocol first; published port on any local address, `ports`)
/// times two protocols, each with its own class sets and backends map.
///
/// A service with S slots is a member of the class set for S (and for its
/// selector: `numgen random` for rr, wrr and lc, `jhash ip saddr` for sh and
/// mh), and its backends fill slots 0..<S of the backends map, keyed by
/// the service and the slot. The class's rule picks a slot and DNATs to
/// whatever backend holds it.
///
/// Why: in the chains layout every change adds rules, and a commit that
/// adds a rule makes the kernel validate the whole table from its hook
/// chains (every service and endpoint chain, through the dispatch map) and
/// walk every chain of the namespace: about 140 ms per change at 10,000
/// services x 10 on this machine's kernel, whatever swarmnet does
/// (`scripts/bench-nft-floor`). Here a change only adds and deletes
/// elements of data maps and sets, which the kernel neither validates nor
/// walks: 0.02 ms at 100 and at 10,000 services. The class is a set and
/// not a verdict-map element because adding a verdict element (`goto`)
/// makes the kernel validate every element of its map: 0.7 ms per change
/// at 10,000 services, against 0.04 ms at 100.
///
/// The price: a rule per class in use, so a new connection to a service
/// with S slots is looked up in the class sets before its own (a hash
/// lookup each, on the first packet only: later packets follow conntrack);
/// a new class (a slot count no service had) adds a set and a rule, in a
/// transaction of its own (libnftables) before the elements, and a class
/// left empty for `emptyClassLifetime` is removed the same way. Binding
/// the backends map to the new rule makes the kernel walk every element of
/// it: about 35 ms at 10,000 services x 10, once per new class.
///
/// Weights: rr and lc give every active backend one slot; wrr, sh and mh
/// give it weight/g slots (g the weights' greatest common divisor), exact
/// up to `NFTMapNames.maxWeightedSlots` slots in all and proportional,
/// at least one slot each, beyond. A slot's comment keeps a weight other
/// than 1 so the service reads back as it was given.
///
/// Hairpin (masquerade `.publishedPorts`): a connection to a VIP from one
/// of that service's own active backends is masqueraded, wherever it
/// lands (the chains layout only when it lands on its own source), so the
/// reply comes back through the balancer. nft cannot compare the chosen
/// backend with the source in one rule, and a lookup keyed by the service
/// and the source is one element per backend that the service owns.
enum NFTMapNames {
    /// Above this many slots in all, weights are approximated.
    static let maxWeightedSlots = 256
    static let idle = "idle"

    /// How a service is matched: by VIP and port; by VIP on every port; or
    /// by port on every local address (a published port).
    enum Shape: String, CaseIterable, Comparable {
        case vips
        case vipAddresses = "vip-addrs"
        case ports

        /// Rules of the per-port shape come first, so a service on one port
        /// of a VIP wins over the VIP's every-port service.
        static func < (a: Shape, b: Shape) -> Bool { allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)! }
    }

    /// A shape for one protocol: the services whose classes, backends and
    /// hairpin sources share sets ("vips-tcp-…").
    ///
    /// Why one per protocol and not `meta l4proto . th dport` in one set:
    /// a map whose data is declared `ip daddr . th dport` makes nft 1.0.6
    /// unable to read back the DNAT rule that uses it ("conflicting
    /// protocols specified: ip vs. th"), and declaring it `ip daddr . tcp
    /// dport` makes nft add a `meta l4proto tcp` match to that rule, so
    /// UDP would never match. With `tcp dport` (or `udp dport`) in the
    /// key, the rule's protocol is that one's, and both read back.
    struct Kind: Hashable, Comparable {
        let shape: Shape
        let proto: TransportProtocol

        static let all = Shape.allCases.flatMap { shape in TransportProtocol.allCases.map { Kind(shape: shape, proto: $0) } }

        init(shape: Shape, proto: TransportProtocol) {
            self.shape = shape
            self.proto = proto
        }

        init?(_ key: ServiceKey) {
            guard case .address(let address, let proto, let port) = key else { return nil }
            self.init(shape: address == NFTablesRenderer.unspecified ? .ports : port == 0 ? .vipAddresses : .vips, proto: proto)
        }

        static func < (a: Kind, b: Kind) -> Bool { (a.shape, a.proto.number) < (b.shape, b.proto.number) }

        /// "vips-tcp", "vip-addrs-udp", "ports-tcp".
        var prefix: String { "\(shape.rawValue)-\(proto.rawValue)" }
        var backends: String { prefix + "-backends" }
        var hairpin: String { prefix + "-hairpin" }

        /// The class sets' type, as nft lists it.
        var keyType: String {
            switch shape {
            case .vips: "ipv4_addr . inet_service"
            case .vipAddresses: "ipv4_addr"
            case .ports: "inet_service"
            }
        }

        private var port: String { "\(proto.rawValue) dport" }

        /// The packet fields of the key, as nft writes and lists them.
        var keyText: String {
            switch shape {
            case .vips: "ip daddr . \(port)"
            case .vipAddresses: "ip daddr"
            case .ports: port
            }
        }

        var keyFields: [Any] {
            let port = NFTExpr.payload(proto.rawValue, "dport")
            switch shape {
            case .vips: return [NFTExpr.payload("ip", "daddr"), port]
            case .vipAddresses: return [NFTExpr.payload("ip", "daddr")]
            case .ports: return [port]
            }
        }

        /// nft lists a one-field key bare and a longer one as a concatenation.
        static func key(_ fields: [Any]) -> Any { fields.count == 1 ? fields[0] : ["concat": fields] }

        /// Every-port VIPs have no port field to imply the protocol: their
        /// rules match it first.
        var protocolGuard: (text: String, expr: [Any]) {
            shape == .vipAddresses
                ? ("meta l4proto \(proto.rawValue) ", [NFTExpr.match(NFTExpr.meta("l4proto"), "==", proto.rawValue)])
                : ("", [])
        }

        /// A backend: address and port, or the address alone when the
        /// connection keeps its port (every-port VIPs).
        var dataType: String { shape == .vipAddresses ? "ipv4_addr" : "ipv4_addr . inet_service" }
        var dataText: String { shape == .vipAddresses ? "ip daddr" : "ip daddr . \(port)" }

        /// The backends map's type as nft lists it, and as it is declared
        /// (numgen's result is an "integer", which `type` cannot declare).
        var backendsType: String { keyType + " . integer : " + dataType }
        var backendsDeclaration: String { "typeof \(keyText) . numgen random mod 1 : \(dataText)" }

        /// The key of a service's class element ("10.0.0.5 . 80").
        func key(_ service: ServiceKey) -> String {
            guard case .address(let address, _, let port) = service else { return "" }
            switch shape {
            case .vips: return "\(address) . \(port)"
            case .vipAddresses: return "\(address)"
            case .ports: return "\(port)"
            }
        }

        func data(_ server: RealServer) -> String {
            shape == .vipAddresses ? "\(server.address)" : "\(server.address) . \(server.port)"
        }

        /// How many fields of an element's key name the service.
        var keyFieldCount: Int { shape == .vips ? 2 : 1 }

        /// The service a key's leading fields name.
        func service(fromKey fields: [Substring]) -> ServiceKey? {
            guard fields.count >= keyFieldCount else { return nil }
            switch shape {
            case .vips:
                guard let address = try? IPAddress(parsing: fields[0]), let port = UInt16(fields[1]), port != 0 else { return nil }
                return .address(address, proto, port: port)
            case .vipAddresses:
                guard let address = try? IPAddress(parsing: fields[0]) else { return nil }
                return .address(address, proto, port: 0)
            case .ports:
                guard let port = UInt16(fields[0]) else { return nil }
                return .address(NFTablesRenderer.unspecified, proto, port: port)
            }
        }
    }

    /// How a class picks a slot.
    enum Selector: String {
        /// `numgen random`: rr, wrr, lc.
        case random
        /// `jhash ip saddr`: sh, mh (a client keeps its backend while the
        /// slots do not change).
        case hash
    }

    /// A class: the services of one kind that pick among `slots` slots the
    /// same way; `slots == 0` is the class that drops new connections (no
    /// active backend).
    struct Class: Hashable, Comparable {
        let kind: Kind
        let selector: Selector
        let slots: Int

        /// "vips-tcp-random-3", "ports-udp-hash-2", "vip-addrs-tcp-drop".
        var name: String { slots == 0 ? "\(kind.prefix)-drop" : "\(kind.prefix)-\(selector.rawValue)-\(slots)" }

        init(kind: Kind, selector: Selector, slots: Int) {
            self.kind = kind
            self.selector = slots == 0 ? .random : selector
            self.slots = slots
        }

        /// Each kind with its names' prefix, made once: a change parses the
        /// class of every service it touches, and a table read all of them.
        private static let prefixes = Kind.all.map { (kind: $0, prefix: $0.prefix + "-") }

        init?(name: String) {
            // Other sets of the layout end in "-backends", "-hairpin" or are
            // "idle": only a slot count or "drop" ends a class's name.
            guard let last = name.utf8.last, (last >= UInt8(ascii: "0") && last <= UInt8(ascii: "9")) || name.hasSuffix("-drop")
            else { return nil }
            for (kind, prefix) in Self.prefixes where name.hasPrefix(prefix) {
                let rest = name.dropFirst(prefix.count)
                if rest == "drop" { self.init(kind: kind, selector: .random, slots: 0); return }
                let parts = rest.split(separator: "-")
                guard parts.count == 2, let selector = Selector(rawValue: String(parts[0])), let slots = Int(parts[1]),
                      slots > 0, String(slots) == parts[1] else { continue }
                self.init(kind: kind, selector: selector, slots: slots)
                return
            }
            return nil
        }

        static func < (a: Class, b: Class) -> Bool {
            (a.kind, a.slots == 0 ? 0 : 1, a.selector.rawValue, a.slots) < (b.kind, b.slots == 0 ? 0 : 1, b.selector.rawValue, b.slots)
        }
    }

    static func isClassSet(_ name: String) -> Bool { Class(name: name) != nil }

    /// The service an element of the maps layout belongs to; nil for an
    /// element of a set swarmnet does not write (a stray).
    static func serviceKey(of element: NFTElement) -> ServiceKey? {
        let fields = NFTElement.fields(element.key)
        if let kind = Class(name: element.map)?.kind {
            return fields.count == kind.keyFieldCount ? kind.service(fromKey: fields) : nil
        }
        for kind in Kind.all {
            if element.map == kind.backends, fields.count == kind.keyFieldCount + 1, Int(fields[kind.keyFieldCount]) != nil {
                return kind.service(fromKey: fields)
            }
            if element.map == kind.hairpin, kind.shape != .ports, fields.count == kind.keyFieldCount + 1 {
                return kind.service(fromKey: Array(fields.dropFirst()))
            }
        }
        // Weight-0 backends of every kind: address, protocol and port of
        // the service (0.0.0.0 for a published port, port 0 for every port).
        guard element.map == idle, fields.count == 5, let address = try? IPAddress(parsing: fields[0]),
              let proto = TransportProtocol(rawValue: String(fields[1])), let port = UInt16(fields[2]) else { return nil }
        return .address(address, proto, port: port)
    }
}

extension NFTablesRenderer {
    /// The slots of a service's active backends: one each, or in proportion
    /// to their weights for wrr, sh and mh (see `NFTMapNames`).
    static func slots(of service: VirtualService) -> [(server: RealServer, count: Int)] {
        let active = service.realServers.filter { $0.weight > 0 }.sorted { $0.key < $1.key }
        let weighted = [.weightedRoundRobin, .sourceHashing, .maglevHashing].contains(service.scheduler)
        guard weighted, !active.isEmpty else { return active.map { ($0, 1) } }
        func gcd(_ a: UInt64, _ b: UInt64) -> UInt64 { b == 0 ? a : gcd(b, a % b) }
        let divisor = active.reduce(UInt64(0)) { gcd($0, UInt64($1.weight)) }
        let total = active.reduce(UInt64(0)) { $0 + UInt64($1.weight) } / divisor
        let limit = UInt64(NFTMapNames.maxWeightedSlots)
        return active.map { server in
            let exact = UInt64(server.weight) / divisor
            return (server, Int(total <= limit ? exact : max(1, exact * limit / total)))
        }
    }

    /// The class a service belongs to (a VIP:port or firewall-mark key
    /// never gets here: validation refuses them first).
    func mapClass(of service: VirtualService) -> NFTMapNames.Class {
        let hashing = service.scheduler == .sourceHashing || service.scheduler == .maglevHashing
        let kind = NFTMapNames.Kind(service.key) ?? NFTMapNames.Kind(shape: .vips, proto: .tcp)
        return NFTMapNames.Class(kind: kind, selector: hashing ? .hash : .random,
                                 slots: Self.slots(of: service).reduce(0) { $0 + $1.count })
    }

    /// Whether hairpin connections need their own mark rule: only VIP
    /// services under `.publishedPorts` (the other policies mark every
    /// connection of a kind, or none).
    var marksHairpin: Bool { configuration.masquerade == .publishedPorts }

    /// One service's elements (`service` already effective).
    func mapsService(_ service: VirtualService) -> NFTServiceImage {
        let serviceClass = mapClass(of: service)
        let kind = serviceClass.kind
        let key = kind.key(service.key)
        var image = NFTServiceImage()
        image.elements.insert(NFTElement(map: serviceClass.name, key: key,
                                         comment: NFTNames.schedulerComment(service)))
        var slot = 0
        for (server, count) in Self.slots(of: service) {
            for _ in 0..<count {
                image.elements.insert(NFTElement(map: kind.backends, key: "\(key) . \(slot)", data: kind.data(server),
                                                 comment: server.weight == 1 ? nil : NFTNames.weightComment(server.weight)))
                slot += 1
            }
            if marksHairpin, kind.shape != .ports {
                image.elements.insert(NFTElement(map: kind.hairpin, key: "\(server.address) . \(key)"))
            }
        }
        guard case .address(let address, let proto, let port) = service.key else { return image }
        for server in service.realServers where server.weight == 0 {
            image.elements.insert(NFTElement(map: NFTMapNames.idle,
                                             key: "\(address) . \(proto.rawValue) . \(port) . \(server.address) . \(server.port)"))
        }
        return image
    }

    /// The table for the maps layout: its fixed sets and maps, a set and a
    /// rule for each class of `classes` (names of class sets; others are
    /// ignored), and the hook chains.
    func mapsStructure(classes: Set<String>) -> NFTImage {
        var image = hookChains()
        var rules: [NFTRule] = []
        for kind in NFTMapNames.Kind.all {
            image.maps[kind.backends] = kind.backendsType
            image.declarations[kind.backends] = kind.backendsDeclaration
            if marksHairpin, kind.shape != .ports {
                // The source first: nft 1.0.6 cannot read back an `ip`
                // field after a port ("conflicting protocols").
                image.maps[kind.hairpin] = "ipv4_addr . " + kind.keyType
                let guarded = kind.protocolGuard
                rules.append(NFTRule(text: "\(guarded.text)ip saddr . \(kind.keyText) @\(kind.hairpin) meta mark set meta mark | \(markHex)",
                                     expr: guarded.expr + [
                                         NFTExpr.match(["concat": [NFTExpr.payload("ip", "saddr")] + kind.keyFields], "==", "@\(kind.hairpin)"),
                                         NFTExpr.setMarkOr(mark),
                                     ]))
            }
        }
        image.maps[NFTMapNames.idle] = "ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service"
        for serviceClass in classes.compactMap(NFTMapNames.Class.init(name:)).sorted() {
            image.maps[serviceClass.name] = serviceClass.kind.keyType
            rules += classRules(serviceClass)
        }
        image.chains[NFTNames.dispatch] = NFTChain(base: nil, rules: rules)
        return image
    }

    /// The rule(s) of one class: membership, the masquerade mark where the
    /// policy wants one, and the DNAT through the backends map.
    private func classRules(_ serviceClass: NFTMapNames.Class) -> [NFTRule] {
        let kind = serviceClass.kind
        let set = serviceClass.name
        var guardText = kind.protocolGuard.text
        var guardExpr = kind.protocolGuard.expr
        if kind.shape == .ports {
            // Published ports answer on local addresses only, never loopback.
            guardText += "fib daddr type local ip daddr != 127.0.0.0/8 "
            guardExpr += [NFTExpr.match(["fib": ["flags": ["daddr"], "result": "type"]], "==", "local"),
                          NFTExpr.match(NFTExpr.payload("ip", "daddr"), "!=", ["prefix": ["addr": "127.0.0.0", "len": 8]])]
        }
        let member = NFTExpr.match(NFTMapNames.Kind.key(kind.keyFields), "==", "@\(set)")
        let memberText = "\(guardText)\(kind.keyText) @\(set)"
        if serviceClass.slots == 0 {
            return [NFTRule(text: "\(memberText) drop", expr: guardExpr + [member, ["drop": JSONNull()]])]
        }
        let selectorText: String
        let selectorExpr: [String: Any]
        switch serviceClass.selector {
        case .random:
            selectorText = "numgen random mod \(serviceClass.slots)"
            selectorExpr = ["numgen": ["mode": "random", "mod": serviceClass.slots, "offset": 0]]
        case .hash:
            selectorText = "jhash ip saddr mod \(serviceClass.slots)"
            selectorExpr = ["jhash": ["mod": serviceClass.slots, "expr": NFTExpr.payload("ip", "saddr")]]
        }
        // nft lists the family only where the map gives an address and a port.
        var dnat: [String: Any] = ["addr": ["map": ["key": ["concat": kind.keyFields + [selectorExpr]], "data": "@\(kind.backends)"]]]
        if kind.shape != .vipAddresses { dnat["family"] = "ip" }
        let dnatText = "dnat ip to \(kind.keyText) . \(selectorText) map @\(kind.backends)"

        let markText = "meta mark set meta mark | \(markHex) "
        let preserve: Bool = if kind.shape == .ports, case .localBackendsOnly = configuration.publishedPorts { true } else { false }
        func rule(mark: Bool, nonLocalOnly: Bool) -> NFTRule {
            var text = nonLocalOnly ? "fib saddr type != local " : ""
            var expr: [Any] = nonLocalOnly ? [NFTExpr.match(["fib": ["flags": ["saddr"], "result": "type"]], "!=", "local")] : []
            text += memberText + " " + (mark ? markText : "") + dnatText
            expr += guardExpr + [member]
            if mark { expr.append(NFTExpr.setMarkOr(self.mark)) }
            expr.append(["dnat": dnat])
            return NFTRule(text: text, expr: expr)
        }
        switch configuration.masquerade {
        case _ where preserve, .never: return [rule(mark: false, nonLocalOnly: false)]
        case .all: return [rule(mark: true, nonLocalOnly: false)]
        case .publishedPorts: return [rule(mark: kind.shape == .ports, nonLocalOnly: false)]
        case .nonLocalClients: return [rule(mark: true, nonLocalOnly: true), rule(mark: false, nonLocalOnly: false)]
        }
    }
}

extension NFTablesKernelState {
    /// The services a maps-layout image balances: one per service with a
    /// class element, its scheduler from that element's comment, its
    /// backends from its slots (weights from their comments, else 1) and
    /// from the idle set (weight 0).
    static func mapServices(in image: NFTImage) -> [VirtualService] {
        var result: [VirtualService] = []
        for (id, service) in image.services {
            guard let key = NFTNames.key(ofServiceID: id),
                  let member = service.elements.first(where: { NFTMapNames.isClassSet($0.map) }) else { continue }
            var virtual = VirtualService(key: key)
            NFTNames.readSchedulerComment(member.comment, into: &virtual)
            guard let kind = NFTMapNames.Kind(key) else { continue }
            var seen: Set<RealServer.Key> = []
            for element in service.elements.sorted() {
                var server: RealServer?
                if element.map == kind.backends, let data = element.data {
                    let parts = NFTElement.fields(data)
                    guard let address = try? IPAddress(parsing: parts[0]) else { continue }
                    let port = parts.count == 2 ? UInt16(parts[1]) ?? 0 : 0
                    server = RealServer(address: address, port: port, weight: NFTNames.weight(fromComment: element.comment))
                } else if element.map == NFTMapNames.idle {
                    let parts = NFTElement.fields(element.key)
                    guard parts.count == 5, let address = try? IPAddress(parsing: parts[3]), let port = UInt16(parts[4]) else { continue }
                    server = RealServer(address: address, port: port, weight: 0)
                }
                if let server, seen.insert(server.key).inserted { virtual.realServers.append(server) }
            }
            result.append(virtual.sorted)
        }
        return result.sorted { $0.key < $1.key }
    }
}

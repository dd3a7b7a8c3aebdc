import Addressing
import FoundationEssentials
import SystemBasics

/// Reading a table back: nft's JSON listing (`list table ip NAME`, the
/// same as `nft -j list table ip NAME`) into an `NFTImage`, and an image
/// into the services it balances.
enum NFTablesKernelState {
    /// Parses `{"nftables": [...]}`. Chains and elements are grouped by the
    /// service they belong to (the chains layout: by the chain names; the
    /// maps layout: by the elements' keys); everything else is kept as it
    /// is, so that a difference is visible to the transaction builder.
    static func image(fromJSON text: String, table: String, layout: NFTablesConfiguration.Layout = .chains) throws -> NFTImage {
        guard let root = try? JSONObject.parse(text) as? [String: Any],
              let items = root["nftables"] as? [[String: Any]]
        else { throw LoadBalancerError.malformedReply("nft JSON listing without an 'nftables' array") }
        var image = NFTImage(exists: false)
        var chainsByName: [String: NFTChain] = [:]
        var rulesByChain: [String: [NFTRule]] = [:]
        var elements: [NFTElement] = []
        var services: [String: NFTServiceImage] = [:]
        for item in items {
            if let object = item["table"] as? [String: Any], object["name"] as? String == table {
                image.exists = true
            } else if let (object, isMap) = (item["map"] as? [String: Any]).map({ ($0, true) }) ?? (item["set"] as? [String: Any]).map({ ($0, false) }),
                      let name = object["name"] as? String {
                let keyType = ((object["type"] as? [String]) ?? ((object["type"] as? String).map { [$0] } ?? [])).joined(separator: " . ")
                image.maps[name] = isMap ? keyType + " : " + ((object["map"] as? String) ?? "?") : keyType
                for element in (object["elem"] as? [Any]) ?? [] {
                    if isMap {
                        guard let pair = element as? [Any], pair.count == 2 else { continue }
                        let (key, comment) = keyAndComment(pair[0])
                        elements.append(NFTElement(map: name, key: key, data: dataText(pair[1]), comment: comment))
                    } else {
                        let (key, comment) = keyAndComment(element)
                        elements.append(NFTElement(map: name, key: key, comment: comment))
                    }
                }
            } else if let object = item["chain"] as? [String: Any], let name = object["name"] as? String {
                var base: String?
                if let type = object["type"] as? String, let hook = object["hook"] as? String {
                    base = "\(type) \(hook) \(intValue(object["prio"]) ?? 0) \((object["policy"] as? String) ?? "accept")"
                }
                chainsByName[name] = NFTChain(base: base, rules: [])
            } else if let object = item["rule"] as? [String: Any], let chain = object["chain"] as? String {
                let expr = (object["expr"] as? [Any]) ?? []
                let comment = object["comment"] as? String
                rulesByChain[chain, default: []].append(NFTRule(kernelExpr: expr, comment: comment, dnat: dnatTarget(expr)))
            }
        }
        for (name, var chain) in chainsByName {
            chain.rules = rulesByChain[name] ?? []
            if layout == .chains, let id = NFTNames.serviceID(ofChain: name) {
                services[id, default: NFTServiceImage()].chains[name] = chain
            } else {
                image.chains[name] = chain
            }
        }
        for element in elements {
            switch layout {
            case .chains:
                if element.target.hasPrefix("svc-"), let id = NFTNames.serviceID(ofChain: element.target),
                   services[id]?.chains[element.target] != nil {
                    services[id]!.elements.insert(element)
                } else {
                    image.strayElements.insert(element)
                }
            case .maps:
                if let key = NFTMapNames.serviceKey(of: element) {
                    services[NFTNames.serviceID(key), default: NFTServiceImage()].elements.insert(element)
                } else {
                    image.strayElements.insert(element)
                }
            }
        }
        for (id, service) in services { image.setService(id, service) }
        return image
    }

    /// The services an image of `layout` balances.
    static func services(in image: NFTImage, layout: NFTablesConfiguration.Layout) -> [VirtualService] {
        switch layout {
        case .chains: services(in: image)
        case .maps: mapServices(in: image)
        }
    }

    /// The services an image balances, as the model says them: one per
    /// element of service-ips or service-ports whose service chain is
    /// there, with every endpoint chain of that service (weight from its
    /// comment, 0 when nothing jumps to it is not inferred: the comment
    /// says what was programmed).
    static func services(in image: NFTImage) -> [VirtualService] {
        var result: [VirtualService] = []
        for (id, service) in image.services {
            guard let key = NFTNames.key(ofServiceID: id), !service.elements.isEmpty,
                  let chain = service.chains[NFTNames.serviceChain(id)] else { continue }
            var virtual = VirtualService(key: key)
            NFTNames.readSchedulerComment(chain.rules.first?.comment, into: &virtual)
            for (name, endpoint) in service.chains where name.hasPrefix("ep-") {
                guard let rule = endpoint.rules.first(where: { $0.dnat != nil }), let target = rule.dnat,
                      let colon = target.lastIndex(of: ":"), let port = UInt16(target[target.index(after: colon)...]),
                      let address = try? IPAddress(parsing: target[..<colon]) else { continue }
                virtual.realServers.append(RealServer(address: address, port: port, weight: NFTNames.weight(fromComment: rule.comment)))
            }
            result.append(virtual.sorted)
        }
        return result.sorted { $0.key < $1.key }
    }

    /// "10.0.0.5 . tcp . 80" from {"concat": ["10.0.0.5", "tcp", 80]}, and
    /// the comment of an element listed as {"elem": {"val": KEY, "comment": C}}.
    private static func keyAndComment(_ value: Any) -> (String, String?) {
        if let wrapped = (value as? [String: Any])?["elem"] as? [String: Any], let key = wrapped["val"] {
            return (keyText(key), wrapped["comment"] as? String)
        }
        return (keyText(value), nil)
    }

    private static func keyText(_ value: Any) -> String {
        if let object = value as? [String: Any], let parts = object["concat"] as? [Any] {
            return parts.map(scalarText).joined(separator: " . ")
        }
        return scalarText(value)
    }

    /// What a map element maps to, as nft writes it: "goto CHAIN",
    /// "jump CHAIN", "10.0.1.2 . 8080".
    private static func dataText(_ value: Any) -> String {
        if let object = value as? [String: Any] {
            for verdict in ["goto", "jump"] {
                if let target = (object[verdict] as? [String: Any])?["target"] as? String { return "\(verdict) \(target)" }
            }
        }
        return keyText(value)
    }

    private static func scalarText(_ value: Any) -> String {
        if let string = value as? String { return string }
        if let number = intValue(value) { return String(number) }
        return "\(value)"
    }

    private static func intValue(_ value: Any?) -> Int? {
        if let number = value as? Int { return number }
        return nil
    }

    private static func dnatTarget(_ expr: [Any]) -> String? {
        for item in expr {
            guard let dnat = (item as? [String: Any])?["dnat"] as? [String: Any], let addr = dnat["addr"] as? String else { continue }
            // No port: the connection keeps its own (a VIP on every port).
            return "\(addr):\(intValue(dnat["port"]) ?? 0)"
        }
        return nil
    }
}

import Addressing

/// What the embedded server does with one query: answer it from the record
/// source, or forward it upstream. Pure: no I/O, no clock; randomness (the
/// shuffle) is passed in, so tests are deterministic.
///
/// The rules follow Docker's embedded DNS (libnetwork `resolver.go`):
/// `SERVICE` is the VIP in `vip` mode and every backend in `dnsrr` mode,
/// `tasks.SERVICE` every backend; several addresses are shuffled; a name
/// known with no address of the asked family is NOERROR with no answer (so
/// an AAAA lookup of an IPv4-only service never reaches the upstream and
/// never turns into NXDOMAIN); TTL 600 (libnetwork's `respTTL`). Among the
/// networks the workload shares with a name, the first that has an address
/// of the asked family answers alone, as libnetwork's sandbox does.
public struct DNSResolverPolicy: Sendable {
    /// libnetwork answers with TTL 600 (`respTTL`).
    public static let dockerTTL: UInt32 = 600
    /// Our EDNS UDP payload size: the DNS Flag Day 2020 value, which avoids
    /// IP fragmentation on any common path.
    public static let advertisedUDPPayloadSize: UInt16 = 1232

    public var ttl: UInt32
    /// Suffixes stripped before a name is looked up (`web.corp.example` with
    /// `corp.example` → `web`), so a client's search list cannot hide a
    /// service; lookup keys, lower case, no trailing dot.
    public var searchDomains: [DNSName]

    public init(ttl: UInt32 = DNSResolverPolicy.dockerTTL, searchDomains: [String] = []) {
        self.ttl = ttl
        self.searchDomains = searchDomains.compactMap { try? DNSName($0) }.filter { !$0.isRoot }
    }

    public enum Decision: Hashable, Sendable {
        /// Send this reply.
        case answer(DNSMessage)
        /// Not a name of ours: send the query upstream unchanged.
        case forward
    }

    /// Decides the reply to a decoded query.
    public func decide(_ query: DNSMessage, records: some DNSRecordSource,
                       random: inout some RandomNumberGenerator) -> Decision {
        guard query.header.opcode == .query else { return .answer(reply(query, .notImplemented)) }
        guard query.questions.count == 1, query.answers.isEmpty, query.authorities.isEmpty else {
            return .answer(reply(query, .formatError))
        }
        // RFC 6891 §6.1.3: a version we do not speak gets BADVERS.
        if let edns = query.edns, edns.version > 0 { return .answer(reply(query, .badVersion)) }
        let question = query.questions[0]
        // CHAOS queries (version.bind) and the like are not ours.
        guard question.recordClass == .IN || question.recordClass == .ANY else { return .forward }
        if question.type == .AXFR || question.type == .IXFR { return .answer(reply(query, .notImplemented)) }

        if question.type == .PTR, let address = Self.address(reverse: question.name) {
            let names = records.names(for: address)
            guard !names.isEmpty else { return .forward }
            var message = reply(query, .noError)
            for name in names {
                guard let target = try? DNSName(name) else { continue }
                message.answers.append(DNSResourceRecord(name: question.name, ttl: ttl, data: .ptr(target)))
            }
            return .answer(message)
        }

        guard let found = lookup(question.name, records: records) else { return .forward }
        var message = reply(query, .noError)
        let families: [Bool] = switch question.type {
        case .A: [true]
        case .AAAA: [false]
        case .ANY: [true, false]
        default: []   // a name of ours with no record of this type: NODATA
        }
        for ipv4 in families {
            var addresses = found.addresses(ipv4: ipv4)
            addresses.shuffle(using: &random)
            for address in addresses {
                let data: DNSRecordData = switch address {
                case .v4(let a): .a(a)
                case .v6(let a): .aaaa(a)
                }
                message.answers.append(DNSResourceRecord(name: question.name, ttl: ttl, data: data))
            }
        }
        return .answer(message)
    }

    /// A reply skeleton, with an OPT record when the query had one (RFC 6891
    /// §7: a responder that understands EDNS includes OPT in its reply).
    public func reply(_ query: DNSMessage, _ code: DNSResponseCode) -> DNSMessage {
        var message = DNSMessage.reply(to: query, code: code)
        if query.edns != nil {
            var edns = message.edns ?? EDNS()
            edns.udpPayloadSize = Self.advertisedUDPPayloadSize
            message.edns = edns
        }
        return message
    }

    /// What a name resolves to here, nil when it is not ours.
    struct Found {
        var entries: [DNSNameRecords]
        var tasks: Bool

        /// The first network's addresses of one family; records without
        /// one (an IPv4-only service asked for AAAA) give none.
        func addresses(ipv4: Bool) -> [IPAddress] {
            for entry in entries {
                let candidates = tasks || entry.endpointMode == .dnsrr ? entry.backends : entry.virtualIPs
                var seen = Set<IPAddress>()
                let matching = candidates.filter { $0.isIPv4 == ipv4 && seen.insert($0).inserted }
                if !matching.isEmpty { return matching }
            }
            return []
        }
    }

    func lookup(_ name: DNSName, records: some DNSRecordSource) -> Found? {
        for candidate in candidates(name) {
            let key = candidate.lookupKey
            let direct = records.records(named: key)
            if !direct.isEmpty { return Found(entries: direct, tasks: false) }
            if candidate.labels.count > 1, DNSName.equalIgnoringCase(candidate.labels[0], Array("tasks".utf8)) {
                let service = DNSName(uncheckedLabels: Array(candidate.labels.dropFirst()))
                let entries = records.records(named: service.lookupKey)
                if !entries.isEmpty { return Found(entries: entries, tasks: true) }
            }
        }
        return nil
    }

    /// The name as asked, then without each search domain it ends in.
    func candidates(_ name: DNSName) -> [DNSName] {
        var names = name.isRoot ? [] : [name]
        for domain in searchDomains where name.labels.count > domain.labels.count && name.hasSuffix(domain) {
            names.append(name.droppingLast(domain.labels.count))
        }
        return names
    }

    /// The address a reverse-lookup name stands for: `4.3.2.1.in-addr.arpa`
    /// or thirty-two nibbles under `ip6.arpa`; nil for anything else.
    public static func address(reverse name: DNSName) -> IPAddress? {
        let labels = name.labels.map { String(decoding: $0.map(DNSName.lower), as: UTF8.self) }
        if labels.count == 6, labels[4] == "in-addr", labels[5] == "arpa" {
            var bytes: [UInt8] = []
            for label in labels[0..<4].reversed() {
                guard label.count <= 3, label.allSatisfy(\.isASCII), let byte = UInt8(label),
                      String(byte) == label else { return nil }
                bytes.append(byte)
            }
            return IPAddress(bytes: bytes)
        }
        if labels.count == 34, labels[32] == "ip6", labels[33] == "arpa" {
            var nibbles: [UInt8] = []
            for label in labels[0..<32].reversed() {
                guard label.count == 1, label.allSatisfy(\.isASCII), let nibble = UInt8(label, radix: 16) else { return nil }
                nibbles.append(nibble)
            }
            return IPAddress(bytes: stride(from: 0, to: 32, by: 2).map { nibbles[$0] << 4 | nibbles[$0 + 1] })
        }
        return nil
    }

    /// The reverse-lookup name of an address (`1.0.0.10.in-addr.arpa.`).
    public static func reverseName(_ address: IPAddress) -> DNSName {
        let labels: [String] = switch address {
        case .v4(let a): a.bytes.reversed().map { String($0) } + ["in-addr", "arpa"]
        case .v6(let a): a.bytes.reversed().flatMap { [String($0 & 0xf, radix: 16), String($0 >> 4, radix: 16)] } + ["ip6", "arpa"]
        }
        return DNSName(uncheckedLabels: labels.map { Array($0.utf8) })
    }
}

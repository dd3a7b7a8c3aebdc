import Addressing
import Testing
@testable import DNS

@Suite("resolver policy")
struct PolicyTests {
    static let web = [DNSNameRecords(network: "front", endpointMode: .vip, virtualIPs: [ip("10.0.1.2")],
                                     backends: [ip("10.0.1.5"), ip("10.0.1.6"), ip("10.0.1.7")])]
    static let cache = [DNSNameRecords(network: "back", endpointMode: .dnsrr, backends: [ip("10.0.2.5"), ip("10.0.2.6")])]
    static let dual = [DNSNameRecords(network: "front", endpointMode: .vip, virtualIPs: [ip("10.0.1.9"), ip("fd00::9")],
                                      backends: [ip("10.0.1.10"), ip("fd00::10")])]

    let records = DNSRecordTable(["web": web, "cache": cache, "dual": dual])

    static func ip(_ text: String) -> IPAddress { try! IPAddress(parsing: text) }

    func query(_ name: String, _ type: DNSRecordType = .A, edns: Bool = false) throws -> DNSMessage {
        var header = DNSHeader(id: 0x1234)
        header.recursionDesired = true
        return DNSMessage(header: header, questions: [DNSQuestion(name: try DNSName(name), type: type)],
                          edns: edns ? EDNS(udpPayloadSize: 4096) : nil)
    }

    func answer(_ query: DNSMessage, policy: DNSResolverPolicy = DNSResolverPolicy(), seed: UInt64 = 1) throws -> DNSMessage {
        var random = SplitMix64(seed: seed)
        guard case .answer(let reply) = policy.decide(query, records: records, random: &random) else {
            Issue.record("expected an answer for \(query.questions)")
            throw CancellationError()
        }
        return reply
    }

    func addresses(_ reply: DNSMessage) -> [String] {
        reply.answers.map { record in
            switch record.data {
            case .a(let a): a.description
            case .aaaa(let a): a.description
            default: "\(record.data)"
            }
        }
    }

    @Test("vip: the service name is its VIP; tasks.NAME every backend, shuffled; TTL 600")
    func vip() throws {
        let reply = try answer(try query("web"))
        #expect(addresses(reply) == ["10.0.1.2"])
        #expect(reply.header.id == 0x1234 && reply.header.isResponse && reply.header.recursionDesired && reply.header.recursionAvailable)
        #expect(reply.responseCode == .noError)
        #expect(reply.answers[0].ttl == 600)
        #expect(reply.answers[0].name == (try DNSName("web")))

        let tasks = try answer(try query("tasks.web"))
        #expect(Set(addresses(tasks)) == ["10.0.1.5", "10.0.1.6", "10.0.1.7"])
        #expect(tasks.answers.count == 3)
    }

    @Test("dnsrr: the service name is every backend")
    func dnsrr() throws {
        #expect(Set(addresses(try answer(try query("cache")))) == ["10.0.2.5", "10.0.2.6"])
        #expect(Set(addresses(try answer(try query("tasks.cache")))) == ["10.0.2.5", "10.0.2.6"])
    }

    @Test("the shuffle follows the injected randomness: same seed same order, other seeds other orders")
    func shuffle() throws {
        let q = try query("tasks.web")
        #expect(addresses(try answer(q, seed: 7)) == addresses(try answer(q, seed: 7)))
        let orders = Set((0..<40).map { seed in (try? answer(q, seed: UInt64(seed))).map(addresses) ?? [] })
        #expect(orders.count == 6)   // all 3! orders appear
    }

    @Test("case, a trailing dot and the search domain do not matter; the asked case is echoed")
    func names() throws {
        let policy = DNSResolverPolicy(searchDomains: ["corp.example."])
        for name in ["WEB", "web.", "Web.Corp.Example", "web.corp.example."] {
            let reply = try answer(try query(name), policy: policy)
            #expect(addresses(reply) == ["10.0.1.2"], "\(name)")
            #expect(reply.answers[0].name.labels[0] == reply.questions[0].name.labels[0])
        }
        #expect(addresses(try answer(try query("TASKS.Cache.corp.example"), policy: policy)).count == 2)
        // Without the search domain configured, the long name is not ours.
        var random = SplitMix64(seed: 1)
        #expect(DNSResolverPolicy().decide(try query("web.corp.example"), records: records, random: &random) == .forward)
    }

    @Test("AAAA for an IPv4-only name is NOERROR with no answer, never forwarded; dual-stack answers both")
    func aaaa() throws {
        for name in ["web", "tasks.web", "cache"] {
            let reply = try answer(try query(name, .AAAA))
            #expect(reply.responseCode == .noError)
            #expect(reply.answers.isEmpty)
        }
        #expect(addresses(try answer(try query("dual", .AAAA))) == ["fd00::9"])
        #expect(addresses(try answer(try query("tasks.dual", .AAAA))) == ["fd00::10"])
        #expect(addresses(try answer(try query("dual", .A))) == ["10.0.1.9"])
        #expect(Set(addresses(try answer(try query("dual", .ANY)))) == ["10.0.1.9", "fd00::9"])
        // Other types of a name of ours: NODATA too.
        #expect(try answer(try query("web", .MX)).answers.isEmpty)
    }

    @Test("unknown names, other classes, and reverse names of strangers are forwarded")
    func forward() throws {
        var random = SplitMix64(seed: 1)
        let policy = DNSResolverPolicy()
        #expect(policy.decide(try query("example.test"), records: records, random: &random) == .forward)
        #expect(policy.decide(try query("tasks.nothing"), records: records, random: &random) == .forward)
        #expect(policy.decide(try query("1.0.0.127.in-addr.arpa", .PTR), records: records, random: &random) == .forward)
        var chaos = try query("version.bind", .TXT)
        chaos.questions[0].recordClass = .CH
        #expect(policy.decide(chaos, records: records, random: &random) == .forward)
    }

    @Test("PTR for a VIP or a backend names the service")
    func ptr() throws {
        let reply = try answer(try query("2.1.0.10.in-addr.arpa", .PTR))
        #expect(reply.answers.map(\.data) == [.ptr(try DNSName("web"))])
        let v6 = DNSResolverPolicy.reverseName(Self.ip("fd00::9"))
        #expect(v6.description.hasPrefix("9.0.0.0.0.0.0.0.") && v6.description.hasSuffix(".d.f.ip6.arpa."))
        #expect(DNSResolverPolicy.address(reverse: v6) == Self.ip("fd00::9"))
        #expect(try answer(try query(v6.description, .PTR)).answers.map(\.data) == [.ptr(try DNSName("dual"))])
        #expect(DNSResolverPolicy.address(reverse: try DNSName("256.1.0.10.in-addr.arpa")) == nil)
        #expect(DNSResolverPolicy.address(reverse: try DNSName("01.1.0.10.in-addr.arpa")) == nil)
    }

    @Test("the first shared network with an address answers alone")
    func networks() throws {
        let both = DNSRecordTable(["api": [
            DNSNameRecords(network: "a", endpointMode: .vip, virtualIPs: [Self.ip("fd00::1")], backends: []),
            DNSNameRecords(network: "b", endpointMode: .vip, virtualIPs: [Self.ip("10.9.0.2")], backends: [Self.ip("10.9.0.3")]),
            DNSNameRecords(network: "c", endpointMode: .vip, virtualIPs: [Self.ip("10.8.0.2")], backends: [Self.ip("10.8.0.3")]),
        ]])
        var random = SplitMix64(seed: 1)
        guard case .answer(let reply) = DNSResolverPolicy().decide(try query("api"), records: both, random: &random) else {
            Issue.record("not answered"); return
        }
        #expect(addresses(reply) == ["10.9.0.2"])
    }

    @Test("answers follow the source: a removed backend is gone from the next answer")
    func current() throws {
        let table = DNSRecordTable(["web": Self.web])
        var random = SplitMix64(seed: 3)
        let policy = DNSResolverPolicy()
        table.set("web", [DNSNameRecords(network: "front", endpointMode: .vip, virtualIPs: [Self.ip("10.0.1.2")],
                                         backends: [Self.ip("10.0.1.5"), Self.ip("10.0.1.7")])])
        guard case .answer(let reply) = policy.decide(try query("tasks.web"), records: table, random: &random) else {
            Issue.record("not answered"); return
        }
        #expect(Set(addresses(reply)) == ["10.0.1.5", "10.0.1.7"])
        table.set("web", [])
        #expect(policy.decide(try query("web"), records: table, random: &random) == .forward)
    }

    @Test("a closure source is asked for the normalised key")
    func closures() throws {
        let source = DNSRecordClosures(records: { name in
            name == "svc" ? [DNSNameRecords(network: "n", endpointMode: .dnsrr, backends: [Self.ip("10.3.0.4")])] : []
        })
        var random = SplitMix64(seed: 1)
        guard case .answer(let reply) = DNSResolverPolicy().decide(try query("SVC."), records: source, random: &random) else {
            Issue.record("not answered"); return
        }
        #expect(addresses(reply) == ["10.3.0.4"])
    }

    @Test("not a plain query: NOTIMP, FORMERR, BADVERS; EDNS in gives EDNS out")
    func protocolErrors() throws {
        var random = SplitMix64(seed: 1)
        let policy = DNSResolverPolicy()
        var update = try query("web")
        update.header.opcode = .update
        #expect(policy.decide(update, records: records, random: &random) == .answer(policy.reply(update, .notImplemented)))
        var two = try query("web")
        two.questions.append(two.questions[0])
        guard case .answer(let formatError) = policy.decide(two, records: records, random: &random) else { Issue.record("forwarded"); return }
        #expect(formatError.responseCode == .formatError)
        var future = try query("web", edns: true)
        future.edns?.version = 1
        guard case .answer(let badVersion) = policy.decide(future, records: records, random: &random) else { Issue.record("forwarded"); return }
        #expect(badVersion.responseCode == .badVersion)
        #expect(badVersion.header.responseCode == 0 && badVersion.edns?.extendedResponseCode == 1)
        let reply = try answer(try query("web", edns: true))
        #expect(reply.edns?.udpPayloadSize == DNSResolverPolicy.advertisedUDPPayloadSize)
        #expect(try answer(try query("web")).edns == nil)
        #expect(try answer(try query("web", .AXFR)).responseCode == .notImplemented)
    }
}

import Addressing
import Foundation
import Testing
@testable import LoadBalancing

/// What goes into each nftables transaction, without a kernel: the table
/// from nothing, one backend added or removed (only that service's chains),
/// weights, and reading nft 1.0.6's JSON listing back.
@Suite struct NFTablesRulesetTests {
    let vip = ServiceKey.address(try! IPAddress(parsing: "10.0.0.5"), .tcp, port: 80)
    let other = ServiceKey.address(try! IPAddress(parsing: "10.0.0.6"), .udp, port: 53)
    let renderer = NFTablesRenderer(configuration: NFTablesConfiguration(tableName: "sn", masquerade: .never))
    let transaction = NFTTransaction(family: "ip", table: "sn")

    func server(_ address: String, weight: UInt32 = 1) -> RealServer {
        RealServer(address: try! IPAddress(parsing: address), port: 8080, weight: weight)
    }

    /// The commands for one service changing from `before` to `after`, with
    /// another service present in both that must not be touched.
    func change(_ before: VirtualService?, _ after: VirtualService?) -> [String] {
        let bystander = VirtualService(key: other, realServers: [server("10.0.2.1")])
        let from = renderer.image(for: [bystander] + (before.map { [$0] } ?? []))
        let to = renderer.image(for: [bystander] + (after.map { [$0] } ?? []))
        return transaction.commands(from: from, to: to)
    }

    @Test func aNewTableHoldsMapsHooksAndOneChainPerServiceAndEndpoint() throws {
        let text = try NFTablesLoadBalancer.ruleset(
            for: [VirtualService(key: vip, realServers: [server("10.0.1.2"), server("10.0.1.3")])],
            configuration: NFTablesConfiguration(tableName: "sn", masquerade: .never))
        #expect(text == """
            add table ip sn
            add map ip sn service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
            add map ip sn service-ports { type inet_proto . inet_service : verdict ; }
            add map ip sn service-vips { type ipv4_addr . inet_proto : verdict ; }
            create chain ip sn output { type nat hook output priority -100 ; policy accept ; }
            create chain ip sn postrouting { type nat hook postrouting priority 100 ; policy accept ; }
            create chain ip sn services
            create chain ip sn ep-tcp-10.0.0.5-80-10.0.1.2-8080
            create chain ip sn ep-tcp-10.0.0.5-80-10.0.1.3-8080
            create chain ip sn svc-tcp-10.0.0.5-80
            add rule ip sn ep-tcp-10.0.0.5-80-10.0.1.2-8080 meta l4proto tcp dnat to 10.0.1.2:8080 comment "weight 1"
            add rule ip sn ep-tcp-10.0.0.5-80-10.0.1.3-8080 meta l4proto tcp dnat to 10.0.1.3:8080 comment "weight 1"
            add rule ip sn svc-tcp-10.0.0.5-80 counter comment "swarmnet rr 0"
            add rule ip sn svc-tcp-10.0.0.5-80 numgen random mod 2 < 1 goto ep-tcp-10.0.0.5-80-10.0.1.2-8080
            add rule ip sn svc-tcp-10.0.0.5-80 goto ep-tcp-10.0.0.5-80-10.0.1.3-8080
            add rule ip sn services ip daddr . meta l4proto . th dport vmap @service-ips
            add rule ip sn services ip daddr . meta l4proto vmap @service-vips
            add rule ip sn services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-ports
            add rule ip sn output jump services
            add rule ip sn postrouting meta mark & 0x4000 == 0x4000 meta mark set meta mark ^ 0x4000 masquerade
            add element ip sn service-ips { 10.0.0.5 . tcp . 80 : goto svc-tcp-10.0.0.5-80 }

            """)
    }

    @Test func addingABackendCreatesItsChainAndRewritesOnlyItsServiceChain() {
        let before = VirtualService(key: vip, realServers: [server("10.0.1.2"), server("10.0.1.3")])
        var after = before
        after.realServers.append(server("10.0.1.4"))
        #expect(change(before, after) == [
            "create chain ip sn ep-tcp-10.0.0.5-80-10.0.1.4-8080",
            "add rule ip sn ep-tcp-10.0.0.5-80-10.0.1.4-8080 meta l4proto tcp dnat to 10.0.1.4:8080 comment \"weight 1\"",
            "flush chain ip sn svc-tcp-10.0.0.5-80",
            "add rule ip sn svc-tcp-10.0.0.5-80 counter comment \"swarmnet rr 0\"",
            "add rule ip sn svc-tcp-10.0.0.5-80 numgen random mod 3 < 1 goto ep-tcp-10.0.0.5-80-10.0.1.2-8080",
            "add rule ip sn svc-tcp-10.0.0.5-80 numgen random mod 2 < 1 goto ep-tcp-10.0.0.5-80-10.0.1.3-8080",
            "add rule ip sn svc-tcp-10.0.0.5-80 goto ep-tcp-10.0.0.5-80-10.0.1.4-8080",
        ])
    }

    @Test func removingABackendStopsJumpingToItThenDeletesItsChainInTheSameTransaction() {
        let before = VirtualService(key: vip, realServers: [server("10.0.1.2"), server("10.0.1.3")])
        var after = before
        after.realServers.removeLast()
        #expect(change(before, after) == [
            "flush chain ip sn svc-tcp-10.0.0.5-80",
            "add rule ip sn svc-tcp-10.0.0.5-80 counter comment \"swarmnet rr 0\"",
            "add rule ip sn svc-tcp-10.0.0.5-80 goto ep-tcp-10.0.0.5-80-10.0.1.2-8080",
            "flush chain ip sn ep-tcp-10.0.0.5-80-10.0.1.3-8080",
            "delete chain ip sn ep-tcp-10.0.0.5-80-10.0.1.3-8080",
        ])
    }

    @Test func aNewServiceAddsItsChainsAndOneElementAndARemovedOneGoesWhole() {
        let service = VirtualService(key: vip, realServers: [server("10.0.1.2")])
        #expect(change(nil, service) == [
            "create chain ip sn ep-tcp-10.0.0.5-80-10.0.1.2-8080",
            "create chain ip sn svc-tcp-10.0.0.5-80",
            "add rule ip sn ep-tcp-10.0.0.5-80-10.0.1.2-8080 meta l4proto tcp dnat to 10.0.1.2:8080 comment \"weight 1\"",
            "add rule ip sn svc-tcp-10.0.0.5-80 counter comment \"swarmnet rr 0\"",
            "add rule ip sn svc-tcp-10.0.0.5-80 goto ep-tcp-10.0.0.5-80-10.0.1.2-8080",
            "add element ip sn service-ips { 10.0.0.5 . tcp . 80 : goto svc-tcp-10.0.0.5-80 }",
        ])
        #expect(change(service, nil) == [
            "delete element ip sn service-ips { 10.0.0.5 . tcp . 80 }",
            "flush chain ip sn svc-tcp-10.0.0.5-80",
            "flush chain ip sn ep-tcp-10.0.0.5-80-10.0.1.2-8080",
            "delete chain ip sn svc-tcp-10.0.0.5-80",
            "delete chain ip sn ep-tcp-10.0.0.5-80-10.0.1.2-8080",
        ])
        #expect(change(service, service).isEmpty)
    }

    @Test func weightsSetTheShareAndWeightZeroKeepsTheChainWithoutAJump() {
        let service = VirtualService(key: vip, scheduler: .weightedRoundRobin,
                                     realServers: [server("10.0.1.2", weight: 1), server("10.0.1.3", weight: 3),
                                                   server("10.0.1.4", weight: 0)])
        let image = renderer.service(service)
        let rules = image.chains["svc-tcp-10.0.0.5-80"]!.rules.map(\.text)
        #expect(rules == [
            "counter comment \"swarmnet wrr 0\"",
            "numgen random mod 4 < 1 goto ep-tcp-10.0.0.5-80-10.0.1.2-8080",
            "goto ep-tcp-10.0.0.5-80-10.0.1.3-8080",
        ])
        #expect(image.chains["ep-tcp-10.0.0.5-80-10.0.1.4-8080"]!.rules.map(\.text)
            == ["meta l4proto tcp dnat to 10.0.1.4:8080 comment \"weight 0\""])
        // rr ignores weights other than 0; sh hashes the client address.
        var rr = service
        rr.scheduler = .roundRobin
        #expect(renderer.service(rr).chains["svc-tcp-10.0.0.5-80"]!.rules[1].text
            == "numgen random mod 2 < 1 goto ep-tcp-10.0.0.5-80-10.0.1.2-8080")
        var sh = service
        sh.scheduler = .sourceHashing
        #expect(renderer.service(sh).chains["svc-tcp-10.0.0.5-80"]!.rules[1].text
            == "jhash ip saddr mod 4 < 1 goto ep-tcp-10.0.0.5-80-10.0.1.2-8080")
        // Nothing to choose: new connections are dropped.
        let none = VirtualService(key: vip, realServers: [server("10.0.1.4", weight: 0)])
        #expect(renderer.service(none).chains["svc-tcp-10.0.0.5-80"]!.rules.last?.text == "drop")
    }

    @Test func masqueradePoliciesAndSourcePreservation() throws {
        let published = ServiceKey.address(.v4(IPv4Address(0)), .tcp, port: 30080)
        let service = VirtualService(key: published, realServers: [server("10.0.1.2"), server("10.0.9.9")])
        let mesh = NFTablesRenderer(configuration: NFTablesConfiguration(tableName: "sn", hooks: .routingMesh))
        let meshImage = mesh.service(mesh.effective(service))
        #expect(meshImage.elements == [NFTElement(map: "service-ports", key: "tcp . 30080", target: "svc-tcp-0.0.0.0-30080")])
        #expect(meshImage.chains["svc-tcp-0.0.0.0-30080"]!.rules[1].text == "meta mark set meta mark | 0x4000")
        #expect(meshImage.chains["ep-tcp-0.0.0.0-30080-10.0.1.2-8080"]!.rules.count == 1)
        // VIP services are not masqueraded by default, except a backend
        // reaching itself through the VIP (hairpin).
        let vipImage = mesh.service(VirtualService(key: vip, realServers: [server("10.0.1.2")]))
        #expect(vipImage.chains["svc-tcp-10.0.0.5-80"]!.rules.count == 2)
        #expect(vipImage.chains["ep-tcp-10.0.0.5-80-10.0.1.2-8080"]!.rules[0].text
            == "ip saddr 10.0.1.2 meta mark set meta mark | 0x4000")
        #expect(mesh.structure().chains["prerouting"]?.base == "nat prerouting -100 accept")

        let local = NFTablesRenderer(configuration: NFTablesConfiguration(
            tableName: "sn", hooks: .routingMesh, publishedPorts: .localBackendsOnly([try IPPrefix(parsing: "10.0.1.0/24")])))
        let kept = local.effective(service)
        #expect(kept.realServers.map(\.endpoint) == ["10.0.1.2:8080"])
        let localImage = local.service(kept)
        #expect(localImage.chains["svc-tcp-0.0.0.0-30080"]!.rules.map(\.text)
            == ["counter comment \"swarmnet rr 0\"", "goto ep-tcp-0.0.0.0-30080-10.0.1.2-8080"])
        #expect(localImage.chains["ep-tcp-0.0.0.0-30080-10.0.1.2-8080"]!.rules.count == 1)

        let nonLocal = NFTablesRenderer(configuration: NFTablesConfiguration(tableName: "sn", masquerade: .nonLocalClients))
        #expect(nonLocal.service(VirtualService(key: vip, realServers: [server("10.0.1.2")]))
            .chains["svc-tcp-10.0.0.5-80"]!.rules[1].text == "fib saddr type != local meta mark set meta mark | 0x4000")
        let never = NFTablesRenderer(configuration: NFTablesConfiguration(tableName: "sn", masquerade: .never))
        #expect(never.service(service).chains["svc-tcp-0.0.0.0-30080"]!.rules.count == 3)
    }

    @Test func aVIPOnEveryPortKeepsTheDestinationPort() throws {
        let key = ServiceKey.address(try IPAddress(parsing: "10.0.0.5"), .udp, port: 0)
        let image = renderer.service(VirtualService(key: key, realServers: [RealServer(address: try IPAddress(parsing: "10.0.1.2"), port: 0)]))
        #expect(image.elements == [NFTElement(map: "service-vips", key: "10.0.0.5 . udp", target: "svc-udp-10.0.0.5-0")])
        #expect(image.chains["ep-udp-10.0.0.5-0-10.0.1.2-0"]?.rules.last?.text == "meta l4proto udp dnat to 10.0.1.2 comment \"weight 1\"")
        #expect(renderer.structure().chains["services"]?.rules.map(\.text).contains("ip daddr . meta l4proto vmap @service-vips") == true)
    }

    @Test func badInputIsRefusedBeforeAnythingIsBuilt() throws {
        func rejects(_ service: VirtualService) -> Bool {
            (try? renderer.validate([service])) == nil
        }
        #expect(rejects(VirtualService(key: .firewallMark(7, family: .ipv4))))
        // Port 0 is every port: for a VIP with port-0 backends only, never for a published port.
        #expect(rejects(VirtualService(key: .address(try IPAddress(parsing: "0.0.0.0"), .tcp, port: 0))))
        let everyPort = ServiceKey.address(try IPAddress(parsing: "10.0.0.5"), .tcp, port: 0)
        #expect(rejects(VirtualService(key: everyPort, realServers: [RealServer(address: try IPAddress(parsing: "10.0.1.2"), port: 80)])))
        #expect(!rejects(VirtualService(key: everyPort, realServers: [RealServer(address: try IPAddress(parsing: "10.0.1.2"), port: 0)])))
        #expect(rejects(VirtualService(key: .address(try IPAddress(parsing: "fd00::5"), .tcp, port: 80))))
        #expect(rejects(VirtualService(key: vip, realServers: [RealServer(address: try IPAddress(parsing: "fd00::2"), port: 80)])))
        #expect(rejects(VirtualService(key: vip, realServers: [RealServer(address: try IPAddress(parsing: "10.0.1.2"), port: 0)])))
        #expect(rejects(VirtualService(key: vip, persistence: 300)))
        #expect(rejects(VirtualService(key: vip, scheduler: Scheduler(rawValue: "nq"))))
        #expect(rejects(VirtualService(key: vip, realServers: [RealServer(address: try IPAddress(parsing: "10.0.1.2"), port: 80,
                                                                          forwarding: .directRoute)])))
        #expect(!rejects(VirtualService(key: vip, realServers: [server("10.0.1.2")])))
        for name in ["", String(repeating: "a", count: 65), "1abc", "a b", "a;flush ruleset"] {
            #expect(throws: LoadBalancerError.self) { try NFTablesConfiguration.validate(tableName: name) }
        }
        #expect(throws: LoadBalancerError.self) {
            try NFTablesConfiguration(masqueradeMark: 0x3000).validate()
        }
    }

    /// nft 1.0.6's JSON listing of a table swarmnet programmed (captured
    /// with `nft -j list table ip sn`, counters and handles as the kernel
    /// gave them): read back, it is the image that programmed it, rule for
    /// rule, and maps back to the service.
    @Test func theKernelsJSONListingReadsBackAsTheRenderedImage() throws {
        let service = VirtualService(key: vip, scheduler: .weightedRoundRobin,
                                     realServers: [server("10.0.1.2", weight: 3), server("10.0.1.3", weight: 1)])
        let json = """
            {"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, \
            {"table": {"family": "ip", "name": "sn", "handle": 1}}, \
            {"map": {"family": "ip", "name": "service-ips", "table": "sn", "type": ["ipv4_addr", "inet_proto", "inet_service"], \
            "handle": 1, "map": "verdict", "elem": [[{"concat": ["10.0.0.5", "tcp", 80]}, {"goto": {"target": "svc-tcp-10.0.0.5-80"}}]]}}, \
            {"map": {"family": "ip", "name": "service-ports", "table": "sn", "type": ["inet_proto", "inet_service"], "handle": 2, "map": "verdict"}}, \
            {"chain": {"family": "ip", "table": "sn", "name": "svc-tcp-10.0.0.5-80", "handle": 3}}, \
            {"chain": {"family": "ip", "table": "sn", "name": "ep-tcp-10.0.0.5-80-10.0.1.2-8080", "handle": 4}}, \
            {"chain": {"family": "ip", "table": "sn", "name": "ep-tcp-10.0.0.5-80-10.0.1.3-8080", "handle": 5}}, \
            {"rule": {"family": "ip", "table": "sn", "chain": "svc-tcp-10.0.0.5-80", "handle": 8, "comment": "swarmnet wrr 0", \
            "expr": [{"counter": {"packets": 12, "bytes": 720}}]}}, \
            {"rule": {"family": "ip", "table": "sn", "chain": "svc-tcp-10.0.0.5-80", "handle": 9, \
            "expr": [{"match": {"op": "<", "left": {"numgen": {"mode": "random", "mod": 4, "offset": 0}}, "right": 3}}, \
            {"goto": {"target": "ep-tcp-10.0.0.5-80-10.0.1.2-8080"}}]}}, \
            {"rule": {"family": "ip", "table": "sn", "chain": "svc-tcp-10.0.0.5-80", "handle": 10, \
            "expr": [{"goto": {"target": "ep-tcp-10.0.0.5-80-10.0.1.3-8080"}}]}}, \
            {"rule": {"family": "ip", "table": "sn", "chain": "ep-tcp-10.0.0.5-80-10.0.1.2-8080", "handle": 6, "comment": "weight 3", \
            "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"dnat": {"addr": "10.0.1.2", "port": 8080}}]}}, \
            {"rule": {"family": "ip", "table": "sn", "chain": "ep-tcp-10.0.0.5-80-10.0.1.3-8080", "handle": 7, "comment": "weight 1", \
            "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"dnat": {"addr": "10.0.1.3", "port": 8080}}]}}]}
            """
        let image = try NFTablesKernelState.image(fromJSON: json, table: "sn")
        #expect(image.exists)
        #expect(image.services["tcp-10.0.0.5-80"] == renderer.service(service))
        #expect(NFTablesKernelState.services(in: image) == [service.sorted])
        // Against the rendered table only the structure chains are missing.
        let commands = transaction.commands(from: image, to: renderer.image(for: [service]))
        #expect(commands.allSatisfy { !$0.contains("svc-") && !$0.contains("ep-") })
    }
}

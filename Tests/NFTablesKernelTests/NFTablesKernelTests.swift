import Addressing
import Foundation
import LoadBalancing
import Namespaces
import Testing

/// The nftables back end on the real kernel, in fresh namespaces, checked
/// with `nft -j` as the second reader and with real TCP and UDP traffic.
@Suite(.serialized) struct NFTablesKernelTests {
    let table = "swarmnet"
    let vip = ServiceKey.address(try! IPAddress(parsing: NFTTestbed.vip), .tcp, port: 80)
    let udpVIP = ServiceKey.address(try! IPAddress(parsing: NFTTestbed.vip), .udp, port: 53)

    func server(_ address: String, weight: UInt32 = 1) -> RealServer {
        RealServer(address: try! IPAddress(parsing: address), port: 8080, weight: weight)
    }

    @Test func programsTheTableInItsNamespaceAndReadsItBack() throws {
        try NFTTestHost.withNamespaces(1) { namespaces in
            let namespace = namespaces[0]
            // Created here, used from this (the test's) thread: the commands
            // must land in the namespace, not in the test process's own.
            let lb = try NFTablesLoadBalancer(namespace: namespace)
            let desired = [
                VirtualService(key: vip, realServers: [server("10.77.0.11"), server("10.77.0.12")]),
                VirtualService(key: udpVIP, scheduler: .weightedRoundRobin,
                               realServers: [server("10.77.0.11", weight: 2), server("10.77.0.13", weight: 0)]),
            ]
            let changes = try lb.reconcile(to: desired)
            #expect(changes.operations.count == 6)
            let listing = try #require(try NFTTestHost.nftTable(namespace, table))
            #expect(listing.elements("service-ips") == [
                "10.96.0.1 . tcp . 80 -> svc-tcp-10.96.0.1-80", "10.96.0.1 . udp . 53 -> svc-udp-10.96.0.1-53",
            ])
            #expect(listing.chains == [
                "ep-tcp-10.96.0.1-80-10.77.0.11-8080", "ep-tcp-10.96.0.1-80-10.77.0.12-8080",
                "ep-udp-10.96.0.1-53-10.77.0.11-8080", "ep-udp-10.96.0.1-53-10.77.0.13-8080",
                "output", "postrouting", "services", "svc-tcp-10.96.0.1-80", "svc-udp-10.96.0.1-53",
            ])
            // The weight-0 backend has its chain but nothing jumps to it.
            #expect(listing.rules("svc-udp-10.96.0.1-53").count == 2)
            #expect(try lb.services() == desired.map(\.sorted))
            // Nothing differs: the second reconcile sends nothing at all.
            #expect(try lb.reconcile(to: desired).isEmpty)
            #expect(lb.lastTransaction.isEmpty)
            // The test process's own namespace has no such table.
            #expect((try? NFTTestHost.run(["nft", "list", "table", "ip", table])) == nil)
            try lb.deleteTable()
            #expect(try NFTTestHost.nftTable(namespace, table) == nil)
            try lb.deleteTable()
        }
    }

    @Test func perServiceChangesTouchOnlyThatService() throws {
        try NFTTestHost.withNamespaces(1) { namespaces in
            let lb = try NFTablesLoadBalancer(namespace: namespaces[0])
            let other = VirtualService(key: udpVIP, realServers: [server("10.77.0.11")])
            var web = VirtualService(key: vip, realServers: [server("10.77.0.11"), server("10.77.0.12")])
            try lb.reconcile(to: [other, web])
            web.realServers.append(server("10.77.0.13"))
            let added = try lb.reconcile(service: vip, to: web)
            #expect(added.operations == [.addRealServer(server("10.77.0.13"), service: vip)])
            #expect(lb.lastTransaction.allSatisfy { $0.contains("tcp-10.96.0.1-80") })
            #expect(lb.lastTransaction.first == "create chain ip swarmnet ep-tcp-10.96.0.1-80-10.77.0.13-8080")
            web.realServers.remove(at: 0)
            let removed = try lb.reconcile(service: vip, to: web)
            var quiet = server("10.77.0.11")
            quiet.weight = 0
            #expect(removed.operations == [.quiesceRealServer(quiet, service: vip),
                                           .deleteRealServer(quiet.key, service: vip)])
            #expect(lb.lastTransaction.last == "delete chain ip swarmnet ep-tcp-10.96.0.1-80-10.77.0.11-8080")
            #expect(try lb.services() == [web.sorted, other].sorted { $0.key < $1.key })
            // A new service: its chains and one element; removing it takes them away.
            let dns = VirtualService(key: .address(try IPAddress(parsing: "10.96.0.2"), .udp, port: 53),
                                     realServers: [server("10.77.0.12")])
            try lb.reconcile(service: dns.key, to: dns)
            #expect(lb.lastTransaction.filter { $0.hasPrefix("add element") }.count == 1)
            try lb.reconcile(service: dns.key, to: nil)
            #expect(try lb.services() == [web.sorted, other].sorted { $0.key < $1.key })
            // The full reconcile agrees that nothing is left to do.
            #expect(try lb.reconcile(to: [other, web]).isEmpty)
            #expect(lb.lastTransaction.isEmpty)
        }
    }

    /// The per-service path sends its own nf_tables messages instead of nft
    /// text: what it writes must be what nft writes for the same rules. One
    /// namespace gets every kind of service one change at a time (netlink),
    /// the other the whole rule set from `nft -f`; every chain and map lists
    /// the same (`nft list chain`, `nft -j`), for each masquerade policy.
    @Test func changesSentAsNetlinkListExactlyAsNftWritesThem() throws {
        let key = { (address: String, proto: TransportProtocol, port: UInt16) in
            ServiceKey.address(try! IPAddress(parsing: address), proto, port: port)
        }
        let every = { (address: String) in RealServer(address: try! IPAddress(parsing: address), port: 0) }
        let services = [
            VirtualService(key: vip, realServers: [server("10.77.0.11"), server("10.77.0.12")]),
            VirtualService(key: udpVIP, scheduler: .weightedRoundRobin,
                           realServers: [server("10.77.0.11", weight: 3), server("10.77.0.13", weight: 0), server("10.77.0.14")]),
            VirtualService(key: key("10.96.0.7", .tcp, 443), scheduler: .sourceHashing, realServers: [server("10.77.0.11"), server("10.77.0.12")]),
            VirtualService(key: key("10.96.0.9", .tcp, 80), realServers: [server("10.77.0.11", weight: 0)]),
            VirtualService(key: key("10.96.0.10", .udp, 0), realServers: [every("10.77.0.11"), every("10.77.0.12")]),
            VirtualService(key: key("0.0.0.0", .tcp, 30080), realServers: [server("10.77.0.11"), server("10.77.0.12")]),
        ]
        let configurations = [
            NFTablesConfiguration(),
            NFTablesConfiguration(hooks: .routingMesh, masquerade: .nonLocalClients),
            NFTablesConfiguration(hooks: .routingMesh, masquerade: .all),
        ]
        for configuration in configurations {
            try NFTTestHost.withNamespaces(2) { namespaces in
                let lb = try NFTTestHost.programOneAtATime(services, configuration: configuration, in: namespaces[0])
                // A backend added and removed again, through the same path.
                var grown = services[0]
                grown.realServers.append(server("10.77.0.15"))
                try lb.reconcile(service: grown.key, to: grown)
                try lb.reconcile(service: grown.key, to: services[0])
                try NFTTestHost.expectTableMatchesNft(services, configuration: configuration, ours: namespaces[0], theirs: namespaces[1])
                // The table is the model: nothing to do.
                #expect(try lb.reconcile(to: services).isEmpty)
                #expect(lb.lastTransaction.isEmpty, "\(lb.lastTransaction)")
            }
        }
    }

    /// A change is sent with the ruleset generation of swarmnet's last
    /// commit; a commit by anyone else in between (another table's owner
    /// here) makes the kernel refuse it whole, and the change is made again
    /// from a fresh read. Nothing is lost, nothing doubled.
    @Test func aCommitByAnyoneElseMakesTheNextChangeReadTheTableFirst() throws {
        try NFTTestHost.withNamespaces(1) { namespaces in
            let namespace = namespaces[0]
            let lb = try NFTablesLoadBalancer(namespace: namespace)
            var web = VirtualService(key: vip, realServers: [server("10.77.0.11")])
            try lb.reconcile(to: [web])
            try NFTTestHost.run(in: namespace, ["nft", "add", "table", "ip", "bystander"])
            web.realServers.append(server("10.77.0.12"))
            try lb.reconcile(service: vip, to: web)
            // Behind its back: the endpoint chain it is about to delete is gone.
            try NFTTestHost.run(in: namespace, ["nft", "flush", "chain", "ip", table, "svc-tcp-10.96.0.1-80"])
            try NFTTestHost.run(in: namespace, ["nft", "delete", "chain", "ip", table, "ep-tcp-10.96.0.1-80-10.77.0.12-8080"])
            web.realServers.removeLast()
            try lb.reconcile(service: vip, to: web)
            #expect(try lb.services() == [web.sorted])
            let listing = try #require(try NFTTestHost.nftTable(namespace, table))
            #expect(listing.chains.filter { $0.hasPrefix("ep-") } == ["ep-tcp-10.96.0.1-80-10.77.0.11-8080"])
            #expect(listing.rules("svc-tcp-10.96.0.1-80").count == 2)
            #expect(try lb.reconcile(to: [web]).isEmpty)
            // The other table was left alone.
            #expect(try NFTTestHost.run(in: namespace, ["nft", "list", "tables"]).contains("table ip bystander"))
        }
    }

    /// The periodic full reconcile trusts its model while the ruleset
    /// generation is its own last commit's: no listing (47 s at 10,000
    /// services). Any commit by anyone makes it list the table again, and a
    /// change made behind its back is repaired.
    @Test func aFullReconcileOfAnUntouchedTableDoesNotListIt() throws {
        try NFTTestHost.withNamespaces(1) { namespaces in
            let namespace = namespaces[0]
            let lb = try NFTablesLoadBalancer(namespace: namespace)
            var desired = [VirtualService(key: vip, realServers: [server("10.77.0.11"), server("10.77.0.12")])]
            try lb.reconcile(to: desired)
            let reads = lb.tableReads
            #expect(try lb.reconcile(to: desired).isEmpty)
            // A change through the full path is made from the model too.
            desired[0].realServers.append(server("10.77.0.13"))
            #expect(try lb.reconcile(to: desired).operations == [.addRealServer(server("10.77.0.13"), service: vip)])
            #expect(lb.tableReads == reads)
            #expect(try NFTTestHost.nftTable(namespace, table)?.chains.filter { $0.hasPrefix("ep-") }.count == 3)
            // Behind its back: the next full reconcile lists the table and repairs it.
            try NFTTestHost.run(in: namespace, ["nft", "delete", "rule", "ip", table, "svc-tcp-10.96.0.1-80", "handle",
                                                firstRuleHandle(namespace, chain: "svc-tcp-10.96.0.1-80")])
            try lb.reconcile(to: desired)
            #expect(!lb.lastTransaction.isEmpty, "the deleted rule is written again")
            #expect(lb.tableReads == reads + 1)
            #expect(try lb.services() == desired.map(\.sorted))
            #expect(try lb.reconcile(to: desired).isEmpty)
            #expect(lb.lastTransaction.isEmpty)
        }
    }

    /// The daemon reconciles its whole desired set on every change: against
    /// a table that is its model, only the services that differ are sent,
    /// and the result lists exactly as `nft -f` of the whole desired set
    /// writes it (nft as the second reader), whichever mix of full and
    /// per-service changes led there.
    @Test func aFullReconcileSendsOnlyTheServicesThatChanged() throws {
        let key = { (address: String) in ServiceKey.address(try! IPAddress(parsing: address), .tcp, port: 80) }
        try NFTTestHost.withNamespaces(2) { namespaces in
            let lb = try NFTablesLoadBalancer(namespace: namespaces[0])
            var desired = [
                VirtualService(key: key("10.96.0.1"), realServers: [server("10.77.0.11"), server("10.77.0.12")]),
                VirtualService(key: key("10.96.0.2"), realServers: [server("10.77.0.11")]),
                VirtualService(key: key("10.96.0.3"), realServers: [server("10.77.0.13")]),
            ]
            try lb.reconcile(to: desired)
            let reads = lb.tableReads
            // 10.96.0.2 gains a backend, 10.96.0.3 goes, 10.96.0.1 is untouched.
            desired[1].realServers.append(server("10.77.0.14"))
            desired.removeLast()
            let changes = try lb.reconcile(to: desired)
            #expect(changes.operations.contains(.addRealServer(server("10.77.0.14"), service: key("10.96.0.2"))))
            #expect(changes.operations.contains(.deleteService(key("10.96.0.3"))))
            #expect(!changes.operations.map(\.description).contains { $0.contains("10.96.0.1") }, "\(changes.operations)")
            #expect(!lb.lastTransaction.isEmpty)
            for command in lb.lastTransaction {
                #expect(!command.contains("10.96.0.1"), "an unchanged service was sent: \(command)")
            }
            // A per-service change, then the full set again: nothing left to do.
            desired[0].realServers.removeFirst()
            try lb.reconcile(service: desired[0].key, to: desired[0])
            #expect(try lb.reconcile(to: desired).isEmpty)
            #expect(lb.lastTransaction.isEmpty, "\(lb.lastTransaction)")
            // A service added behind the full set's back is removed by it, alone.
            let extra = VirtualService(key: key("10.96.0.4"), realServers: [server("10.77.0.15")])
            try lb.reconcile(service: extra.key, to: extra)
            #expect(try lb.reconcile(to: desired).operations.contains(.deleteService(extra.key)))
            #expect(lb.lastTransaction.allSatisfy { $0.contains("10.96.0.4") }, "\(lb.lastTransaction)")
            #expect(lb.tableReads == reads, "the table was listed: the model should have been trusted")

            try NFTTestHost.expectTableMatchesNft(desired, configuration: NFTablesConfiguration(), ours: namespaces[0], theirs: namespaces[1])
        }
    }

    func firstRuleHandle(_ namespace: NetworkNamespace, chain: String) throws -> String {
        let listing = try #require(try NFTTestHost.nftTable(namespace, table))
        let rule = try #require(listing.items.compactMap { $0["rule"] as? [String: Any] }.first { $0["chain"] as? String == chain })
        return "\(try #require(rule["handle"] as? Int))"
    }

    static let layouts = NFTablesConfiguration.Layout.allCases

    @Test(arguments: layouts) func connectionsSpreadOverEveryBackendTCPAndUDP(layout: NFTablesConfiguration.Layout) throws {
        try NFTTestbed.with(backends: 3) { testbed in
            let lb = try NFTablesLoadBalancer(namespace: testbed.lb, configuration: NFTablesConfiguration(layout: layout))
            let servers = (0..<3).map { RealServer(address: testbed.address(ofBackend: $0), port: 8080) }
            try lb.reconcile(to: [VirtualService(key: vip, realServers: servers),
                                  VirtualService(key: .address(try IPAddress(parsing: NFTTestbed.vip), .udp, port: 80),
                                                 realServers: servers)])
            for proto in [TransportProtocol.tcp, .udp] {
                let result = try testbed.connect(from: testbed.lb, to: NFTTestbed.vip, port: 80, proto: proto, count: 300)
                #expect(result.answers["fail"] == nil, "\(proto): \(result.answers)")
                for index in 0..<3 {
                    let share = Double(result.answers["b\(index)"] ?? 0) / 300
                    // Uniform: 1/3 each; 20% to 47% holds with overwhelming probability.
                    #expect(share >= 0.20 && share <= 0.47, "\(proto) b\(index): \(result.answers)")
                }
            }
        }
    }

    @Test(arguments: layouts) func weightsSetTheShareAndRemovingABackendStopsNewConnectionsAtOnce(layout: NFTablesConfiguration.Layout) throws {
        try NFTTestbed.with(backends: 3) { testbed in
            let lb = try NFTablesLoadBalancer(namespace: testbed.lb, configuration: NFTablesConfiguration(layout: layout))
            var service = VirtualService(key: vip, scheduler: .weightedRoundRobin, realServers: [
                RealServer(address: testbed.address(ofBackend: 0), port: 8080, weight: 1),
                RealServer(address: testbed.address(ofBackend: 1), port: 8080, weight: 3),
                RealServer(address: testbed.address(ofBackend: 2), port: 8080, weight: 0),
            ])
            try lb.reconcile(to: [service])
            let weighted = try testbed.connect(from: testbed.lb, to: NFTTestbed.vip, port: 80, proto: .tcp, count: 400)
            let share = Double(weighted.answers["b1"] ?? 0) / 400
            #expect(share >= 0.65 && share <= 0.85, "weights 1:3:0 -> \(weighted.answers)")
            #expect(weighted.answers["b2"] == nil, "a weight-0 backend got new connections: \(weighted.answers)")

            service.realServers.remove(at: 1)
            try lb.reconcile(service: vip, to: service)
            let after = try testbed.connect(from: testbed.lb, to: NFTTestbed.vip, port: 80, proto: .tcp, count: 100)
            #expect(after.answers["b1"] == nil, "removed backend still chosen: \(after.answers)")
            #expect(after.answers["b0"] == 100, "\(after.answers)")
        }
    }

    /// Damage behind swarmnet's back, for each layout: the next full
    /// reconcile finds the generation moved, lists the table and repairs it.
    static let damage: [NFTablesConfiguration.Layout: [[String]]] = [
        .chains: [
            ["add", "rule", "ip", "swarmnet", "svc-tcp-10.96.0.1-80", "drop"],
            ["insert", "rule", "ip", "swarmnet", "svc-tcp-10.96.0.1-80", "goto", "ep-tcp-10.96.0.1-80-10.77.0.11-8080"],
            ["add", "chain", "ip", "swarmnet", "svc-tcp-10.96.0.9-80"],
            ["add", "element", "ip", "swarmnet", "service-ips", "{ 10.96.0.9 . tcp . 80 : goto svc-tcp-10.96.0.1-80 }"],
        ],
        .maps: [
            ["delete", "element", "ip", "swarmnet", "vips-tcp-backends", "{ 10.96.0.1 . 80 . 1 }"],
            ["add", "element", "ip", "swarmnet", "vips-tcp-backends", "{ 10.96.0.1 . 80 . 7 : 10.77.0.99 . 80 }"],
            ["add", "element", "ip", "swarmnet", "vips-tcp-random-2", "{ 10.96.0.9 . 80 }"],
            ["flush", "chain", "ip", "swarmnet", "services"],
            ["delete", "set", "ip", "swarmnet", "idle"],
            ["add", "rule", "ip", "swarmnet", "services", "drop"],
        ],
    ]

    @Test(arguments: layouts) func aFlushedOrDeletedTableOrAnEditedChainHeals(layout: NFTablesConfiguration.Layout) throws {
        try NFTTestbed.with(backends: 2) { testbed in
            let lb = try NFTablesLoadBalancer(namespace: testbed.lb, configuration: NFTablesConfiguration(layout: layout))
            let desired = [VirtualService(key: vip, realServers: (0..<2).map {
                RealServer(address: testbed.address(ofBackend: $0), port: 8080)
            })]
            try lb.reconcile(to: desired)
            let name = testbed.lb.name!
            func healed(_ damage: [String]) throws {
                try NFTTestHost.run(["ip", "netns", "exec", name, "nft"] + damage)
                try lb.reconcile(to: desired)
                #expect(try lb.services() == desired.map(\.sorted), "after nft \(damage.joined(separator: " "))")
                #expect(try lb.reconcile(to: desired).isEmpty)
                #expect(lb.lastTransaction.isEmpty, "still differs after repair: \(lb.lastTransaction)")
                let result = try testbed.connect(from: testbed.lb, to: NFTTestbed.vip, port: 80, proto: .tcp, count: 40)
                #expect(result.answers["fail"] == nil && result.answers.count == 2, "\(damage): \(result.answers)")
            }
            try healed(["flush", "table", "ip", table])
            try healed(["delete", "table", "ip", table])
            for damage in Self.damage[layout] ?? [] { try healed(damage) }
            try healed(["delete", "chain", "ip", table, "postrouting"])

            // The per-service path trusts its model; when the kernel changed
            // behind it, its transaction fails whole and it reads the kernel.
            try NFTTestHost.run(["ip", "netns", "exec", name, "nft", "flush", "table", "ip", table])
            var one = desired[0]
            one.realServers.removeLast()
            try lb.reconcile(service: vip, to: one)
            let result = try testbed.connect(from: testbed.lb, to: NFTTestbed.vip, port: 80, proto: .tcp, count: 20)
            #expect(result.answers == ["b0": 20])
        }
    }

    @Test(arguments: layouts) func aNamespaceWithoutTheTableCannotReachTheVIP(layout: NFTablesConfiguration.Layout) throws {
        try NFTTestbed.with(backends: 1) { testbed in
            let lb = try NFTablesLoadBalancer(namespace: testbed.lb, configuration: NFTablesConfiguration(layout: layout))
            try lb.reconcile(to: [VirtualService(key: vip, realServers: [RealServer(address: testbed.address(ofBackend: 0), port: 8080)])])
            #expect(try testbed.connect(from: testbed.lb, to: NFTTestbed.vip, port: 80, proto: .tcp, count: 5).answers == ["b0": 5])
            // The outside namespace routes through lb, but output-only hooks
            // balance only lb's own connections: the VIP is not reachable.
            let outside = try testbed.connect(from: testbed.outside, to: NFTTestbed.vip, port: 80, proto: .tcp, count: 3)
            #expect(outside.answers == ["fail": 3])
        }
    }

    @Test(arguments: layouts) func theRoutingMeshMasqueradesOrPreservesTheSource(layout: NFTablesConfiguration.Layout) throws {
        try NFTTestbed.with(backends: 2) { testbed in
            let published = ServiceKey.address(.v4(IPv4Address(0)), .tcp, port: 30080)
            let service = VirtualService(key: published, realServers: (0..<2).map {
                RealServer(address: testbed.address(ofBackend: $0), port: 8080)
            })
            let mesh = try NFTablesLoadBalancer(namespace: testbed.lb, configuration: NFTablesConfiguration(hooks: .routingMesh, layout: layout))
            try mesh.reconcile(to: [service])
            // Any local address of lb answers; backends see lb's bridge address.
            for address in ["10.78.0.1", "10.77.0.1"] {
                let result = try testbed.connect(from: testbed.outside, to: address, port: 30080, proto: .tcp, count: 60)
                #expect(result.answers["fail"] == nil && result.answers.count == 2, "\(address): \(result.answers)")
                #expect(result.peers == ["10.77.0.1"], "masqueraded: \(result.peers)")
            }
            try mesh.deleteTable()

            let local = try NFTablesLoadBalancer(namespace: testbed.lb, configuration: NFTablesConfiguration(
                hooks: .routingMesh, publishedPorts: .localBackendsOnly([try IPPrefix(parsing: "10.77.0.11/32")]), layout: layout))
            try local.reconcile(to: [service])
            let result = try testbed.connect(from: testbed.outside, to: "10.78.0.1", port: 30080, proto: .tcp, count: 30)
            #expect(result.answers == ["b0": 30])
            #expect(result.peers == ["10.78.0.2"], "source preserved: \(result.peers)")
        }
    }

    @Test(arguments: layouts) func badInputIsRefusedAndLeavesNothingProgrammed(layout: NFTablesConfiguration.Layout) throws {
        try NFTTestHost.withNamespaces(1) { namespaces in
            let namespace = namespaces[0]
            let lb = try NFTablesLoadBalancer(namespace: namespace, configuration: NFTablesConfiguration(layout: layout))
            let good = VirtualService(key: vip, realServers: [server("10.77.0.11")])
            let bad: [VirtualService] = [
                VirtualService(key: .firewallMark(7, family: .ipv4)),
                VirtualService(key: .address(try IPAddress(parsing: "0.0.0.0"), .tcp, port: 0)),
                VirtualService(key: vip, realServers: [RealServer(address: try IPAddress(parsing: "fd00::2"), port: 8080)]),
                VirtualService(key: vip, realServers: [server("10.77.0.11"), server("10.77.0.11")]),
            ]
            for service in bad {
                #expect(throws: LoadBalancerError.self) { try lb.reconcile(to: [good, service]) }
                #expect(throws: LoadBalancerError.self) { try lb.reconcile(service: service.key, to: service) }
            }
            #expect(try NFTTestHost.ruleset(namespace) == "")
            // Configuration and namespace errors, before libnftables is opened.
            #expect(throws: LoadBalancerError.self) {
                try NFTablesLoadBalancer(namespace: namespace, configuration: NFTablesConfiguration(tableName: ""))
            }
            #expect(throws: LoadBalancerError.self) {
                try NFTablesLoadBalancer(namespace: namespace, configuration: NFTablesConfiguration(tableName: String(repeating: "t", count: 70)))
            }
            #expect(throws: (any Error).self) {
                try NFTablesLoadBalancer(namespace: try NetworkNamespace.named(NFTTestHost.uniqueName()))
            }
            // With the table programmed, a desired state with one bad service
            // changes nothing at all (not even the good services' part).
            try lb.reconcile(to: [good])
            let before = try NFTTestHost.ruleset(namespace)
            var moved = good
            moved.realServers = [server("10.77.0.12")]
            #expect(throws: LoadBalancerError.self) { try lb.reconcile(to: [moved, bad[1]]) }
            #expect(try NFTTestHost.ruleset(namespace) == before)
        }
    }
}

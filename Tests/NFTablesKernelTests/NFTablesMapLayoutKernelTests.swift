import Addressing
import Foundation
import LoadBalancing
import Namespaces
import Testing

/// The maps layout on the real kernel: what it programs, read back with
/// `nft -j` and compared with `nft -f` of the same rule set; that a change
/// is elements only; classes made and removed; and a table of the chains
/// layout taken over. Traffic through it, and repair, are in
/// `NFTablesKernelTests` (parametrized over both layouts).
@Suite(.serialized) struct NFTablesMapLayoutKernelTests {
    let table = "swarmnet"
    let vip = ServiceKey.address(try! IPAddress(parsing: NFTTestbed.vip), .tcp, port: 80)
    let udpVIP = ServiceKey.address(try! IPAddress(parsing: NFTTestbed.vip), .udp, port: 53)
    let maps = NFTablesConfiguration(layout: .maps)

    func server(_ address: String, weight: UInt32 = 1, port: UInt16 = 8080) -> RealServer {
        RealServer(address: try! IPAddress(parsing: address), port: port, weight: weight)
    }

    func key(_ address: String, _ proto: TransportProtocol = .tcp, _ port: UInt16 = 80) -> ServiceKey {
        .address(try! IPAddress(parsing: address), proto, port: port)
    }

    /// What a service holds once programmed: a published port with local
    /// backends only keeps the local ones.
    func effective(_ service: VirtualService, _ configuration: NFTablesConfiguration) -> VirtualService {
        guard case .address(let address, _, _) = service.key, address == .v4(IPv4Address(0)),
              case .localBackendsOnly(let prefixes) = configuration.publishedPorts else { return service.sorted }
        var copy = service.sorted
        copy.realServers.removeAll { server in !prefixes.contains { $0.contains(server.address) } }
        return copy
    }

    /// Every kind of service the back end takes.
    var everyKind: [VirtualService] {
        [
            VirtualService(key: vip, realServers: [server("10.77.0.11"), server("10.77.0.12")]),
            VirtualService(key: udpVIP, scheduler: .weightedRoundRobin,
                           realServers: [server("10.77.0.11", weight: 3), server("10.77.0.13", weight: 0), server("10.77.0.14")]),
            VirtualService(key: key("10.96.0.7", .tcp, 443), scheduler: .sourceHashing, schedulerFlags: .hashPort,
                           realServers: [server("10.77.0.11"), server("10.77.0.12")]),
            VirtualService(key: key("10.96.0.9"), realServers: [server("10.77.0.11", weight: 0)]),
            VirtualService(key: key("10.96.0.10", .udp, 0), realServers: [server("10.77.0.11", port: 0), server("10.77.0.12", port: 0)]),
            VirtualService(key: key("0.0.0.0", .tcp, 30080), realServers: [server("10.77.0.11"), server("10.77.0.12")]),
        ]
    }

    @Test func programsSetsAndMapsAndReadsThemBack() throws {
        try NFTTestHost.withNamespaces(1) { namespaces in
            let namespace = namespaces[0]
            let lb = try NFTablesLoadBalancer(namespace: namespace, configuration: maps)
            let desired = Array(everyKind.prefix(2))
            #expect(try lb.reconcile(to: desired).operations.count == 7)
            let listing = try #require(try NFTTestHost.nftTable(namespace, table))
            // Hook chains and the dispatch chain only: no chain per service.
            #expect(listing.chains == ["output", "postrouting", "services"])
            #expect(listing.setElements("vips-tcp-random-2") == ["10.96.0.1 . 80 comment swarmnet rr 0"])
            // wrr 3:1 (the weight-0 backend in the idle set): four slots.
            #expect(listing.setElements("vips-udp-random-4") == ["10.96.0.1 . 53 comment swarmnet wrr 0"])
            #expect(listing.setElements("vips-tcp-backends") == [
                "10.96.0.1 . 80 . 0 : 10.77.0.11 . 8080", "10.96.0.1 . 80 . 1 : 10.77.0.12 . 8080",
            ])
            #expect(listing.setElements("vips-udp-backends") == [
                "10.96.0.1 . 53 . 0 comment weight 3 : 10.77.0.11 . 8080",
                "10.96.0.1 . 53 . 1 comment weight 3 : 10.77.0.11 . 8080",
                "10.96.0.1 . 53 . 2 comment weight 3 : 10.77.0.11 . 8080",
                "10.96.0.1 . 53 . 3 : 10.77.0.14 . 8080",
            ])
            #expect(listing.setElements("idle") == ["10.96.0.1 . udp . 53 . 10.77.0.13 . 8080"])
            #expect(listing.setElements("vips-tcp-hairpin") == ["10.77.0.11 . 10.96.0.1 . 80", "10.77.0.12 . 10.96.0.1 . 80"])
            let rules = try NFTTestHost.run(in: namespace, ["nft", "list", "chain", "ip", table, "services"])
            #expect(rules.contains("ip daddr . udp dport @vips-udp-random-4 dnat ip to ip daddr . udp dport . numgen random mod 4 map @vips-udp-backends"),
                    "\(rules)")
            #expect(try lb.services() == desired.map(\.sorted))
            #expect(try lb.reconcile(to: desired).isEmpty)
            #expect(lb.lastTransaction.isEmpty)
            try lb.deleteTable()
            #expect(try NFTTestHost.nftTable(namespace, table) == nil)
        }
    }

    /// What the per-service path sends as netlink elements lists exactly as
    /// `nft -f` writes the same services (every set and map, and the
    /// dispatch chain), for each masquerade policy; a change into an
    /// existing class is elements only.
    @Test func changesListExactlyAsNftWritesThemAndAreElementsOnly() throws {
        // Emptied classes go at once here, so the tables compare with nft -f's.
        let configurations = [
            NFTablesConfiguration(layout: .maps, emptyClassLifetime: .zero),
            NFTablesConfiguration(hooks: .routingMesh, masquerade: .nonLocalClients, layout: .maps, emptyClassLifetime: .zero),
            NFTablesConfiguration(hooks: .routingMesh, masquerade: .all, layout: .maps, emptyClassLifetime: .zero),
            NFTablesConfiguration(hooks: .routingMesh, masquerade: .never,
                                  publishedPorts: .localBackendsOnly([try IPPrefix(parsing: "10.77.0.11/32")]), layout: .maps,
                                  emptyClassLifetime: .zero),
        ]
        let services = everyKind
        for configuration in configurations {
            try NFTTestHost.withNamespaces(2) { namespaces in
                let lb = try NFTTestHost.programOneAtATime(services, configuration: configuration, in: namespaces[0])
                // A backend added and removed: into class 3 (new: a set and a
                // rule first), then back into class 2 (class 3 emptied and removed).
                var grown = services[0]
                grown.realServers.append(server("10.77.0.15"))
                try lb.reconcile(service: grown.key, to: grown)
                #expect(lb.lastTransaction.contains("add set ip swarmnet vips-tcp-random-3 { type ipv4_addr . inet_service ; }"),
                        "\(lb.lastTransaction)")
                try lb.reconcile(service: grown.key, to: services[0])
                #expect(lb.lastTransaction.contains("delete set ip swarmnet vips-tcp-random-3"), "\(lb.lastTransaction)")
                // Another service into an existing class: elements only.
                var moved = services[2]
                moved.realServers[1] = server("10.77.0.16")
                try lb.reconcile(service: moved.key, to: moved)
                #expect(lb.lastTransaction.allSatisfy { $0.hasPrefix("add element") || $0.hasPrefix("delete element") },
                        "\(lb.lastTransaction)")
                try lb.reconcile(service: moved.key, to: services[2])

                try NFTTestHost.expectTableMatchesNft(services, configuration: configuration, ours: namespaces[0], theirs: namespaces[1])
                #expect(try lb.services() == services.map { effective($0, configuration) }.sorted { $0.key < $1.key })
                #expect(try lb.reconcile(to: services).isEmpty)
                #expect(lb.lastTransaction.isEmpty, "\(lb.lastTransaction)")
            }
        }
    }

    /// The daemon's path (a full reconcile from its model) sends only the
    /// services that changed, and the classes they leave empty go once
    /// they have been empty for the configured time.
    @Test func aFullReconcileFromTheModelSendsOnlyWhatChanged() throws {
        try NFTTestHost.withNamespaces(1) { namespaces in
            let lb = try NFTablesLoadBalancer(namespace: namespaces[0],
                                              configuration: NFTablesConfiguration(layout: .maps, emptyClassLifetime: .milliseconds(300)))
            var desired = (1...20).map { VirtualService(key: key("10.96.0.\($0)"), realServers: [server("10.77.0.11"), server("10.77.0.12")]) }
            try lb.reconcile(to: desired)
            let reads = lb.tableReads
            desired[4].realServers.removeLast()
            desired.removeLast()
            let changes = try lb.reconcile(to: desired)
            #expect(changes.operations.count == 3, "\(changes.operations)")
            // Elements of the two changed services, and the class 10.96.0.5 moves into.
            for command in lb.lastTransaction where command.contains(" element ") {
                #expect(command.contains("10.96.0.5 ") || command.contains("10.96.0.20 "), "an unchanged service was sent: \(command)")
            }
            let structure = lb.lastTransaction.filter { !$0.contains(" element ") }
            #expect(Array(structure.prefix(2)) == ["add set ip swarmnet vips-tcp-random-1 { type ipv4_addr . inet_service ; }",
                                                   "flush chain ip swarmnet services"], "\(structure)")
            #expect(structure.dropFirst(2).allSatisfy { $0.hasPrefix("add rule ip swarmnet services ") }, "\(structure)")
            #expect(structure.contains { $0.contains("@vips-tcp-random-1 dnat ip to") }, "\(structure)")
            #expect(lb.tableReads == reads)
            let listing = try #require(try NFTTestHost.nftTable(namespaces[0], table))
            #expect(listing.setElements("vips-tcp-random-1") == ["10.96.0.5 . 80 comment swarmnet rr 0"])
            #expect(listing.setElements("vips-tcp-random-2").count == 18)
            desired[4].realServers.append(server("10.77.0.12"))
            try lb.reconcile(to: desired)
            // Empty, but kept for a while: a service that comes back reuses it.
            #expect(try NFTTestHost.nftTable(namespaces[0], table)?.sets.contains("vips-tcp-random-1") == true)
            usleep(400_000)
            #expect(try lb.reconcile(to: desired).operations.isEmpty)
            #expect(lb.lastTransaction.contains("delete set ip swarmnet vips-tcp-random-1"), "\(lb.lastTransaction)")
            #expect(try NFTTestHost.nftTable(namespaces[0], table)?.sets.contains("vips-tcp-random-1") == false)
            #expect(try lb.services() == desired.map(\.sorted))
        }
    }

    /// The daemon passes the same services in the same order each time:
    /// they are compared position by position, and only a changed one is
    /// validated and sent. A bad change is still refused whole, and a
    /// per-service change in between is not mistaken for the last full set.
    @Test func theSameServicesInTheSameOrderAreComparedInPlace() throws {
        try NFTTestHost.withNamespaces(1) { namespaces in
            let namespace = namespaces[0]
            let lb = try NFTablesLoadBalancer(namespace: namespace, configuration: maps)
            let desired = (1...20).map { VirtualService(key: key("10.96.0.\($0)"), realServers: [server("10.77.0.11"), server("10.77.0.12")]) }
            try lb.reconcile(to: desired)
            let before = try NFTTestHost.ruleset(namespace)
            var bad = desired
            bad[3].realServers.append(RealServer(address: try IPAddress(parsing: "fd00::2"), port: 8080))
            #expect(throws: LoadBalancerError.self) { try lb.reconcile(to: bad) }
            #expect(try NFTTestHost.ruleset(namespace) == before)
            var good = desired
            good[3].realServers.removeLast()
            #expect(try lb.reconcile(to: good).operations.count == 2) // quiesce, delete
            #expect(!lb.lastTransaction.isEmpty)
            #expect(lb.lastTransaction.allSatisfy { !$0.contains(" element ") || $0.contains("10.96.0.4 ") }, "\(lb.lastTransaction)")
            var other = good[7]
            other.realServers.removeLast()
            try lb.reconcile(service: other.key, to: other)
            // The full set puts service 8 back, though it equals the last full set.
            #expect(try lb.reconcile(to: good).operations == [.addRealServer(server("10.77.0.12"), service: other.key)])
            #expect(try lb.services() == good.map(\.sorted))
            #expect(try lb.reconcile(to: good).isEmpty)
        }
    }

    /// A table the chains layout programmed (a daemon upgraded) is taken
    /// over: its chains and verdict maps go, the services stay reachable.
    @Test func aTableOfTheChainsLayoutIsTakenOver() throws {
        try NFTTestbed.with(backends: 2) { testbed in
            let desired = [VirtualService(key: vip, realServers: (0..<2).map { RealServer(address: testbed.address(ofBackend: $0), port: 8080) })]
            try NFTablesLoadBalancer(namespace: testbed.lb).reconcile(to: desired)
            let lb = try NFTablesLoadBalancer(namespace: testbed.lb, configuration: maps)
            try lb.reconcile(to: desired)
            let listing = try #require(try NFTTestHost.nftTable(testbed.lb, table))
            #expect(listing.chains == ["output", "postrouting", "services"])
            #expect(!listing.sets.contains("service-ips"))
            #expect(try lb.services() == desired.map(\.sorted))
            let result = try testbed.connect(from: testbed.lb, to: NFTTestbed.vip, port: 80, proto: .tcp, count: 40)
            #expect(result.answers["fail"] == nil && result.answers.count == 2, "\(result.answers)")
        }
    }

    /// sh: a client keeps its backend (jhash of its address picks the slot).
    @Test func sourceHashingKeepsAClientOnItsBackend() throws {
        try NFTTestbed.with(backends: 3) { testbed in
            let lb = try NFTablesLoadBalancer(namespace: testbed.lb, configuration: maps)
            try lb.reconcile(to: [VirtualService(key: vip, scheduler: .sourceHashing,
                                                 realServers: (0..<3).map { RealServer(address: testbed.address(ofBackend: $0), port: 8080) })])
            let result = try testbed.connect(from: testbed.lb, to: NFTTestbed.vip, port: 80, proto: .tcp, count: 30)
            #expect(result.answers.count == 1 && result.answers["fail"] == nil, "\(result.answers)")
        }
    }
}

import Addressing
import Testing
@testable import LoadBalancing

/// The diff: desired against current gives the minimal operations, in an
/// order that never leaves a kept service without its backends.
@Suite struct ReconcilePlanTests {
    let dns = ServiceKey.address(try! IPAddress(parsing: "10.0.0.6"), .udp, port: 53)
    let mark = ServiceKey.firewallMark(7, family: .ipv4)

    @Test func fromNothingEveryServiceIsAddedWithItsRealServers() throws {
        let desired = [VirtualService(key: web, realServers: [server("10.0.1.3"), server("10.0.1.2")]),
                       VirtualService(key: mark, scheduler: .sourceHashing)]
        #expect(try ReconcilePlan.operations(from: [], to: desired) == [
            .addService(desired[0]),
            .addRealServer(server("10.0.1.2"), service: web),
            .addRealServer(server("10.0.1.3"), service: web),
            .addService(desired[1]),
        ])
    }

    @Test func identicalStateNeedsNothingWhateverTheOrder() throws {
        let current = [VirtualService(key: web, realServers: [server("10.0.1.2"), server("10.0.1.3")]),
                       VirtualService(key: dns, scheduler: .leastConnections)]
        let desired = [VirtualService(key: dns, scheduler: .leastConnections),
                       VirtualService(key: web, realServers: [server("10.0.1.3"), server("10.0.1.2")])]
        #expect(try ReconcilePlan.operations(from: current, to: desired).isEmpty)
    }

    @Test func aWeightChangeIsOneEdit() throws {
        let current = [VirtualService(key: web, scheduler: .weightedRoundRobin,
                                      realServers: [server("10.0.1.2"), server("10.0.1.3")])]
        let desired = [VirtualService(key: web, scheduler: .weightedRoundRobin,
                                      realServers: [server("10.0.1.2", weight: 4), server("10.0.1.3")])]
        #expect(try ReconcilePlan.operations(from: current, to: desired) ==
            [.editRealServer(server("10.0.1.2", weight: 4), service: web)])
    }

    @Test func aLeavingRealServerIsQuiescedThenDeletedAfterAdditions() throws {
        let current = [VirtualService(key: web, realServers: [server("10.0.1.2"), server("10.0.1.3", weight: 3)])]
        let desired = [VirtualService(key: web, realServers: [server("10.0.1.2"), server("10.0.1.4")])]
        #expect(try ReconcilePlan.operations(from: current, to: desired) == [
            .addRealServer(server("10.0.1.4"), service: web),
            .quiesceRealServer(server("10.0.1.3", weight: 0), service: web),
            .deleteRealServer(server("10.0.1.3").key, service: web),
        ])
    }

    @Test func aRealServerAlreadyAtWeightZeroIsOnlyDeleted() throws {
        let current = [VirtualService(key: web, realServers: [server("10.0.1.2", weight: 0)])]
        #expect(try ReconcilePlan.operations(from: current, to: [VirtualService(key: web)]) ==
            [.deleteRealServer(server("10.0.1.2").key, service: web)])
    }

    @Test func schedulerOrPersistenceChangeEditsTheServiceOnly() throws {
        let current = [VirtualService(key: web, realServers: [server("10.0.1.2")])]
        let mh = VirtualService(key: web, scheduler: .maglevHashing, schedulerFlags: .fallback, realServers: [server("10.0.1.2")])
        #expect(try ReconcilePlan.operations(from: current, to: [mh]) == [.editService(mh)])
        var sticky = current[0]
        sticky.persistence = 60
        #expect(try ReconcilePlan.operations(from: current, to: [sticky]) == [.editService(sticky)])
    }

    @Test func servicesNotDesiredAreDeletedFirst() throws {
        let current = [VirtualService(key: web, realServers: [server("10.0.1.2")]), VirtualService(key: mark)]
        let desired = [VirtualService(key: dns)]
        #expect(try ReconcilePlan.operations(from: current, to: desired) == [
            .deleteService(web), .deleteService(mark), .addService(desired[0]),
        ])
        #expect(try ReconcilePlan.operations(from: current, to: []) == [.deleteService(web), .deleteService(mark)])
    }

    @Test func portOrForwardingMakeADifferentRealServer() throws {
        let current = [VirtualService(key: web, realServers: [server("10.0.1.2", 8080)])]
        let desired = [VirtualService(key: web, realServers: [server("10.0.1.2", 8081)])]
        #expect(try ReconcilePlan.operations(from: current, to: desired) == [
            .addRealServer(server("10.0.1.2", 8081), service: web),
            .quiesceRealServer(server("10.0.1.2", 8080, weight: 0), service: web),
            .deleteRealServer(server("10.0.1.2", 8080).key, service: web),
        ])
        var routed = server("10.0.1.2", 8080)
        routed.forwarding = .directRoute
        #expect(try ReconcilePlan.operations(from: current, to: [VirtualService(key: web, realServers: [routed])]) ==
            [.editRealServer(routed, service: web)])
    }

    @Test func impossibleDesiredStatesAreRejected() {
        let twice = [VirtualService(key: web), VirtualService(key: web, scheduler: .leastConnections)]
        let duplicate = #expect(throws: LoadBalancerError.self) { try ReconcilePlan.operations(from: [], to: twice) }
        #expect(duplicate?.description == "invalid load-balancer state: service TCP 10.0.0.5:80 is listed twice")
        #expect(throws: LoadBalancerError.self) {
            try ReconcilePlan.validate([VirtualService(key: web, realServers: [server("10.0.1.2"), server("10.0.1.2", weight: 2)])])
        }
        // Past 32 servers the duplicate check switches to a set: both ways find the repeat, wherever it is.
        for count in [3, 40] {
            var many = (0..<count).map { server("10.0.2.\($0 + 1)") }
            #expect(throws: Never.self) { try ReconcilePlan.validate([VirtualService(key: web, realServers: many)]) }
            many.append(server("10.0.2.\(count)", weight: 5))
            let error = #expect(throws: LoadBalancerError.self) { try ReconcilePlan.validate([VirtualService(key: web, realServers: many)]) }
            #expect(error?.description.contains("10.0.2.\(count):8080 is listed twice") == true, "\(String(describing: error))")
        }
        #expect(throws: LoadBalancerError.self) { try ReconcilePlan.validate([VirtualService(key: .firewallMark(0, family: .ipv4))]) }
        #expect(throws: LoadBalancerError.self) {
            try ReconcilePlan.validate([VirtualService(key: web, realServers: [server("fd00::2")])])
        }
        #expect(throws: LoadBalancerError.self) {
            try ReconcilePlan.validate([VirtualService(key: web, scheduler: Scheduler(rawValue: "a-name-far-too-long"))])
        }
    }

    /// Servers sort by address (IPv4 before IPv6, IPv4 by value), then port.
    @Test func realServerKeysSortByAddressThenPort() throws {
        let keys = try ["10.0.0.9:80", "10.0.0.10:80", "10.0.0.9:7", "fd00::1:80", "9.255.255.255:9000"].map { text in
            let colon = text.lastIndex(of: ":")!
            return RealServer.Key(address: try IPAddress(parsing: text[..<colon]), port: UInt16(text[text.index(after: colon)...])!)
        }
        #expect(keys.sorted().map { "\($0.address):\($0.port)" } ==
            ["9.255.255.255:9000", "10.0.0.9:7", "10.0.0.9:80", "10.0.0.10:80", "fd00::1:80"])
    }

    @Test func swarmSysctlsAreTheThreeLibnetworkSets() {
        #expect(IPVSSysctls.swarm.entries.map(\.name) == ["conn_reuse_mode", "expire_nodest_conn", "expire_quiescent_template"])
        #expect(IPVSSysctls.swarm.entries.map(\.value) == [0, 1, 1])
        #expect(IPVSSysctls(expireNodestConn: false).entries.map(\.name) == ["expire_nodest_conn"])
    }
}

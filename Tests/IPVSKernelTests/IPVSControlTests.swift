import Addressing
import Foundation
import Glibc
import LoadBalancing
import Namespaces
import Testing

func ip(_ text: String) -> IPAddress { try! IPAddress(parsing: text) }
func rs(_ address: String, _ port: UInt16 = 8080, weight: UInt32 = 1) -> RealServer {
    RealServer(address: ip(address), port: port, weight: weight)
}

/// The IPVS back end against the real kernel, each test in fresh
/// namespaces, every result read twice: by our dump and by `ipvsadm -Ln`.
@Suite(.enabled(if: IPVSEnvironment.shouldRun), .serialized)
struct IPVSControlTests {
    /// Fails, not skips, when the runner said IPVS must be there.
    @Test func ipvsIsAvailable() throws {
        let availability = IPVS.availability()
        guard case .available(let version, let size) = availability else {
            Issue.record("IPVS is required here but unavailable: \(availability)")
            return
        }
        #expect(version.hasPrefix("1."))
        #expect(size > 0)
    }

    static let everyKind: [VirtualService] = [
        VirtualService(key: .address(ip("10.0.0.5"), .tcp, port: 80), scheduler: .roundRobin,
                       realServers: [rs("10.0.1.2"), rs("10.0.1.3")]),
        VirtualService(key: .address(ip("10.0.0.6"), .udp, port: 53), scheduler: .weightedRoundRobin,
                       realServers: [rs("10.0.1.2", 53, weight: 1), rs("10.0.1.3", 53, weight: 3)]),
        VirtualService(key: .address(ip("10.0.0.7"), .tcp, port: 443), scheduler: .leastConnections,
                       persistence: 300, realServers: [rs("10.0.1.4", 443)]),
        VirtualService(key: .firewallMark(42, family: .ipv4), scheduler: .sourceHashing,
                       schedulerFlags: [.fallback, .hashPort], realServers: [rs("10.0.1.2", 0), rs("10.0.1.5", 0)]),
        VirtualService(key: .firewallMark(43, family: .ipv4), scheduler: .maglevHashing, schedulerFlags: .fallback,
                       realServers: [rs("10.0.1.6", 0, weight: 2)]),
        VirtualService(key: .address(ip("fd00::5"), .tcp, port: 80), scheduler: .roundRobin,
                       realServers: [rs("fd00::1:2"), rs("fd00::1:3")]),
    ]

    static var sortedEveryKind: [VirtualService] { everyKind.map(\.sorted).sorted { $0.key < $1.key } }

    @Test func programsEverySchedulerAndKindOfService() throws {
        try IPVSTestHost.withNamespaces(1) { namespaces in
            let ipvs = try IPVS(namespace: namespaces[0])
            let changes = try ipvs.reconcile(to: Self.everyKind)
            #expect(changes.operations.count == 6 + 10)
            #expect(try ipvs.services() == Self.sortedEveryKind)
            #expect(try IPVSTestHost.ipvsadm(namespaces[0]) == Self.sortedEveryKind)
            // Reconciling again finds nothing to do.
            #expect(try ipvs.reconcile(to: Self.everyKind.reversed()).isEmpty)
        }
    }

    @Test func editsWeightsAndSchedulersAndRemovesABackendInTwoSteps() throws {
        try IPVSTestHost.withNamespaces(1) { namespaces in
            let ipvs = try IPVS(namespace: namespaces[0])
            let key = ServiceKey.address(ip("10.0.0.5"), .tcp, port: 80)
            var service = VirtualService(key: key, scheduler: .weightedRoundRobin,
                                         realServers: [rs("10.0.1.2"), rs("10.0.1.3"), rs("10.0.1.4")])
            try ipvs.reconcile(to: [service])

            service.realServers[0].weight = 5
            service.scheduler = .maglevHashing
            let edit = try ipvs.reconcile(to: [service])
            #expect(edit.operations == [.editService(service), .editRealServer(rs("10.0.1.2", weight: 5), service: key)])
            #expect(try IPVSTestHost.ipvsadm(namespaces[0]) == [service.sorted])

            // Step by step, as reconcile does it: weight 0 first...
            try ipvs.perform(.quiesceRealServer(rs("10.0.1.3", weight: 0), service: key))
            let quiet = try IPVSTestHost.ipvsadm(namespaces[0])
            #expect(quiet.first?.realServers.first { $0.address == ip("10.0.1.3") }?.weight == 0)
            #expect(try ipvs.destinations(of: key).first { $0.server.address == ip("10.0.1.3") }?.server.weight == 0)
            // ...then gone.
            try ipvs.perform(.deleteRealServer(rs("10.0.1.3").key, service: key))
            #expect(try IPVSTestHost.ipvsadm(namespaces[0]).first?.realServers.map(\.address) == [ip("10.0.1.2"), ip("10.0.1.4")])

            // Through reconcile: the leaving one is quiesced, then deleted.
            service.realServers = [rs("10.0.1.2", weight: 5)]
            let removal = try ipvs.reconcile(to: [service])
            #expect(removal.operations == [.quiesceRealServer(rs("10.0.1.4", weight: 0), service: key),
                                           .deleteRealServer(rs("10.0.1.4").key, service: key)])
            #expect(try ipvs.services() == [service])
            #expect(try IPVSTestHost.ipvsadm(namespaces[0]) == [service])
        }
    }

    @Test func reconcilingToNothingLeavesNothing() throws {
        try IPVSTestHost.withNamespaces(1) { namespaces in
            let ipvs = try IPVS(namespace: namespaces[0])
            try ipvs.reconcile(to: Self.everyKind)
            let changes = try ipvs.reconcile(to: [])
            #expect(changes.operations.count == Self.everyKind.count)
            #expect(changes.operations.allSatisfy { if case .deleteService = $0 { true } else { false } })
            #expect(try ipvs.services().isEmpty)
            #expect(try IPVSTestHost.ipvsadm(namespaces[0]).isEmpty)
            // A service added behind our back is removed by the next reconcile.
            try IPVSTestHost.run(in: namespaces[0], ["ipvsadm", "-A", "-t", "10.9.9.9:25", "-s", "rr"])
            #expect(try ipvs.reconcile(to: []).operations == [.deleteService(.address(ip("10.9.9.9"), .tcp, port: 25))])
            // flush (ipvsadm -C) after a fresh programming
            try ipvs.reconcile(to: Self.everyKind)
            try ipvs.flush()
            #expect(try IPVSTestHost.ipvsadm(namespaces[0]).isEmpty)
        }
    }

    @Test func kernelErrorsNameTheOperationTheObjectAndTheErrno() throws {
        try IPVSTestHost.withNamespaces(1) { namespaces in
            let ns = namespaces[0]
            let ipvs = try IPVS(namespace: ns)
            let key = ServiceKey.address(ip("10.0.0.5"), .tcp, port: 80)
            try ipvs.addService(VirtualService(key: key))

            let duplicate = #expect(throws: LoadBalancerError.self) { try ipvs.addService(VirtualService(key: key)) }
            #expect(duplicate?.errno == EEXIST)
            #expect(duplicate?.description == "IPVS: add service TCP 10.0.0.5:80 in namespace \(ns): File exists (EEXIST)")

            let unknown = #expect(throws: LoadBalancerError.self) { try ipvs.deleteService(.firewallMark(77, family: .ipv4)) }
            #expect(unknown?.description == "IPVS: delete service FWM 77 in namespace \(ns): No such process (ESRCH)")

            let noService = #expect(throws: LoadBalancerError.self) {
                try ipvs.addRealServer(rs("10.0.1.2"), to: .address(ip("10.0.0.99"), .udp, port: 53))
            }
            #expect(noService?.errno == ESRCH)
            #expect(noService?.description.contains("add real server 10.0.1.2:8080 of UDP 10.0.0.99:53") == true)

            let noServer = #expect(throws: LoadBalancerError.self) { try ipvs.deleteRealServer(rs("10.0.1.9").key, of: key) }
            #expect(noServer?.description == "IPVS: delete real server 10.0.1.9:8080 of TCP 10.0.0.5:80 in namespace \(ns): No such file or directory (ENOENT)")

            try ipvs.addRealServer(rs("10.0.1.2"), to: key)
            let twice = #expect(throws: LoadBalancerError.self) { try ipvs.addRealServer(rs("10.0.1.2"), to: key) }
            #expect(twice?.errno == EEXIST)

            // The kernel knows no scheduler of that name (module not loadable: ENOENT).
            let scheduler = #expect(throws: LoadBalancerError.self) {
                try ipvs.addService(VirtualService(key: .firewallMark(5, family: .ipv4), scheduler: Scheduler(rawValue: "nosuch")))
            }
            #expect(scheduler?.errno == ENOENT)

            // A reconcile that cannot apply everything reports each failure and applies the rest.
            let failing = #expect(throws: LoadBalancerError.self) {
                try ipvs.reconcile(to: [VirtualService(key: key, realServers: [rs("10.0.1.2")]),
                                        VirtualService(key: .firewallMark(6, family: .ipv4), scheduler: Scheduler(rawValue: "nosuch")),
                                        VirtualService(key: .firewallMark(8, family: .ipv4), realServers: [rs("10.0.1.7", 0)])])
            }
            guard case .reconcileFailed(let failures, _)? = failing else {
                Issue.record("expected reconcileFailed, got \(String(describing: failing))")
                return
            }
            #expect(failures.map(\.operation.description) == ["add service FWM 6 nosuch"])
            #expect(failures.first?.error.errnoName == "ENOENT")
            #expect(try IPVSTestHost.ipvsadm(ns).map(\.key) == [key, .firewallMark(8, family: .ipv4)])
        }
    }

    @Test func timeoutsAndSysctlsAreSetInTheNamespace() throws {
        try IPVSTestHost.withNamespaces(2) { namespaces in
            let ipvs = try IPVS(namespace: namespaces[0])
            try ipvs.setTimeouts(IPVSTimeouts(tcp: 3600, tcpFin: 30, udp: 60))
            #expect(try ipvs.timeouts() == IPVSTimeouts(tcp: 3600, tcpFin: 30, udp: 60))
            let listing = try IPVSTestHost.run(in: namespaces[0], ["ipvsadm", "-L", "--timeout"])
            #expect(listing.contains("Timeout (tcp tcpfin udp): 3600 30 60"))
            // The other namespace keeps the kernel's defaults.
            #expect(try IPVS(namespace: namespaces[1]).timeouts() == IPVSTimeouts(tcp: 900, tcpFin: 120, udp: 300))

            try ipvs.setSysctls(.swarm)
            #expect(try ipvs.sysctls() == IPVSSysctls(connReuseMode: 0, expireNodestConn: true, expireQuiescentTemplate: true,
                                                      conntrack: false))
            for (name, value) in [("conn_reuse_mode", "0"), ("expire_nodest_conn", "1"), ("expire_quiescent_template", "1")] {
                let text = try IPVSTestHost.run(in: namespaces[0], ["cat", "/proc/sys/net/ipv4/vs/\(name)"])
                #expect(text.trimmingCharacters(in: .whitespacesAndNewlines) == value, "\(name)")
            }
            // Not leaked into the other namespace: the kernel defaults there.
            #expect(try IPVS.sysctls(in: namespaces[1]) == IPVSSysctls(connReuseMode: 1, expireNodestConn: false,
                                                                       expireQuiescentTemplate: false, conntrack: false))
        }
    }

    @Test func namespacesHoldSeparateTables() throws {
        try IPVSTestHost.withNamespaces(2) { namespaces in
            let a = try IPVS(namespace: namespaces[0])
            let b = try IPVS(namespace: namespaces[1])
            try a.reconcile(to: Self.everyKind)
            #expect(try b.services().isEmpty)
            #expect(try IPVSTestHost.ipvsadm(namespaces[1]).isEmpty)
            #expect(try a.services() == Self.sortedEveryKind)
        }
    }
}

import Addressing
import Foundation
import LoadBalancing
import Namespaces
import Testing

/// Not a timed test: scripts/bench-ipvs runs it in the VM with
/// SWARMNET_IPVS_BENCH=1 and prints our figure beside `ipvsadm -R` of an
/// equivalent file, from the same run, and the ratio. It checks that both
/// programmed the same table, so the two figures measure the same work.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["SWARMNET_IPVS_BENCH"] != nil && IPVSEnvironment.shouldRun))
struct IPVSBenchmark {
    @Test func programmingServicesBesideIpvsadmRestore() throws {
        let services = Int(ProcessInfo.processInfo.environment["SWARMNET_IPVS_BENCH_SERVICES"] ?? "") ?? 1000
        let backends = Int(ProcessInfo.processInfo.environment["SWARMNET_IPVS_BENCH_BACKENDS"] ?? "") ?? 10
        let desired = (0..<services).map { i in
            VirtualService(
                key: .address(.v4(IPv4Address(0x0a64_0000 + UInt32(i))), .tcp, port: 80), scheduler: .roundRobin,
                realServers: (0..<backends).map { j in
                    RealServer(address: .v4(IPv4Address(0x0ac8_0000 + UInt32(i * backends + j))), port: 8080)
                })
        }
        var rules = ""
        for service in desired {
            guard case .address(let vip, _, let port) = service.key else { continue }
            rules += "-A -t \(vip):\(port) -s rr\n"
            for server in service.realServers {
                rules += "-a -t \(vip):\(port) -r \(server.endpoint) -m -w \(server.weight)\n"
            }
        }
        let file = "/tmp/ipvs-bench-\(getpid()).rules"
        try rules.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }

        try IPVSTestHost.withNamespaces(2) { namespaces in
            let ours = try IPVS(namespace: namespaces[0])
            let clock = ContinuousClock()
            var changes = ReconcileChanges()
            let oursTime = try clock.measure { changes = try ours.reconcile(to: desired) }
            let noopTime = try clock.measure { changes = try ours.reconcile(to: desired) }
            #expect(changes.isEmpty)
            var moved = desired
            moved[services / 2].realServers.removeLast()
            let oneTime = try clock.measure { changes = try ours.reconcile(to: moved) }
            #expect(changes.operations.count == 2)

            let theirsTime = try clock.measure {
                try IPVSTestHost.run(["sh", "-c", "nsenter --net=\(namespaces[1].path) -- ipvsadm -R < \(file)"])
            }
            let theirs = try IPVS(namespace: namespaces[1]).services()
            #expect(theirs == desired.map(\.sorted).sorted { $0.key < $1.key })
            let dumpTime = try clock.measure { _ = try ours.services() }
            let listTime = try clock.measure { try IPVSTestHost.run(in: namespaces[0], ["ipvsadm", "-Ln"]) }

            let seconds = { (d: Duration) in Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
            let operations = services * (backends + 1)
            print(String(format: "IPVS-BENCH services=%d backends=%d operations=%d", services, backends, operations))
            print(String(format: "IPVS-BENCH swarmnet reconcile (batched genl): %.3f s", seconds(oursTime)))
            print(String(format: "IPVS-BENCH ipvsadm -R (same table):          %.3f s", seconds(theirsTime)))
            print(String(format: "IPVS-BENCH ratio swarmnet/ipvsadm:           %.2f", seconds(oursTime) / seconds(theirsTime)))
            print(String(format: "IPVS-BENCH reconcile with nothing to do (dump %d services): %.3f s", services, seconds(noopTime)))
            print(String(format: "IPVS-BENCH reconcile removing one backend (dump + 2 ops):   %.3f s", seconds(oneTime)))
            print(String(format: "IPVS-BENCH services() dump alone:                           %.3f s", seconds(dumpTime)))
            print(String(format: "IPVS-BENCH ipvsadm -Ln of the same table:                   %.3f s", seconds(listTime)))
            print(String(format: "IPVS-BENCH ratio services()/ipvsadm -Ln:                    %.2f", seconds(dumpTime) / seconds(listTime)))
        }
    }
}

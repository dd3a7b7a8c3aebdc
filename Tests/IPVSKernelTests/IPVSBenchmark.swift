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

    /// Adding and removing one backend with N services present (default
    /// 100 and 10,000, x 10 backends): p50/p99 per change through
    /// `reconcile(service:to:)` (GET_SERVICE + destination dump + batch),
    /// beside one `ipvsadm -a` / `ipvsadm -d` per change.
    @Test func perChangeBesideIpvsadm() throws {
        let sizes = (ProcessInfo.processInfo.environment["SWARMNET_IPVS_BENCH_CHANGE_SERVICES"] ?? "100,10000")
            .split(separator: ",").compactMap { Int($0) }
        let changes = Int(ProcessInfo.processInfo.environment["SWARMNET_IPVS_BENCH_CHANGES"] ?? "") ?? 50
        let seconds = { (d: Duration) in Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        func percentile(_ values: [Double], _ p: Double) -> Double {
            let sorted = values.sorted()
            return sorted[max(0, min(sorted.count - 1, Int((p * Double(sorted.count)).rounded(.up)) - 1))]
        }
        var p99: [Int: Double] = [:]
        for services in sizes {
            let desired = (0..<services).map { i in
                VirtualService(key: .address(.v4(IPv4Address(0x0a64_0000 + UInt32(i))), .tcp, port: 80),
                               realServers: (0..<10).map { j in
                                   RealServer(address: .v4(IPv4Address(0x0ac8_0000 + UInt32(i * 10 + j))), port: 8080)
                               })
            }
            try IPVSTestHost.withNamespaces(1) { namespaces in
                let ipvs = try IPVS(namespace: namespaces[0])
                let clock = ContinuousClock()
                let setup = try clock.measure { try ipvs.reconcile(to: desired) }
                var ours: [Double] = []
                var theirs: [Double] = []
                for k in 0..<changes {
                    let service = desired[(k * 7919) % services]
                    var grown = service
                    let extra = RealServer(address: .v4(IPv4Address(0x0afa_0000 + UInt32(k))), port: 8080)
                    grown.realServers.append(extra)
                    ours.append(seconds(try clock.measure { try ipvs.reconcile(service: service.key, to: grown) }))
                    ours.append(seconds(try clock.measure { try ipvs.reconcile(service: service.key, to: service) }))
                    guard case .address(let vip, _, let port) = service.key else { continue }
                    theirs.append(seconds(try clock.measure {
                        try IPVSTestHost.run(in: namespaces[0], ["ipvsadm", "-a", "-t", "\(vip):\(port)", "-r", extra.endpoint, "-m", "-w", "1"])
                    }))
                    theirs.append(seconds(try clock.measure {
                        try IPVSTestHost.run(in: namespaces[0], ["ipvsadm", "-d", "-t", "\(vip):\(port)", "-r", extra.endpoint])
                    }))
                }
                #expect(try ipvs.reconcile(to: desired).isEmpty)
                p99[services] = percentile(ours, 0.99)
                print(String(format: "IPVS-BENCH change services=%d backends=10 changes=%d (setup %.2f s)", services, ours.count, seconds(setup)))
                print(String(format: "IPVS-BENCH swarmnet reconcile(service:) per change: p50 %.2f ms p99 %.2f ms",
                             percentile(ours, 0.5) * 1000, percentile(ours, 0.99) * 1000))
                print(String(format: "IPVS-BENCH ipvsadm -a / -d per change (nsenter + exec): p50 %.2f ms p99 %.2f ms",
                             percentile(theirs, 0.5) * 1000, percentile(theirs, 0.99) * 1000))
                print(String(format: "IPVS-BENCH ratio swarmnet/ipvsadm per change: p50 %.2f p99 %.2f",
                             percentile(ours, 0.5) / percentile(theirs, 0.5), percentile(ours, 0.99) / percentile(theirs, 0.99)))
            }
        }
        if let small = sizes.min(), let large = sizes.max(), small != large, let a = p99[small], let b = p99[large] {
            print(String(format: "IPVS-BENCH p99 ratio %d/%d services: %.2f", large, small, b / a))
        }
    }
}

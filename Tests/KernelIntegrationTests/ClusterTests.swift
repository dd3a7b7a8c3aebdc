import Foundation
import Testing
import Namespaces

/// Several swarmnetd on the test bed, joined in a swarm (h1 its manager):
/// networks come from the managers' store, endpoints travel between hosts
/// by gossip, and the overlay carries traffic.
@Suite struct ClusterTests {
    /// The address docker assigned to `workload` on `network`, read on `host`.
    private func address(_ testbed: Testbed, _ host: String, _ network: String, _ workload: NetworkNamespace) throws -> String {
        let output = try testbed.docker(host, ["network", "inspect", network, "--format", "{{range .Containers}}{{.Name}} {{.IPv4Address}}\n{{end}}"])
        let line = try #require(output.split(separator: "\n").first { $0.hasPrefix(workload.name! + " ") })
        return String(line.split(separator: " ")[1].split(separator: "/")[0])
    }

    private func ping(_ workload: NetworkNamespace, _ address: String) -> Bool {
        (try? TestHost.run(["ip", "netns", "exec", workload.name!, "ping", "-c", "1", "-W", "1", address])) != nil
    }

    @Test func networksAndEndpointsSpanHostsAndStayApart() throws {
        try withSwarm(hosts: 3) { testbed in
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.70.0.0/24", "red"])
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.71.0.0/24", "blue"])
            // Workers learn the networks from the managers.
            #expect(eventually(5) { (try? testbed.docker("h3", ["network", "ls", "--format", "{{.Name}}"]))?.contains("blue") == true })
            #expect(throws: CommandFailure.self) { try testbed.docker("h2", ["network", "create", "-d", "overlay", "green"]) }
            // A definition larger than a gossip packet reaches every node
            // all the same: definitions travel from the managers' store,
            // not by gossip (it was once silently dropped, issue 14).
            let label = String(repeating: "x", count: 4000)
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--label", "big=\(label)", "--subnet", "10.74.0.0/24", "big"])
            #expect(eventually(5) {
                (try? testbed.docker("h3", ["network", "inspect", "big", "--format", "{{index .Labels \"big\"}}"]))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) == label
            })

            let red1 = try testbed.workload("r1"), red2 = try testbed.workload("r2"), red3 = try testbed.workload("r3")
            let blue2 = try testbed.workload("b2")
            try testbed.docker("h1", ["network", "connect", "red", red1.name!])
            #expect(eventually(5) { (try? testbed.docker("h2", ["network", "ls", "--format", "{{.Name}}"]))?.contains("red") == true })
            try testbed.docker("h2", ["network", "connect", "red", red2.name!])
            try testbed.docker("h3", ["network", "connect", "red", red3.name!])
            try testbed.docker("h2", ["network", "connect", "blue", blue2.name!])
            let a1 = try address(testbed, "h1", "red", red1), a2 = try address(testbed, "h2", "red", red2)
            let a3 = try address(testbed, "h3", "red", red3), b2 = try address(testbed, "h2", "blue", blue2)
            #expect(Set([a1, a2, a3]).count == 3, "addresses are unique across hosts: \(a1) \(a2) \(a3)")

            #expect(eventually(5) { ping(red1, a2) && ping(red1, a3) && ping(red3, a1) && ping(red2, a3) })
            // A TCP connection across hosts carries 200 KB both ways.
            let echoed = try TestHost.tcpEcho(from: red1, to: red2, address: a2, port: 7071, bytes: 200_000)
            #expect(echoed == "ok")
            // Isolation: blue is another VNI and subnet.
            #expect(!ping(red1, b2))
            #expect(!ping(blue2, a1))

            // Each host's kernel holds exactly the remote endpoints of red.
            let report = try testbed.swarmnet("h1", ["debug", "overlay", "red", "--format", "json"])
            #expect(report.contains("\"status\" : \"ok\"") && !report.contains("\"missing\"") && !report.contains("\"extra\""))

            // Detaching an endpoint removes its entries on every other host.
            try testbed.docker("h3", ["network", "disconnect", "red", red3.name!])
            let mac3 = "02:42:" + a3.split(separator: ".").map { String(format: "%02x", Int($0)!) }.joined(separator: ":")
            let vni = try testbed.docker("h1", ["network", "inspect", "red", "--format", "{{index .Options \"com.docker.network.driver.overlay.vxlanid_list\"}}"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            for host in ["h1", "h2"] {
                let sandbox = "\(testbed.lab.prefix)\(host)-ov-\(vni)"
                #expect(eventually(5) {
                    let fdb = (try? TestHost.json(["bridge", "-n", sandbox, "-j", "fdb", "show", "dev", "vxlan0"])) ?? []
                    let neighbours = (try? TestHost.json(["ip", "-n", sandbox, "-j", "neigh", "show", "dev", "vxlan0"])) ?? []
                    // The vxlan device's own entries (self); the bridge may still
                    // hold a learned entry for the MAC until it ages out.
                    return !fdb.contains { $0["mac"] as? String == mac3 && (($0["flags"] as? [String]) ?? []).contains("self") }
                        && !neighbours.contains { $0["dst"] as? String == a3 }
                }, "entries of the detached endpoint are gone on \(host)")
            }

            // Removing the network (after its endpoints) removes every sandbox.
            try testbed.docker("h1", ["network", "disconnect", "red", red1.name!])
            try testbed.docker("h2", ["network", "disconnect", "red", red2.name!])
            #expect(eventually(5) { (try? testbed.docker("h1", ["network", "rm", "red"])) != nil })
            #expect(eventually(5) {
                let names = (try? NetworkNamespace.list()) ?? []
                return names.filter { $0.contains("-ov-") && $0.hasPrefix(testbed.lab.prefix) }.count == 1 // blue on h2 only
            })
        }
    }

    @Test func theManagerAllocatesEveryAddressEvenUnderConcurrentAttaches() throws {
        try withSwarm(hosts: 3) { testbed in
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.73.0.0/24", "web"])
            #expect(eventually(5) { ["h2", "h3"].allSatisfy { (try? testbed.docker($0, ["network", "ls", "--format", "{{.Name}}"]))?.contains("web") == true } })
            // Two workloads per host, all six attached at once.
            let workloads = try (1...3).flatMap { host in try (1...2).map { (host, try testbed.workload("c\(host)x\($0)")) } }
            let group = DispatchGroup()
            let failures = Failures()
            for (host, workload) in workloads {
                group.enter()
                DispatchQueue.global().async {
                    defer { group.leave() }
                    do { try testbed.docker("h\(host)", ["network", "connect", "web", workload.name!]) } catch { failures.add("\(error)") }
                }
            }
            group.wait()
            #expect(failures.all.isEmpty, "\(failures.all)")
            let addresses = try workloads.map { host, workload in try address(testbed, "h\(host)", "web", workload) }
            #expect(Set(addresses).count == 6, "unique addresses: \(addresses)")
            #expect(Set(addresses) == Set((2...7).map { "10.73.0.\($0)" }), "allocated in order by the manager: \(addresses)")

            // A worker that cannot reach the manager refuses to attach (and makes nothing).
            testbed.stop("h1")
            let orphan = try testbed.workload("orphan")
            do {
                try testbed.docker("h2", ["network", "connect", "web", orphan.name!])
                Issue.record("attaching without a manager must fail")
            } catch let failure as CommandFailure {
                #expect(failure.stderr.contains("manager"), "\(failure.stderr)")
            }
            #expect(try TestHost.ipLinks(orphan).keys.sorted() == ["lo"])
        }
    }

    @Test func tamperedPeersAndAKilledDaemonHeal() throws {
        try withSwarm(hosts: 2, reconcileInterval: 30) { testbed in
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.72.0.0/24", "web"])
            let w1 = try testbed.workload("w1"), w2 = try testbed.workload("w2")
            try testbed.docker("h1", ["network", "connect", "web", w1.name!])
            #expect(eventually(5) { (try? testbed.docker("h2", ["network", "ls", "--format", "{{.Name}}"]))?.contains("web") == true })
            try testbed.docker("h2", ["network", "connect", "web", w2.name!])
            let a1 = try address(testbed, "h1", "web", w1), a2 = try address(testbed, "h2", "web", w2)
            #expect(eventually(5) { ping(w1, a2) })
            let vni = try testbed.docker("h1", ["network", "inspect", "web", "--format", "{{index .Options \"com.docker.network.driver.overlay.vxlanid_list\"}}"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let sandbox1 = "\(testbed.lab.prefix)h1-ov-\(vni)"
            let mac2 = "02:42:" + a2.split(separator: ".").map { String(format: "%02x", Int($0)!) }.joined(separator: ":")

            // Delete the FDB entry and the neighbour entry by hand: both come
            // back on the delete events, long before the 30 s timer.
            try TestHost.run(["bridge", "-n", sandbox1, "fdb", "del", mac2, "dev", "vxlan0", "dst", "192.0.2.12", "self"])
            try TestHost.run(["ip", "-n", sandbox1, "neigh", "del", a2, "dev", "vxlan0"])
            #expect(eventually(5) {
                let fdb = (try? TestHost.json(["bridge", "-n", sandbox1, "-j", "fdb", "show", "dev", "vxlan0"])) ?? []
                let neighbours = (try? TestHost.json(["ip", "-n", sandbox1, "-j", "neigh", "show", "dev", "vxlan0"])) ?? []
                return fdb.contains { $0["mac"] as? String == mac2 && $0["dst"] as? String == "192.0.2.12" }
                    && neighbours.contains { $0["dst"] as? String == a2 && $0["lladdr"] as? String == mac2 }
            })
            #expect(ping(w1, a2))

            // kill -9 the worker, remove its sandbox's vxlan device behind its
            // back, restart it: the overlay comes back, nothing is leaked.
            testbed.kill9("h2")
            let sandbox2 = "\(testbed.lab.prefix)h2-ov-\(vni)"
            try TestHost.run(["ip", "-n", sandbox2, "link", "del", "vxlan0"])
            try testbed.start("h2", reconcileInterval: 30)
            #expect(eventually(10) { ping(w1, a2) && ping(w2, a1) })
            let links = try TestHost.ipLinks(try NetworkNamespace.named(sandbox2)).keys.sorted()
            #expect(links.filter { $0.hasPrefix("ve-") }.count == 1)
            #expect(links.contains("vxlan0") && links.contains("br0"))
            #expect(try NetworkNamespace.list().filter { $0.hasPrefix(testbed.lab.prefix) && $0.contains("-ov-") }.count == 2)
        }
    }
}

private final class Failures: @unchecked Sendable {
    private var items: [String] = []
    private let lock = NSLock()
    func add(_ text: String) { lock.withLock { items.append(text) } }
    var all: [String] { lock.withLock { items } }
}

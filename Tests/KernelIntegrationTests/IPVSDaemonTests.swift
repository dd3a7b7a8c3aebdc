import Foundation
import Testing
import TestKit

/// swarmnetd with `--lb-backend ipvs` on a two-host swarm: the VIP is an
/// IPVS service in the client's namespace, the published port a
/// firewall-mark service in each host's namespace, and a removed backend
/// leaves both. This machine's kernel has no IPVS: the suite runs inside
/// the IPVS VM (scripts/test-ipvs sets SWARMNET_IPVS_REQUIRED=1 and selects
/// it), where it must pass; elsewhere it is not run. `ipvsadm -Ln` is the
/// second reader.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["SWARMNET_IPVS_REQUIRED"] == "1"))
struct IPVSDaemonTests {
    /// The real servers `ipvsadm -Ln` lists under the service line that
    /// starts with `service` ("TCP  10.80.0.2:80", "FWM  1398276097").
    static func realServers(_ namespace: String, service: String) -> [String] {
        let text = (try? TestHost.run(["ip", "netns", "exec", namespace, "ipvsadm", "-Ln"])) ?? ""
        var inside = false
        var servers: [String] = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            if ["TCP", "UDP", "FWM"].contains(words.first) {
                inside = words.prefix(2).joined(separator: " ") == service
            } else if inside, words.first == "->", words.count > 1, words[1] != "RemoteAddress:Port" {
                servers.append(words[1])
            }
        }
        return servers.sorted()
    }

    @Test func vipAndRoutingMeshThroughIPVS() throws {
        // The lan gossip profile: the fast one's probe timeouts are too
        // tight for the VM's emulated CPU and would report live hosts dead.
        try withSwarm(hosts: 2, daemonArguments: ["--lb-backend", "ipvs", "--no-embedded-dns", "--gossip-profile", "lan"]) { testbed in
            #expect(testbed.log("h1").contains("ipvs (IPVS"), "the daemon says which balancer it uses")
            try testbed.swarmnet("h1", ["network", "create", "--subnet", "10.80.0.0/24", "front"])
            try ServiceTests.createService(testbed, "web", ["--network", "front", "--publish", "8080:80"])
            var servers: [ServiceTests.NameServer] = []
            for (index, host) in ["h1", "h2"].enumerated() {
                let backend = try testbed.workload("web\(index + 1)")
                // The worker learns the service from the manager, and asks it for the address.
                #expect(eventually(60) {
                    (try? testbed.swarmnet(host, ["network", "connect", "--service", "web", "front", backend.name!])) != nil
                })
                servers.append(try ServiceTests.NameServer(backend, name: "web\(index + 1)", port: 80))
            }
            let client = try testbed.workload("client")
            #expect(eventually(60) { (try? testbed.swarmnet("h2", ["network", "connect", "front", client.name!])) != nil })
            let clientNS = client.name!
            let vip = try ServiceTests.vip(testbed, "web", in: "10.80.0.")
            let backends = try ["web1", "web2"].map { try ServiceTests.address(of: "\(testbed.lab.prefix)\($0)", in: "10.80.0.") + ":80" }.sorted()

            // The client's namespace holds the VIP as an IPVS service with both backends.
            #expect(eventually(30) { Self.realServers(clientNS, service: "TCP \(vip):80") == backends },
                    "ipvsadm in the client: \(Self.realServers(clientNS, service: "TCP \(vip):80"))")
            let spread = try ServiceTests.connect(from: clientNS, to: vip, port: 80, count: 20)
            #expect(spread.names["web1", default: 0] == 10 && spread.names["web2", default: 0] == 10, "\(spread.names)")

            // The routing mesh: h1's port 8080, from h2's namespace, over both
            // backends; on h1 a firewall-mark service of the mesh's range.
            let h1 = testbed.hosts[0], h2 = testbed.hosts[1]
            var mesh: (names: [String: Int], clients: Set<String>) = ([:], [])
            #expect(eventually(30) {
                mesh = (try? ServiceTests.connect(from: h2.namespace.name!, to: h1.address.description, port: 8080, count: 10)) ?? ([:], [])
                return mesh.names["web1", default: 0] > 0 && mesh.names["web2", default: 0] > 0
            }, "mesh on h1: \(mesh.names)")
            let ingressBackends = Self.realServers(h1.namespace.name!, service: "FWM 1398276097")
            #expect(ingressBackends.count == 2, "\(ingressBackends)")
            // web's VIP on ingress: an IPVS service in h1's namespace over
            // the same backends, which answers from there.
            let ingressVIP = try ServiceTests.vip(testbed, "web", in: "10.0.0.")
            #expect(Self.realServers(h1.namespace.name!, service: "TCP \(ingressVIP):80") == ingressBackends)
            let fromHost = try ServiceTests.connect(from: h1.namespace.name!, to: ingressVIP, port: 80, count: 4)
            #expect(fromHost.names["web1", default: 0] + fromHost.names["web2", default: 0] >= 3, "\(fromHost.names)")

            // debug lb compares the desired services with IPVS's on each host.
            for host in ["h1", "h2"] {
                var report = ""
                #expect(eventually(10) {
                    report = (try? testbed.swarmnet(host, ["debug", "lb", "web"])) ?? ""
                    return !report.isEmpty
                }, "debug lb on \(host): \((try? testbed.swarmnet(host, ["debug", "lb", "--format", "json"])) ?? "")")
                #expect(report.contains("ipvs"), "\(report)")
            }

            // web2 leaves: it leaves the client's IPVS service, and no connection reaches it.
            try testbed.swarmnet("h2", ["network", "disconnect", "front", "\(testbed.lab.prefix)web2"])
            #expect(eventually(30) { Self.realServers(clientNS, service: "TCP \(vip):80").count == 1 })
            // None reaches web2. (Under the VM's emulated CPU an occasional
            // connection misses the client's 2 s limit, so the count of
            // answers is not required to be 10.)
            let after = try ServiceTests.connect(from: clientNS, to: vip, port: 80, count: 10)
            #expect(after.names["web2"] == nil && after.names["refused"] == nil && after.names["web1", default: 0] >= 5,
                    "\(after.names)")
            withExtendedLifetime(servers) {}
        }
    }
}

/// On a kernel without IPVS (this machine's), `--lb-backend ipvs` stops the
/// daemon at start-up with the reason, instead of running a daemon that
/// cannot balance; a misspelt back end is refused before anything starts.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["SWARMNET_IPVS_REQUIRED"] != "1"))
struct LoadBalancerChoiceTests {
    @Test func ipvsOnAKernelWithoutItStopsTheDaemonWithTheReason() throws {
        guard !FileManager.default.fileExists(atPath: "/proc/net/ip_vs") else { return } // IPVS loaded here: nothing to refuse
        do {
            try withTestbed(hosts: 1, daemonArguments: ["--lb-backend", "ipvs"]) { _ in
                Issue.record("swarmnetd started with --lb-backend ipvs on a kernel without IPVS")
            }
        } catch let failure as CommandFailure {
            #expect(failure.stderr.contains("--lb-backend ipvs: IPVS cannot be used here"), "\(failure.stderr)")
        }
        let swarmnetd = URL(fileURLWithPath: TestHost.swarmnetExecutable).deletingLastPathComponent().path + "/swarmnetd"
        #expect {
            try TestHost.run([swarmnetd, "--lb-backend", "lvs"])
        } throws: { error in
            "\(error)".contains("--lb-backend is auto, ipvs or nftables, not 'lvs'")
        }
    }
}

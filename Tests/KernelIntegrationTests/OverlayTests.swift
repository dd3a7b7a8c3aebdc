import Foundation
import Testing
import Addressing
import Lab
import Namespaces
import Netlink
import Overlay

/// The overlay data path across simulated hosts, through the library (the
/// daemon will drive the same calls).
@Suite struct OverlayTests {
    /// A lab of `hosts` hosts with one workload namespace each, torn down
    /// after `body` whatever happens.
    private func withLab<T>(hosts: Int, _ body: (Lab, [Lab.Host], [NetworkNamespace]) throws -> T) throws -> T {
        try TestHost.requireRoot()
        let lab = Lab(prefix: TestHost.uniqueName() + "-")
        defer { lab.down() }
        let made = try lab.up(hosts: hosts)
        let workloads = try made.map { try NetworkNamespace.create(named: "\(lab.prefix)\($0.name)-w") }
        return try body(lab, made, workloads)
    }

    private func driver(_ lab: Lab, _ host: Lab.Host) -> OverlayDriver {
        OverlayDriver(underlay: Underlay(namespace: host.namespace, device: host.device, address: host.address),
                      namePrefix: "\(lab.prefix)\(host.name)-")
    }

    private func ping(from workload: NetworkNamespace, _ address: String) -> Bool {
        (try? TestHost.run(["ip", "netns", "exec", workload.name!, "ping", "-c", "1", "-W", "1", address])) != nil
    }

    @Test func workloadsOnDifferentHostsTalkAndOtherNetworksCannot() throws {
        try withLab(hosts: 2) { lab, hosts, workloads in
            let red = try OverlayNetwork(id: "red", vni: 5001, subnet: try IPPrefix(parsing: "10.61.0.0/24"),
                                         gateway: try IPAddress(parsing: "10.61.0.1"))
            let blue = try OverlayNetwork(id: "blue", vni: 5002, subnet: try IPPrefix(parsing: "10.62.0.0/24"),
                                          gateway: try IPAddress(parsing: "10.62.0.1"))
            let drivers = hosts.map { driver(lab, $0) }
            for driver in drivers { try driver.ensureSandbox(red) }
            // Red endpoints on both hosts; a blue endpoint on host 2.
            let redA = EndpointSpec(id: "reda", workload: workloads[0], address: try IPPrefix(parsing: "10.61.0.10/24"))
            let redB = EndpointSpec(id: "redb", workload: workloads[1], address: try IPPrefix(parsing: "10.61.0.20/24"))
            try drivers[0].attach(redA, to: red)
            try drivers[1].attach(redB, to: red)
            let blueWorkload = try NetworkNamespace.create(named: "\(lab.prefix)h2-blue")
            try drivers[1].ensureSandbox(blue)
            try drivers[0].ensureSandbox(blue)
            let blueB = EndpointSpec(id: "blueb", workload: blueWorkload, address: try IPPrefix(parsing: "10.62.0.20/24"))
            try drivers[1].attach(blueB, to: blue)

            let peerA = Peer(address: redA.address.address, mac: redA.mac, vtep: hosts[0].address)
            let peerB = Peer(address: redB.address.address, mac: redB.mac, vtep: hosts[1].address)
            try drivers[0].addPeers([peerB], to: red)
            try drivers[1].addPeers([peerA], to: red)
            try drivers[0].addPeers([Peer(address: blueB.address.address, mac: blueB.mac, vtep: hosts[1].address)], to: blue)

            #expect(ping(from: workloads[0], "10.61.0.20"))
            #expect(ping(from: workloads[1], "10.61.0.10"))
            // Another network is another VNI and another subnet: unreachable.
            #expect(!ping(from: workloads[0], "10.62.0.20"))
            #expect(!ping(from: blueWorkload, "10.61.0.10"))

            // The second reader sees what was programmed in host 1's sandbox.
            let sandbox = try drivers[0].sandbox(for: red).name!
            let fdb = try TestHost.json(["bridge", "-n", sandbox, "-j", "fdb", "show", "dev", "vxlan0"])
            #expect(fdb.contains { $0["mac"] as? String == redB.mac.description && $0["dst"] as? String == "192.0.2.12" })
            let neighbours = try TestHost.json(["ip", "-n", sandbox, "-j", "neigh", "show", "dev", "vxlan0"])
            #expect(neighbours.contains { $0["dst"] as? String == "10.61.0.20" && ($0["state"] as? [String]) == ["PERMANENT"] })
            let vxlan = try #require(try TestHost.ipLinks(try drivers[0].sandbox(for: red))["vxlan0"])
            let data = (vxlan["linkinfo"] as? [String: Any])?["info_data"] as? [String: Any]
            #expect(data?["id"] as? Int == 5001)
            #expect(data?["local"] as? String == "192.0.2.11")
            #expect(data?["learning"] as? Bool == false)
            #expect(data?["proxy"] as? Bool == true)
            #expect(vxlan["mtu"] as? Int == 1450)
            #expect(vxlan["master"] as? String == "br0")
            let eth0 = try #require(try TestHost.ipLinks(workloads[0])["eth0"])
            #expect(eth0["mtu"] as? Int == 1450)
            #expect(eth0["address"] as? String == redA.mac.description)
        }
    }

    @Test func aTCPConnectionHoldsAcrossTheOverlay() throws {
        try withLab(hosts: 2) { lab, hosts, workloads in
            let network = try OverlayNetwork(id: "tcp", vni: 5010, subnet: try IPPrefix(parsing: "10.63.0.0/24"),
                                             gateway: try IPAddress(parsing: "10.63.0.1"))
            let drivers = hosts.map { driver(lab, $0) }
            let endpoints = [
                EndpointSpec(id: "tcpa", workload: workloads[0], address: try IPPrefix(parsing: "10.63.0.10/24")),
                EndpointSpec(id: "tcpb", workload: workloads[1], address: try IPPrefix(parsing: "10.63.0.20/24")),
            ]
            for (index, driver) in drivers.enumerated() {
                try driver.ensureSandbox(network)
                try driver.attach(endpoints[index], to: network)
            }
            try drivers[0].addPeers([Peer(address: endpoints[1].address.address, mac: endpoints[1].mac, vtep: hosts[1].address)], to: network)
            try drivers[1].addPeers([Peer(address: endpoints[0].address.address, mac: endpoints[0].mac, vtep: hosts[0].address)], to: network)

            // 100 KB go to workload B and come back over one TCP connection.
            let output = try TestHost.tcpEcho(from: workloads[0], to: workloads[1], address: "10.63.0.20", port: 7070, bytes: 100_000)
            #expect(output == "ok")
        }
    }

    @Test func detachAndPeerRemovalLeaveNothingAndSandboxesGoAway() throws {
        try withLab(hosts: 2) { lab, hosts, workloads in
            let network = try OverlayNetwork(id: "gone", vni: 5020, subnet: try IPPrefix(parsing: "10.64.0.0/24"),
                                             gateway: try IPAddress(parsing: "10.64.0.1"))
            let drivers = hosts.map { driver(lab, $0) }
            let endpoint = EndpointSpec(id: "gonea", workload: workloads[0], address: try IPPrefix(parsing: "10.64.0.10/24"))
            let peer = Peer(address: endpoint.address.address, mac: endpoint.mac, vtep: hosts[0].address)
            for driver in drivers { try driver.ensureSandbox(network) }
            let attached = try drivers[0].attach(endpoint, to: network)
            try drivers[1].addPeers([peer], to: network)

            try drivers[0].detach(endpointID: endpoint.id, from: network)
            try drivers[1].removePeers([peer], from: network)
            // Removing again is not an error: the goal is already reached.
            try drivers[1].removePeers([peer], from: network)
            try drivers[0].detach(endpointID: endpoint.id, from: network)

            #expect(try TestHost.ipLinks(workloads[0])[attached.workloadInterface] == nil)
            #expect(try TestHost.ipLinks(try drivers[0].sandbox(for: network))[attached.hostInterface] == nil)
            let sandbox2 = try drivers[1].sandbox(for: network).name!
            #expect(!(try TestHost.json(["bridge", "-n", sandbox2, "-j", "fdb", "show", "dev", "vxlan0"]))
                .contains { $0["mac"] as? String == endpoint.mac.description })
            #expect(!(try TestHost.json(["ip", "-n", sandbox2, "-j", "neigh", "show", "dev", "vxlan0"]))
                .contains { $0["dst"] as? String == "10.64.0.10" })

            for driver in drivers { try driver.removeSandbox(network) }
            let names = try NetworkNamespace.list()
            #expect(!names.contains(try drivers[0].sandbox(for: network).name!))
            #expect(!names.contains(sandbox2))
            // A sandbox for the same VNI can be made again at once (no "vxlan: file exists").
            try drivers[0].ensureSandbox(network)
            try drivers[0].removeSandbox(network)
        }
    }

    @Test func ensureSandboxRepairsWhatWasTamperedWith() throws {
        try withLab(hosts: 1) { lab, hosts, _ in
            let network = try OverlayNetwork(id: "heal", vni: 5030, subnet: try IPPrefix(parsing: "10.65.0.0/24"),
                                             gateway: try IPAddress(parsing: "10.65.0.1"))
            let driver = driver(lab, hosts[0])
            try driver.ensureSandbox(network)
            let sandbox = try driver.sandbox(for: network)
            try driver.ensureSandbox(network) // idempotent
            try TestHost.run(["ip", "-n", sandbox.name!, "link", "del", "vxlan0"])
            try TestHost.run(["ip", "-n", sandbox.name!, "addr", "flush", "dev", "br0"])
            try driver.ensureSandbox(network)
            let links = try TestHost.ipLinks(sandbox)
            #expect(links["vxlan0"]?["master"] as? String == "br0")
            #expect((links["vxlan0"]?["flags"] as? [String])?.contains("UP") == true)
            let addresses = try TestHost.json(["ip", "-n", sandbox.name!, "-j", "-4", "addr", "show", "dev", "br0"])
            #expect(((addresses.first?["addr_info"] as? [[String: Any]]) ?? []).contains { $0["local"] as? String == "10.65.0.1" })
        }
    }

    @Test func badEndpointsAreRejectedAndLeaveNothing() throws {
        try withLab(hosts: 1) { lab, hosts, workloads in
            let network = try OverlayNetwork(id: "bad", vni: 5040, subnet: try IPPrefix(parsing: "10.66.0.0/24"),
                                             gateway: try IPAddress(parsing: "10.66.0.1"))
            let driver = driver(lab, hosts[0])
            try driver.ensureSandbox(network)
            #expect(throws: OverlayError.self) {
                try driver.attach(EndpointSpec(id: "x1", workload: workloads[0], address: try IPPrefix(parsing: "10.99.0.5/24")), to: network)
            }
            #expect(throws: OverlayError.self) {
                try driver.attach(EndpointSpec(id: "x2", workload: workloads[0], address: try IPPrefix(parsing: "10.66.0.1/24")), to: network)
            }
            #expect(throws: NamespaceError.self) {
                try driver.attach(EndpointSpec(id: "x3", workload: try NetworkNamespace.named("\(lab.prefix)missing"),
                                               address: try IPPrefix(parsing: "10.66.0.5/24")), to: network)
            }
            // IPv6 disabled in the workload makes the second step (the address)
            // fail after the veth exists: the veth must be removed again.
            let v6 = try OverlayNetwork(id: "bad6", vni: 5041, subnet: try IPPrefix(parsing: "fd66::/64"),
                                        gateway: try IPAddress(parsing: "fd66::1"))
            try driver.ensureSandbox(v6)
            for key in ["net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"] {
                try TestHost.run(["ip", "netns", "exec", workloads[0].name!, "sysctl", "-qw", "\(key)=1"])
            }
            do {
                try driver.attach(EndpointSpec(id: "x4", workload: workloads[0], address: try IPPrefix(parsing: "fd66::5/64")), to: v6)
                Issue.record("an IPv6 address in a namespace without IPv6 must fail")
            } catch NetlinkError.kernel(let error) {
                #expect(error.operation == "add address")
            }
            #expect(try TestHost.ipLinks(try driver.sandbox(for: v6)).keys.sorted() == ["br0", "lo", "vxlan0"])
            #expect(try TestHost.ipLinks(workloads[0]).keys.sorted() == ["lo"])
            try driver.removeSandbox(v6)
            #expect(throws: OverlayError.self) {
                try OverlayNetwork(id: "v", vni: 12, subnet: try IPPrefix(parsing: "10.67.0.0/24"), gateway: try IPAddress(parsing: "10.67.0.1"))
            }
            #expect(throws: OverlayError.self) {
                try OverlayNetwork(id: "g", vni: 5050, subnet: try IPPrefix(parsing: "10.67.0.0/24"), gateway: try IPAddress(parsing: "10.68.0.1"))
            }
        }
    }
}

import Addressing
import Foundation
import TestKit
import Glibc
import LoadBalancing
import Namespaces
import Netlink
import Testing

/// `IPVSBalancer`, the way swarmnetd programs IPVS: VIPs balanced inside a
/// workload's own namespace (per port, and on every port through a
/// firewall mark), and published ports in a host namespace (masqueraded
/// for the routing mesh, or keeping the client's address for host-mode
/// ports). Real connections; `ipvsadm -Ln` and `nft -j` as second readers.
@Suite(.enabled(if: IPVSEnvironment.shouldRun), .serialized)
struct IPVSBalancerTests {
    static let workload = IPVSBalancerConfiguration(markTable: "swarmnet-ipvs", hooks: .output, masqueradePublishedPorts: false,
                                                    markBase: 0x5357_0000, ownsAddressServices: true)
    static let mesh = IPVSBalancerConfiguration(markTable: "swarmnet-mesh-ipvs", hooks: .routingMesh, masqueradePublishedPorts: true,
                                                markBase: 0x5358_0000, ownsAddressServices: false)
    static let hostPorts = IPVSBalancerConfiguration(markTable: "swarmnet-hostports-ipvs", hooks: .routingMesh,
                                                     masqueradePublishedPorts: false, markBase: 0x5359_0000, ownsAddressServices: false)

    /// A workload namespace W with a veth to each backend (W 10.31.n.1,
    /// backend 10.31.n.2, routed back through W), and a route for the VIPs,
    /// as a workload on an overlay has its subnet on-link.
    static func wireWorkload(_ workload: NetworkNamespace, backends: [NetworkNamespace]) throws {
        let link = try RouteNetlink(namespace: workload)
        try Topology.wireBackends(from: link, backends)
        try link.routeAdd(RouteEntry(destination: try IPPrefix(parsing: "10.40.0.0/24"), gateway: ip("10.31.1.2")))
    }

    @Test func workloadVIPsPerPortAndOnEveryPort() throws {
        try IPVSTestHost.withNamespaces(3) { namespaces in
            let (workload, b1, b2) = (namespaces[0], namespaces[1], namespaces[2])
            try Self.wireWorkload(workload, backends: [b1, b2])
            let servers = [try TCPServer(namespace: b1, port: 8080, reply: "b1"), try TCPServer(namespace: b2, port: 8080, reply: "b2"),
                           try TCPServer(namespace: b1, port: 9000, reply: "b1:9000"), try TCPServer(namespace: b2, port: 9000, reply: "b2:9000")]
            let udp = [try UDPServer(namespace: b1, port: 5353, reply: "b1"), try UDPServer(namespace: b2, port: 5353, reply: "b2")]
            defer { servers.forEach { $0.stop() }; udp.forEach { $0.stop() } }

            let balancer = try IPVSBalancer(namespace: workload, configuration: Self.workload)
            let web = VirtualService(key: .address(ip("10.40.0.5"), .tcp, port: 8080), realServers: [rs("10.31.1.2"), rs("10.31.2.2")])
            let everyTCP = VirtualService(key: .address(ip("10.40.0.6"), .tcp, port: 0),
                                          realServers: [rs("10.31.1.2", 0), rs("10.31.2.2", 0)])
            let everyUDP = VirtualService(key: .address(ip("10.40.0.6"), .udp, port: 0),
                                          realServers: [rs("10.31.1.2", 0), rs("10.31.2.2", 0)])
            try balancer.reconcile(to: [web, everyTCP, everyUDP])
            // Read back under the keys asked for.
            #expect(try balancer.services() == [web, everyTCP, everyUDP].map(\.sorted).sorted { $0.key < $1.key })

            // Second readers: a VIP:port service and two firewall-mark services; the marks in nftables.
            let listed = try IPVSTestHost.ipvsadm(workload)
            #expect(listed.map(\.key.description).sorted() == ["FWM 1398210561", "FWM 1398210562", "TCP 10.40.0.5:8080"])
            let marks = try IPVSTestHost.run(in: workload, ["nft", "list", "table", "ip", "swarmnet-ipvs"])
            #expect(marks.contains("10.40.0.6 . tcp : 0x53570001"), "\(marks)")
            #expect(marks.contains("10.40.0.6 . udp : 0x53570002"), "\(marks)")

            var answers: [String: Int] = [:]
            for _ in 0..<10 { answers[try TCPClient.fetch(from: workload, ip("10.40.0.5"), 8080), default: 0] += 1 }
            #expect(answers == ["b1": 5, "b2": 5])
            // Every port of the other VIP, the destination port kept; UDP too.
            answers = [:]
            for _ in 0..<4 { answers[try TCPClient.fetch(from: workload, ip("10.40.0.6"), 9000), default: 0] += 1 }
            for _ in 0..<4 { answers[try TCPClient.fetch(from: workload, ip("10.40.0.6"), 8080), default: 0] += 1 }
            #expect(answers == ["b1:9000": 2, "b2:9000": 2, "b1": 2, "b2": 2])
            answers = [:]
            for _ in 0..<4 { answers[try UDPClient.ask(from: workload, ip("10.40.0.6"), 5353), default: 0] += 1 }
            #expect(answers == ["b1": 2, "b2": 2])
            // The backend sees the workload's own address: nothing is masqueraded.
            #expect(Set(servers[0].peers) == ["10.31.1.1"])

            // A flushed mark table is repaired by the next reconcile.
            try IPVSTestHost.run(in: workload, ["nft", "flush", "table", "ip", "swarmnet-ipvs"])
            try balancer.reconcile(to: [web, everyTCP, everyUDP])
            #expect(try TCPClient.fetch(from: workload, ip("10.40.0.6"), 9000).hasSuffix(":9000"))

            // b1 leaves every service; then the every-port VIP goes.
            try balancer.reconcile(to: [web, everyTCP, everyUDP].map { service in
                var one = service
                one.realServers.removeAll { $0.address == ip("10.31.1.2") }
                return one
            })
            for _ in 0..<4 { #expect(try TCPClient.fetch(from: workload, ip("10.40.0.6"), 9000) == "b2:9000") }
            try balancer.reconcile(to: [web])
            #expect(try IPVSTestHost.ipvsadm(workload).map(\.key.description) == ["TCP 10.40.0.5:8080"])
            let after = try IPVSTestHost.run(in: workload, ["nft", "-j", "list", "table", "ip", "swarmnet-ipvs"])
            #expect(!after.contains("10.40.0.6"), "\(after)")
            #expect(throws: (any Error).self) { try TCPClient.fetch(from: workload, ip("10.40.0.6"), 9000) }

            try balancer.removeAll()
            #expect(try IPVSTestHost.ipvsadm(workload).isEmpty)
            #expect(throws: (any Error).self) { try IPVSTestHost.run(in: workload, ["nft", "list", "table", "ip", "swarmnet-ipvs"]) }
        }
    }

    /// A host namespace H (10.30.0.1) wired to a client C (10.30.0.2) and
    /// to two backends (10.31.1.2 and 10.31.2.2) whose servers on port
    /// 8080 answer "b1" and "b2".
    static func withHostClientAndTwoBackends(_ body: (_ host: NetworkNamespace, _ client: NetworkNamespace, _ servers: [TCPServer]) throws -> Void)
        throws {
        try IPVSTestHost.withNamespaces(4) { namespaces in
            let (host, client, b1, b2) = (namespaces[0], namespaces[1], namespaces[2], namespaces[3])
            try Topology.wire(lb: host, client: client, backends: [b1, b2])
            let servers = [try TCPServer(namespace: b1, port: 8080, reply: "b1"), try TCPServer(namespace: b2, port: 8080, reply: "b2")]
            defer { servers.forEach { $0.stop() } }
            try body(host, client, servers)
        }
    }

    /// A host namespace H (10.30.0.1) with a client C (10.30.0.2) and two
    /// backends: the mesh port 8080 balances over both, masqueraded (the
    /// backend sees H's address); the host-mode port 9090 reaches b2 only
    /// with the client's address. Two balancers share H and leave each
    /// other's services alone.
    @Test func publishedPortsMaskedAndHostModeSideBySide() throws {
        try Self.withHostClientAndTwoBackends { host, client, servers in

            let mesh = try IPVSBalancer(namespace: host, configuration: Self.mesh)
            let hostPorts = try IPVSBalancer(namespace: host, configuration: Self.hostPorts)
            let published = VirtualService(key: .address(ip("0.0.0.0"), .tcp, port: 8080), realServers: [rs("10.31.1.2"), rs("10.31.2.2")])
            let hostMode = VirtualService(key: .address(ip("0.0.0.0"), .tcp, port: 9090), realServers: [rs("10.31.2.2")])
            try mesh.reconcile(to: [published])
            try hostPorts.reconcile(to: [hostMode])
            #expect(try mesh.services() == [published.sorted])
            #expect(try hostPorts.services() == [hostMode.sorted])
            #expect(try IPVS.sysctls(in: host).conntrack == true)

            var answers: [String: Int] = [:]
            for _ in 0..<6 { answers[try TCPClient.fetch(from: client, ip("10.30.0.1"), 8080), default: 0] += 1 }
            #expect(answers == ["b1": 3, "b2": 3])
            // Masqueraded: each backend sees H's address on its link.
            #expect(Set(servers[0].peers) == ["10.31.1.1"])
            #expect(Set(servers[1].peers) == ["10.31.2.1"])

            for _ in 0..<3 { #expect(try TCPClient.fetch(from: client, ip("10.30.0.1"), 9090) == "b2") }
            // Host mode keeps the client's address.
            #expect(servers[1].peers.suffix(3) == ["10.30.0.2", "10.30.0.2", "10.30.0.2"])

            #expect(try IPVSTestHost.ipvsadm(host).map(\.key.description) == ["FWM 1398276097", "FWM 1398341633"])

            // Removing the mesh's port leaves the host-mode one, and each its own table.
            try mesh.reconcile(to: [])
            #expect(try IPVSTestHost.ipvsadm(host).map(\.key.description) == ["FWM 1398341633"])
            #expect(throws: (any Error).self) { try TCPClient.fetch(from: client, ip("10.30.0.1"), 8080) }
            #expect(try TCPClient.fetch(from: client, ip("10.30.0.1"), 9090) == "b2")
            try mesh.removeAll()
            try hostPorts.removeAll()
            #expect(try IPVSTestHost.ipvsadm(host).isEmpty)
        }
    }

    /// In the host's namespace the mesh owns the VIP:port services inside
    /// its prefixes (swarmnetd gives it the ingress subnet: the published
    /// services' VIPs there): one is balanced and read back, an operator's
    /// service outside them is left alone, and one outside is refused.
    @Test func theMeshOwnsVIPsOnlyInsideItsPrefixes() throws {
        try Self.withHostClientAndTwoBackends { host, _, servers in
            var configuration = Self.mesh
            configuration.ownedAddresses = [try IPPrefix(parsing: "10.40.0.0/24")]
            let mesh = try IPVSBalancer(namespace: host, configuration: configuration)
            _ = try IPVSTestHost.run(in: host, ["ipvsadm", "-A", "-t", "10.41.0.5:80", "-s", "rr"])

            let vip = VirtualService(key: .address(ip("10.40.0.5"), .tcp, port: 8080), realServers: [rs("10.31.1.2"), rs("10.31.2.2")])
            try mesh.reconcile(to: [vip])
            #expect(try mesh.services() == [vip.sorted])
            #expect(Set(try IPVSTestHost.ipvsadm(host).map(\.key.description)) == ["TCP 10.40.0.5:8080", "TCP 10.41.0.5:80"])
            // The host's own connections to the VIP reach both backends.
            var answers: [String: Int] = [:]
            for _ in 0..<4 { answers[try TCPClient.fetch(from: host, ip("10.40.0.5"), 8080), default: 0] += 1 }
            #expect(answers == ["b1": 2, "b2": 2])

            #expect(throws: LoadBalancerError.self) {
                try mesh.reconcile(to: [vip, VirtualService(key: .address(ip("10.41.0.6"), .tcp, port: 80), realServers: [rs("10.31.1.2")])])
            }
            try mesh.reconcile(to: [])
            #expect(try IPVSTestHost.ipvsadm(host).map(\.key.description) == ["TCP 10.41.0.5:80"], "the operator's service stays")
            try mesh.removeAll()
            #expect(try IPVSTestHost.ipvsadm(host).map(\.key.description) == ["TCP 10.41.0.5:80"])
        }
    }

    @Test func badInputChangesNothing() throws {
        try IPVSTestHost.withNamespaces(1) { namespaces in
            let mesh = try IPVSBalancer(namespace: namespaces[0], configuration: Self.mesh)
            // The host's namespace: VIP:port services are not the mesh's to own.
            #expect(throws: LoadBalancerError.self) {
                try mesh.reconcile(to: [VirtualService(key: .address(ip("10.40.0.5"), .tcp, port: 80), realServers: [rs("10.31.1.2")])])
            }
            #expect(throws: LoadBalancerError.self) {
                try mesh.reconcile(to: [VirtualService(key: .firewallMark(7, family: .ipv4))])
            }
            #expect(try IPVSTestHost.ipvsadm(namespaces[0]).isEmpty)
            #expect(throws: LoadBalancerError.self) {
                try IPVSBalancer(namespace: namespaces[0], configuration: IPVSBalancerConfiguration(
                    markTable: "bad name", hooks: .output, masqueradePublishedPorts: false, markBase: 0x10000, ownsAddressServices: true))
            }
        }
    }
}

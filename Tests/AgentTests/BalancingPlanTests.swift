import Foundation
import Testing
import Addressing
import Cluster
import LoadBalancing
@testable import Agent

/// The pure part of load balancing: which workload reaches which VIPs and
/// names, and which ports the routing mesh answers on this host.
@Suite struct BalancingPlanTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    /// Two networks, the ingress network, a vip service on "front" with a
    /// published port, a dnsrr service with a host-mode port; backends on
    /// two hosts.
    func cluster() throws -> ClusterState {
        var state = ClusterState()
        _ = try state.createNetwork(.init(name: "front", subnet: "10.50.0.0/24"), id: "front", now: now, hostRoutes: [])
        _ = try state.createNetwork(.init(name: "back", subnet: "10.51.0.0/24"), id: "back", now: now, hostRoutes: [])
        _ = try state.ensureIngressNetwork(id: "ing", now: now, hostRoutes: [])
        _ = try state.createService(.init(name: "Web", networks: [.init(target: "front")], ports: [.init(targetPort: 80, publishedPort: 8080)]),
                                    id: "web", now: now)
        _ = try state.createService(.init(name: "db", networks: [.init(target: "back")], endpointMode: "dnsrr",
                                          ports: [.init(targetPort: 5432, publishedPort: 5432, publishMode: "host")]), id: "db", now: now)
        let vtep = try IPAddress(parsing: "192.0.2.11")
        func add(_ id: String, _ network: String, _ node: String, _ ns: String, service: String? = nil, gateway: Bool = false) throws {
            _ = try state.addEndpoint(id: id, network: network, node: node, namespacePath: ns, name: ns, requestedAddress: nil,
                                      vtep: vtep, serviceID: service, isIngressGateway: gateway)
        }
        try add("w1", "front", "h1", "/run/netns/web1", service: "web")      // 10.50.0.3
        try add("w1i", "ing", "h1", "/run/netns/web1", service: "web")
        try add("w2", "front", "h2", "/run/netns/web2", service: "web")      // 10.50.0.4
        try add("w2i", "ing", "h2", "/run/netns/web2", service: "web")
        try add("c1", "front", "h1", "/run/netns/client")                   // 10.50.0.5
        try add("c1b", "back", "h1", "/run/netns/client")
        try add("d1", "back", "h2", "/run/netns/db1", service: "db")
        try add("d1i", "ing", "h2", "/run/netns/db1", service: "db")
        try add("g1", "ing", "h1", "/proc/self/ns/net", gateway: true)
        return state
    }

    func plan(_ state: ClusterState, node: String) -> BalancingPlan {
        BalancingPlan.make(services: Array(state.services.values), networks: state.networks,
                           endpoints: Array(state.endpoints.values), localNode: node)
    }

    @Test func aWorkloadReachesTheVIPsOfItsNetworksOverEveryBackend() throws {
        let state = try cluster()
        let plan = plan(state, node: "h1")
        // h1's workloads: web1 (a backend) and client; never the gateway or
        // another host's workloads.
        #expect(Set(plan.workloads.keys) == ["/run/netns/web1", "/run/netns/client"])
        let vip = try #require(state.services["web"]?.vip(on: "front"))
        let client = try #require(plan.workloads["/run/netns/client"])
        #expect(client.map(\.key) == [.address(vip, .tcp, port: 80)])
        #expect(client[0].realServers.map(\.address.description) == ["10.50.0.3", "10.50.0.4"])
        #expect(client[0].realServers.allSatisfy { $0.port == 80 })
        // dnsrr has no VIP, so nothing to balance, but the name resolves.
        let names = try #require(plan.names["/run/netns/client"])
        #expect(names["web"]?.first?.virtualIPs == [vip])
        #expect(names["db"]?.first?.endpointMode == .dnsrr)
        #expect(names["db"]?.first?.backends.map(\.description) == ["10.51.0.3"]) // .2 is the client's
        // web1 is not on "back": it does not see db.
        #expect(plan.names["/run/netns/web1"]?["db"] == nil)
    }

    @Test func theMeshBalancesOverIngressBackendsAndHostModeOnlyLocally() throws {
        let state = try cluster()
        let h1 = plan(state, node: "h1")
        #expect(h1.published.map(\.port) == [8080]) // db's host-mode port has no backend on h1
        let web = try #require(h1.published.first)
        #expect(web.protocol == .tcp && web.mode == .ingress)
        let ingress = try #require(state.ingressNetwork)
        let webIngress = state.endpoints.values.filter { $0.networkID == ingress.id && $0.serviceID == "web" }.map(\.address.address)
        #expect(Set(web.realServers.map(\.address)) == Set(webIngress))
        #expect(web.realServers.allSatisfy { $0.port == 80 })
        let h2 = plan(state, node: "h2")
        let db = try #require(h2.published.first { $0.service == "db" })
        #expect(db.mode == .host && db.port == 5432 && db.realServers.count == 1)
    }

    /// The VIP a published service has on ingress answers in the host's
    /// namespace (the mesh's table) and in the workloads on ingress, over
    /// the backends' ingress addresses; ingress adds no names to DNS.
    @Test func aPublishedServicesIngressVIPIsBalancedInTheHostAndInItsTasks() throws {
        var state = try cluster()
        let ingress = try #require(state.ingressNetwork)
        // A task only on ingress (its service only publishes a port).
        _ = try state.addEndpoint(id: "l1", network: "ing", node: "h1", namespacePath: "/run/netns/lonely", name: "lonely",
                                  requestedAddress: nil, vtep: try IPAddress(parsing: "192.0.2.11"), serviceID: "web")
        let web = try #require(state.services["web"])
        let ingressVIP = try #require(web.vip(on: ingress.id))
        #expect(state.services["db"]?.virtualIPs.isEmpty == true, "dnsrr with a host-mode port has no VIP at all")
        let backends = state.endpoints.values.filter { $0.networkID == ingress.id && $0.serviceID == "web" }.map(\.address.address)
            .sorted(by: BalancingPlan.order)
        let h1 = plan(state, node: "h1")
        #expect(h1.ingressVIPs.map(\.key) == [.address(ingressVIP, .tcp, port: 80)])
        #expect(h1.ingressVIPs.first?.realServers.map(\.address) == backends)
        #expect(h1.ingressVIPs.first?.realServers.allSatisfy { $0.port == 80 } == true)
        let web1 = try #require(h1.workloads["/run/netns/web1"])
        #expect(Set(web1.map(\.key)) == [.address(try #require(web.vip(on: "front")), .tcp, port: 80), .address(ingressVIP, .tcp, port: 80)])
        #expect(h1.workloads["/run/netns/lonely"]?.map(\.key) == [.address(ingressVIP, .tcp, port: 80)])
        #expect(h1.names["/run/netns/lonely"] == nil, "a workload only on ingress has no names to resolve")
        #expect(h1.names["/run/netns/web1"]?["lonely"] == nil, "a container only on ingress is no name on front")
        // The client, not on ingress, does not reach the ingress VIP.
        #expect(h1.workloads["/run/netns/client"]?.contains { $0.key == .address(ingressVIP, .tcp, port: 80) } == false)
    }

    @Test func aServiceWithoutPortsIsBalancedOnEveryPort() throws {
        let vip = try IPAddress(parsing: "10.60.0.9")
        let services = BalancingPlan.virtualServices(vip: vip, ports: [], backends: [try IPAddress(parsing: "10.60.0.3")])
        #expect(services.map(\.key) == [.address(vip, .tcp, port: 0), .address(vip, .udp, port: 0)])
        #expect(services.allSatisfy { $0.realServers.map(\.port) == [BalancingPlan.everyPort] })
        let twice = BalancingPlan.virtualServices(vip: vip, ports: [.init(targetPort: 80), .init(targetPort: 80, publishedPort: 8081)], backends: [])
        #expect(twice.map(\.key) == [.address(vip, .tcp, port: 80)])
    }

    @Test func aRemovedBackendLeavesThePlan() throws {
        var state = try cluster()
        state.endpoints["w2"] = nil
        state.endpoints["w2i"] = nil
        let plan = plan(state, node: "h1")
        #expect(plan.workloads["/run/netns/client"]?.first?.realServers.map(\.address.description) == ["10.50.0.3"])
        #expect(plan.names["/run/netns/client"]?["web"]?.first?.backends.map(\.description) == ["10.50.0.3"])
        #expect(plan.published.first?.realServers.count == 1)
    }
}

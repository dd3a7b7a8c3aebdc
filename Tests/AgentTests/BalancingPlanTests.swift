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

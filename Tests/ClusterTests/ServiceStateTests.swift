import Foundation
import Testing
import Addressing
@testable import Cluster

@Suite struct ServiceStateTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let vtep = try! IPAddress(parsing: "192.0.2.11")

    func stateWithNetwork() throws -> ClusterState {
        var state = ClusterState()
        _ = try state.createNetwork(.init(name: "front", subnet: "10.40.0.0/24"), id: "n1", now: now, hostRoutes: [])
        return state
    }

    @Test func vipComesFromTheNetworkAndEndpointsAvoidIt() throws {
        var state = try stateWithNetwork()
        let service = try state.createService(.init(name: "web", networks: [.init(target: "front")]), id: "s1", now: now)
        #expect(service.virtualIPs == [ServiceVIP(networkID: "n1", address: try IPPrefix(parsing: "10.40.0.2/24"))])
        #expect(service.endpointMode == .vip)
        let endpoint = try state.addEndpoint(id: "e1", network: "front", node: "h1", namespacePath: "/run/netns/w1", name: "w1",
                                             requestedAddress: nil, vtep: vtep, serviceID: "s1")
        #expect(endpoint.address.description == "10.40.0.3/24")
        #expect(endpoint.serviceID == "s1")
        // The VIP cannot be taken by an endpoint either.
        #expect(throws: ClusterError.invalidRequest("address 10.40.0.2 is already in use")) {
            try state.addEndpoint(id: "e2", network: "front", node: "h1", namespacePath: "/run/netns/w2", name: "w2",
                                  requestedAddress: "10.40.0.2", vtep: vtep)
        }
        #expect(throws: ClusterError.notFound("service nope not found")) {
            try state.addEndpoint(id: "e2", network: "front", node: "h1", namespacePath: "/run/netns/w2", name: "w2",
                                  requestedAddress: nil, vtep: vtep, serviceID: "nope")
        }
    }

    /// An update keeps the VIP of a network it keeps, allocates one on a
    /// new network, drops the one of a network it leaves, and checks its
    /// ports against the other services only.
    @Test func anUpdateKeepsVIPsOfKeptNetworksAndChecksPortsAgainstOthers() throws {
        var state = try stateWithNetwork()
        _ = try state.createNetwork(.init(name: "back", subnet: "10.41.0.0/24"), id: "n2", now: now, hostRoutes: [])
        _ = try state.ensureIngressNetwork(id: "ing", now: now, hostRoutes: [])
        let web = try state.createService(.init(name: "web", networks: [.init(target: "front")], ports: [.init(targetPort: 80, publishedPort: 8080)]),
                                          id: "s1", now: now)
        _ = try state.createService(.init(name: "other", ports: [.init(targetPort: 80, publishedPort: 9090)]), id: "s2", now: now)
        let updated = try state.updateService("web", .init(name: "web", networks: [.init(target: "front"), .init(target: "back")],
                                                           ports: [.init(targetPort: 80, publishedPort: 8080), .init(targetPort: 81)]),
                                              now: now.addingTimeInterval(1))
        #expect(updated.vip(on: "n1") == web.vip(on: "n1"))
        #expect(updated.vip(on: "n2") != nil)
        #expect(updated.ports.map(\.publishedPort) == [8080, PublishedPortAllocator.dynamicRange.lowerBound])
        #expect(updated.version == web.version + 1 && updated.created == web.created)
        let before = state
        #expect(throws: ClusterError.conflict("port 9090/tcp is already in use by service other")) {
            try state.updateService("web", .init(name: "web", networks: [.init(target: "back")], ports: [.init(targetPort: 80, publishedPort: 9090)]),
                                    now: now)
        }
        #expect(state == before, "a refused update changes nothing")
        let back = try state.updateService("web", .init(name: "web", networks: [.init(target: "back")]), now: now)
        #expect(back.vip(on: "n1") == nil && back.vip(on: "n2") == updated.vip(on: "n2") && back.ports.isEmpty)
    }

    /// A service published through the routing mesh has a VIP on ingress,
    /// listed first as Docker lists it; an update keeps it while the
    /// service stays published there, and drops it when it stops.
    @Test func aServicePublishedThroughTheMeshHasAnIngressVIPWhileItIs() throws {
        var state = try stateWithNetwork()
        let ingress = try state.ensureIngressNetwork(id: "ing", now: now, hostRoutes: [])
        let web = try state.createService(.init(name: "web", networks: [.init(target: "front")], ports: [.init(targetPort: 80, publishedPort: 8080)]),
                                          id: "s1", now: now)
        #expect(web.virtualIPs.map(\.networkID) == [ingress.id, "n1"])
        let ingressVIP = try #require(web.vip(on: ingress.id))
        #expect(ingress.subnet.contains(ingressVIP) && ingressVIP != ingress.gateway)
        // A task's ingress address never takes it.
        let task = try state.addEndpoint(id: "e1", network: "ingress", node: "h1", namespacePath: "/run/netns/t1", name: "t1",
                                         requestedAddress: nil, vtep: vtep, serviceID: "s1")
        #expect(task.address.address != ingressVIP)
        // No VIP where nothing goes through the mesh: a port not
        // published, a host-mode port, or dnsrr.
        let unnumbered = try state.createService(.init(name: "unnumbered", networks: [.init(target: "front")], ports: [.init(targetPort: 80)]), id: "s2", now: now)
        #expect(unnumbered.vip(on: ingress.id) != nil, "a port without a number is published from the dynamic range, as Docker does")
        let hostMode = try state.createService(.init(name: "hostmode", ports: [.init(targetPort: 80, publishedPort: 9000, publishMode: "host")]), id: "s3", now: now)
        #expect(hostMode.virtualIPs.isEmpty)
        let dnsrr = try state.createService(.init(name: "rr", endpointMode: "dnsrr", ports: [.init(targetPort: 80, publishedPort: 9001, publishMode: "host")]),
                                            id: "s4", now: now)
        #expect(dnsrr.virtualIPs.isEmpty)
        // Kept across an update that keeps publishing, even of other ports.
        let moved = try state.updateService("web", .init(name: "web", networks: [.init(target: "front")], ports: [.init(targetPort: 80, publishedPort: 8081)]),
                                            now: now)
        #expect(moved.vip(on: ingress.id) == ingressVIP && moved.vip(on: "n1") == web.vip(on: "n1"))
        // Dropped when the service stops publishing, and free again.
        let unpublished = try state.updateService("web", .init(name: "web", networks: [.init(target: "front")]), now: now)
        #expect(unpublished.virtualIPs.map(\.networkID) == ["n1"])
        #expect(!state.addressesInUse(on: ingress.id).contains(ingressVIP))
        _ = try state.removeService("unnumbered")
        #expect(state.addressesInUse(on: ingress.id) == [task.address.address])
    }

    @Test func aFullIngressNetworkRefusesAMeshServiceByName() throws {
        var state = ClusterState()
        _ = try state.createNetwork(.init(name: "ingress", subnet: "10.99.0.0/30", ingress: true), id: "ing", now: now, hostRoutes: [])
        _ = try state.addEndpoint(id: "e1", network: "ingress", node: "h1", namespacePath: "/run/netns/t1", name: "t1", requestedAddress: nil, vtep: vtep)
        let before = state
        #expect(throws: ClusterError.exhausted("no address left on the ingress network ingress (10.99.0.0/30) for the VIP of service web")) {
            try state.createService(.init(name: "web", ports: [.init(targetPort: 80, publishedPort: 8080)]), id: "s1", now: now)
        }
        #expect(state == before)
    }

    @Test func requestedVIPsAreChecked() throws {
        var state = try stateWithNetwork()
        let service = try state.createService(.init(name: "web", networks: [.init(target: "front", requestedVIP: "10.40.0.100")]), id: "s1", now: now)
        #expect(service.vip(on: "n1")?.description == "10.40.0.100")
        #expect(throws: ClusterError.invalidRequest("VIP for network front: address 10.99.0.1 is outside subnet 10.40.0.0/24")) {
            try state.createService(.init(name: "api", networks: [.init(target: "front", requestedVIP: "10.99.0.1")]), id: "s2", now: now)
        }
        #expect(throws: ClusterError.invalidRequest("VIP for network front: address 10.40.0.100 is already in use")) {
            try state.createService(.init(name: "api", networks: [.init(target: "front", requestedVIP: "10.40.0.100")]), id: "s2", now: now)
        }
        #expect(throws: ClusterError.invalidRequest("invalid VIP banana for network front: not an IPv4 address")) {
            try state.createService(.init(name: "api", networks: [.init(target: "front", requestedVIP: "banana")]), id: "s2", now: now)
        }
        #expect(state.services.count == 1)
    }

    @Test func badRequestsChangeNothing() throws {
        var state = try stateWithNetwork()
        let before = state
        #expect(throws: ClusterError.notFound("network nowhere not found")) {
            try state.createService(.init(name: "web", networks: [.init(target: "nowhere")]), id: "s1", now: now)
        }
        #expect(throws: ClusterError.invalidRequest("invalid service name \"-web\": use at most 63 letters, digits, '-' or '_', starting and ending with a letter or digit")) {
            try state.createService(.init(name: "-web", networks: [.init(target: "front")]), id: "s1", now: now)
        }
        #expect(throws: ClusterError.invalidRequest("invalid protocol sctp for port 80: use tcp or udp")) {
            try state.createService(.init(name: "web", networks: [.init(target: "front")], ports: [.init(protocol: "sctp", targetPort: 80)]), id: "s1", now: now)
        }
        #expect(throws: ClusterError.invalidRequest("invalid target port 70000: use 1-65535")) {
            try state.createService(.init(name: "web", networks: [.init(target: "front")], ports: [.init(targetPort: 70000)]), id: "s1", now: now)
        }
        #expect(throws: ClusterError.invalidRequest("invalid endpoint mode round: use vip or dnsrr")) {
            try state.createService(.init(name: "web", networks: [.init(target: "front")], endpointMode: "round"), id: "s1", now: now)
        }
        #expect(throws: ClusterError.invalidRequest("service web publishes a port, but there is no ingress network")) {
            try state.createService(.init(name: "web", networks: [.init(target: "front")], ports: [.init(targetPort: 80, publishedPort: 8080)]), id: "s1", now: now)
        }
        #expect(state == before)
    }

    @Test func publishedPortsAreUniqueAndAllocated() throws {
        var state = try stateWithNetwork()
        let ingress = try state.ensureIngressNetwork(id: "ing", now: now, hostRoutes: [])
        #expect(ingress.isIngress && ingress.name == "ingress")
        #expect(try state.ensureIngressNetwork(id: "other", now: now, hostRoutes: []).id == "ing")
        let web = try state.createService(.init(name: "web", networks: [.init(target: "front")],
                                                ports: [.init(targetPort: 80, publishedPort: 8080), .init(protocol: "udp", targetPort: 53)]), id: "s1", now: now)
        #expect(web.ports.map(\.publishedPort) == [8080, 30000])
        #expect(web.usesIngress && web.isPublished)
        // Another protocol on the same number is a different port.
        let dns = try state.createService(.init(name: "dns", networks: [.init(target: "front")], ports: [.init(protocol: "udp", targetPort: 53, publishedPort: 8080)]), id: "s2", now: now)
        #expect(dns.ports.first?.publishedPort == 8080)
        #expect(throws: ClusterError.conflict("port 8080/tcp is already in use by service web")) {
            try state.createService(.init(name: "api", networks: [.init(target: "front")], ports: [.init(targetPort: 81, publishedPort: 8080)]), id: "s3", now: now)
        }
        #expect(throws: ClusterError.conflict("service name web is already in use by service s1")) {
            try state.createService(.init(name: "web", networks: [.init(target: "front")]), id: "s3", now: now)
        }
        #expect(throws: ClusterError.invalidRequest("service api cannot be attached to the ingress network ingress directly: publish a port instead")) {
            try state.createService(.init(name: "api", networks: [.init(target: "ingress")]), id: "s3", now: now)
        }
        #expect(throws: ClusterError.invalidRequest("port 81/tcp is published in ingress mode, which dnsrr mode cannot use: publish it in host mode")) {
            try state.createService(.init(name: "api", networks: [.init(target: "front")], endpointMode: "dnsrr", ports: [.init(targetPort: 81)]), id: "s3", now: now)
        }
        let hostMode = try state.createService(.init(name: "api", networks: [.init(target: "front")], endpointMode: "dnsrr",
                                                     ports: [.init(targetPort: 81, publishedPort: 9000, publishMode: "host")]), id: "s3", now: now)
        #expect(hostMode.virtualIPs.isEmpty && !hostMode.usesIngress && hostMode.isPublished)
    }

    @Test func removingAServiceFreesItsNameAndUnlinksBackends() throws {
        var state = try stateWithNetwork()
        _ = try state.createService(.init(name: "web", networks: [.init(target: "front")]), id: "s1", now: now)
        _ = try state.addEndpoint(id: "e1", network: "front", node: "h1", namespacePath: "/run/netns/w1", name: "w1",
                                  requestedAddress: nil, vtep: vtep, serviceID: "s1")
        #expect(throws: ClusterError.forbidden("error while removing network: network front id n1 is in use by service web")) {
            try state.removeNetwork("front")
        }
        #expect(try state.removeService("web").id == "s1")
        #expect(state.endpoints["e1"]?.serviceID == nil)
        #expect(throws: ClusterError.notFound("service web not found")) { try state.service("web") }
        _ = try state.createService(.init(name: "web", networks: [.init(target: "front")]), id: "s2", now: now)
    }

    @Test func healthCheckPortsAreChecked() throws {
        var state = try stateWithNetwork()
        #expect(throws: ClusterError.invalidRequest("invalid com.swarmnet.health.tcp-port http: use a TCP port 1-65535")) {
            try state.createService(.init(name: "web", labels: [ServiceRecord.healthPortLabel: "http"], networks: [.init(target: "front")]), id: "s1", now: now)
        }
        let web = try state.createService(.init(name: "web", labels: [ServiceRecord.healthPortLabel: "8080"], networks: [.init(target: "front")]), id: "s1", now: now)
        #expect(web.healthPort == 8080)
    }

    @Test func stateFilesFromBeforeServicesStillLoad() throws {
        let old = #"{"endpoints":{},"networks":{}}"#
        let state = try JSONDecoder().decode(ClusterState.self, from: Data(old.utf8))
        #expect(state.services.isEmpty)
    }
}

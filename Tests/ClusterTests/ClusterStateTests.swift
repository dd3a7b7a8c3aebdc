import Foundation
import Testing
import Addressing
@testable import Cluster

@Suite struct ClusterStateTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func defaultPoolHandsOutConsecutiveSlash24sAvoidingHostRoutes() throws {
        var state = ClusterState()
        let hostRoutes = [try IPPrefix(parsing: "10.0.0.0/24"), try IPPrefix(parsing: "0.0.0.0/0")]
        let a = try state.createNetwork(.init(name: "a"), id: "1", now: now, hostRoutes: hostRoutes)
        let b = try state.createNetwork(.init(name: "b"), id: "2", now: now, hostRoutes: hostRoutes)
        #expect(a.subnet.description == "10.0.1.0/24")
        #expect(a.gateway.description == "10.0.1.1")
        #expect(b.subnet.description == "10.0.2.0/24")
        #expect(a.vni == 4096 && b.vni == 4097)
        #expect(a.options[ClusterState.vniOption] == "4096")
    }

    @Test func userSubnetsAreCheckedForOverlapAndForm() throws {
        var state = ClusterState()
        _ = try state.createNetwork(.init(name: "a", subnet: "10.10.0.0/16"), id: "1", now: now, hostRoutes: [])
        #expect(throws: ClusterError.overlap("subnet 10.10.5.0/24 overlaps network a (10.10.0.0/16)")) {
            try state.createNetwork(.init(name: "b", subnet: "10.10.5.0/24"), id: "2", now: now, hostRoutes: [])
        }
        #expect(throws: ClusterError.overlap("subnet 192.0.2.0/24 overlaps the host route to 192.0.2.0/24")) {
            try state.createNetwork(.init(name: "b", subnet: "192.0.2.0/24"), id: "2", now: now, hostRoutes: [try IPPrefix(parsing: "192.0.2.0/24")])
        }
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "b", subnet: "10.20.0.1/24"), id: "2", now: now, hostRoutes: []) }
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "b", subnet: "nonsense"), id: "2", now: now, hostRoutes: []) }
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "b", subnet: "10.20.0.0/24", gateway: "10.21.0.1"), id: "2", now: now, hostRoutes: []) }
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "b", subnet: "10.20.0.0/24", gateway: "10.20.0.255"), id: "2", now: now, hostRoutes: []) }
        let c = try state.createNetwork(.init(name: "c", subnet: "10.20.0.0/24", gateway: "10.20.0.254"), id: "3", now: now, hostRoutes: [])
        #expect(c.gateway.description == "10.20.0.254")
        #expect(state.networks.count == 2, "failed requests change nothing")
    }

    @Test func namesAreUniqueAndWellFormed() throws {
        var state = ClusterState()
        _ = try state.createNetwork(.init(name: "web"), id: "1", now: now, hostRoutes: [])
        #expect(throws: ClusterError.nameInUse("web")) { try state.createNetwork(.init(name: "web"), id: "2", now: now, hostRoutes: []) }
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "-bad"), id: "2", now: now, hostRoutes: []) }
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "a/b"), id: "2", now: now, hostRoutes: []) }
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "x", driver: "bridge"), id: "2", now: now, hostRoutes: []) }
    }

    @Test func lookupByIDNameAndUniquePrefix() throws {
        var state = ClusterState()
        _ = try state.createNetwork(.init(name: "web"), id: "abc123", now: now, hostRoutes: [])
        _ = try state.createNetwork(.init(name: "db"), id: "abd456", now: now, hostRoutes: [])
        #expect(try state.network("abc123").name == "web")
        #expect(try state.network("db").id == "abd456")
        #expect(try state.network("abc").name == "web")
        #expect(throws: ClusterError.self) { try state.network("ab") }
        #expect(throws: ClusterError.notFound("network zzz not found")) { try state.network("zzz") }
    }

    @Test func vnisAreUniqueAndInRange() throws {
        var state = ClusterState()
        _ = try state.createNetwork(.init(name: "a", vni: 5000), id: "1", now: now, hostRoutes: [])
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "b", vni: 5000), id: "2", now: now, hostRoutes: []) }
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "b", vni: 100), id: "2", now: now, hostRoutes: []) }
        #expect(throws: ClusterError.self) { try state.createNetwork(.init(name: "b", vni: 1 << 24), id: "2", now: now, hostRoutes: []) }
    }

    @Test func endpointsGetFreeAddressesAndBlockNetworkRemoval() throws {
        var state = ClusterState()
        let network = try state.createNetwork(.init(name: "web", subnet: "10.30.0.0/29"), id: "n1", now: now, hostRoutes: [])
        let vtep = try IPAddress(parsing: "192.0.2.11")
        let first = try state.addEndpoint(id: "e1", network: "web", node: "h1", namespacePath: "/run/netns/w1", name: "w1", requestedAddress: nil, vtep: vtep)
        #expect(first.address.description == "10.30.0.2/29")
        #expect(first.mac.description == "02:42:0a:1e:00:02")
        let second = try state.addEndpoint(id: "e2", network: "web", node: "h1", namespacePath: "/run/netns/w2", name: "w2", requestedAddress: "10.30.0.6", vtep: vtep)
        #expect(second.address.description == "10.30.0.6/29")
        #expect(throws: ClusterError.self) {
            try state.addEndpoint(id: "e3", network: "web", node: "h1", namespacePath: "/run/netns/w3", name: "w3", requestedAddress: "10.30.0.6", vtep: vtep)
        }
        #expect(throws: ClusterError.self) {
            try state.addEndpoint(id: "e3", network: "web", node: "h1", namespacePath: "/run/netns/w3", name: "w3", requestedAddress: "10.30.0.7", vtep: vtep)
        }
        #expect(throws: ClusterError.self) {
            try state.addEndpoint(id: "e3", network: "web", node: "h1", namespacePath: "/run/netns/w1", name: "w1", requestedAddress: nil, vtep: vtep)
        }
        #expect(throws: ClusterError.self) { try state.removeNetwork("web") }
        state.endpoints = [:]
        #expect(try state.removeNetwork(network.id).name == "web")
        #expect(state.networks.isEmpty)
    }

    @Test func stateFilesRoundTripAtomically() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swarmnet-state-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var state = ClusterState()
        _ = try state.createNetwork(.init(name: "web", labels: ["tier": "front"]), id: "n1", now: now, hostRoutes: [])
        let file = StateFile(directory: directory)
        try file.save(state)
        #expect(try file.load() == state)
        #expect(!FileManager.default.fileExists(atPath: file.path + ".tmp"))
    }
}

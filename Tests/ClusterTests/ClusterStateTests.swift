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

    @Test(arguments: [
        ("0.0.0.0/8", "it overlaps 0.0.0.0/8 (\"this network\"), which no network can use"),
        ("0.0.0.0/1", "it overlaps 0.0.0.0/8 (\"this network\"), which no network can use"),
        ("127.0.0.0/8", "it overlaps 127.0.0.0/8 (loopback), which no network can use"),
        ("127.5.0.0/24", "it overlaps 127.0.0.0/8 (loopback), which no network can use"),
        ("224.0.0.0/4", "it overlaps 224.0.0.0/4 (multicast), which no network can use"),
        ("240.1.0.0/16", "it overlaps 240.0.0.0/4 (reserved), which no network can use"),
        ("10.0.0.0/8", "it would take the whole default address pool 10.0.0.0/8, leaving no subnet for networks created without one"),
        ("8.0.0.0/5", "it would take the whole default address pool 10.0.0.0/8, leaving no subnet for networks created without one"),
    ])
    func subnetsNoNetworkCanUseAreRefused(subnet: String, why: String) throws {
        var state = ClusterState()
        #expect(throws: ClusterError.invalidRequest("invalid subnet \(subnet): \(why)")) {
            try state.createNetwork(.init(name: "bad", subnet: subnet), id: "1", now: now, hostRoutes: [])
        }
        #expect(state.networks.isEmpty)
        // A part of the pool is fine, and the pool still serves the rest.
        _ = try state.createNetwork(.init(name: "good", subnet: "10.1.0.0/16"), id: "2", now: now, hostRoutes: [])
        #expect(try state.createNetwork(.init(name: "pooled"), id: "3", now: now, hostRoutes: []).subnet.description == "10.0.0.0/24")
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

    /// The allocator's walk over taken ranges gives what checking every
    /// candidate against every range gives (random taken sets, nested and
    /// overlapping ranges, host routes outside the pool, a full pool).
    @Test func subnetAllocationMatchesTheExhaustiveSearch() throws {
        let allocator = SubnetAllocator(pool: try IPPrefix(parsing: "10.0.0.0/20"), size: 24)
        var seed: UInt64 = 42
        func next(_ bound: UInt64) -> UInt64 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            return (seed >> 33) % bound
        }
        for trial in 0..<300 {
            var taken: [IPPrefix] = []
            for _ in 0..<next(trial % 10 == 0 ? 40 : 8) {
                let length = Int(18 + next(13))
                let address = UInt32(0x0A00_0000) &+ UInt32(next(1 << 13) << 8) &+ UInt32(next(256))
                taken.append(try IPPrefix(address: .v4(IPv4Address(address)), length: length).network)
            }
            var expected: IPPrefix?
            for index in 0..<16 {
                let candidate = try IPPrefix(address: .v4(IPv4Address(0x0A00_0000 + UInt32(index) << 8)), length: 24)
                if !taken.contains(where: { $0.overlaps(candidate) }) { expected = candidate; break }
            }
            let got = try? allocator.allocate(avoiding: taken)
            #expect(got == expected, "taken \(taken)")
        }
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
        #expect(try StateFile(directory: directory).load() == state)
        #expect(!FileManager.default.fileExists(atPath: file.path + ".tmp"))
    }

    /// A change appends what it changed; the snapshot is rewritten only
    /// when the journal grows past the state; a change torn by a crash is
    /// not replayed.
    @Test func changesAreJournalledAndCompacted() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swarmnet-journal-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = StateFile(directory: directory, compactionFloor: 20)
        var state = try file.load()
        #expect(state == ClusterState())
        var snapshots = 0
        var lastSnapshot = Date.distantPast
        for index in 0..<30 {
            _ = try state.createNetwork(.init(name: "n\(index)"), id: "id\(index)", now: now, hostRoutes: [])
            if index % 3 == 0 { _ = try state.removeNetwork("n\(index)") }
            try file.save(state)
            // Every save is on disk: a new reader sees exactly it.
            #expect(try StateFile(directory: directory).load() == state)
            let modified = (try? FileManager.default.attributesOfItem(atPath: file.path)[.modificationDate] as? Date) ?? .distantPast
            if modified != lastSnapshot { snapshots += 1; lastSnapshot = modified }
            // The journal never holds more lines than the floor or the state's records.
            let lines = (FileManager.default.contents(atPath: file.journalPath) ?? Data()).split(separator: UInt8(ascii: "\n")).count
            #expect(lines <= max(20, state.networks.count))
        }
        #expect(snapshots >= 1 && snapshots < 30, "snapshots are written now and then, not per change: \(snapshots)")

        // A save that names the records it touched journals just those.
        _ = try state.createNetwork(.init(name: "named"), id: "named-id", now: now, hostRoutes: [])
        try file.save(state, touching: [.network("named-id")])
        #expect(try StateFile(directory: directory).load() == state)
        _ = try state.removeNetwork("named")
        try file.save(state, touching: [.network("named-id")])
        #expect(try StateFile(directory: directory).load() == state)

        // A torn change: its lines without the commit line are not replayed.
        let before = try StateFile(directory: directory).load()
        let handle = try #require(FileHandle(forWritingAtPath: file.journalPath))
        handle.seekToEndOfFile()
        handle.write(Data(#"{"deleted":"id1","kind":"network"}"#.utf8 + [UInt8(ascii: "\n")]))
        handle.write(Data(#"{"network":{"id":"torn""#.utf8))
        try handle.close()
        #expect(try StateFile(directory: directory).load() == before)
    }
}

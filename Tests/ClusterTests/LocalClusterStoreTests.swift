import Foundation
import Synchronization
import Testing
import Addressing
@testable import Cluster

/// The local cluster store (a node in no swarm): writes are one
/// transaction each, on disk before they are announced; the watcher gets
/// all definitions, then each change from its base; a refused write
/// changes and announces nothing; the store outlives a restart and starts
/// once from an earlier daemon's state.
@Suite struct LocalClusterStoreTests {
    let vtep = try! IPAddress(parsing: "192.0.2.11")

    /// What a watcher was handed, in order.
    final class Watched: Sendable {
        private let updates = Mutex<[DefinitionsUpdate]>([])
        var all: [DefinitionsUpdate] { updates.withLock { $0 } }
        func record(_ update: DefinitionsUpdate) -> Bool {
            updates.withLock { $0.append(update) }
            return true
        }
    }

    func directory() -> String {
        NSTemporaryDirectory() + "local-store-\(UUID().uuidString)"
    }

    func allocation(_ id: String, network: String) -> AllocationRequest {
        AllocationRequest(endpointID: id, network: network, node: "node1", nodeName: "h1", namespacePath: "/run/netns/\(id)", name: id,
                          requestedAddress: nil, vtep: vtep, serviceID: nil, isIngressGateway: nil)
    }

    @Test func writesAreAnnouncedAsChangesFromTheirBaseAndRefusalsChangeNothing() async throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try LocalClusterStore(directory: path, seed: ClusterState())
        let watched = Watched()
        try await store.watch(keeping: [], of: "node1") { watched.record($0) }
        guard case .all(let first) = watched.all.first else { Issue.record("first: \(watched.all)"); return }
        #expect(first.networks.isEmpty)

        let network = try await store.createNetwork(.init(name: "front", subnet: "10.40.0.0/24"), hostRoutes: [])
        guard case .changes(let base, let revision, let networks, _) = watched.all.last else { Issue.record("\(watched.all)"); return }
        #expect(base == first.revision && revision == first.revision + 1)
        #expect(networks[network.id] == .some(network))

        // A name clash is refused before anything is written or announced.
        await #expect(throws: ClusterError.nameInUse("front")) {
            try await store.createNetwork(.init(name: "front"), hostRoutes: [])
        }
        #expect(watched.all.count == 2)

        // Addresses are allocations, not definitions: the revision stays.
        let endpoint = try await store.allocate(allocation("e1", network: network.id))
        #expect(endpoint.address.description == "10.40.0.2/24")
        #expect(watched.all.count == 2)
        // A network with an allocation cannot go; once released, it can.
        await #expect(throws: ClusterError.self) { try await store.removeNetwork("front") }
        try await store.release(endpointID: "e1", node: "node1")
        _ = try await store.removeNetwork("front")
        guard case .changes(let removedBase, _, let removed, _) = watched.all.last else { Issue.record("\(watched.all)"); return }
        #expect(removedBase == revision)
        #expect(removed.keys.contains(network.id) && removed[network.id] == .some(nil))
    }

    @Test func theStoreOutlivesARestartStartsOnceFromAnEarlierStateAndResetForgetsEverything() async throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        // An earlier daemon's state seeds a store that does not exist yet.
        var earlier = ClusterState()
        _ = try earlier.createNetwork(.init(name: "old", subnet: "10.41.0.0/24"), id: "n-old", now: Date(), hostRoutes: [])
        var store = try LocalClusterStore(directory: path, seed: earlier)
        #expect(await store.snapshot().networks.keys.sorted() == ["n-old"])
        _ = try await store.createNetwork(.init(name: "new", subnet: "10.42.0.0/24"), hostRoutes: [])

        // Reopened: its own file, not the seed.
        store = try LocalClusterStore(directory: path, seed: ClusterState())
        #expect(Set(await store.snapshot().networks.values.map(\.name)) == ["old", "new"])

        // Entering a swarm empties it, and the watcher is told each network went.
        let watched = Watched()
        try await store.watch(keeping: [], of: "node1") { watched.record($0) }
        try await store.reset()
        #expect(await store.snapshot() == ClusterState())
        guard case .changes(_, _, let networks, _) = watched.all.last else { Issue.record("\(watched.all)"); return }
        #expect(networks.count == 2 && networks.values.allSatisfy { $0 == nil })
        store = try LocalClusterStore(directory: path, seed: earlier)
        #expect(await store.snapshot() == ClusterState(), "reset is on disk")
    }

    @Test func aServiceAndItsIngressNetworkAreOneWriteAndItsRemovalFreesItsBackends() async throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try LocalClusterStore(directory: path, seed: ClusterState())
        let watched = Watched()
        try await store.watch(keeping: [], of: "node1") { watched.record($0) }
        let network = try await store.createNetwork(.init(name: "front", subnet: "10.43.0.0/24"), hostRoutes: [])
        let (service, ingress) = try await store.createService(
            .init(name: "web", networks: [.init(target: "front")], ports: [.init(targetPort: 80, publishedPort: 8080)]),
            hostRoutes: { [] })
        #expect(ingress != nil)
        guard case .changes(_, _, let networks, let services) = watched.all.last else { Issue.record("\(watched.all)"); return }
        #expect(networks.keys.contains(ingress!.id) && services[service.id] == .some(service))
        var request = allocation("b1", network: network.id)
        request.serviceID = service.id
        _ = try await store.allocate(request)
        _ = try await store.removeService("web")
        #expect(await store.snapshot().endpoints["b1"]?.serviceID == nil)
        #expect(await store.snapshot().services.isEmpty)
    }

    /// A crash between the store's write and the agent's leaves an
    /// allocation no endpoint holds: the next watch frees it, and only it.
    @Test func allocationsTheAgentNeverRecordedAreFreedWhenItWatchesAgain() async throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        var store = try LocalClusterStore(directory: path, seed: ClusterState())
        let network = try await store.createNetwork(.init(name: "front", subnet: "10.44.0.0/24"), hostRoutes: [])
        _ = try await store.allocate(allocation("kept", network: network.id))
        _ = try await store.allocate(allocation("orphan", network: network.id))
        var other = allocation("elsewhere", network: network.id)
        other.node = "node2"
        _ = try await store.allocate(other)
        let kept = try #require(await store.snapshot().endpoints["kept"])
        store = try LocalClusterStore(directory: path, seed: ClusterState())
        try await store.watch(keeping: [kept], of: "node1") { _ in true }
        #expect(await store.snapshot().endpoints.keys.sorted() == ["elsewhere", "kept"])
        store = try LocalClusterStore(directory: path, seed: ClusterState())
        #expect(await store.snapshot().endpoints.keys.sorted() == ["elsewhere", "kept"], "freed on disk")
    }

    /// A store that lost an allocation (its file damaged) takes it back
    /// from the agent's endpoint, at the endpoint's own address, so the
    /// next attach is not given an address a workload still has; one whose
    /// address another holds by then is refused and named.
    @Test func endpointsTheStoreLostAreAllocatedAgainAtTheirOwnAddress() async throws {
        let path = directory()
        defer { try? FileManager.default.removeItem(atPath: path) }
        var store = try LocalClusterStore(directory: path, seed: ClusterState())
        let network = try await store.createNetwork(.init(name: "front", subnet: "10.45.0.0/24"), hostRoutes: [])
        let first = try await store.allocate(allocation("e1", network: network.id))
        // The store forgets e1 (released here, as a lost file would).
        try await store.release(endpointID: "e1", node: "node1")
        store = try LocalClusterStore(directory: path, seed: ClusterState())
        try await store.watch(keeping: [first], of: "node1") { _ in true }
        #expect(await store.snapshot().endpoints["e1"]?.address == first.address)
        let next = try await store.allocate(allocation("e2", network: network.id))
        #expect(next.address != first.address, "the next attach gets another address")

        // Its address taken meanwhile: refused, and named.
        try await store.release(endpointID: "e1", node: "node1")
        var thief = allocation("e3", network: network.id)
        thief.node = "node2"
        thief.requestedAddress = first.address.address.description
        _ = try await store.allocate(thief)
        await #expect(throws: ClusterError.self) {
            try await store.watch(keeping: [first, next], of: "node1") { _ in true }
        }
        #expect(await store.snapshot().endpoints["e1"] == nil)
    }
}

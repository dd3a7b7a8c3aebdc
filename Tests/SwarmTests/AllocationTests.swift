import Addressing
import Cluster
import Foundation
import ReplicatedStore
import Testing
@testable import Swarm

/// The pure half of the allocations in Raft: the rules' results become
/// store operations record by record, and a node's requests are kept to
/// its own endpoints.
@Suite struct SwarmAllocationTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let vtep = try! IPAddress(parsing: "192.0.2.11")

    func request(_ id: String, node: String, path: String) -> AllocationRequest {
        AllocationRequest(endpointID: id, network: "blue", node: node, nodeName: node, namespacePath: path, name: id,
                          requestedAddress: nil, vtep: vtep, serviceID: nil, isIngressGateway: nil)
    }

    @Test func aChangeBecomesOneOperationPerRecordItTouched() throws {
        var before = ClusterState()
        _ = try before.createNetwork(.init(name: "blue", subnet: "10.79.0.0/24"), id: "n1", now: now, hostRoutes: [])
        _ = try before.addEndpointRecord(request("e1", node: "a", path: "/run/netns/a"))
        _ = try before.addEndpointRecord(request("e2", node: "b", path: "/run/netns/b"))
        var after = before
        _ = try after.createNetwork(.init(name: "green", subnet: "10.79.1.0/24"), id: "n2", now: now, hostRoutes: [])
        try after.releaseEndpoint("e1", node: "a")
        after.endpoints["e2"]?.hostInterface = "vethX"

        let operations = SwarmStore.operations(from: before, to: after)
        #expect(operations.count == 3, "\(operations)")
        #expect(operations.contains { if case .create(NetworkRecord.collection, "n2", _) = $0 { true } else { false } })
        #expect(operations.contains { if case .update(EndpointRecord.collection, "e2", _, nil) = $0 { true } else { false } })
        #expect(operations.contains { if case .delete(EndpointRecord.collection, "e1", nil) = $0 { true } else { false } })
        #expect(SwarmStore.operations(from: after, to: after).isEmpty)
    }

    @Test func endpointsAreAllocatedOnceAndReleasedOnlyByTheirNode() throws {
        var state = ClusterState()
        _ = try state.createNetwork(.init(name: "blue", subnet: "10.79.0.0/24"), id: "n1", now: now, hostRoutes: [])
        let first = try state.addEndpointRecord(request("e1", node: "a", path: "/run/netns/a"))
        // A retried request (its answer was lost) gets the same address.
        #expect(try state.addEndpointRecord(request("e1", node: "a", path: "/run/netns/a")) == first)
        #expect(throws: ClusterError.self) { try state.addEndpointRecord(request("e1", node: "b", path: "/run/netns/b")) }
        let second = try state.addEndpointRecord(request("e2", node: "b", path: "/run/netns/b"))
        #expect(second.address != first.address)
        #expect(throws: ClusterError.forbidden("endpoint e1 belongs to node a, not to node b")) { try state.releaseEndpoint("e1", node: "b") }
        try state.releaseEndpoint("gone", node: "b") // a retried release
        #expect(state.releaseEndpoints(ofNode: "a") == 1)
        #expect(state.endpoints.keys.sorted() == ["e2"])
        #expect(state.definitions(revision: 7) == ClusterDefinitions(revision: 7, networks: [state.networks["n1"]!], services: []))
    }
}

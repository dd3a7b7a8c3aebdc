import Addressing
import FoundationEssentials
import Glibc

/// The cluster store of a node in no swarm: the same rules as the swarm's
/// managers run over Raft (`ClusterState`), over a state file of its own
/// (`STATE/local-store/`). It is the local implementation of `ClusterStore`:
/// the API's handlers write here, one transaction per request, and the node
/// agent takes the definitions this store hands it (`watch`), exactly as it
/// takes the managers' in a swarm. Endpoint records here are allocations
/// (which addresses are taken); the agent keeps its own copy of its
/// endpoints, as it does in a swarm.
public actor LocalClusterStore: ClusterStore {
    private let file: StateFile
    private var state: ClusterState
    /// Moves with every change of a definition (network, service), so the
    /// agent can tell a change from one it already has.
    private var revision: UInt64 = 1
    private var watcher: (@Sendable (DefinitionsUpdate) async -> Bool)?

    /// Opens the store in `directory`. A store that does not exist yet
    /// starts from `seed`: what a daemon of an earlier version kept in its
    /// own state file, where networks, services and allocations then lived.
    public init(directory: String, seed: @autoclosure () -> ClusterState) throws {
        // Written once the seed is on disk: a store cut short while being
        // seeded is seeded again.
        let marker = directory + "/seeded"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        file = StateFile(directory: directory)
        if FileManager.default.fileExists(atPath: marker) {
            state = try file.load()
        } else {
            state = seed()
            _ = try? file.load() // what a cut-short seeding wrote, so the save below replaces it
            try file.save(state)
            guard FileManager.default.createFile(atPath: marker, contents: Data()) else {
                throw StateFileError(path: marker, errno: errno)
            }
        }
    }

    /// Calls `watcher` with every change of the definitions from now on,
    /// after handing it all of them. A watcher that cannot take a change
    /// (it is not at the change's base) answers false, and gets them all.
    ///
    /// `endpoints` are the endpoints `node`'s agent holds, and the store's
    /// allocations of that node are made to match them first:
    /// - an allocation no endpoint holds is freed: a crash between this
    ///   store's write and the agent's left it (allocated, never
    ///   attached), and it would keep the address, and the namespace's
    ///   place on the network, taken for good;
    /// - an endpoint on one of this store's networks that the store lacks
    ///   (its file lost or damaged) is allocated again at its own address,
    ///   so no later attach is given an address a workload still has; one
    ///   whose address is taken is left out, and named in the error.
    public func watch(keeping endpoints: [EndpointRecord], of node: String,
                      _ watcher: @escaping @Sendable (DefinitionsUpdate) async -> Bool) async throws {
        // A reconciliation that cannot be saved is reported after the
        // watcher is in place: the agent must have the definitions all the same.
        var failure: Error?
        let kept = Set(endpoints.map(\.id))
        var next = state
        var touched: [RecordReference] = []
        for record in state.endpoints.values where record.node == node && !kept.contains(record.id) {
            next.endpoints[record.id] = nil
            touched.append(.endpoint(record.id))
        }
        var refused: [String] = []
        // Endpoints on networks this store does not hold (a swarm's, kept
        // while a workload here still uses them) are not its to allocate.
        for record in endpoints where state.endpoints[record.id] == nil && next.networks[record.networkID] != nil {
            let taken = next.endpoints.values.contains { $0.networkID == record.networkID && $0.address.address == record.address.address }
            if taken {
                refused.append("\(record.name) (\(record.address))")
                continue
            }
            next.endpoints[record.id] = record
            touched.append(.endpoint(record.id))
        }
        if !touched.isEmpty {
            do { try commit(next, touching: touched, definitionsChanged: false) } catch { failure = error }
        }
        if failure == nil, !refused.isEmpty {
            failure = ClusterError.conflict("the local store cannot take back endpoints it had lost: \(refused.sorted().joined(separator: ", "))")
        }
        self.watcher = watcher
        _ = await watcher(.all(state.definitions(revision: revision)))
        if let failure { throw failure }
    }

    /// Everything the store holds (what `swarm init` carries into the new
    /// swarm's Raft store).
    public func snapshot() -> ClusterState { state }

    /// Forgets everything: the node entered a swarm, whose store holds it
    /// from now on (and leaving the swarm does not bring it back, as
    /// Docker's swarm-scoped networks go with the swarm).
    public func reset() async throws {
        let gone = state
        try commit(ClusterState(), touching: nil)
        var networks: [String: NetworkRecord?] = [:]
        for id in gone.networks.keys { networks[id] = .some(nil) }
        var services: [String: ServiceRecord?] = [:]
        for id in gone.services.keys { services[id] = .some(nil) }
        await announce(networks: networks, services: services)
    }

    // MARK: - ClusterStore

    public func createNetwork(_ request: ClusterState.NetworkRequest, hostRoutes: [IPPrefix]) async throws -> NetworkRecord {
        var next = state
        let record = try next.createNetwork(request, id: Identifier.make(), now: Date(), hostRoutes: hostRoutes)
        try commit(next, touching: [.network(record.id)])
        await announce(networks: [record.id: record])
        return record
    }

    public func removeNetwork(_ reference: String) async throws -> NetworkRecord {
        var next = state
        let record = try next.removeNetwork(reference)
        try commit(next, touching: [.network(record.id)])
        let removed: [String: NetworkRecord?] = [record.id: nil]
        await announce(networks: removed)
        return record
    }

    // Addresses change in place (the rules refuse before they change
    // anything, and a failed save is undone): a copy of the state per
    // attach made each one cost every endpoint held.

    public func allocate(_ request: AllocationRequest) async throws -> EndpointRecord {
        let before = state.endpoints[request.endpointID]
        let record = try state.addEndpointRecord(request)
        do { try file.save(state, touching: [.endpoint(record.id)]) } catch {
            state.endpoints[record.id] = before
            throw error
        }
        return record
    }

    public func release(endpointID: String, node: String) async throws {
        guard let before = state.endpoints[endpointID] else { return }
        try state.releaseEndpoint(endpointID, node: node)
        do { try file.save(state, touching: [.endpoint(endpointID)]) } catch {
            state.endpoints[endpointID] = before
            throw error
        }
    }

    /// Nothing to wait for: every write here is handed to the watcher
    /// before it returns.
    public func synchronizeDefinitions() async {}

    // MARK: - Network-only services (a node in no swarm)

    /// Validates and allocates a service's network side (VIPs, published
    /// ports, and the ingress network with the first published port), in
    /// one transaction.
    public func createService(_ request: ServiceRequest, hostRoutes: @Sendable () async throws -> [IPPrefix]) async throws
        -> (service: ServiceRecord, ingressCreated: NetworkRecord?)
    {
        let routes = !request.ports.isEmpty && state.ingressNetwork == nil ? try await hostRoutes() : nil
        var next = state
        var ingressCreated: NetworkRecord?
        if let routes, next.ingressNetwork == nil {
            ingressCreated = try next.ensureIngressNetwork(id: Identifier.make(), now: Date(), hostRoutes: routes)
        }
        let record = try next.createService(request, id: Identifier.make(), now: Date())
        var touched: [RecordReference] = [.service(record.id)]
        var networks: [String: NetworkRecord?] = [:]
        if let ingressCreated {
            touched.append(.network(ingressCreated.id))
            networks[ingressCreated.id] = ingressCreated
        }
        try commit(next, touching: touched)
        await announce(networks: networks, services: [record.id: record])
        return (record, ingressCreated)
    }

    public func removeService(_ reference: String) async throws -> ServiceRecord {
        var next = state
        let record = try next.removeService(reference)
        // Its backends' allocations are no one's backends any more.
        let backends = state.endpoints.values.filter { $0.serviceID == record.id }.map { RecordReference.endpoint($0.id) }
        try commit(next, touching: [.service(record.id)] + backends)
        let removed: [String: ServiceRecord?] = [record.id: nil]
        await announce(services: removed)
        return record
    }

    // MARK: - Writing

    /// Makes `next` the state, on disk first; a change of definitions
    /// moves the revision.
    private func commit(_ next: ClusterState, touching records: [RecordReference]?, definitionsChanged: Bool = true) throws {
        try file.save(next, touching: records)
        state = next
        if definitionsChanged { revision += 1 }
    }

    /// Hands the watcher what the last change of definitions changed
    /// (`commit` moved the revision by one).
    private func announce(networks: [String: NetworkRecord?] = [:], services: [String: ServiceRecord?] = [:]) async {
        guard let watcher else { return }
        if await !watcher(.changes(base: revision - 1, revision: revision, networks: networks, services: services)) {
            _ = await watcher(.all(state.definitions(revision: revision)))
        }
    }
}

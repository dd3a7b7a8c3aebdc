import Addressing
import Cluster
import Control
import DockerAPI
import FoundationEssentials
import NIOHTTP1
import ReplicatedStore

/// The cluster's networks, endpoint addresses and the network side of
/// services (VIPs, published ports, the ingress network), held in Raft.
///
/// Any manager allocates: it reads the allocations from its replica, runs
/// `ClusterState`'s pure rules, and writes the difference as one
/// transaction guarded by the allocation revision, so two managers
/// allocating at once cannot hand out the same address (the second write
/// fails its version check and is computed again). Workers ask a manager
/// over their mutual-TLS session. Nothing depends on the node that created
/// a network being alive.
extension SwarmRuntime {
    /// Runs `body` on the cluster's allocations and writes what it changed,
    /// with `extra` operations in the same transaction; retried while other
    /// managers' allocations get in between. `touching`, where the caller
    /// knows them, names every record the change can have touched from its
    /// result: only those are compared (see `SwarmStore.operations`).
    func mutateCluster<T: Sendable>(
        touching: ((T) -> [RecordReference])? = nil,
        _ body: (inout ClusterState) throws -> (result: T, extra: [StoreOperation])
    ) async throws(ControlError) -> T {
        for attempt in 0..<12 {
            let store = try await currentStore()
            let (current, revision) = clusterState(store)
            var next = current
            let outcome: (result: T, extra: [StoreOperation])
            do { outcome = try body(&next) } catch let error as ClusterError { throw ControlError(error) } catch let error as ControlError {
                throw error
            } catch {
                throw ControlError(.invalidArgument, "\(error)")
            }
            let operations = SwarmStore.operations(from: current, to: next, touching: touching?(outcome.result)) + outcome.extra
            guard !operations.isEmpty else { return outcome.result }
            let bump: StoreOperation = revision.map {
                .update(collection: AllocationRevision.collection, key: AllocationRevision.key, value: AllocationRevision.value(),
                        expectedVersion: $0.version)
            } ?? .create(collection: AllocationRevision.collection, key: AllocationRevision.key, value: AllocationRevision.value())
            do {
                try await store.write(.transaction([bump] + operations))
                await publishDefinitionsIfChanged()
                return outcome.result
            } catch let error where error == .outOfSequence || (revision == nil && error.kind == .conflict) {
                // Another manager allocated meanwhile: read again and redo.
                try? await Task.sleep(for: .milliseconds(2 * (attempt + 1)))
            }
        }
        throw ControlError(.unavailable, "the cluster's allocations kept changing while this change was computed; try again")
    }

    /// The allocations as this manager's replica holds them, with the
    /// revision that guards them; the records written since the last
    /// revision are decoded, the others kept.
    func clusterState(_ store: SwarmStore) -> (ClusterState, StoredObject?) {
        let revision = store.allocationRevision()
        let index = revision?.modifyIndex ?? 0
        if revision == nil || decodedAllocations.revision != index {
            decodedAllocations.refresh(from: store, revision: index)
        }
        return (decodedAllocations.state, revision)
    }

    /// The definitions the data plane needs, at the store's revision.
    func definitions(_ store: SwarmStore) -> ClusterDefinitions {
        let (state, revision) = clusterState(store)
        return state.definitions(revision: revision?.modifyIndex ?? 0)
    }

    /// Hands this manager's daemon the definitions when the store's
    /// revision moved (a write here, or one replicated from another
    /// manager).
    func publishDefinitionsIfChanged() async {
        guard let store = membership?.store else { return }
        let index = store.definitionsRevision
        guard index != definitionsPublished else { return }
        let (state, _) = clusterState(store)
        let base = definitionsPublished
        definitionsPublished = index
        if let base, let changes = decodedAllocations.takeChanges(),
           await configuration.onClusterDefinitions(.changes(base: base, revision: index, networks: changes.networks, services: changes.services)) {
            return
        }
        _ = await configuration.onClusterDefinitions(.all(state.definitions(revision: index)))
    }

    /// On a manager: a ReadIndex round, then the definitions as of it. On
    /// a worker: a heartbeat at once, whose answer brings them (waited for
    /// up to two seconds).
    func synchronizeDefinitions() async {
        guard membership != nil else { return }
        if membership?.raft != nil {
            guard (try? await currentStore()) != nil else { return }
            await publishDefinitionsIfChanged()
            return
        }
        let sentBefore = heartbeatsSent
        requestHeartbeat()
        let deadline = ContinuousClock.now + .seconds(2)
        while heartbeatAnswered <= sentBefore, ContinuousClock.now < deadline, membership != nil {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    // MARK: - The allocations, for this node's daemon

    public func createNetwork(_ request: ClusterState.NetworkRequest, hostRoutes: [IPPrefix]) async throws(ControlError) -> NetworkRecord {
        guard let pool = try await addressPool() else { throw ControlError.notManager }
        let record = try await mutateCluster(touching: { [.network($0.id)] }) { state in
            (try state.createNetwork(request, id: Identifier.make(), now: Date(), hostRoutes: hostRoutes, pool: pool), [])
        }
        logger.info("created network", metadata: ["network": "\(record.name)", "id": "\(record.id.prefix(12))",
                                                   "subnet": "\(record.subnet)", "vni": "\(record.vni)"])
        return record
    }

    public func removeNetwork(_ reference: String) async throws(ControlError) -> NetworkRecord {
        // A swarm service's network side is written with it, so the rules'
        // check of services covers the orchestrated ones too.
        let record = try await mutateCluster(touching: { [.network($0.id)] }) { state in (try state.removeNetwork(reference), []) }
        logger.info("removed network", metadata: ["network": "\(record.name)", "id": "\(record.id.prefix(12))"])
        return record
    }

    /// An endpoint's address: allocated here on a manager, else by a
    /// manager over this node's mutual-TLS session.
    public func allocateEndpoint(_ request: AllocationRequest) async throws(ControlError) -> EndpointRecord {
        guard membership?.raft != nil else {
            let answer = try await askManagers(.POST, AllocationPaths.endpoints, body: SwarmStore.encode(request))
            do { return try JSONDecoder().decode(EndpointRecord.self, from: Data(answer)) } catch {
                throw ControlError(.unavailable, "a manager's allocation answer is malformed: \(error)")
            }
        }
        guard let endpoint = try await batched(.allocate(request)) else {
            throw ControlError(.unavailable, "the allocation of endpoint \(request.endpointID) returned no address")
        }
        return endpoint
    }

    public func releaseEndpoint(_ id: String, node: String) async throws(ControlError) {
        guard membership?.raft != nil else {
            _ = try await askManagers(.DELETE, AllocationPaths.endpoints + "/" + id, body: nil)
            return
        }
        _ = try await batched(.release(id, node: node))
    }

    /// Endpoint changes are written in batches: every request that arrives
    /// while a transaction is in flight joins the next one (group commit).
    /// A scale to a hundred tasks made a hundred transactions, each racing
    /// the others for the allocation revision. A request the rules refuse
    /// fails alone; the rules change nothing before they refuse.
    private func batched(_ change: EndpointChange.Kind) async throws(ControlError) -> EndpointRecord? {
        do {
            return try await withCheckedThrowingContinuation { continuation in
                endpointChanges.append(EndpointChange(kind: change, continuation: continuation))
                if !writingEndpointChanges {
                    writingEndpointChanges = true
                    Task { await self.writeEndpointChanges() }
                }
            }
        } catch let error as ControlError {
            throw error
        } catch {
            throw ControlError(.unavailable, "\(error)")
        }
    }

    private func writeEndpointChanges() async {
        while !endpointChanges.isEmpty {
            let batch = Array(endpointChanges.prefix(EndpointChange.batchLimit))
            endpointChanges.removeFirst(batch.count)
            do {
                let touched = batch.map { change -> RecordReference in
                    switch change.kind {
                    case .allocate(let request): .endpoint(request.endpointID)
                    case .release(let id, _): .endpoint(id)
                    }
                }
                let results = try await mutateCluster(touching: { _ in touched }) { state in
                    (batch.map { change -> Result<EndpointRecord?, ControlError> in
                        do {
                            switch change.kind {
                            case .allocate(let request): return .success(try state.addEndpointRecord(request))
                            case .release(let id, let node):
                                try state.releaseEndpoint(id, node: node)
                                return .success(nil)
                            }
                        } catch let error as ClusterError {
                            return .failure(ControlError(error))
                        } catch {
                            return .failure(ControlError(.invalidArgument, "\(error)"))
                        }
                    }, [])
                }
                for (change, result) in zip(batch, results) { change.continuation.resume(with: result) }
            } catch {
                for change in batch { change.continuation.resume(throwing: error) }
            }
        }
        writingEndpointChanges = false
    }

    /// The swarm's default address pool and subnet size (`swarm init
    /// --default-addr-pool --default-addr-pool-mask-length`); nil on a
    /// node that is not a manager.
    func addressPool() async throws(ControlError) -> SubnetAllocator? {
        guard let store = membership?.store else { return nil }
        guard let swarm = store.swarm()?.object else { throw ControlError.noLeader }
        guard let first = swarm.defaultAddressPool.first, let prefix = try? IPPrefix(parsing: first) else { return SubnetAllocator() }
        return SubnetAllocator(pool: prefix, size: Int(swarm.subnetSize))
    }

    /// A worker's call to the managers' allocation routes: the managers it
    /// knows in turn, until one answers.
    private func askManagers(_ method: HTTPMethod, _ path: String, body: [UInt8]?) async throws(ControlError) -> [UInt8] {
        guard let managers = membership?.local.managers, !managers.isEmpty else {
            throw ControlError(.unavailable, "no manager is known to allocate an address (is this node in a swarm?)")
        }
        var lastError = ControlError(.unavailable, "no manager answered")
        for manager in managers {
            do {
                let (status, answer) = try await managerRequest(method, manager, path, body: body)
                guard (200..<300).contains(status) else {
                    let error = Self.remoteError(ControlClient.Response(status: status, body: answer), from: manager)
                    // A manager without a leader or quorum: another may do.
                    guard error.kind == .unavailable else { throw error }
                    lastError = error
                    continue
                }
                return answer
            } catch let error as ControlError {
                throw error
            } catch {
                lastError = ControlError(.unavailable, "manager \(manager): \(error)")
            }
        }
        throw lastError
    }

    /// The manager endpoint's allocation routes, for the node the
    /// certificate names (its engine ID): a node allocates and releases
    /// only its own endpoints.
    func serveAllocation(_ method: HTTPMethod, _ path: String, body: [UInt8], engineID: String) async throws(ControlError) -> (HTTPResponseStatus, [UInt8]) {
        if method == .POST, path == AllocationPaths.endpoints {
            let request: AllocationRequest
            do { request = try JSONDecoder().decode(AllocationRequest.self, from: Data(body)) } catch {
                throw ControlError(.invalidArgument, "malformed allocation request: \(error)")
            }
            guard request.node == engineID else {
                throw ControlError(.permissionDenied, "node \(engineID) may allocate only for itself, not for node \(request.node)")
            }
            return (.created, SwarmStore.encode(try await allocateEndpoint(request)))
        }
        if method == .DELETE, path.hasPrefix(AllocationPaths.endpoints + "/") {
            let id = String(path.dropFirst(AllocationPaths.endpoints.count + 1))
            try await releaseEndpoint(id, node: engineID)
            return (.noContent, [])
        }
        throw ControlError(.notFound, "page not found")
    }
}

/// A node's endpoint allocation or release, waiting for the next batch.
struct EndpointChange: Sendable {
    enum Kind: Sendable {
        case allocate(AllocationRequest)
        case release(String, node: String)
    }

    /// Operations per transaction stay well under a Raft entry's bound.
    static let batchLimit = 64

    var kind: Kind
    var continuation: CheckedContinuation<EndpointRecord?, Error>
}

/// The manager endpoint's allocation routes.
enum AllocationPaths {
    static let endpoints = "/swarmnet/cluster/endpoints"
}

/// The object every allocation write updates with its expected version:
/// allocations computed from an older replica fail and are computed again.
enum AllocationRevision {
    static let collection = "allocation"
    static let key = "revision"

    static func value() -> [UInt8] {
        SwarmStore.encode(["updatedAt": Date().timeIntervalSince1970])
    }
}

extension NetworkRecord { static let collection = "networks" }
extension EndpointRecord { static let collection = "endpoints" }
extension ServiceRecord {
    /// The network side of swarm services (VIPs, published ports), under
    /// the service's ID.
    static let collection = "service-endpoints"
}

extension SwarmStore {
    /// The object every allocation write bumps.
    func allocationRevision() -> StoredObject? {
        raft.store.get(AllocationRevision.collection, AllocationRevision.key)
    }

    /// The revision of the definitions the data planes take: the Raft
    /// index of the last allocation write (0 before any).
    var definitionsRevision: UInt64 { allocationRevision()?.modifyIndex ?? 0 }

    /// The store operations that turn `old` into `new`, record by record.
    /// With `touching`, only the records it names are compared: comparing
    /// every record made each write cost more with each network (debug
    /// builds check that nothing else changed).
    static func operations(from old: ClusterState, to new: ClusterState, touching: [RecordReference]? = nil) -> [StoreOperation] {
        guard let touching else {
            return operations(NetworkRecord.collection, old.networks, new.networks, Set(old.networks.keys).union(new.networks.keys))
                + operations(ServiceRecord.collection, old.services, new.services, Set(old.services.keys).union(new.services.keys))
                + operations(EndpointRecord.collection, old.endpoints, new.endpoints, Set(old.endpoints.keys).union(new.endpoints.keys))
        }
        var networks: Set<String> = [], services: Set<String> = [], endpoints: Set<String> = []
        for reference in touching {
            switch reference {
            case .network(let id): networks.insert(id)
            case .service(let id): services.insert(id)
            case .endpoint(let id): endpoints.insert(id)
            }
        }
        let operations = operations(NetworkRecord.collection, old.networks, new.networks, networks)
            + operations(ServiceRecord.collection, old.services, new.services, services)
            + operations(EndpointRecord.collection, old.endpoints, new.endpoints, endpoints)
        assert(operations.count == Self.operations(from: old, to: new).count, "a change touching \(touching) changed other records too")
        return operations
    }

    /// The operations for the keys that may differ (unchanged ones are
    /// skipped), in key order (for readers of the log).
    private static func operations<Record: Encodable & Equatable>(_ collection: String, _ old: [String: Record],
                                                                   _ new: [String: Record], _ keys: Set<String>) -> [StoreOperation] {
        keys.filter { old[$0] != new[$0] }.sorted().map { key in
            guard let record = new[key] else { return .delete(collection: collection, key: key, expectedVersion: nil) }
            return old[key] == nil ? .create(collection: collection, key: key, value: encode(record))
                : .update(collection: collection, key: key, value: encode(record), expectedVersion: nil)
        }
    }
}

/// The daemon's allocator in a swarm: the swarm runtime, with its errors
/// as the Docker API's (the allocation rules' own errors pass through).
public struct SwarmClusterStore: ClusterStore {
    let runtime: SwarmRuntime

    public init(runtime: SwarmRuntime) {
        self.runtime = runtime
    }

    public func createNetwork(_ request: ClusterState.NetworkRequest, hostRoutes: [IPPrefix]) async throws -> NetworkRecord {
        try await runtime.createNetwork(request, hostRoutes: hostRoutes)
    }

    public func removeNetwork(_ reference: String) async throws -> NetworkRecord {
        try await runtime.removeNetwork(reference)
    }

    public func allocate(_ request: AllocationRequest) async throws -> EndpointRecord {
        try await runtime.allocateEndpoint(request)
    }

    public func release(endpointID: String, node: String) async throws {
        try await runtime.releaseEndpoint(endpointID, node: node)
    }

    public func synchronizeDefinitions() async {
        await runtime.synchronizeDefinitions()
    }
}

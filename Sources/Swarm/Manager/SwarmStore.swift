import Cluster
import Control
import FoundationEssentials
import Raft
import RaftRuntime
import ReplicatedStore

/// The swarm's objects in the Raft-replicated store, typed. Reads are this
/// manager's applied state (any manager answers reads); writes go through
/// Raft (a follower forwards them to the leader) and fail with Docker's
/// errors when there is no leader or the object moved on.
struct SwarmStore: Sendable {
    let raft: RaftServer

    struct Versioned<T: Sendable>: Sendable {
        var object: T
        var version: UInt64
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    func swarm() -> Versioned<SwarmObject>? {
        raft.store.get(SwarmObject.collection, SwarmObject.key).flatMap(Self.decode)
    }

    func nodes() -> [Versioned<SwarmNode>] {
        raft.store.list(SwarmNode.collection).compactMap(Self.decode)
    }

    func node(_ id: String) -> Versioned<SwarmNode>? {
        raft.store.get(SwarmNode.collection, id).flatMap(Self.decode)
    }

    func isRemoved(_ id: String) -> Bool {
        raft.store.get(RemovedNode.collection, id) != nil
    }

    static func decode<T: Decodable & Sendable>(_ object: StoredObject) -> Versioned<T>? {
        guard let value = try? JSONDecoder().decode(T.self, from: Data(object.value)) else { return nil }
        return Versioned(object: value, version: object.version)
    }

    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        Array((try? encoder.encode(value)) ?? Data())
    }

    static func create(_ node: SwarmNode) -> StoreOperation {
        .create(collection: SwarmNode.collection, key: node.id, value: encode(node))
    }

    static func update(_ node: SwarmNode, version: UInt64?) -> StoreOperation {
        .update(collection: SwarmNode.collection, key: node.id, value: encode(node), expectedVersion: version)
    }

    static func update(_ swarm: SwarmObject, version: UInt64?) -> StoreOperation {
        .update(collection: SwarmObject.collection, key: SwarmObject.key, value: encode(swarm), expectedVersion: version)
    }

    /// Whether the group has a leader, once an election in progress (or a
    /// manager that just started and has not heard one yet) has had up to
    /// two seconds to find it.
    func hasLeader() async -> Bool {
        let deadline = ContinuousClock.now + .seconds(2)
        while await raft.leader() == noNode {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    /// Writes one operation (or transaction) and returns once it is applied
    /// here.
    func write(_ operation: StoreOperation) async throws(ControlError) {
        // Without a leader nothing can commit: say so, as Docker does.
        guard await hasLeader() else { throw ControlError.noLeader }
        let applied: AppliedCommand
        do {
            applied = try await raft.propose(operation)
        } catch let failure as RaftServer.Failure {
            switch failure {
            case .dropped, .stopped: throw ControlError.noLeader
            case .leadershipLost, .timeout:
                throw ControlError(.unavailable, "the swarm's managers did not confirm the change in time (\(failure)); it may or may not have been applied")
            }
        } catch {
            throw ControlError(.unavailable, "\(error)")
        }
        switch applied.result {
        case .success: return
        case .failure(.versionMismatch):
            throw ControlError.outOfSequence
        case .failure(.notFound(_, let key)):
            throw ControlError(.notFound, "\(key) not found")
        case .failure(.alreadyExists(_, let key)):
            throw ControlError(.conflict, "\(key) already exists")
        case .failure(let error):
            throw ControlError(.invalidArgument, "\(error)")
        }
    }
}

// Services and tasks.
extension SwarmStore {
    func services() -> [Versioned<SwarmService>] {
        raft.store.list(SwarmService.collection).compactMap(Self.decode)
    }

    func service(_ id: String) -> Versioned<SwarmService>? {
        raft.store.get(SwarmService.collection, id).flatMap(Self.decode)
    }

    func tasks() -> [Versioned<SwarmTask>] {
        raft.store.list(SwarmTask.collection).compactMap(Self.decode)
    }

    static func create(_ service: SwarmService) -> StoreOperation {
        .create(collection: SwarmService.collection, key: service.id, value: encode(service))
    }

    static func update(_ service: SwarmService, version: UInt64?) -> StoreOperation {
        .update(collection: SwarmService.collection, key: service.id, value: encode(service), expectedVersion: version)
    }

    static func create(_ task: SwarmTask) -> StoreOperation {
        .create(collection: SwarmTask.collection, key: task.id, value: encode(task))
    }

    static func update(_ task: SwarmTask, version: UInt64?) -> StoreOperation {
        .update(collection: SwarmTask.collection, key: task.id, value: encode(task), expectedVersion: version)
    }

    /// Writes many operations as transactions of a bounded size (a Raft
    /// entry stays well under its message limit); each transaction is all
    /// or nothing.
    func write(batches operations: [StoreOperation], size: Int = 64) async throws(ControlError) {
        var start = 0
        while start < operations.count {
            let batch = Array(operations[start..<min(start + size, operations.count)])
            try await write(batch.count == 1 ? batch[0] : .transaction(batch))
            start += size
        }
    }
}

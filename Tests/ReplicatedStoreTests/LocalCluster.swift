import Foundation
import Raft
import RaftStorage
import ReplicatedStore

/// N RaftNodes, each with a `DiskStorage` in its own directory and a `ReplicatedStore`, joined by an
/// in-memory router and driven in rounds (tick, handle every Ready, deliver every message). A node
/// can be stopped (its memory dropped, as after `kill -9` between two saves) and restarted from
/// its directory alone.
final class LocalCluster {
    struct Member {
        var raft: RaftNode
        let storage: DiskStorage
        let store: ReplicatedStore
    }

    struct Timeout: Error, CustomStringConvertible {
        var what: String
        var description: String { "timed out waiting for \(what)" }
    }

    let ids: [NodeID]
    let root: String
    /// Compact a node's log when this many entries were applied since its snapshot (0: never).
    let compactEvery: Index
    private(set) var members: [NodeID: Member] = [:]
    private var queue: [Message] = []
    private var sequence: UInt64 = 0
    private(set) var compactions = 0
    private(set) var snapshotsInstalled = 0

    init(nodes: Int, root: String, compactEvery: Index = 0) throws {
        ids = (1...NodeID(nodes)).map { $0 }
        self.root = root
        self.compactEvery = compactEvery
        for id in ids { try start(id) }
    }

    func directory(_ id: NodeID) -> String { root + "/node-\(id)" }

    func start(_ id: NodeID) throws {
        precondition(members[id] == nil, "node \(id) is running")
        let (storage, persisted) = try DiskStorage.open(directory: directory(id), options: .init(segmentSizeLimit: 8 << 10))
        var ps = persisted
        if ps == PersistentState() {
            ps = .bootstrap(voters: ids)
            try storage.save(hardState: ps.hardState, entries: ps.entries, snapshot: nil)
        }
        let state = ps.snapshot.isEmpty ? StoreState() : try StoreState(decoding: ps.snapshot.data)
        let raft = RaftNode(config: Config(id: id, electionTick: 10, heartbeatTick: 1, randomSeed: 42), persisted: ps)
        members[id] = Member(raft: raft, storage: storage, store: ReplicatedStore(state: state))
    }

    /// Drops the node's memory; what it saved stays in its directory.
    func stop(_ id: NodeID) {
        members[id]?.store.close()
        members[id] = nil
        queue.removeAll { $0.to == id }
    }

    func store(_ id: NodeID) -> ReplicatedStore { members[id]!.store }

    var running: [NodeID] { ids.filter { members[$0] != nil } }

    /// The leader of the highest term among running nodes, if one is known.
    var leader: NodeID? {
        running.filter { members[$0]!.raft.role == .leader }.max { members[$0]!.raft.term < members[$1]!.raft.term }
    }

    /// One round: every running node ticks, handles its Ready, then messages are delivered and handled.
    func round() throws {
        for id in running { members[id]!.raft.tick() }
        for id in running { try handleReady(id) }
        let batch = queue
        queue = []
        for m in batch where members[m.to] != nil {
            try? members[m.to]!.raft.step(m)
        }
        for id in running { try handleReady(id) }
    }

    /// Persist, send, apply, advance: the order `Ready` demands.
    private func handleReady(_ id: NodeID) throws {
        while members[id]!.raft.hasReady {
            let rd = members[id]!.raft.ready()
            try members[id]!.storage.save(rd)
            queue += rd.messages
            if let s = rd.snapshot {
                try members[id]!.store.restore(snapshot: s.data)
                snapshotsInstalled += 1
            }
            members[id]!.store.apply(rd.committedEntries)
            members[id]!.raft.advance(rd)
        }
        let applied = members[id]!.store.appliedIndex
        if compactEvery > 0, applied >= members[id]!.raft.snapshot.metadata.index + compactEvery {
            let snap = members[id]!.store.snapshot()
            let s = try members[id]!.raft.compact(to: snap.index, data: snap.data)
            try members[id]!.storage.compact(s)
            compactions += 1
        }
    }

    @discardableResult
    func run(until done: () -> Bool, rounds: Int = 500, what: String) throws -> Int {
        for n in 0..<rounds {
            if done() { return n }
            try round()
        }
        if done() { return rounds }
        throw Timeout(what: what)
    }

    @discardableResult
    func waitForLeader() throws -> NodeID {
        try run(until: { leader != nil }, what: "a leader")
        return leader!
    }

    /// Proposes `op` through the leader and runs until the leader has applied it.
    func write(_ op: StoreOperation) throws -> AppliedCommand {
        for _ in 0..<5 {
            let l = try waitForLeader()
            sequence += 1
            let id = RequestID(node: l, sequence: sequence)
            let store = members[l]!.store
            store.expect(id)
            do {
                try members[l]!.raft.propose(StoreCommand(id: id, operation: op).encoded)
            } catch {
                store.cancel(id)
                try round()
                continue
            }
            var result: AppliedCommand?
            _ = try? run(until: {
                result = result ?? (members[l] == nil ? nil : store.takeResult(id))
                return result != nil || members[l]?.raft.role != .leader
            }, rounds: 200, what: "request \(id)")
            if let result { return result }
            store.cancel(id)
        }
        throw Timeout(what: "a write to be applied")
    }

    /// Runs until every running node has applied everything the leader committed.
    func settle() throws {
        try run(until: {
            guard let l = leader else { return false }
            let commit = members[l]!.raft.status.commit
            return running.allSatisfy { members[$0]!.store.appliedIndex == commit && members[$0]!.raft.status.commit == commit }
        }, what: "all nodes to apply the leader's commit")
    }
}

import Foundation
import Raft
@testable import ReplicatedStore
import Testing
import TestKit

struct ReplicatedStoreTests {
    func put(_ key: String, _ value: String, in c: String = "c") -> StoreOperation {
        .create(collection: c, key: key, value: Array(value.utf8))
    }

    /// Collects the first `n` events of a stream, or fails after a second.
    func first(_ n: Int, of stream: AsyncStream<WatchEvent>) async throws -> [WatchEvent] {
        try await withThrowingTaskGroup(of: [WatchEvent].self) { g in
            g.addTask {
                var out: [WatchEvent] = []
                for await ev in stream {
                    out.append(ev)
                    if out.count == n { break }
                }
                return out
            }
            g.addTask {
                try await Task.sleep(for: .seconds(2))
                throw CancellationError()
            }
            let r = try await g.next()!
            g.cancelAll()
            return r
        }
    }

    func indexes(_ evs: [WatchEvent]) -> [Index] {
        evs.map { if case let .change(c) = $0 { c.index } else { 0 } }
    }

    @Test func watchFromAnIndexReplaysHistoryThenFollows() async throws {
        let store = ReplicatedStore()
        var f = EntryFeed()
        store.apply((1...5).map { f.entry(put("k\($0)", "v", in: $0 % 2 == 0 ? "even" : "odd")).0 })
        let all = try store.watch(from: 3)
        let even = try store.watch(from: 0, collection: "even")
        store.apply([f.entry(put("k6", "v", in: "even")).0, f.entry(put("k1", "again", in: "odd")).0])
        store.apply([f.raw([])])
        store.apply([f.entry(.update(collection: "even", key: "k2", value: [1], expectedVersion: nil)).0])
        #expect(indexes(try await first(5, of: all)) == [3, 4, 5, 6, 9])
        let evs = try await first(4, of: even)
        #expect(indexes(evs) == [2, 4, 6, 9])
        guard case let .change(last) = evs[3] else { Issue.record("not a change"); return }
        #expect(last.kind == .updated && last.object.key == "k2" && last.object.version == 2)
    }

    /// Closing ends the open watch streams. It once finished them under
    /// the store's lock, and the stream's termination handler took the
    /// same lock: the process died with "Recursive call to lock Mutex".
    @Test func closingTheStoreEndsItsWatches() async throws {
        let store = ReplicatedStore()
        var f = EntryFeed()
        store.apply([f.entry(put("k1", "v")).0])
        let stream = try store.watch(from: 1)
        store.close()
        var received: [WatchEvent] = []
        for await event in stream { received.append(event) }
        #expect(indexes(received) == [1])
        // A store closed with no watch at all, and one whose watch is gone.
        ReplicatedStore().close()
        _ = try store.watch(from: 1)
        store.close()
    }

    @Test func watchBeyondHistoryIsRefused() throws {
        let store = ReplicatedStore(historyLimit: 4)
        var f = EntryFeed()
        store.apply((1...10).map { f.entry(put("k\($0)", "v")).0 })
        #expect(throws: StoreError.compacted(requested: 2, oldest: 7)) { _ = try store.watch(from: 2) }
        _ = try store.watch(from: 7)
        // A store restored from a snapshot has no history before it.
        let other = ReplicatedStore()
        try other.restore(snapshot: store.state.encoded)
        #expect(throws: StoreError.compacted(requested: 10, oldest: 11)) { _ = try other.watch(from: 10) }
        _ = try other.watch(from: 11)
    }

    @Test func changesAfterAnIndexAreReadFromTheHistoryUntilItIsCompacted() throws {
        let store = ReplicatedStore(historyLimit: 4)
        var f = EntryFeed()
        store.apply((1...3).map { f.entry(put("k\($0)", "v")).0 })
        store.apply([f.raw([])]) // index 4 changes nothing
        store.apply([f.entry(.delete(collection: "c", key: "k1", expectedVersion: nil)).0])
        let after2 = try #require(store.changes(after: 2))
        #expect(after2.changes.map(\.index) == [3, 5])
        #expect(after2.changes.last?.kind == .deleted && after2.changes.last?.object.key == "k1")
        #expect(after2.appliedIndex == 5)
        #expect(store.changes(after: 5)?.changes.isEmpty == true)
        // Beyond what was applied: this reader holds another store's index.
        #expect(store.changes(after: 6) == nil)
        store.apply((6...10).map { f.entry(put("k\($0)", "v")).0 })
        // The history keeps 4 changes (7...10): index 6 is the oldest a reader may hold.
        #expect(store.changes(after: 5) == nil)
        #expect(store.changes(after: 6)?.changes.map(\.index) == [7, 8, 9, 10])
        // A store restored from a snapshot has no history before it.
        let other = ReplicatedStore()
        try other.restore(snapshot: store.state.encoded)
        #expect(other.changes(after: 9) == nil)
        #expect(other.changes(after: 10)?.changes.isEmpty == true)
    }

    @Test func restoreTellsWatchers() async throws {
        let source = ReplicatedStore()
        var f = EntryFeed()
        source.apply((1...3).map { f.entry(put("k\($0)", "v")).0 })
        let store = ReplicatedStore()
        let w = try store.watch(from: 1)
        try store.restore(snapshot: source.state.encoded)
        store.apply([f.entry(put("k4", "v")).0])
        let evs = try await first(2, of: w)
        #expect(evs[0] == .restored(index: 3))
        #expect(indexes([evs[1]]) == [4])
        #expect(store.state.list("c").count == 4)
        #expect(throws: StoreError.self) { try store.restore(snapshot: [1, 2, 3]) }
    }

    @Test func resultsGoToTheirRequestID() async throws {
        let store = ReplicatedStore()
        var f = EntryFeed()
        let (e1, id1) = f.entry(put("a", "1"))
        let (e2, id2) = f.entry(put("a", "2"))
        let (e3, id3) = f.entry(put("b", "3"))
        store.expect(id1)
        store.expect(id2)
        // Applied before anyone waits: kept for the waiter.
        store.apply([e1])
        let waiting = Task { try await store.result(for: id2) }
        try await Task.sleep(for: .milliseconds(20))
        store.apply([e2, e3])
        let r2 = try await waiting.value
        #expect(r2.id == id2 && r2.result == .failure(.alreadyExists(collection: "c", key: "a")))
        let r1 = try await store.result(for: id1)
        #expect(r1.index == 1)
        // Nobody expected id3 (another node's proposal): nothing is kept.
        #expect(store.takeResult(id3) == nil)
        await #expect(throws: StoreError.cancelled(id3)) { _ = try await store.result(for: id3) }
        let id4 = RequestID(node: 9, sequence: 1)
        store.expect(id4)
        let cancelled = Task { try await store.result(for: id4) }
        try await Task.sleep(for: .milliseconds(20))
        store.cancel(id4)
        await #expect(throws: StoreError.cancelled(id4)) { _ = try await cancelled.value }
    }

    /// A watch cancelled while entries are applied. Cancelling runs the
    /// stream's termination handler under the task's lock, and the handler
    /// takes the store's lock; applying resumed the watching task under the
    /// store's lock, which takes the task's. In opposite orders on two
    /// threads that deadlocked, and a manager's API hung for good during a
    /// run of rolling updates. The applier and the canceller are threads
    /// of their own, so a deadlock stops them and not the test runner's
    /// pool; the test fails when they stop making progress.
    @Test func cancellingWatchesWhileEntriesApplyNeverDeadlocks() async throws {
        let store = ReplicatedStore()
        let rounds = 2_000
        let done = await raceTwoThreads(rounds: rounds, write: { n in
            let command = StoreCommand(id: RequestID(node: 1, sequence: UInt64(n)), operation: self.put("k\(n)", "v"))
            store.apply([Entry(term: 1, index: Index(n), data: command.encoded)])
        }, round: { writes in
            guard let stream = try? store.watch(from: store.appliedIndex + 1) else { return }
            let watching = Task { for await _ in stream {} }
            // Let the task start waiting on the stream, so that the
            // applier resumes it while it is cancelled.
            let start = writes()
            while writes() == start {}
            watching.cancel()
        })
        #expect(done.rounds == rounds, "stuck after \(done.rounds) cancelled watches and \(done.writes) applies")
    }
}

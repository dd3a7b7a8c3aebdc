import Raft
import Synchronization

/// What a watch stream delivers.
public enum WatchEvent: Sendable, Hashable {
    case change(Change)
    /// The store was replaced by a snapshot at `index` (a slow follower caught up by InstallSnapshot):
    /// the changes in between are not known, so the watcher must re-read the store.
    case restored(index: Index)
}

/// The state machine of one replica wrapped for its runtime: it applies committed entries, hands
/// each result to whoever waits on its request id, keeps a bounded history of changes and feeds
/// watch streams from any index still in that history.
///
/// The logic is `StoreState`'s; this class adds only the waiting and watching, under one lock.
public final class ReplicatedStore: Sendable {
    private struct Watcher {
        var collection: String?
        var continuation: AsyncStream<WatchEvent>.Continuation
    }

    private struct Inner {
        var state: StoreState
        /// Changes in index order; complete for every index from `historyStart` on.
        var history: [Change] = []
        var historyStart: Index
        var watchers: [UInt64: Watcher] = [:]
        var nextWatcher: UInt64 = 0
        /// Request ids someone waits for, with the result once applied.
        var expected: [RequestID: AppliedCommand?] = [:]
        var waiters: [RequestID: CheckedContinuation<AppliedCommand, any Error>] = [:]
    }

    private let inner: Mutex<Inner>
    public let historyLimit: Int

    /// A store starting from `state` (empty, or decoded from the snapshot a node restarts from).
    public init(state: StoreState = StoreState(), historyLimit: Int = 10_000) {
        precondition(historyLimit > 0)
        self.historyLimit = historyLimit
        inner = Mutex(Inner(state: state, historyStart: state.appliedIndex + 1))
    }

    /// A copy of the current state.
    public var state: StoreState { inner.withLock { $0.state } }

    public var appliedIndex: Index { inner.withLock { $0.state.appliedIndex } }

    public func get(_ collection: String, _ key: String) -> StoredObject? {
        inner.withLock { $0.state.get(collection, key) }
    }

    public func list(_ collection: String) -> [StoredObject] {
        inner.withLock { $0.state.list(collection) }
    }

    /// Applies committed entries in order; returns the results of the commands among them.
    ///
    /// Watchers and waiters are handed their events after the lock is
    /// released, never under it: handing one over resumes its task, which
    /// takes that task's lock, while cancelling a watching task takes the
    /// task's lock first and then this one (its stream's termination
    /// handler forgets the watcher). Under the lock the two orders
    /// deadlocked. Entries are applied by one thread, so every watcher
    /// still gets its changes in index order; one that starts meanwhile
    /// reads them from the history instead.
    @discardableResult
    public func apply(_ entries: [Entry]) -> [AppliedCommand] {
        let (results, deliveries, resumptions) = inner.withLock { s in
            var results: [AppliedCommand] = []
            var deliveries: [(AsyncStream<WatchEvent>.Continuation, WatchEvent)] = []
            var resumptions: [(CheckedContinuation<AppliedCommand, any Error>, AppliedCommand)] = []
            for e in entries {
                guard let r = s.state.apply(e) else { continue }
                results.append(r)
                if case let .success(changes) = r.result {
                    for c in changes {
                        s.history.append(c)
                        for w in s.watchers.values where w.collection == nil || w.collection == c.object.collection {
                            deliveries.append((w.continuation, .change(c)))
                        }
                    }
                }
                if let waiter = s.waiters.removeValue(forKey: r.id) {
                    s.expected[r.id] = nil
                    resumptions.append((waiter, r))
                } else if s.expected.keys.contains(r.id) {
                    s.expected[r.id] = .some(r)
                }
            }
            Self.trimHistory(&s, limit: historyLimit)
            return (results, deliveries, resumptions)
        }
        for (continuation, event) in deliveries { continuation.yield(event) }
        for (waiter, result) in resumptions { waiter.resume(returning: result) }
        return results
    }

    private static func trimHistory(_ s: inout Inner, limit: Int) {
        guard s.history.count > limit else { return }
        // Drop whole indexes, so the history stays complete for every index it claims.
        var cut = s.history.count - limit
        let idx = s.history[cut - 1].index
        while cut < s.history.count, s.history[cut].index == idx { cut += 1 }
        s.history.removeFirst(cut)
        s.historyStart = idx + 1
    }

    /// Replaces the whole state by a snapshot's (`StoreState.encoded`); watchers get `.restored`.
    public func restore(snapshot data: [UInt8]) throws(StoreError) {
        let st = try StoreState(decoding: data)
        let watchers = inner.withLock { s in
            s.state = st
            s.history = []
            s.historyStart = st.appliedIndex + 1
            return Array(s.watchers.values)
        }
        // Outside the lock, as in `apply`.
        for w in watchers { w.continuation.yield(.restored(index: st.appliedIndex)) }
    }

    /// The state's bytes and the index they hold, for `RaftNode.compact(to:data:)`.
    public func snapshot() -> (index: Index, data: [UInt8]) {
        inner.withLock { ($0.state.appliedIndex, $0.state.encoded) }
    }

    // MARK: - Results by request id

    /// Announces that the caller will wait for `id`; call before proposing, so a result applied
    /// before the caller waits is kept for it.
    public func expect(_ id: RequestID) {
        inner.withLock { s in
            if s.expected[id] == nil { s.expected[id] = .some(nil) }
        }
    }

    /// The result for an expected `id` if it has been applied; it is handed out once.
    public func takeResult(_ id: RequestID) -> AppliedCommand? {
        inner.withLock { s in
            guard case let .some(.some(r)) = s.expected[id] else { return nil }
            s.expected[id] = nil
            return r
        }
    }

    /// Waits for the result of an expected `id`.
    public func result(for id: RequestID) async throws -> AppliedCommand {
        try await withCheckedThrowingContinuation { cont in
            let ready: Result<AppliedCommand, StoreError>? = inner.withLock { s in
                if case let .some(.some(r)) = s.expected[id] {
                    s.expected[id] = nil
                    return .success(r)
                } else if s.expected[id] == nil {
                    return .failure(StoreError.cancelled(id))
                }
                s.waiters[id] = cont
                return nil
            }
            if let ready { cont.resume(with: ready) } // outside the lock, as in `apply`
        }
    }

    /// Gives up on `id` (the proposal was dropped or leadership lost); a waiter gets `cancelled`.
    public func cancel(_ id: RequestID) {
        let waiter = inner.withLock { s in
            s.expected[id] = nil
            return s.waiters.removeValue(forKey: id)
        }
        waiter?.resume(throwing: StoreError.cancelled(id)) // outside the lock, as in `apply`
    }

    // MARK: - Watches

    /// Changes with index at or above `index` (in `collection`, or all), first from the history,
    /// then as they are applied. Throws `compacted` if the history no longer reaches back to `index`.
    public func watch(from index: Index, collection: String? = nil) throws(StoreError) -> AsyncStream<WatchEvent> {
        let (stream, continuation) = AsyncStream<WatchEvent>.makeStream()
        let id: UInt64 = try inner.withLock { s throws(StoreError) in
            let from = max(index, 1)
            guard from >= s.historyStart else { throw StoreError.compacted(requested: from, oldest: s.historyStart) }
            for c in s.history where c.index >= from && (collection == nil || collection == c.object.collection) {
                continuation.yield(.change(c))
            }
            let id = s.nextWatcher
            s.nextWatcher += 1
            s.watchers[id] = Watcher(collection: collection, continuation: continuation)
            return id
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.inner.withLock { $0.watchers.removeValue(forKey: id) }
        }
        return stream
    }

    /// The changes applied after `index`, and the index they bring the
    /// reader to; nil when the history no longer reaches back (compacted,
    /// or a snapshot replaced the store): the reader must then read it
    /// whole. A pull-based watch, for readers that catch up when they
    /// need to rather than stream every change.
    public func changes(after index: Index) -> (changes: [Change], appliedIndex: Index)? {
        inner.withLock { s in
            guard index + 1 >= s.historyStart, index <= s.state.appliedIndex else { return nil }
            // The history is in index order: find the first change after `index`.
            var low = 0, high = s.history.count
            while low < high {
                let middle = (low + high) / 2
                if s.history[middle].index <= index { low = middle + 1 } else { high = middle }
            }
            return (Array(s.history[low...]), s.state.appliedIndex)
        }
    }

    /// Ends every watch stream and fails every waiter (the replica is shutting down).
    public func close() {
        let (watchers, waiters) = inner.withLock { s in
            let watchers = s.watchers.values
            let waiters = s.waiters
            s.watchers = [:]
            s.waiters = [:]
            s.expected = [:]
            return (watchers, waiters)
        }
        // Outside the lock: finishing a stream runs its termination
        // handler, which takes the lock to forget the watcher; resuming a
        // waiter is kept out of it as in `apply`.
        for (id, w) in waiters { w.resume(throwing: StoreError.cancelled(id)) }
        for w in watchers { w.continuation.finish() }
    }
}

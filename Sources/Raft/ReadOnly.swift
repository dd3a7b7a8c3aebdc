/// Pending ReadIndex requests on the leader, each waiting for a quorum to confirm leadership.
///
/// A request records the commit index when it arrived; once a quorum answers a heartbeat that
/// carries the request's context, no other leader can have committed anything newer, so reading
/// at that index is linearizable (Raft thesis §6.4).
struct ReadOnly: Sendable {
    struct Pending: Sendable {
        var index: Index
        var requester: NodeID
        var context: [UInt8]
        var acks: Set<NodeID>
    }

    /// In arrival order; a quorum for a later request also confirms every earlier one.
    private(set) var queue: [Pending] = []

    var lastContext: [UInt8]? { queue.last?.context }

    /// Queues a request unless one with the same context is already waiting.
    mutating func add(index: Index, requester: NodeID, context: [UInt8], selfID: NodeID) {
        guard !queue.contains(where: { $0.context == context }) else { return }
        queue.append(Pending(index: index, requester: requester, context: context, acks: [selfID]))
    }

    /// Records that `id` answered a heartbeat with `context`; returns who has acknowledged it so far.
    mutating func ack(_ id: NodeID, context: [UInt8]) -> Set<NodeID>? {
        guard let i = queue.firstIndex(where: { $0.context == context }) else { return nil }
        queue[i].acks.insert(id)
        return queue[i].acks
    }

    /// Removes and returns every request up to and including the one with `context`.
    mutating func release(through context: [UInt8]) -> [Pending] {
        guard let i = queue.firstIndex(where: { $0.context == context }) else { return [] }
        let done = Array(queue[...i])
        queue.removeFirst(i + 1)
        return done
    }

    mutating func reset() { queue = [] }
}

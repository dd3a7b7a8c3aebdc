/// A Lamport clock: `tick` for a local event, `witness` for a time seen from another node.
struct LamportClock: Sendable {
    private(set) var time: UInt64 = 0

    /// Returns a time greater than every time this node has produced or witnessed.
    mutating func tick() -> UInt64 {
        time = GossipMath.successor(time)
        return time
    }

    mutating func witness(_ other: UInt64) {
        if other > time { time = other }
    }
}

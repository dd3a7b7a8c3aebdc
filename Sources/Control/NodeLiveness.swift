/// The leader's view of which nodes are alive, from their heartbeats
/// (swarmkit's dispatcher keeps the same table). Pure: the caller passes
/// the time, as a duration since any fixed origin.
///
/// A node is live until `missed` heartbeat periods pass without one. A
/// manager that becomes leader gives every node a fresh period first, so
/// that nodes that were reporting to the previous leader are not marked
/// down for the silence of the election.
public struct NodeLiveness: Sendable {
    public var period: Duration
    public let missed: Int
    private var deadlines: [String: Duration] = [:]

    public init(period: Duration, missed: Int) {
        precondition(missed > 0 && period > .zero)
        self.period = period
        self.missed = missed
    }

    private var grace: Duration { period * missed }

    /// A heartbeat from `node` at `now`.
    public mutating func heartbeat(from node: String, at now: Duration) {
        deadlines[node] = now + grace
    }

    /// Starts counting for nodes not tracked yet (a new leader, a node just
    /// joined), as if each had sent a heartbeat now.
    public mutating func track<S: Sequence>(_ nodes: S, at now: Duration) where S.Element == String {
        for node in nodes where deadlines[node] == nil { deadlines[node] = now + grace }
    }

    public mutating func forget(_ node: String) {
        deadlines[node] = nil
    }

    public mutating func forgetAll() {
        deadlines = [:]
    }

    public func isLive(_ node: String, at now: Duration) -> Bool {
        deadlines[node].map { now < $0 } ?? false
    }

    /// The tracked nodes whose deadline has passed, sorted.
    public func expired(at now: Duration) -> [String] {
        deadlines.filter { now >= $0.value }.keys.sorted()
    }

    /// When the next deadline passes (nil: none tracked).
    public var nextDeadline: Duration? { deadlines.values.min() }
}

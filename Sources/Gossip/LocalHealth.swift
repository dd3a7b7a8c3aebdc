/// Lifeguard's local health multiplier: a node that misses acks or must refute suspicions of itself
/// is probably the slow one, so it stretches its own probe interval and timeouts instead of
/// accusing healthy members.
struct LocalHealth: Sendable {
    /// Non-negative, below `maximum`; 0 means healthy.
    private(set) var score = 0
    let maximum: Int

    init(maximum: Int) {
        self.maximum = max(1, maximum)
    }

    mutating func apply(_ delta: Int) {
        score = min(max(score + delta, 0), maximum - 1)
    }

    /// `nanoseconds * (score + 1)`, as memberlist's `awareness.ScaleTimeout`.
    func scale(_ nanoseconds: Int64) -> Int64 {
        let (product, overflow) = nanoseconds.multipliedReportingOverflow(by: Int64(score + 1))
        return overflow ? .max : product
    }
}

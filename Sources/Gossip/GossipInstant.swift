/// A point on the caller's monotonic clock, in nanoseconds from an origin the caller picks.
///
/// The core never reads a clock itself: every entry point takes `now`, so a simulator can run
/// thousands of nodes on virtual time and replay a seed exactly.
public struct GossipInstant: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) {
        self.nanoseconds = nanoseconds
    }

    public static let zero = GossipInstant(nanoseconds: 0)

    public static func < (lhs: GossipInstant, rhs: GossipInstant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }

    /// Saturates rather than traps: a configuration of "never" (a huge duration) must not crash.
    public func advanced(byNanoseconds delta: Int64) -> GossipInstant {
        let (sum, overflow) = nanoseconds.addingReportingOverflow(delta)
        if overflow { return GossipInstant(nanoseconds: delta > 0 ? .max : .min) }
        return GossipInstant(nanoseconds: sum)
    }

    public func advanced(by duration: Duration) -> GossipInstant {
        advanced(byNanoseconds: duration.gossipNanoseconds)
    }

    /// Nanoseconds from `earlier` to `self`, saturating.
    public func nanoseconds(since earlier: GossipInstant) -> Int64 {
        let (difference, overflow) = nanoseconds.subtractingReportingOverflow(earlier.nanoseconds)
        if overflow { return earlier.nanoseconds > nanoseconds ? .min : .max }
        return difference
    }

    public var description: String {
        "\(nanoseconds / 1_000_000)ms"
    }
}

extension Duration {
    /// Whole nanoseconds, saturating at the bounds of Int64.
    var gossipNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds > 0 ? .max : .min }
        let (sum, overflow2) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow2 { return seconds > 0 ? .max : .min }
        return sum
    }
}

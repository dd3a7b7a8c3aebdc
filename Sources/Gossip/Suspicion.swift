/// A suspicion timer whose timeout shrinks as independent members confirm it (Lifeguard §IV-B).
///
/// With `k` confirmations expected and `n` received, the timeout is
/// `max(min, max - (max - min) * log(n + 1) / log(k + 1))`, the formula memberlist uses: a node
/// that many members independently suspect is declared dead quickly, while a lone suspicion
/// (perhaps from a slow prober) waits long enough for the accused to refute.
struct Suspicion: Sendable {
    let startedAt: GossipInstant
    let minimumNanoseconds: Int64
    let maximumNanoseconds: Int64
    /// Confirmations that would bring the timeout down to its minimum.
    let expectedConfirmations: Int
    let incarnation: UInt64
    /// Members that suspected the node, the first one included; only new names count as confirmations.
    private(set) var suspectors: Set<String>
    private(set) var deadline: GossipInstant

    init(from suspector: String, incarnation: UInt64, expectedConfirmations: Int,
         minimumNanoseconds: Int64, maximumNanoseconds: Int64, now: GossipInstant) {
        self.startedAt = now
        self.minimumNanoseconds = minimumNanoseconds
        self.maximumNanoseconds = max(maximumNanoseconds, minimumNanoseconds)
        self.expectedConfirmations = expectedConfirmations
        self.incarnation = incarnation
        self.suspectors = [suspector]
        self.deadline = now
        // With no confirmations to wait for, there is nothing to shrink towards: use the minimum.
        self.deadline = now.advanced(byNanoseconds: expectedConfirmations < 1 ? minimumNanoseconds : self.maximumNanoseconds)
    }

    var confirmations: Int { suspectors.count - 1 }

    /// The timeout after `confirmations` independent confirmations.
    static func timeout(confirmations: Int, expected: Int, minimum: Int64, maximum: Int64) -> Int64 {
        guard expected >= 1 else { return minimum }
        let fraction = GossipMath.log(Double(confirmations) + 1) / GossipMath.log(Double(expected) + 1)
        let raw = Double(maximum) - fraction * Double(maximum - minimum)
        let clamped = max(raw, Double(minimum))
        return Int64(clamped.rounded(.down))
    }

    /// Records a suspicion from `member`; returns true if it was a new, independent confirmation
    /// (the caller re-gossips only those, so the cluster is not flooded with duplicates).
    mutating func confirm(from member: String) -> Bool {
        guard confirmations < expectedConfirmations else { return false }
        guard suspectors.insert(member).inserted else { return false }
        let timeout = Self.timeout(confirmations: confirmations, expected: expectedConfirmations,
                                   minimum: minimumNanoseconds, maximum: maximumNanoseconds)
        deadline = startedAt.advanced(byNanoseconds: timeout)
        return true
    }
}

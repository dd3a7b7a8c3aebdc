@testable import Gossip
import Testing

@Suite("Building blocks")
struct UnitTests {
    @Test func naturalLogMatchesKnownValues() {
        for (x, expected) in [(1.0, 0.0), (2.0, 0.693_147_180_559_945_3), (10.0, 2.302_585_092_994_045_7), (1000.0, 6.907_755_278_982_137)] {
            #expect(abs(GossipMath.log(x) - expected) < 1e-12, "ln(\(x))")
        }
        #expect(abs(GossipMath.log10(1000) - 3) < 1e-12)
    }

    @Test func retransmitLimitGrowsWithLogN() {
        #expect(GossipMath.retransmitLimit(multiplier: 4, nodes: 1) == 4)
        #expect(GossipMath.retransmitLimit(multiplier: 4, nodes: 9) == 4)
        #expect(GossipMath.retransmitLimit(multiplier: 4, nodes: 10) == 8)
        #expect(GossipMath.retransmitLimit(multiplier: 4, nodes: 1000) == 16)
    }

    @Test func suspicionTimeoutShrinksWithIndependentConfirmations() {
        let start = GossipInstant(nanoseconds: 0)
        var suspicion = Suspicion(from: "a", incarnation: 1, expectedConfirmations: 3,
                                  minimumNanoseconds: 1_000, maximumNanoseconds: 6_000, now: start)
        #expect(suspicion.deadline.nanoseconds == 6_000)
        #expect(!confirm(&suspicion, "a"), "the first suspector does not confirm itself")
        #expect(confirm(&suspicion, "b"))
        // max - (max - min) * log(2) / log(4) = 6000 - 5000 / 2
        #expect(suspicion.deadline.nanoseconds == 3_500)
        #expect(!confirm(&suspicion, "b"), "a repeated confirmation is not independent")
        #expect(confirm(&suspicion, "c"))
        #expect(confirm(&suspicion, "d"))
        #expect(suspicion.deadline.nanoseconds == 1_000)
        #expect(!confirm(&suspicion, "e"), "beyond k confirmations nothing changes")
        let lone = Suspicion(from: "a", incarnation: 1, expectedConfirmations: 0, minimumNanoseconds: 1_000, maximumNanoseconds: 6_000, now: start)
        #expect(lone.deadline.nanoseconds == 1_000)
    }

    /// `#expect` cannot call a mutating method on its argument directly.
    private func confirm(_ suspicion: inout Suspicion, _ member: String) -> Bool {
        suspicion.confirm(from: member)
    }

    @Test func localHealthScalesAndSaturates() {
        var health = LocalHealth(maximum: 8)
        #expect(health.scale(100) == 100)
        health.apply(3)
        #expect(health.scale(100) == 400)
        health.apply(100)
        #expect(health.score == 7)
        health.apply(-100)
        #expect(health.score == 0)
    }

    @Test func transmitQueueRetransmitsThenDrops() {
        var queue = TransmitQueue()
        queue.enqueue(.member("a"), .ack(sequence: 1))
        for _ in 0..<3 {
            #expect(queue.take(budget: 100, overhead: 2, maxCount: 10, transmitLimit: 3).count == 1)
        }
        #expect(queue.take(budget: 100, overhead: 2, maxCount: 10, transmitLimit: 3).isEmpty)
        #expect(queue.isEmpty)
    }

    @Test func transmitQueueInvalidatesAndPrefersFreshNews() {
        var queue = TransmitQueue()
        queue.enqueue(.member("a"), .ack(sequence: 1))
        queue.enqueue(.member("b"), .ack(sequence: 2))
        _ = queue.take(budget: 5, overhead: 2, maxCount: 10, transmitLimit: 10)  // sends b once (newest first)
        queue.enqueue(.member("a"), .ack(sequence: 3))  // replaces the news about a
        #expect(queue.count == 2)
        let next = queue.take(budget: 5, overhead: 2, maxCount: 10, transmitLimit: 10)
        #expect(next == [GossipCodec.encode(.ack(sequence: 3))])
        let both = queue.take(budget: 100, overhead: 2, maxCount: 10, transmitLimit: 10)
        #expect(Set(both) == Set([GossipCodec.encode(.ack(sequence: 2)), GossipCodec.encode(.ack(sequence: 3))]))
    }

    @Test func transmitQueueRespectsBudget() {
        var queue = TransmitQueue()
        for i in 0..<100 { queue.enqueue(.member("n\(i)"), .ack(sequence: UInt32(i))) }
        let taken = queue.take(budget: 50, overhead: 2, maxCount: 255, transmitLimit: 4)
        #expect(taken.reduce(0) { $0 + $1.count + 2 } <= 50)
        #expect(taken.count == 12)  // a 2-byte ack plus 2 bytes of overhead, 12 times in 50 bytes
    }

    @Test func lamportClockNeverGoesBackOrTraps() {
        var clock = LamportClock()
        #expect(clock.tick() == 1)
        clock.witness(10)
        #expect(clock.tick() == 11)
        clock.witness(3)
        #expect(clock.tick() == 12)
        clock.witness(.max)
        #expect(clock.tick() == .max)
    }
}

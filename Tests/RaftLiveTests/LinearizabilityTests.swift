import Testing

/// The checker itself: histories that are and are not linearizable, including the cases the live
/// test relies on (unknown outcomes, failed writes, stale reads).
@Suite("linearizability checker")
struct LinearizabilityTests {
    private func put(_ key: String, _ v: String, _ a: UInt64, _ b: UInt64, _ outcome: KVHistory.Outcome = .ok, client: Int = 0) -> KVHistory.Operation {
        .init(client: client, key: key, kind: .put(v), invoked: a, returned: b, outcome: outcome)
    }

    private func get(_ key: String, _ v: String?, _ a: UInt64, _ b: UInt64, client: Int = 1) -> KVHistory.Operation {
        .init(client: client, key: key, kind: .get(v), invoked: a, returned: b, outcome: .ok)
    }

    private func check(_ ops: [KVHistory.Operation]) -> LinearizabilityResult {
        LinearizabilityChecker.check(KVHistory(operations: ops))
    }

    @Test func sequentialHistoryIsLinearizable() {
        #expect(check([get("x", nil, 0, 1), put("x", "1", 2, 3), get("x", "1", 4, 5), put("x", "2", 6, 7), get("x", "2", 8, 9)]) == .linearizable)
    }

    @Test func readConcurrentWithWriteMaySeeEitherValue() {
        #expect(check([put("x", "1", 0, 10), get("x", nil, 2, 4)]) == .linearizable)
        #expect(check([put("x", "1", 0, 10), get("x", "1", 2, 4)]) == .linearizable)
        // Two overlapping reads may not disagree in an order real time forbids: the first saw the
        // new value and returned before the second began, so the second must see it too.
        #expect(check([put("x", "1", 0, 10), get("x", "1", 1, 2), get("x", nil, 3, 4)]) != .linearizable)
    }

    @Test func lostAcknowledgedWriteIsRejected() {
        let r = check([put("x", "1", 0, 10), get("x", nil, 20, 30)])
        guard case let .violation(key, ops) = r else {
            Issue.record("expected a violation, got \(r)")
            return
        }
        #expect(key == "x" && ops.count == 2)
    }

    @Test func staleReadIsRejected() {
        #expect(check([put("x", "1", 0, 10), put("x", "2", 20, 30), get("x", "1", 40, 50)]) != .linearizable)
    }

    @Test func unknownWriteMayOrMayNotHaveHappened() {
        #expect(check([put("x", "1", 0, 0, .unknown), get("x", nil, 10, 20)]) == .linearizable)
        #expect(check([put("x", "1", 0, 0, .unknown), get("x", "1", 10, 20)]) == .linearizable)
        // ... but not both, in that order: once seen, it happened.
        #expect(check([put("x", "1", 0, 0, .unknown), get("x", "1", 10, 20), get("x", nil, 30, 40)]) != .linearizable)
        // It may take effect late, after a later acknowledged write.
        #expect(check([put("x", "1", 0, 0, .unknown), put("x", "2", 10, 20), get("x", "1", 30, 40)]) == .linearizable)
    }

    @Test func failedWriteMustNotBeSeen() {
        #expect(check([put("x", "1", 0, 5, .failed), get("x", "1", 10, 20)]) != .linearizable)
        #expect(check([put("x", "1", 0, 5, .failed), get("x", nil, 10, 20)]) == .linearizable)
    }

    /// An operation may take no measurable time; it must still be placed (this once made a valid
    /// history look invalid).
    @Test func zeroLengthOperationsArePlaced() {
        #expect(check([put("x", "1", 5, 5), get("x", "1", 7, 7), put("x", "2", 7, 9), get("x", "2", 10, 10)]) == .linearizable)
        #expect(check([put("x", "1", 5, 5), get("x", nil, 6, 6)]) != .linearizable)
    }

    @Test func keysAreIndependent() {
        #expect(check([put("x", "1", 0, 10), put("y", "2", 0, 10), get("x", "1", 20, 30), get("y", "2", 20, 30)]) == .linearizable)
        #expect(check([put("x", "1", 0, 10), put("y", "2", 0, 10), get("x", "2", 20, 30)]) != .linearizable)
    }

    /// Many clients with overlapping operations on few keys, made from a real sequential run, so it
    /// is linearizable by construction; the search must find the order quickly.
    @Test(arguments: 0..<5) func largeConcurrentHistoryIsAccepted(round: Int) {
        var rng = SystemRandomNumberGenerator()
        var ops: [KVHistory.Operation] = []
        var state: [String: String] = [:]
        var t: UInt64 = 1_000
        for i in 0..<3000 {
            // The operation takes effect at `t`; its interval stretches randomly around it.
            t += 10
            let key = "k\(Int.random(in: 0..<4, using: &rng))"
            let a = t - UInt64.random(in: 0..<60, using: &rng)
            let b = t + UInt64.random(in: 0..<60, using: &rng)
            if Bool.random(using: &rng) {
                state[key] = "v\(i)"
                ops.append(put(key, "v\(i)", a, b, client: i % 16))
            } else {
                ops.append(get(key, state[key], a, b, client: i % 16))
            }
        }
        #expect(check(ops) == .linearizable)
        // Corrupt one read near the end: the history must be refused.
        if let i = ops.lastIndex(where: { if case .get = $0.kind { true } else { false } }) {
            ops[i].kind = .get("never-written")
            #expect(check(ops) != .linearizable)
        }
    }
}

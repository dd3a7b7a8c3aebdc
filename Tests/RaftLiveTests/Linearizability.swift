/// A linearizability checker for a key-value store of registers, in the manner of Wing & Gong's
/// search with Lowe's memoization, as Porcupine does it: per key (linearizability is local, so keys
/// are checked one by one), find an order of the operations that respects real time (an operation
/// that returned before another was invoked comes first) and in which every read returns the value
/// of the latest write before it.
///
/// An operation whose outcome is unknown (a timeout, a lost connection) is given a return time of
/// infinity: it may take effect at any point after its invocation, or, placed after everything,
/// never. A failed operation (certainly no effect) and an unknown read are left out.
struct KVHistory: Sendable {
    enum Kind: Sendable, Hashable {
        case put(String)
        case get(String?)
    }

    enum Outcome: Sendable, Hashable {
        case ok
        case failed
        case unknown
    }

    struct Operation: Sendable, Hashable, CustomStringConvertible {
        var client: Int
        var key: String
        var kind: Kind
        /// Nanoseconds on one monotonic clock.
        var invoked: UInt64
        var returned: UInt64
        var outcome: Outcome

        var description: String {
            let what = switch kind {
            case let .put(v): "put(\(key), \(v))"
            case let .get(v): "get(\(key)) -> \(v ?? "nil")"
            }
            return "client \(client): \(what) [\(invoked)...\(outcome == .unknown ? "?" : String(returned))] \(outcome)"
        }
    }

    var operations: [Operation] = []
}

enum LinearizabilityResult: Sendable, Equatable {
    case linearizable
    /// No order exists for `key`; `operations` are that key's history, for the report.
    case violation(key: String, operations: [KVHistory.Operation])
    /// The search gave up (too many states); neither proven nor refuted.
    case inconclusive(key: String)
}

enum LinearizabilityChecker {
    private struct Event {
        var op: Int
        var isCall: Bool
        var time: UInt64
    }

    /// Checks every key; the first key without a valid order is reported.
    static func check(_ history: KVHistory, initial: String? = nil, maxStates: Int = 5_000_000) -> LinearizabilityResult {
        var byKey: [String: [KVHistory.Operation]] = [:]
        for op in history.operations {
            switch (op.outcome, op.kind) {
            case (.failed, _), (.unknown, .get): continue
            default: byKey[op.key, default: []].append(op)
            }
        }
        for key in byKey.keys.sorted() {
            switch checkRegister(byKey[key]!, initial: initial, maxStates: maxStates) {
            case true?: continue
            case false?: return .violation(key: key, operations: byKey[key]!.sorted { $0.invoked < $1.invoked })
            case nil: return .inconclusive(key: key)
            }
        }
        return .linearizable
    }

    /// One register: true if linearizable, false if not, nil if the search was cut off.
    static func checkRegister(_ ops: [KVHistory.Operation], initial: String?, maxStates: Int) -> Bool? {
        let n = ops.count
        if n == 0 { return true }
        // Events in time order; on a tie a call goes first (as Porcupine does), so touching
        // intervals count as concurrent and an operation whose return has the same timestamp as
        // its call still has its call first.
        var events: [Event] = []
        for (i, op) in ops.enumerated() {
            events.append(Event(op: i, isCall: true, time: op.invoked))
            events.append(Event(op: i, isCall: false, time: op.outcome == .unknown ? .max : op.returned))
        }
        events.sort { a, b in a.time != b.time ? a.time < b.time : (a.isCall && !b.isCall) }
        // A doubly linked list over the events, with a head sentinel at index `m`.
        let m = events.count
        var next = Array(1...m) + [0]
        var prev = [m] + Array(0..<m)
        next[m - 1] = -1
        var returnOf = [Int](repeating: 0, count: n)
        for (i, e) in events.enumerated() where !e.isCall { returnOf[e.op] = i }

        func lift(_ call: Int) {
            let ret = returnOf[events[call].op]
            for i in [call, ret] {
                let p = prev[i], q = next[i]
                next[p] = q
                if q >= 0 { prev[q] = p }
            }
        }
        func unlift(_ call: Int) {
            let ret = returnOf[events[call].op]
            for i in [ret, call] {
                let p = prev[i], q = next[i]
                next[p] = i
                if q >= 0 { prev[q] = i }
            }
        }

        struct Visited: Hashable {
            var done: [UInt64]
            var state: String?
        }
        var done = [UInt64](repeating: 0, count: (n + 63) / 64)
        var cache: Set<Visited> = []
        var stack: [(call: Int, state: String?)] = []
        var state = initial
        var cursor = next[m]
        var explored = 0
        while next[m] >= 0 {
            explored += 1
            if explored > maxStates { return nil }
            if cursor >= 0, events[cursor].isCall {
                let e = events[cursor]
                let op = ops[e.op]
                var legal = false
                var newState = state
                switch op.kind {
                case let .put(v):
                    legal = true
                    newState = v
                case let .get(v):
                    legal = v == state
                }
                if legal {
                    done[e.op / 64] |= 1 << UInt64(e.op % 64)
                    if cache.insert(Visited(done: done, state: newState)).inserted {
                        stack.append((cursor, state))
                        state = newState
                        lift(cursor)
                        cursor = next[m]
                        continue
                    }
                    done[e.op / 64] &= ~(1 << UInt64(e.op % 64))
                }
                cursor = next[cursor]
            } else {
                // An operation returned before any order could place it: undo the last choice.
                guard let (call, before) = stack.popLast() else { return false }
                state = before
                let op = events[call].op
                done[op / 64] &= ~(1 << UInt64(op % 64))
                unlift(call)
                cursor = next[call]
            }
        }
        return true
    }
}

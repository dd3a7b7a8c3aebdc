import FoundationEssentials

/// swarmkit's task states, in order (api/types.proto's TaskState). The
/// executor moves a task through preparing → ready → starting → running,
/// and to complete, failed or shutdown at its end; the orchestrator owns
/// the states before (new … accepted).
public enum TaskState: String, Codable, Sendable, Comparable, CaseIterable {
    case new, pending, assigned, accepted, preparing, ready, starting, running, complete, shutdown, failed, rejected, remove, orphaned

    public static func < (lhs: TaskState, rhs: TaskState) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }

    /// The task's process has ended (or never will run).
    public var isTerminal: Bool { self >= .complete }
}

/// A health check, as Docker defines it: durations in nanoseconds, and the
/// test as `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
public struct HealthConfig: Codable, Sendable, Equatable {
    public var test: [String]?
    public var interval: Int64?
    public var timeout: Int64?
    public var startPeriod: Int64?
    public var startInterval: Int64?
    public var retries: Int?

    enum CodingKeys: String, CodingKey {
        case test = "Test", interval = "Interval", timeout = "Timeout", startPeriod = "StartPeriod"
        case startInterval = "StartInterval", retries = "Retries"
    }

    public init(test: [String]?, interval: Int64? = nil, timeout: Int64? = nil, startPeriod: Int64? = nil, retries: Int? = nil) {
        self.test = test
        self.interval = interval
        self.timeout = timeout
        self.startPeriod = startPeriod
        self.retries = retries
    }
}

import Cluster
import FoundationEssentials

/// A health check's state and last results, as `docker inspect` shows them.
public struct HealthStatus: Codable, Sendable, Equatable {
    /// starting, healthy or unhealthy.
    public var status: String
    public var failingStreak: Int
    public var log: [HealthResult]

    enum CodingKeys: String, CodingKey { case status = "Status", failingStreak = "FailingStreak", log = "Log" }

    public init(status: String = "starting", failingStreak: Int = 0, log: [HealthResult] = []) {
        self.status = status
        self.failingStreak = failingStreak
        self.log = log
    }
}

public struct HealthResult: Codable, Sendable, Equatable {
    public var start: Date
    public var end: Date
    public var exitCode: Int32
    public var output: String

    enum CodingKeys: String, CodingKey { case start = "Start", end = "End", exitCode = "ExitCode", output = "Output" }
}

/// One step of a task's life: swarmkit's TaskStatus (state, when, what
/// happened, and the error when it failed).
public struct TaskStatusEntry: Codable, Sendable, Equatable {
    public var state: TaskState
    public var timestamp: Date
    public var message: String
    public var error: String?
}

/// One task on this node, as the executor keeps it (`TASK_DIR/task.json`).
public struct TaskRecord: Codable, Sendable, Equatable {
    public var id: String
    public var spec: TaskSpec
    public var imageID: String
    /// The process as the image and spec resolve it.
    public var args: [String]
    public var env: [String]
    /// The signal that stops it: the spec's, else the image's (nil: SIGTERM).
    public var stopSignal: String?
    public var hostname: String
    public var created: Date
    public var state: TaskState
    /// What happened last, in words (swarmkit's status message).
    public var message: String
    /// Why the task failed, when it did.
    public var error: String?
    public var startedAt: Date?
    public var finishedAt: Date?
    public var exitCode: Int32?
    public var oomKilled: Bool
    public var pid: Int32?
    /// The task's network namespace (`/run/netns/NAME`).
    public var namespace: String
    public var attachments: [NetworkAttachment]
    public var healthcheck: HealthConfig?
    public var health: HealthStatus?
    /// Every state the task went through, oldest first (optional: records
    /// written before it existed have none).
    public var history: [TaskStatusEntry]?

    public var shortID: String { String(id.prefix(12)) }

    /// Moves to `state`, noting when and why.
    public mutating func transition(to state: TaskState, message: String, error: String? = nil) {
        self.state = state
        self.message = message
        if let error { self.error = error }
        history = (history ?? []) + [TaskStatusEntry(state: state, timestamp: Date(), message: message, error: error)]
    }
}

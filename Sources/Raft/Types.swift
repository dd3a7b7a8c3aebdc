/// Identifies a member of the group; 0 means "none" (no leader, no vote), as in etcd-io/raft.
public typealias NodeID = UInt64

/// A Raft term.
public typealias Term = UInt64

/// A position in the replicated log; the first real entry has index 1.
public typealias Index = UInt64

/// The sentinel for "no node".
public let noNode: NodeID = 0

/// What an entry carries: application data or a membership change.
public enum EntryKind: UInt8, Sendable, Hashable {
    case normal = 0
    case confChange = 1
}

/// One replicated log entry.
public struct Entry: Sendable, Hashable {
    public var term: Term
    public var index: Index
    public var kind: EntryKind
    public var data: [UInt8]

    public init(term: Term, index: Index, kind: EntryKind = .normal, data: [UInt8] = []) {
        self.term = term
        self.index = index
        self.kind = kind
        self.data = data
    }

    /// Bytes counted against `Config.maxSizePerMessage`; headers are ignored as in etcd-io/raft.
    var payloadSize: Int { data.count }
}

/// The part of a node's state that must reach stable storage before any message it caused is sent.
public struct HardState: Sendable, Hashable {
    public var term: Term
    public var vote: NodeID
    public var commit: Index

    public init(term: Term = 0, vote: NodeID = noNode, commit: Index = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    public static let empty = HardState()
}

/// The voters and learners of a configuration.
public struct ConfState: Sendable, Hashable {
    public var voters: Set<NodeID>
    public var learners: Set<NodeID>

    public init(voters: Set<NodeID> = [], learners: Set<NodeID> = []) {
        self.voters = voters
        self.learners = learners
    }

    /// True if `id` is a voter or a learner.
    public func contains(_ id: NodeID) -> Bool { voters.contains(id) || learners.contains(id) }
}

/// Where a snapshot sits in the log and which configuration was in force there.
public struct SnapshotMetadata: Sendable, Hashable {
    public var index: Index
    public var term: Term
    public var confState: ConfState

    public init(index: Index = 0, term: Term = 0, confState: ConfState = ConfState()) {
        self.index = index
        self.term = term
        self.confState = confState
    }
}

/// The application's state up to `metadata.index`, opaque to Raft.
public struct Snapshot: Sendable, Hashable {
    public var metadata: SnapshotMetadata
    public var data: [UInt8]

    public init(metadata: SnapshotMetadata = SnapshotMetadata(), data: [UInt8] = []) {
        self.metadata = metadata
        self.data = data
    }

    public var isEmpty: Bool { metadata.index == 0 }
}

/// The role a node plays in its current term.
public enum Role: String, Sendable, Hashable, CustomStringConvertible {
    case follower
    case preCandidate = "pre-candidate"
    case candidate
    case leader

    public var description: String { rawValue }
}

/// A linearizable read that may be served once the application has applied `index`.
public struct ReadState: Sendable, Hashable {
    public var index: Index
    public var context: [UInt8]

    public init(index: Index, context: [UInt8]) {
        self.index = index
        self.context = context
    }
}

/// Errors a caller can see from `RaftNode`.
public enum RaftError: Swift.Error, Sendable, Hashable, CustomStringConvertible {
    /// The proposal was not accepted (no leader known, leader transfer in progress, or a pending conf change).
    case proposalDropped
    /// The requested index has been compacted into a snapshot.
    case compacted(requested: Index, firstIndex: Index)
    /// Compaction asked for an index that has not been applied yet.
    case notApplied(requested: Index, applied: Index)

    public var description: String {
        switch self {
        case .proposalDropped: "proposal dropped"
        case let .compacted(requested, first): "index \(requested) is compacted (first index \(first))"
        case let .notApplied(requested, applied): "index \(requested) is not applied yet (applied \(applied))"
        }
    }
}

/// A small seeded generator, so that election timeouts are reproducible in tests and simulations.
public struct SplitMix64: RandomNumberGenerator, Sendable, Hashable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

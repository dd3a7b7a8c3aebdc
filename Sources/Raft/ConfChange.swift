/// A single-member configuration change, carried in an `.confChange` entry and applied when committed.
///
/// Only one change may be pending at a time; with single-member changes the
/// majorities of the old and new configuration always overlap, which is what
/// makes applying the change on commit safe (etcd-io/raft's ConfChange v1).
public enum ConfChange: Sendable, Hashable, CustomStringConvertible {
    /// Adds a voter, or promotes a learner to a voter.
    case addVoter(NodeID)
    /// Adds a learner: it receives the log but neither votes nor counts for quorum.
    case addLearner(NodeID)
    /// Removes a voter or learner.
    case remove(NodeID)

    public var node: NodeID {
        switch self {
        case let .addVoter(id), let .addLearner(id), let .remove(id): id
        }
    }

    public var description: String {
        switch self {
        case let .addVoter(id): "add-voter \(id)"
        case let .addLearner(id): "add-learner \(id)"
        case let .remove(id): "remove \(id)"
        }
    }

    /// Nine bytes: a tag then the node id, little endian; the format is ours, stable because it is persisted.
    public var encoded: [UInt8] {
        let tag: UInt8
        switch self {
        case .addVoter: tag = 1
        case .addLearner: tag = 2
        case .remove: tag = 3
        }
        var bytes = [tag]
        var id = node
        for _ in 0..<8 {
            bytes.append(UInt8(truncatingIfNeeded: id))
            id >>= 8
        }
        return bytes
    }

    /// Decodes `encoded`; nil for anything malformed.
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count == 9 else { return nil }
        var id: UInt64 = 0
        for i in (1...8).reversed() { id = id << 8 | UInt64(bytes[i]) }
        switch bytes[0] {
        case 1: self = .addVoter(id)
        case 2: self = .addLearner(id)
        case 3: self = .remove(id)
        default: return nil
        }
    }

    /// The configuration after this change; a no-op when the change is already in force.
    public func applied(to cs: ConfState) -> ConfState {
        var cs = cs
        switch self {
        case let .addVoter(id):
            cs.learners.remove(id)
            cs.voters.insert(id)
        case let .addLearner(id):
            // Demoting a voter is allowed: for quorum it is the same as removing it.
            cs.voters.remove(id)
            cs.learners.insert(id)
        case let .remove(id):
            cs.voters.remove(id)
            cs.learners.remove(id)
        }
        return cs
    }
}

import Raft
import RaftTransport
import ReplicatedStore

/// One member of the group as the membership API shows it (etcd's `Member`, without names).
public struct RaftMember: Sendable, Hashable {
    public var id: NodeID
    /// Where it listens for Raft traffic; nil if this member does not know.
    public var address: PeerAddress?
    public var isLearner: Bool

    public init(id: NodeID, address: PeerAddress?, isLearner: Bool) {
        self.id = id
        self.address = address
        self.isLearner = isLearner
    }
}

/// Why a membership change was refused; the group is unchanged.
public enum MembershipError: Swift.Error, Sendable, Hashable, CustomStringConvertible {
    case unknownMember(NodeID)
    case alreadyMember(NodeID)
    /// Removing the only voter would leave a group that can never elect a leader again.
    case lastVoter(NodeID)
    case notLearner(NodeID)
    /// etcd's rule: a learner is promoted only once it holds at least 90% of the leader's log, so
    /// the new quorum does not wait on a member that is still catching up.
    case learnerNotReady(NodeID, match: Index, leaderMatch: Index)
    /// Promotion is decided where the learner's progress is known: on the leader.
    case notLeader(leader: NodeID?)
    /// One change at a time (see `ConfChange`); the earlier one is not applied yet.
    case changePending
    /// The leader refused the change, or none is known.
    case notAccepted

    public var description: String {
        switch self {
        case let .unknownMember(id): "member \(id) is not in the group"
        case let .alreadyMember(id): "member \(id) is already in the group"
        case let .lastVoter(id): "member \(id) is the only voter; removing it would leave no one to elect a leader"
        case let .notLearner(id): "member \(id) is a voter; only a learner can be promoted"
        case let .learnerNotReady(id, match, leaderMatch):
            "learner \(id) is not in sync with the leader yet (it holds index \(match) of \(leaderMatch)); retry when it has caught up"
        case let .notLeader(leader):
            "only the leader knows whether a learner has caught up; send the promotion to the leader"
                + (leader.map { " (member \($0))" } ?? " (none is known now)")
        case .changePending: "another membership change is in progress; retry once it is applied"
        case .notAccepted: "not accepted: no leader is known, or the leader has a membership change in progress"
        }
    }
}

/// Membership changes at run time, one member at a time (etcd's `member add/remove/promote/list`).
///
/// Raft's configuration holds member ids only; addresses are application state, as in etcd's
/// members bucket. They live in the replicated store (collection `memberAddressCollection`, key the
/// id in decimal, value `host:port`), so they reach every member through the log and through
/// snapshots. An add writes the address first and proposes the change after it: every member
/// applies the address before the configuration that needs it, and a snapshot that lists the new
/// member also holds its address.
extension RaftServer {
    public static let memberAddressCollection = "raft-members"

    /// Every voter and learner, as this member last applied the configuration.
    public func members() async -> [RaftMember] {
        let conf = await query { $0.status.conf }
        let addresses = transport.peers
        return conf.voters.union(conf.learners).sorted().map {
            RaftMember(id: $0, address: addresses[$0], isLearner: conf.learners.contains($0))
        }
    }

    /// Adds a member at `address`, as a learner or a voter, and returns once this member has applied
    /// the change. With no `id`, the member gets one above every id this member knows of (in the
    /// configuration, the address records or the start-up peers).
    public func addMember(id: NodeID?, address: PeerAddress, asLearner: Bool) async throws -> RaftMember {
        // Checked on this member's view first (a refusal needs no quorum), then again after a
        // ReadIndex barrier, so that they see every change committed before this call.
        func check(_ view: MembershipView) throws -> NodeID {
            let newID = id ?? (view.knownIDs.max() ?? 0) + 1
            precondition(newID != noNode, "member id 0 means no member")
            guard !view.conf.contains(newID) else { throw MembershipError.alreadyMember(newID) }
            guard !view.changePending else { throw MembershipError.changePending }
            return newID
        }
        _ = try check(await membershipView())
        try await linearizableBarrier()
        let newID = try check(await membershipView())
        let key = String(newID)
        let previous = store.get(Self.memberAddressCollection, key)
        // The address is written only over the record as read (or where there was none): a
        // concurrent add of the same id fails here instead of repointing a live member.
        let value = Array(address.description.utf8)
        let written = try await propose(previous.map {
            .update(collection: Self.memberAddressCollection, key: key, value: value, expectedVersion: $0.version)
        } ?? .create(collection: Self.memberAddressCollection, key: key, value: value))
        guard case let .success(changes) = written.result else {
            if case .failure(.alreadyExists) = written.result { throw MembershipError.changePending }
            if case .failure(.versionMismatch) = written.result { throw MembershipError.changePending }
            if case let .failure(e) = written.result { throw e }
            throw MembershipError.notAccepted
        }
        let version = changes.first { $0.object.collection == Self.memberAddressCollection && $0.object.key == key }?.object.version
        do {
            try await changeConfiguration(asLearner ? .addLearner(newID) : .addVoter(newID)) {
                $0.contains(newID) && $0.learners.contains(newID) == asLearner
            }
        } catch MembershipError.notAccepted {
            // Leave no trace of a member that was never added, unless someone wrote the record since.
            if previous == nil, let version {
                _ = try? await propose(.delete(collection: Self.memberAddressCollection, key: key, expectedVersion: version))
            }
            throw MembershipError.notAccepted
        }
        return RaftMember(id: newID, address: address, isLearner: asLearner)
    }

    /// Removes a voter or learner; returns once this member has applied the change.
    public func removeMember(_ id: NodeID) async throws {
        let view = await membershipView()
        guard view.conf.contains(id) else { throw MembershipError.unknownMember(id) }
        guard view.conf.voters != [id] else { throw MembershipError.lastVoter(id) }
        guard !view.changePending else { throw MembershipError.changePending }
        try await changeConfiguration(.remove(id)) { !$0.contains(id) }
        // The address goes after the member, so members still applying the removal can reach it.
        // A member removing itself no longer has a leader to propose to: the record stays.
        try? await deleteMemberAddress(id)
    }

    /// Makes a learner a voter; returns once this member has applied the change.
    public func promoteMember(_ id: NodeID) async throws {
        let view = await membershipView()
        guard view.conf.contains(id) else { throw MembershipError.unknownMember(id) }
        guard view.conf.learners.contains(id) else { throw MembershipError.notLearner(id) }
        guard !view.changePending else { throw MembershipError.changePending }
        // Only the leader knows how far the learner is: a follower refuses rather than promote a
        // learner that may be far behind (etcd forwards the request to the leader instead).
        guard let match = view.progress[id]?.match, let leaderMatch = view.progress[self.id]?.match else {
            let leader = await query { $0.status.leader }
            throw MembershipError.notLeader(leader: leader == noNode ? nil : leader)
        }
        if match * 10 < leaderMatch * 9 {
            throw MembershipError.learnerNotReady(id, match: match, leaderMatch: leaderMatch)
        }
        try await changeConfiguration(.addVoter(id)) { $0.voters.contains(id) }
    }

    // MARK: - Helpers

    struct MembershipView: Sendable {
        var conf: ConfState
        var changePending: Bool
        /// Filled on the leader only.
        var progress: [NodeID: Progress]
        /// Every id in the configuration, the address records or the start-up peers.
        var knownIDs: Set<NodeID>
    }

    func membershipView() async -> MembershipView {
        let (conf, pending, progress) = await query { core in
            let st = core.status
            return (st.conf, core.hasPendingConfChange, st.progress)
        }
        let recorded = store.list(Self.memberAddressCollection).compactMap { NodeID($0.key) }
        let known = conf.voters.union(conf.learners).union(recorded).union(configuredPeers.keys)
        return MembershipView(conf: conf, changePending: pending, progress: progress, knownIDs: known)
    }

    /// Proposes `cc` and waits until this member's applied configuration satisfies `done`.
    private func changeConfiguration(_ cc: ConfChange, done: @escaping @Sendable (ConfState) -> Bool) async throws {
        do {
            try await proposeConfChange(cc)
        } catch Failure.dropped {
            throw MembershipError.notAccepted
        }
        // A change forwarded to a leader that refuses it is lost without an answer, so the outcome
        // is known only by watching the configuration.
        let deadline = ContinuousClock.now + options.proposalTimeout
        while ContinuousClock.now < deadline {
            if done(await query { $0.status.conf }) { return }
            try await Task.sleep(for: options.tick)
        }
        throw Failure.timeout
    }

    private func deleteMemberAddress(_ id: NodeID) async throws {
        _ = try await propose(.delete(collection: Self.memberAddressCollection, key: String(id), expectedVersion: nil))
    }

    /// True if an applied command wrote or deleted a member's address.
    static func changesMemberAddresses(_ r: AppliedCommand) -> Bool {
        guard case let .success(changes) = r.result else { return false }
        return changes.contains { $0.object.collection == memberAddressCollection }
    }

    /// Points the transport at every member's address: the start-up peers, overridden by the
    /// replicated records. A member added at run time and removed again (its record deleted) is
    /// forgotten, so its connections close and its messages are refused; the start-up peers stay
    /// known, as they were given on the command line.
    func syncPeerAddresses() {
        var wanted = configuredPeers
        for o in store.list(Self.memberAddressCollection) {
            guard let id = NodeID(o.key), let a = try? PeerAddress(parsing: Substring(String(decoding: o.value, as: UTF8.self))) else {
                logger.warning("raft: ignoring a malformed member address record \(o.key)")
                continue
            }
            wanted[id] = a
        }
        let current = transport.peers
        for (id, a) in wanted where current[id] != a {
            logger.info("raft: member \(id) at \(a)")
            transport.setPeer(id, address: a)
        }
        for id in current.keys where wanted[id] == nil {
            logger.info("raft: forgetting member \(id)'s address")
            transport.removePeer(id)
        }
    }
}

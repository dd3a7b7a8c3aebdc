extension RaftNode {
    /// Feeds one message (from a peer or local) into the state machine.
    public mutating func step(_ m: Message) throws {
        // Term checks first, for every role (§5.1).
        if m.term == 0 {
            // Local message, or a forwarded request that is not bound to a term.
        } else if m.term > term {
            if m.type == .vote || m.type == .preVote {
                let force = m.context == Message.campaignTransfer
                let inLease = config.checkQuorum && leader != noNode && electionElapsed < config.electionTick
                // With the lease, a node that hears from a live leader ignores vote requests: a
                // member that was cut off cannot depose the leader when it comes back.
                if !force && inLease { return }
            }
            switch m.type {
            case .preVote:
                // Never change term because of a pre-vote.
                break
            case .preVoteResponse where !m.reject:
                // A granted pre-vote carries the term we asked for; we take it only when we campaign.
                break
            case .append, .heartbeat, .snapshot:
                becomeFollower(term: m.term, leader: m.from)
            default:
                becomeFollower(term: m.term, leader: noNode)
            }
        } else if m.term < term {
            if (config.checkQuorum || config.preVote) && (m.type == .heartbeat || m.type == .append) {
                // A stale leader whose appends we ignore would never learn of the new term if its own
                // elections are stopped by pre-vote or the lease; answer so it steps down.
                send(Message(type: .appendResponse, to: m.from))
            } else if m.type == .preVote {
                send(Message(type: .preVoteResponse, to: m.from, term: term, reject: true))
            }
            return
        }

        switch m.type {
        case .hup:
            hup(transfer: false)
        case .vote, .preVote:
            // We may vote again for whom we voted; or vote if we have no vote and no leader this term;
            // a pre-vote for a later term is always considered since it changes nothing.
            let canVote = vote == m.from || (vote == noNode && leader == noNode) || (m.type == .preVote && m.term > term)
            if canVote && log.isUpToDate(lastIndex: m.index, lastTerm: m.logTerm) {
                send(Message(type: m.type.response!, to: m.from, term: m.term))
                if m.type == .vote {
                    electionElapsed = 0
                    vote = m.from
                }
            } else {
                send(Message(type: m.type.response!, to: m.from, term: term, reject: true))
            }
        default:
            switch role {
            case .leader: try stepLeader(m)
            case .candidate, .preCandidate: try stepCandidate(m)
            case .follower: try stepFollower(m)
            }
        }
    }

    private mutating func hup(transfer: Bool) {
        guard role != .leader, promotable else { return }
        // The configuration we would count votes with may be about to change.
        if hasUnappliedConfChanges { return }
        if config.preVote && !transfer {
            campaign(preVote: true, transfer: false)
        } else {
            campaign(preVote: false, transfer: transfer)
        }
    }

    private mutating func campaign(preVote: Bool, transfer: Bool) {
        let voteType: MessageType
        let voteTerm: Term
        if preVote {
            becomePreCandidate()
            voteType = .preVote
            voteTerm = term + 1
        } else {
            becomeCandidate()
            voteType = .vote
            voteTerm = term
        }
        if tracker.recordVote(id, granted: true) == .won {
            // A single voter wins at once.
            if preVote { campaign(preVote: false, transfer: false) } else { becomeLeader(); bcastAppend() }
            return
        }
        for pid in tracker.conf.voters.sorted() where pid != id {
            send(Message(type: voteType, to: pid, term: voteTerm, logTerm: log.lastTerm, index: log.lastIndex,
                         context: transfer ? Message.campaignTransfer : []))
        }
    }

    // MARK: - Leader

    private mutating func stepLeader(_ m: Message) throws {
        switch m.type {
        case .beat:
            bcastHeartbeat()
            return
        case .checkQuorum:
            if !tracker.quorumActive(selfID: id) {
                becomeFollower(term: term, leader: noNode)
            }
            for pid in tracker.progress.keys where pid != id { tracker.progress[pid]!.recentActive = false }
            return
        case .propose:
            precondition(!m.entries.isEmpty, "empty proposal")
            // A removed leader, or one handing over, must not take new work.
            guard tracker.progress[id] != nil, leadTransferee == noNode else { throw RaftError.proposalDropped }
            if m.entries.contains(where: { $0.kind == .confChange }) {
                // One change at a time: refuse while an earlier one is not yet applied here.
                if pendingConfIndex > log.applied || m.entries.count > 1 { throw RaftError.proposalDropped }
                pendingConfIndex = log.lastIndex + 1
            }
            appendEntries(m.entries)
            bcastAppend()
            return
        case .readIndex:
            if tracker.conf.voters == [id] {
                respondToRead(index: log.committed, requester: m.from, context: m.context)
            } else if !committedEntryInCurrentTerm {
                // Our commit index may lag the real one until we commit in our own term (§6.4).
                pendingReadIndex.append(m)
            } else {
                serveReadIndex(m)
            }
            return
        default:
            break
        }

        guard var pr = tracker.progress[m.from] else { return }
        switch m.type {
        case .appendResponse:
            pr.recentActive = true
            if m.reject {
                // Fast back-off: skip every entry of a term the follower cannot have.
                var hint = m.rejectHint
                if m.logTerm > 0 { hint = log.findConflictByTerm(m.rejectHint, m.logTerm).index }
                if pr.maybeDecrease(rejected: m.index, hint: hint) {
                    if pr.state == .replicate { pr.becomeProbe() }
                    tracker.progress[m.from] = pr
                    maybeSendAppend(to: m.from)
                } else {
                    tracker.progress[m.from] = pr
                }
                return
            }
            let wasPaused = pr.isPaused
            guard pr.maybeUpdate(m.index) else {
                tracker.progress[m.from] = pr
                return
            }
            switch pr.state {
            case .probe:
                pr.becomeReplicate()
            case .snapshot where pr.match + 1 >= log.firstIndex:
                // The follower caught up through the snapshot; resume with appends.
                pr.becomeProbe()
                pr.becomeReplicate()
            case .replicate:
                pr.inflights.free(upTo: m.index)
            default:
                break
            }
            tracker.progress[m.from] = pr
            if maybeCommit() {
                bcastAppend()
            } else if wasPaused {
                maybeSendAppend(to: m.from)
            }
            // Keep the pipeline full while the window allows.
            while maybeSendAppend(to: m.from, sendIfEmpty: false) {}
            if m.from == leadTransferee, tracker.progress[m.from]!.match == log.lastIndex {
                sendTimeoutNow(to: m.from)
            }
        case .heartbeatResponse:
            pr.recentActive = true
            pr.probeSent = false
            if pr.state == .replicate, pr.inflights.isFull { pr.inflights.freeFirst() }
            tracker.progress[m.from] = pr
            if pr.match < log.lastIndex { maybeSendAppend(to: m.from) }
            guard !m.context.isEmpty, let acks = readOnly.ack(m.from, context: m.context),
                  tracker.isQuorum(acks) else { return }
            for req in readOnly.release(through: m.context) {
                respondToRead(index: req.index, requester: req.requester, context: req.context)
            }
        case .snapshotStatus:
            guard pr.state == .snapshot else { return }
            if m.reject { pr.pendingSnapshot = 0 }
            pr.becomeProbe()
            // Wait for a heartbeat response before probing, as the snapshot may still be in use.
            pr.probeSent = true
            tracker.progress[m.from] = pr
        case .unreachable:
            if pr.state == .replicate { pr.becomeProbe() }
            tracker.progress[m.from] = pr
        case .transferLeader:
            guard !pr.isLearner else { return }
            let transferee = m.from
            if transferee == id || leadTransferee == transferee { return }
            leadTransferee = transferee
            // The transfer must finish within an election timeout or it is abandoned.
            electionElapsed = 0
            if pr.match == log.lastIndex {
                sendTimeoutNow(to: transferee)
            } else {
                maybeSendAppend(to: transferee)
            }
        default:
            break
        }
    }

    private mutating func serveReadIndex(_ m: Message) {
        readOnly.add(index: log.committed, requester: m.from, context: m.context, selfID: id)
        bcastHeartbeat(context: m.context)
    }

    private mutating func respondToRead(index: Index, requester: NodeID, context: [UInt8]) {
        if requester == noNode || requester == id {
            readStates.append(ReadState(index: index, context: context))
        } else {
            send(Message(type: .readIndexResponse, to: requester, index: index, context: context))
        }
    }

    mutating func releasePendingReadIndex() {
        guard role == .leader, !pendingReadIndex.isEmpty, committedEntryInCurrentTerm else { return }
        let waiting = pendingReadIndex
        pendingReadIndex = []
        for m in waiting { serveReadIndex(m) }
    }

    // MARK: - Candidate

    private mutating func stepCandidate(_ m: Message) throws {
        let myResponse: MessageType = role == .preCandidate ? .preVoteResponse : .voteResponse
        switch m.type {
        case .propose, .readIndex:
            throw RaftError.proposalDropped
        case .append:
            becomeFollower(term: m.term, leader: m.from)
            handleAppend(m)
        case .heartbeat:
            becomeFollower(term: m.term, leader: m.from)
            handleHeartbeat(m)
        case .snapshot:
            becomeFollower(term: m.term, leader: m.from)
            handleSnapshot(m)
        case myResponse:
            switch tracker.recordVote(m.from, granted: !m.reject) {
            case .won:
                if role == .preCandidate {
                    campaign(preVote: false, transfer: false)
                } else {
                    becomeLeader()
                    bcastAppend()
                }
            case .lost:
                // A pre-vote or vote response with a term above ours has already made us follow.
                becomeFollower(term: term, leader: noNode)
            case .pending:
                break
            }
        default:
            break
        }
    }

    // MARK: - Follower

    private mutating func stepFollower(_ m: Message) throws {
        switch m.type {
        case .propose, .readIndex, .transferLeader:
            guard leader != noNode else { throw RaftError.proposalDropped }
            var fwd = m
            fwd.to = leader
            send(fwd)
        case .append:
            electionElapsed = 0
            leader = m.from
            handleAppend(m)
        case .heartbeat:
            electionElapsed = 0
            leader = m.from
            handleHeartbeat(m)
        case .snapshot:
            electionElapsed = 0
            leader = m.from
            handleSnapshot(m)
        case .timeoutNow:
            // Skip the pre-vote: the leader asked us to take over, and its followers must not refuse.
            hup(transfer: true)
        case .readIndexResponse:
            readStates.append(ReadState(index: m.index, context: m.context))
        default:
            break
        }
    }

    private mutating func handleAppend(_ m: Message) {
        if m.index < log.committed {
            send(Message(type: .appendResponse, to: m.from, index: log.committed))
            return
        }
        if let lastNew = log.maybeAppend(prevIndex: m.index, prevTerm: m.logTerm, leaderCommit: m.commit,
                                         newEntries: m.entries) {
            send(Message(type: .appendResponse, to: m.from, index: lastNew))
            return
        }
        // Tell the leader where our log might agree: the last index at or below its probe whose
        // term is not above the probe's term. It can skip whole terms instead of one entry a round.
        let hint = log.findConflictByTerm(min(m.index, log.lastIndex), m.logTerm)
        send(Message(type: .appendResponse, to: m.from, logTerm: hint.term, index: m.index,
                     reject: true, rejectHint: hint.index))
    }

    private mutating func handleHeartbeat(_ m: Message) {
        log.commit(to: m.commit)
        send(Message(type: .heartbeatResponse, to: m.from, context: m.context))
    }

    private mutating func handleSnapshot(_ m: Message) {
        guard let s = m.snapshot else { return }
        if restore(s) {
            send(Message(type: .appendResponse, to: m.from, index: log.lastIndex))
        } else {
            send(Message(type: .appendResponse, to: m.from, index: log.committed))
        }
    }

    /// Loads a snapshot from the leader; false if we already have everything it holds.
    private mutating func restore(_ s: Snapshot) -> Bool {
        let meta = s.metadata
        if meta.index <= log.committed { return false }
        // A snapshot that does not list us comes from a configuration we are not part of.
        guard meta.confState.contains(id) else { return false }
        if log.matchTerm(meta.index, meta.term) {
            // We hold the snapshot's last entry, hence (log matching) everything before it: just commit.
            log.commit(to: meta.index)
            return false
        }
        log.restore(s)
        tracker.apply(meta.confState, next: log.lastIndex + 1)
        confAppliedIndex = meta.index
        confHistory = [(meta.index, meta.confState)]
        return true
    }
}

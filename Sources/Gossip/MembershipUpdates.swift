/// The SWIM state transitions, with memberlist's rules for incarnations:
/// a higher incarnation always wins; at equal incarnation dead beats suspect beats alive;
/// news about this node itself at our incarnation or above is refuted with a higher one.
extension GossipNode {
    mutating func handleAlive(_ alive: Alive, now: GossipInstant) {
        if alive.node == name {
            guard !isLeaving, alive.incarnation >= incarnation else { return }
            if alive.incarnation == incarnation, alive.address == address { return }
            // Someone holds a different (or newer) view of us, e.g. from before a restart.
            refute(alive.incarnation, now: now)
            return
        }
        guard alive.node.utf8.count <= WireLimits.name else { return }
        if var member = members[alive.node] {
            guard alive.incarnation > member.incarnation else { return }
            let previous = member.status
            member.incarnation = alive.incarnation
            member.address = alive.address
            member.status = .alive
            if previous != .alive { member.statusChangedAt = now }
            members[alive.node] = member
            suspicions[alive.node] = nil
            if previous != .alive {
                events.append(previous == .left ? .memberJoined(member) : .memberAlive(member))
            }
            if !previous.isActive {
                ownerBecameActive(alive.node)
            }
        } else {
            let member = Member(name: alive.node, address: alive.address, incarnation: alive.incarnation, status: .alive, statusChangedAt: now)
            members[alive.node] = member
            memberNames.append(alive.node)
            // A newcomer goes to a random place in the probe round, as memberlist does, so that it is
            // probed within one round without reshuffling everyone.
            let position = Int.random(in: probeIndex...probeOrder.count, using: &random)
            probeOrder.insert(alive.node, at: position)
            events.append(.memberJoined(member))
        }
        broadcasts.enqueue(.member(alive.node), .alive(alive))
    }

    mutating func handleSuspect(_ suspect: Suspect, now: GossipInstant) {
        guard var member = members[suspect.node], suspect.incarnation >= member.incarnation else { return }
        if suspect.node == name {
            guard !isLeaving else { return }
            refute(suspect.incarnation, now: now)
            return
        }
        switch member.status {
        case .dead, .left:
            return
        case .suspect:
            if suspect.incarnation > member.incarnation {
                // A newer incarnation was suspected again: restart the timer at that incarnation.
                suspicions[suspect.node] = nil
                member.status = .alive
                members[suspect.node] = member
                handleSuspect(suspect, now: now)
                return
            }
            if suspicions[suspect.node]?.confirm(from: suspect.from) == true {
                broadcasts.enqueue(.member(suspect.node), .suspect(suspect))
            }
        case .alive:
            member.incarnation = suspect.incarnation
            member.status = .suspect
            member.statusChangedAt = now
            members[suspect.node] = member
            suspicions[suspect.node] = makeSuspicion(suspect, now: now)
            counters.suspicionsStarted += 1
            events.append(.memberSuspected(member))
            broadcasts.enqueue(.member(suspect.node), .suspect(suspect))
        }
    }

    /// memberlist's parameters: the minimum is `multiplier * max(1, log10(n)) * probeInterval`, the
    /// maximum a fixed multiple of it, and `multiplier - 2` confirmations are expected (none in a
    /// cluster too small to supply them).
    func makeSuspicion(_ suspect: Suspect, now: GossipInstant) -> Suspicion {
        let n = activeMemberCount
        var expected = configuration.suspicionMultiplier - 2
        if n - 2 < expected { expected = 0 }
        let scale = max(1.0, GossipMath.log10(Double(max(1, n))))
        let minimum = Int64(Double(configuration.suspicionMultiplier) * scale * Double(configuration.probeInterval.gossipNanoseconds))
        let (maximum, overflow) = minimum.multipliedReportingOverflow(by: Int64(configuration.suspicionMaxTimeoutMultiplier))
        return Suspicion(from: suspect.from, incarnation: suspect.incarnation, expectedConfirmations: expected,
                         minimumNanoseconds: minimum, maximumNanoseconds: overflow ? .max : maximum, now: now)
    }

    mutating func handleDead(_ dead: Dead, now: GossipInstant) {
        guard var member = members[dead.node], dead.incarnation >= member.incarnation else { return }
        let isLeave = dead.from == dead.node
        if dead.node == name {
            if isLeaving { return }
            refute(dead.incarnation, now: now)
            return
        }
        switch member.status {
        case .left:
            return
        case .dead:
            // A leave announcement may arrive after we had already declared the node failed.
            guard isLeave else { return }
        case .alive, .suspect:
            break
        }
        let previous = member.status
        suspicions[dead.node] = nil
        member.incarnation = dead.incarnation
        member.status = isLeave ? .left : .dead
        member.statusChangedAt = now
        members[dead.node] = member
        if isLeave {
            events.append(.memberLeft(member))
            ownerLeft(dead.node, wasActive: previous.isActive)
        } else {
            counters.membersDeclaredDead += 1
            events.append(.memberFailed(member))
        }
        if previous.isActive, !isLeave {
            ownerBecameInactive(dead.node)
        }
        broadcasts.enqueue(.member(dead.node), .dead(dead))
    }

    /// Lifeguard counts being accused as a sign of our own slowness.
    mutating func refute(_ accused: UInt64, now: GossipInstant) {
        incarnation = GossipMath.successor(max(incarnation, accused))
        counters.refutations += 1
        health.apply(1)
        members[name]?.incarnation = incarnation
        members[name]?.status = .alive
        broadcasts.enqueue(.member(name), .alive(Alive(incarnation: incarnation, node: name, address: address)))
    }

    mutating func suspicionTick(now: GossipInstant) {
        guard !suspicions.isEmpty else { return }
        let expired = suspicions.filter { now >= $0.value.deadline }.keys.sorted()
        for node in expired {
            guard let suspicion = suspicions[node], let member = members[node] else { continue }
            handleDead(Dead(incarnation: max(member.incarnation, suspicion.incarnation), node: node, from: name), now: now)
        }
    }

    /// Members (not this node) a gossip round may go to: active ones, and recently dead ones so
    /// that a falsely declared node hears of it and refutes (memberlist's GossipToTheDeadTime).
    func gossipCandidates(now: GossipInstant) -> [Member] {
        let deadWindow = configuration.gossipToTheDeadTime.gossipNanoseconds
        return memberNames.compactMap { memberName -> Member? in
            guard memberName != name, let member = members[memberName] else { return nil }
            switch member.status {
            case .alive, .suspect: return member
            case .dead: return now.nanoseconds(since: member.statusChangedAt) < deadWindow ? member : nil
            case .left: return nil
            }
        }
    }
}

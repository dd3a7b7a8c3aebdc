/// The probe this node is running: a direct ping, then indirect pings, then a suspicion.
struct ProbeInFlight: Sendable {
    var target: String
    var sequence: UInt32
    /// When the direct ping has waited long enough and indirect probes go out.
    var indirectAt: GossipInstant
    /// The end of the probe interval: without an ack by then, the target is suspected.
    var deadline: GossipInstant
    var indirectSent = false
    var expectedNacks = 0
    var nacks = 0
}

/// A probe this node runs for another member's indirect ping.
struct IndirectRelay: Sendable {
    var requester: NodeAddress
    var requesterSequence: UInt32
    var wantsNack: Bool
    var nackAt: GossipInstant
    var expiresAt: GossipInstant
    var nackSent = false
}

extension GossipNode {
    /// Round-robin over a shuffled member list, as SWIM prescribes, so every member is probed
    /// within a bounded time rather than only with high probability.
    mutating func nextProbeTarget() -> Member? {
        for _ in 0..<(probeOrder.count + 1) {
            if probeIndex >= probeOrder.count {
                probeOrder = memberNames.filter { $0 != name }
                for i in stride(from: probeOrder.count - 1, to: 0, by: -1) {
                    probeOrder.swapAt(i, Int.random(in: 0...i, using: &random))
                }
                probeIndex = 0
                if probeOrder.isEmpty { return nil }
            }
            let candidate = probeOrder[probeIndex]
            probeIndex += 1
            if let member = members[candidate], member.status.isActive {
                return member
            }
        }
        return nil
    }

    mutating func probeTick(now: GossipInstant) {
        if var running = probe {
            guard let target = members[running.target], target.status.isActive else {
                probe = nil
                return
            }
            if !running.indirectSent, now >= running.indirectAt {
                running.indirectSent = true
                let helpers = random.sample(
                    memberNames.filter { $0 != name && $0 != running.target && members[$0]?.status == .alive },
                    count: configuration.indirectChecks)
                running.expectedNacks = helpers.count
                for helper in helpers {
                    guard let relay = members[helper] else { continue }
                    counters.indirectProbes += 1
                    sendPacket(to: relay.address, .indirectPing(IndirectPing(
                        sequence: running.sequence, target: target.name, targetAddress: target.address, wantsNack: true)))
                }
                probe = running
            }
            if now >= running.deadline {
                probe = nil
                counters.failedProbes += 1
                // Lifeguard: missing nacks mean our own link may be at fault, so slow down; if no
                // helper was available we cannot tell, and count the failure against ourselves.
                if running.expectedNacks > 0 {
                    health.apply(max(0, running.expectedNacks - running.nacks))
                } else {
                    health.apply(1)
                }
                handleSuspect(Suspect(incarnation: target.incarnation, node: target.name, from: name), now: now)
            }
            return
        }
        guard now >= nextProbeAt else { return }
        let interval = health.scale(configuration.probeInterval.gossipNanoseconds)
        nextProbeAt = now.advanced(byNanoseconds: interval)
        guard let target = nextProbeTarget() else { return }
        let sequence = nextSequence()
        counters.probes += 1
        probe = ProbeInFlight(
            target: target.name, sequence: sequence,
            indirectAt: now.advanced(byNanoseconds: health.scale(configuration.probeTimeout.gossipNanoseconds)),
            deadline: now.advanced(byNanoseconds: interval))
        sendPacket(to: target.address, .ping(Ping(sequence: sequence, target: target.name)))
    }

    mutating func relayTick(now: GossipInstant) {
        guard !relays.isEmpty else { return }
        for sequence in relays.keys.sorted() {
            guard var relay = relays[sequence] else { continue }
            if relay.wantsNack, !relay.nackSent, now >= relay.nackAt {
                relay.nackSent = true
                relays[sequence] = relay
                sendPacket(to: relay.requester, .nack(sequence: relay.requesterSequence))
            }
            if now >= relay.expiresAt {
                relays[sequence] = nil
            }
        }
    }

    mutating func handlePing(_ ping: Ping, from sender: NodeAddress, now: GossipInstant) {
        // A ping for a previous owner of this address must not vouch for it.
        guard ping.target == name, !isLeaving else { return }
        sendPacket(to: sender, .ack(sequence: ping.sequence))
    }

    mutating func handleIndirectPing(_ request: IndirectPing, from sender: NodeAddress, now: GossipInstant) {
        guard !isLeaving else { return }
        let sequence = nextSequence()
        let timeout = configuration.probeTimeout.gossipNanoseconds
        // memberlist answers with a nack at 80% of the probe timeout, leaving time for it to arrive.
        relays[sequence] = IndirectRelay(
            requester: sender, requesterSequence: request.sequence, wantsNack: request.wantsNack,
            nackAt: now.advanced(byNanoseconds: timeout / 5 * 4), expiresAt: now.advanced(byNanoseconds: timeout))
        sendPacket(to: request.targetAddress, .ping(Ping(sequence: sequence, target: request.target)))
    }

    mutating func handleAck(_ sequence: UInt32, now: GossipInstant) {
        if let running = probe, running.sequence == sequence {
            probe = nil
            health.apply(-1)
            return
        }
        if let relay = relays.removeValue(forKey: sequence) {
            sendPacket(to: relay.requester, .ack(sequence: relay.requesterSequence))
        }
    }

    mutating func handleNack(_ sequence: UInt32) {
        guard var running = probe, running.sequence == sequence, running.nacks < running.expectedNacks else { return }
        running.nacks += 1
        counters.nacksReceived += 1
        probe = running
    }
}

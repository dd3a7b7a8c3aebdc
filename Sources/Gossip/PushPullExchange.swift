/// Anti-entropy: a periodic exchange of the full state with one random member over a stream.
/// It carries members, network membership and table entries together, so a message lost to
/// gossip is always repaired within a push-pull interval.
extension GossipNode {
    mutating func pushPullRound(now: GossipInstant) {
        let candidates = memberNames.compactMap { memberName -> Member? in
            guard memberName != name, let member = members[memberName], member.status == .alive else { return nil }
            return member
        }
        guard let target = random.sample(candidates, count: 1).first else { return }
        sendPushPull(to: target.address, join: false, response: false, requesterNetworks: nil, now: now)
    }

    /// After a partition both sides have declared the other dead and stopped gossiping to it;
    /// reaching out to one failed member at a time lets whichever side refutes first pull the
    /// rest of the cluster back together.
    mutating func reconnectRound(now: GossipInstant) {
        let failed = memberNames.compactMap { memberName -> Member? in
            guard let member = members[memberName], member.status == .dead else { return nil }
            return member
        }
        guard let target = random.sample(failed, count: 1).first else { return }
        sendPushPull(to: target.address, join: true, response: false, requesterNetworks: nil, now: now)
    }

    /// Sends our state. For a response, entries are limited to the networks the requester is in.
    mutating func sendPushPull(to destination: NodeAddress, join: Bool, response: Bool, requesterNetworks: Set<String>?, now: GossipInstant) {
        let state = PushPull(sender: name, isJoin: join, isResponse: response, members: memberStates(),
                             networks: networkStates(), entries: entryStates(networks: requesterNetworks, now: now))
        let bytes = GossipCodec.encodeStream(state)
        guard bytes.count <= configuration.maxStreamSize else { return }
        counters.streamsSent += 1
        counters.bytesSent += bytes.count
        outbox.append(.stream(to: destination, bytes: bytes))
    }

    func memberStates() -> [MemberState] {
        memberNames.compactMap { memberName in
            members[memberName].map { MemberState(name: $0.name, address: $0.address, incarnation: $0.incarnation, status: $0.status) }
        }
    }

    func networkStates() -> [NetworkEvent] {
        networkMembers.keys.sorted().compactMap { key in
            networkMembers[key].map { NetworkEvent(time: $0.time, node: key.node, network: key.network, leaving: $0.leaving) }
        }
    }

    /// The entries of the networks this node is in (intersected with `networks` when given),
    /// tombstones included, sorted so the bytes depend only on the state.
    func entryStates(networks: Set<String>?, now: GossipInstant) -> [TableEvent] {
        let joined = Set(joinedNetworks)
        return entries.keys.filter { joined.contains($0.network) && (networks?.contains($0.network) ?? true) }
            .sorted()
            .compactMap { key in entries[key].map { tableEvent(key, $0, now: now) } }
    }

    mutating func handlePushPull(_ state: PushPull, from sender: NodeAddress, now: GossipInstant) {
        // Members first, so the owners of entries below are known when the entries are judged.
        for remote in state.members {
            switch remote.status {
            case .alive:
                handleAlive(Alive(incarnation: remote.incarnation, node: remote.name, address: remote.address), now: now)
            case .suspect:
                handleSuspect(Suspect(incarnation: remote.incarnation, node: remote.name, from: name), now: now)
            case .dead:
                // memberlist: another node's verdict is only a reason to suspect, never to declare dead.
                handleSuspect(Suspect(incarnation: remote.incarnation, node: remote.name, from: name), now: now)
            case .left:
                handleDead(Dead(incarnation: remote.incarnation, node: remote.name, from: remote.name), now: now)
            }
        }
        var requesterNetworks = Set<String>()
        let requester = state.sender
        for event in state.networks {
            _ = mergeNetworkEvent(event, now: now)
            if event.node == requester, !event.leaving { requesterNetworks.insert(event.network) }
        }
        for event in state.entries {
            _ = mergeTableEvent(event, now: now)
        }
        if !state.isResponse, !isLeaving {
            sendPushPull(to: sender, join: false, response: true, requesterNetworks: requesterNetworks, now: now)
        }
    }
}

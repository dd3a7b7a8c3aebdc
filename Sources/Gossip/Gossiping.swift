/// Sending packets: every packet is filled up to `maxPacketSize` with queued broadcasts, and a
/// gossip round pushes membership news to random members and each network's table news to
/// random members of that network only.
extension GossipNode {
    var membershipTransmitLimit: Int {
        GossipMath.retransmitLimit(multiplier: configuration.retransmitMultiplier, nodes: activeMemberCount)
    }

    /// Sends `message` with as many membership broadcasts piggy-backed as fit.
    mutating func sendPacket(to destination: NodeAddress, _ message: GossipMessage) {
        let first = GossipCodec.encode(message)
        let budget = configuration.maxPacketSize - GossipCodec.packetHeaderSize - GossipCodec.messageOverhead - first.count
        let extra = broadcasts.take(budget: budget, overhead: GossipCodec.messageOverhead,
                                    maxCount: GossipCodec.maxMessagesPerPacket - 1, transmitLimit: membershipTransmitLimit)
        emitPacket(to: destination, [first] + extra)
    }

    mutating func emitPacket(to destination: NodeAddress, _ messages: [[UInt8]]) {
        guard !messages.isEmpty else { return }
        let bytes = GossipCodec.packet(messages)
        counters.packetsSent += 1
        counters.bytesSent += bytes.count
        outbox.append(.packet(to: destination, bytes: bytes))
    }

    mutating func gossipRound(now: GossipInstant) {
        let budget = configuration.maxPacketSize - GossipCodec.packetHeaderSize
        let maxCount = GossipCodec.maxMessagesPerPacket
        if !broadcasts.isEmpty {
            let limit = membershipTransmitLimit
            for target in random.sample(gossipCandidates(now: now), count: configuration.gossipNodes) {
                let messages = broadcasts.take(budget: budget, overhead: GossipCodec.messageOverhead, maxCount: maxCount, transmitLimit: limit)
                if messages.isEmpty { break }
                emitPacket(to: target.address, messages)
            }
        }
        for network in joinedNetworks {
            gossipTables(of: network)
        }
    }

    /// Sends one round of a network's queued table broadcasts to random members of it.
    mutating func gossipTables(of network: String) {
        let budget = configuration.maxPacketSize - GossipCodec.packetHeaderSize
        let maxCount = GossipCodec.maxMessagesPerPacket
        guard var queue = networkBroadcasts[network], !queue.isEmpty else { return }
        let peers = networkPeers(network)
        let limit = GossipMath.retransmitLimit(multiplier: configuration.retransmitMultiplier, nodes: peers.count + 1)
        for target in random.sample(peers, count: configuration.gossipNodes) {
            let messages = queue.take(budget: budget, overhead: GossipCodec.messageOverhead, maxCount: maxCount, transmitLimit: limit)
            if messages.isEmpty { break }
            emitPacket(to: target.address, messages)
        }
        if peers.isEmpty {
            // Nobody to tell yet; push-pull will carry the entries when a peer joins.
            queue.removeAll()
        }
        networkBroadcasts[network] = queue
    }

    /// Sends a network's queued table broadcasts now rather than at the next
    /// gossip round, so a local write leaves at once (on average half a
    /// gossip interval sooner, a whole one at worst). It is one round's worth
    /// of sending, counted against the same retransmit limit, so the total
    /// number of copies does not grow.
    public mutating func flushTableBroadcasts(network: String, now: GossipInstant) -> [GossipOutput] {
        if joinedNetworks.contains(network) { gossipTables(of: network) }
        return drainOutbox()
    }

    /// Active members, other than this node, whose latest record says they are in `network`.
    func networkPeers(_ network: String) -> [Member] {
        memberNames.compactMap { memberName -> Member? in
            guard memberName != name, let member = members[memberName], member.status.isActive,
                  let record = networkMembers[NetworkMemberKey(node: memberName, network: network)], !record.leaving
            else { return nil }
            return member
        }
    }
}

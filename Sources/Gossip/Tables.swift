/// Per-network tables of key → value entries, as libnetwork's NetworkDB keeps them: each entry has
/// an owner and a Lamport time, a delete leaves a tombstone, and only members of a network hear
/// about its entries.
extension GossipNode {
    // MARK: networks

    /// The networks this node has joined, sorted.
    public var networks: [String] { joinedNetworks }

    /// Active members (this node included when joined) whose latest record says they are in `network`.
    public func members(ofNetwork network: String) -> [String] {
        (joinedNetworks.contains(network) ? [name] : []) + networkPeers(network).map(\.name)
    }

    @discardableResult
    public mutating func joinNetwork(_ network: String, now: GossipInstant) throws -> [GossipOutput] {
        guard !isLeaving else { throw GossipTableError.leaving }
        guard network.utf8.count <= WireLimits.name else { throw GossipTableError.nameTooLong(network) }
        guard !joinedNetworks.contains(network) else { return drainOutbox() }
        let event = NetworkEvent(time: networkClock.tick(), node: name, network: network, leaving: false)
        networkMembers[NetworkMemberKey(node: name, network: network)] = NetworkRecord(time: event.time, leaving: false, reapAt: nil)
        joinedNetworks.append(network)
        joinedNetworks.sort()
        networkBroadcasts[network] = TransmitQueue()
        broadcasts.enqueue(.network(node: name, network: network), .network(event))
        // Fetch the network's entries now, as NetworkDB bulk-syncs on join, rather than waiting
        // up to a push-pull interval.
        if let peer = random.sample(networkPeers(network), count: 1).first {
            sendPushPull(to: peer.address, join: false, response: false, requesterNetworks: nil, now: now)
        }
        return drainOutbox()
    }

    public mutating func leaveNetwork(_ network: String, now: GossipInstant) throws {
        guard joinedNetworks.contains(network) else { throw GossipTableError.notJoined(network: network) }
        let event = NetworkEvent(time: networkClock.tick(), node: name, network: network, leaving: true)
        networkMembers[NetworkMemberKey(node: name, network: network)] = NetworkRecord(
            time: event.time, leaving: true, reapAt: now.advanced(by: configuration.networkLeaveReapTime))
        joinedNetworks.removeAll { $0 == network }
        networkBroadcasts[network] = nil
        // Others drop our entries when they see the leave; we drop every entry of the network.
        for key in entries.keys.filter({ $0.network == network }).sorted() {
            store(key, nil)
        }
        broadcasts.enqueue(.network(node: name, network: network), .network(event))
    }

    // MARK: entries

    public mutating func createEntry(network: String, table: String, key: String, value: [UInt8], now: GossipInstant) throws {
        let entryKey = try checkedKey(network: network, table: table, key: key)
        if let current = entries[entryKey], !current.deleting {
            throw GossipTableError.entryExists(entryKey)
        }
        try write(entryKey, value: value, deleting: false, now: now)
    }

    public mutating func updateEntry(network: String, table: String, key: String, value: [UInt8], now: GossipInstant) throws {
        let entryKey = try checkedKey(network: network, table: table, key: key)
        try requireOwnLiveEntry(entryKey)
        try write(entryKey, value: value, deleting: false, now: now)
    }

    public mutating func deleteEntry(network: String, table: String, key: String, now: GossipInstant) throws {
        let entryKey = try checkedKey(network: network, table: table, key: key)
        try requireOwnLiveEntry(entryKey)
        try write(entryKey, value: [], deleting: true, now: now)
    }

    /// The visible value: nil for a missing or deleted entry, or one whose owner has failed.
    public func entry(network: String, table: String, key: String) -> [UInt8]? {
        entries[EntryKey(network: network, table: table, key: key)].flatMap { isVisible($0) ? $0.value : nil }
    }

    /// The visible entries of one table, sorted by key.
    public func entries(network: String, table: String) -> [(key: String, owner: String, value: [UInt8])] {
        entries.filter { $0.key.network == network && $0.key.table == table && isVisible($0.value) }
            .sorted { $0.key < $1.key }
            .map { (key: $0.key.key, owner: $0.value.owner, value: $0.value.value) }
    }

    /// The visible entries of `table` in every network, by network: one
    /// pass over the store (asking network by network walked the whole
    /// store once per network, which grew as networks times entries).
    public func entries(table: String) -> [String: [(key: String, owner: String, value: [UInt8])]] {
        var found: [String: [(key: String, owner: String, value: [UInt8])]] = [:]
        for (key, entry) in entries where key.table == table && isVisible(entry) {
            found[key.network, default: []].append((key: key.key, owner: entry.owner, value: entry.value))
        }
        return found.mapValues { $0.sorted { $0.key < $1.key } }
    }

    /// Everything stored, tombstones and suspended entries included, for debugging dumps.
    public var storedEntries: [(key: EntryKey, entry: StoredEntry)] {
        entries.sorted { $0.key < $1.key }.map { (key: $0.key, entry: $0.value) }
    }

    private func checkedKey(network: String, table: String, key: String) throws -> EntryKey {
        guard !isLeaving else { throw GossipTableError.leaving }
        guard joinedNetworks.contains(network) else { throw GossipTableError.notJoined(network: network) }
        guard table.utf8.count <= WireLimits.name else { throw GossipTableError.nameTooLong(table) }
        guard key.utf8.count <= WireLimits.key else { throw GossipTableError.nameTooLong(key) }
        return EntryKey(network: network, table: table, key: key)
    }

    private func requireOwnLiveEntry(_ key: EntryKey) throws {
        guard let current = entries[key], !current.deleting else { throw GossipTableError.entryNotFound(key) }
        guard current.owner == name else { throw GossipTableError.notOwner(key, owner: current.owner) }
    }

    private mutating func write(_ key: EntryKey, value: [UInt8], deleting: Bool, now: GossipInstant) throws {
        let entry = StoredEntry(owner: name, time: tableClock.time &+ 1, value: value, deleting: deleting,
                                reapAt: deleting ? now.advanced(by: configuration.tombstoneReapTime) : nil)
        let event = tableEvent(key, entry, now: now)
        let size = GossipCodec.encode(.table(event)).count
        let limit = configuration.maxPacketSize - GossipCodec.packetHeaderSize - GossipCodec.messageOverhead
        guard size <= limit else { throw GossipTableError.tooLarge(key, encodedSize: size, limit: limit) }
        _ = tableClock.tick()
        store(key, entry)
        networkBroadcasts[key.network]?.enqueue(.entry(key), .table(event))
    }

    // MARK: merging what others send

    /// Applies a network join or leave; returns true if it was news (and is now re-gossiped).
    mutating func mergeNetworkEvent(_ event: NetworkEvent, now: GossipInstant) -> Bool {
        networkClock.witness(event.time)
        let key = NetworkMemberKey(node: event.node, network: event.network)
        if event.node == name {
            // Only this node knows whether it is in the network. A record that says otherwise (from
            // before a restart, or stale) is overridden by re-announcing the truth at a later time.
            let joined = joinedNetworks.contains(event.network)
            let current = networkMembers[key]
            guard event.leaving == joined, event.time >= (current?.time ?? 0) else { return false }
            if current == nil, event.leaving { return false }
            let correction = NetworkEvent(time: networkClock.tick(), node: name, network: event.network, leaving: !joined)
            networkMembers[key] = NetworkRecord(time: correction.time, leaving: !joined,
                                                reapAt: joined ? nil : now.advanced(by: configuration.networkLeaveReapTime))
            broadcasts.enqueue(.network(node: name, network: event.network), .network(correction))
            return false
        }
        if let current = networkMembers[key], current.time >= event.time { return false }
        if let member = members[event.node], member.status == .left { return false }
        networkMembers[key] = NetworkRecord(time: event.time, leaving: event.leaving,
                                            reapAt: event.leaving ? now.advanced(by: configuration.networkLeaveReapTime) : nil)
        if event.leaving {
            for entryKey in entries.filter({ $0.key.network == event.network && $0.value.owner == event.node }).keys.sorted() {
                store(entryKey, nil)
            }
        }
        broadcasts.enqueue(.network(node: event.node, network: event.network), .network(event))
        return true
    }

    /// Applies one version of an entry; returns true if it was news (and is now re-gossiped).
    mutating func mergeTableEvent(_ event: TableEvent, now: GossipInstant) -> Bool {
        guard joinedNetworks.contains(event.network) else { return false }
        tableClock.witness(event.time)
        let key = EntryKey(network: event.network, table: event.table, key: event.key)
        if event.owner == name {
            reassertOwnEntry(key, seen: event, now: now)
            return false
        }
        // An unknown owner was reaped (or never existed): a copy of its entry must not resurrect it.
        guard let owner = members[event.owner], owner.status != .left else { return false }
        if !event.deleting, let record = networkMembers[NetworkMemberKey(node: event.owner, network: event.network)], record.leaving {
            return false
        }
        if let current = entries[key] {
            guard event.time >= current.time else { return false }
            if event.time == current.time {
                // The same version again, or two writes with one time (two owners of a key, or an
                // owner whose clock restarted): a delete beats a write, then the larger owner name,
                // then the larger value wins, so every node picks the same one.
                if event.owner == current.owner {
                    if event.deleting != current.deleting {
                        guard event.deleting else { return false }
                    } else {
                        guard !event.deleting, event.value.lexicographicallyPrecedes(current.value) == false,
                              event.value != current.value else { return false }
                    }
                } else {
                    guard event.owner > current.owner else { return false }
                }
            }
        }
        let residual = Int64(event.residualReapMilliseconds) * 1_000_000
        let keep = min(residual, configuration.tombstoneReapTime.gossipNanoseconds)
        let entry = StoredEntry(owner: event.owner, time: event.time, value: event.deleting ? [] : event.value,
                                deleting: event.deleting, reapAt: event.deleting ? now.advanced(byNanoseconds: keep) : nil)
        store(key, entry)
        let rebroadcast = tableEvent(key, entry, now: now)
        networkBroadcasts[event.network]?.enqueue(.entry(key), .table(rebroadcast))
        return true
    }

    /// Someone holds a version of an entry this node owns that differs from ours. If ours is newer
    /// it is simply gossiped again (bumping its time for every stale copy in flight would start a
    /// republish storm); if theirs is as new or newer (it predates our restart, whose clock began
    /// again at zero), ours is republished at a later time so that it wins everywhere.
    /// An own entry we do not hold at all (forgotten in a restart, or its tombstone reaped while a
    /// stale copy survived a partition) is deleted for good, with a time above the stale copy.
    mutating func reassertOwnEntry(_ key: EntryKey, seen event: TableEvent, now: GossipInstant) {
        var entry: StoredEntry
        if let current = entries[key] {
            guard current.owner == name else { return }
            if event.time == current.time, event.deleting == current.deleting, event.value == current.value { return }
            entry = current
            if event.time < current.time {
                let again = tableEvent(key, entry, now: now)
                networkBroadcasts[key.network]?.enqueue(.entry(key), .table(again))
                return
            }
        } else {
            guard !event.deleting else { return }
            entry = StoredEntry(owner: name, time: 0, value: [], deleting: true, reapAt: nil)
        }
        entry.time = tableClock.tick()
        if entry.deleting { entry.reapAt = now.advanced(by: configuration.tombstoneReapTime) }
        entries[key] = entry
        counters.ownEntriesRepublished += 1
        let republished = tableEvent(key, entry, now: now)
        networkBroadcasts[key.network]?.enqueue(.entry(key), .table(republished))
    }

    func tableEvent(_ key: EntryKey, _ entry: StoredEntry, now: GossipInstant) -> TableEvent {
        var residual: UInt32 = 0
        if let reapAt = entry.reapAt {
            residual = UInt32(clamping: max(0, reapAt.nanoseconds(since: now)) / 1_000_000)
        }
        return TableEvent(time: entry.time, owner: entry.owner, network: key.network, table: key.table, key: key.key,
                          value: entry.value, deleting: entry.deleting, residualReapMilliseconds: residual)
    }

    // MARK: visibility

    /// A live entry is hidden while its owner is failed (suspended, moby#53142), not deleted.
    func isVisible(_ entry: StoredEntry) -> Bool {
        !entry.deleting && (entry.owner == name || members[entry.owner]?.status.isActive == true)
    }

    /// Replaces an entry and records the change consumers see, if any.
    mutating func store(_ key: EntryKey, _ entry: StoredEntry?) {
        let before = entries[key].flatMap { isVisible($0) ? $0 : nil }
        if let entry { entries[key] = entry } else { entries[key] = nil }
        let after = entry.flatMap { isVisible($0) ? $0 : nil }
        switch (before, after) {
        case (nil, nil):
            break
        case (nil, let now?):
            events.append(.table(TableChange(kind: .created, network: key.network, table: key.table, key: key.key, owner: now.owner, value: now.value)))
        case (let old?, nil):
            events.append(.table(TableChange(kind: .deleted, network: key.network, table: key.table, key: key.key, owner: old.owner, value: old.value)))
        case (let old?, let now?):
            if old.value != now.value || old.owner != now.owner {
                events.append(.table(TableChange(kind: .updated, network: key.network, table: key.table, key: key.key, owner: now.owner, value: now.value)))
            }
        }
    }

    /// The owner is alive again: its suspended entries reappear.
    mutating func ownerBecameActive(_ owner: String) {
        for (key, entry) in ownedEntries(owner) where !entry.deleting {
            events.append(.table(TableChange(kind: .created, network: key.network, table: key.table, key: key.key, owner: owner, value: entry.value)))
        }
    }

    /// The owner failed: its entries are suspended until it returns or is reaped.
    mutating func ownerBecameInactive(_ owner: String) {
        for (key, entry) in ownedEntries(owner) where !entry.deleting {
            events.append(.table(TableChange(kind: .deleted, network: key.network, table: key.table, key: key.key, owner: owner, value: entry.value)))
        }
    }

    /// The owner left gracefully: its entries go with it (the status is already `.left`).
    mutating func ownerLeft(_ owner: String, wasActive: Bool) {
        for (key, entry) in ownedEntries(owner) {
            entries[key] = nil
            if wasActive, !entry.deleting {
                events.append(.table(TableChange(kind: .deleted, network: key.network, table: key.table, key: key.key, owner: owner, value: entry.value)))
            }
        }
    }

    func ownedEntries(_ owner: String) -> [(EntryKey, StoredEntry)] {
        entries.filter { $0.value.owner == owner }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}

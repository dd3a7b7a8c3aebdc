/// What a queued broadcast is about; a newer broadcast about the same thing replaces the older one,
/// as memberlist's `Invalidates` does, so stale news is never retransmitted.
enum BroadcastKey: Hashable, Sendable {
    case member(String)
    case network(node: String, network: String)
    case entry(EntryKey)
}

/// Broadcasts waiting to be piggy-backed, each sent a bounded number of times
/// (`retransmitMultiplier * ceil(log10(n + 1))`), fewest-sent first so fresh news spreads fastest.
///
/// Items sit in per-transmit-count levels, so choosing the next ones costs no sort.
struct TransmitQueue: Sendable {
    private struct Item: Sendable {
        var encoded: [UInt8]
        var transmits: Int
    }

    private var items: [UInt64: Item] = [:]
    private var idByKey: [BroadcastKey: UInt64] = [:]
    private var keyByID: [UInt64: BroadcastKey] = [:]
    /// `levels[t]` holds the ids sent `t` times (possibly stale ids, skipped lazily), oldest first.
    private var levels: [[UInt64]] = []
    private var nextID: UInt64 = 0

    var count: Int { items.count }
    var isEmpty: Bool { items.isEmpty }

    mutating func enqueue(_ key: BroadcastKey, _ message: GossipMessage) {
        if let old = idByKey[key] {
            items[old] = nil
            keyByID[old] = nil
        }
        nextID += 1
        items[nextID] = Item(encoded: GossipCodec.encode(message), transmits: 0)
        idByKey[key] = nextID
        keyByID[nextID] = key
        if levels.isEmpty { levels.append([]) }
        levels[0].append(nextID)
    }

    mutating func removeAll() {
        self = TransmitQueue()
    }

    /// Takes encoded broadcasts whose sizes plus `overhead` each fit in `budget` bytes, at most
    /// `maxCount`; each taken item counts one transmit and is dropped after `transmitLimit`.
    mutating func take(budget: Int, overhead: Int, maxCount: Int, transmitLimit: Int) -> [[UInt8]] {
        var remaining = budget
        var taken: [[UInt8]] = []
        var promoted: [(id: UInt64, level: Int)] = []
        var level = 0
        while level < levels.count, taken.count < maxCount, remaining > overhead {
            var kept: [UInt64] = []
            kept.reserveCapacity(levels[level].count)
            // Newest first within a level, as memberlist does.
            for id in levels[level].reversed() {
                guard let item = items[id], item.transmits == level else { continue }
                if level >= transmitLimit {
                    drop(id)
                    continue
                }
                let size = item.encoded.count + overhead
                if taken.count < maxCount, size <= remaining {
                    remaining -= size
                    taken.append(item.encoded)
                    promoted.append((id, level + 1))
                } else {
                    kept.append(id)
                }
            }
            levels[level] = kept.reversed()
            level += 1
        }
        for (id, next) in promoted {
            if next >= transmitLimit {
                drop(id)
                continue
            }
            items[id]?.transmits = next
            while levels.count <= next { levels.append([]) }
            levels[next].append(id)
        }
        while let last = levels.last, last.isEmpty, levels.count > 1 { levels.removeLast() }
        return taken
    }

    private mutating func drop(_ id: UInt64) {
        items[id] = nil
        if let key = keyByID.removeValue(forKey: id), idByKey[key] == id {
            idByKey[key] = nil
        }
    }
}

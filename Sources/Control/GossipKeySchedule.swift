import Cluster
import FoundationEssentials

/// When the swarm's gossip key is rotated, and how, without a moment where
/// two nodes cannot read each other: a new key is first installed beside
/// the old one (every node opens both, seals with the old), then used
/// (every node seals with the new, still opens the old), then the old one
/// is removed; each step waits `settle` for every node's heartbeat to
/// carry it. Swarm rotates its network keys every 12 hours the same way.
/// Pure: the caller passes the time and makes the new key.
public enum GossipKeySchedule {
    /// The next keys and rotation state, or nil when nothing is due.
    public static func next(keys: [String], rotation: GossipKeyRotation, now: Date, interval: Duration, settle: Duration,
                            newKey: () -> String) -> (keys: [String], rotation: GossipKeyRotation)? {
        let elapsed = now.timeIntervalSince(rotation.since)
        switch rotation.step {
        case .stable:
            guard elapsed >= interval.timeInterval, let current = keys.first else { return nil }
            return ([current, newKey()], GossipKeyRotation(step: .installed, since: now))
        case .installed:
            guard elapsed >= settle.timeInterval, keys.count >= 2 else { return nil }
            return ([keys[1], keys[0]], GossipKeyRotation(step: .using, since: now))
        case .using:
            guard elapsed >= settle.timeInterval, let current = keys.first else { return nil }
            return ([current], GossipKeyRotation(step: .stable, since: now))
        }
    }
}

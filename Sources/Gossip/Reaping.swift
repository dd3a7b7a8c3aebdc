/// Forgetting what is no longer needed: tombstones after `tombstoneReapTime`, network leave records
/// after `networkLeaveReapTime`, and failed or departed members (with their suspended entries)
/// after `deadMemberReapTime`.
extension GossipNode {
    mutating func reap(now: GossipInstant) {
        for (key, entry) in entries where entry.deleting {
            if let reapAt = entry.reapAt, now >= reapAt {
                entries[key] = nil
                counters.tombstonesReaped += 1
            }
        }
        for (key, record) in networkMembers {
            if let reapAt = record.reapAt, now >= reapAt {
                networkMembers[key] = nil
            } else if members[key.node] == nil {
                networkMembers[key] = nil
            }
        }
        let window = configuration.deadMemberReapTime.gossipNanoseconds
        let expired = memberNames.filter { memberName in
            guard memberName != name, let member = members[memberName], !member.status.isActive else { return false }
            return now.nanoseconds(since: member.statusChangedAt) >= window
        }
        guard !expired.isEmpty else { return }
        let gone = Set(expired)
        for memberName in expired {
            members[memberName] = nil
            suspicions[memberName] = nil
            counters.membersReaped += 1
            events.append(.memberReaped(name: memberName))
        }
        memberNames.removeAll { gone.contains($0) }
        // Entries of a reaped owner were already invisible, so no change is reported for them.
        for (key, entry) in entries where gone.contains(entry.owner) {
            entries[key] = nil
        }
        for key in networkMembers.keys where gone.contains(key.node) {
            networkMembers[key] = nil
        }
    }
}

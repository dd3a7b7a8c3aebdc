import FoundationEssentials
import Gossip

/// A snapshot of one node's gossip state, for `swarmnet debug peers` and `debug table`; encode it
/// with `JSONEncoder` or print its fields.
public struct GossipDump: Sendable, Codable, Hashable {
    public var node: String
    public var address: String
    public var incarnation: UInt64
    /// Lifeguard's local health score; 0 is healthy.
    public var localHealth: Int
    public var leaving: Bool
    public var members: [MemberDump]
    /// The networks this node has joined, with the members it knows in each.
    public var networks: [NetworkDump]
    /// Stored entries, tombstones and suspended entries included, sorted by network, table, key.
    public var entries: [EntryDump]
    /// Fingerprints of the keyring's keys, primary first; empty when gossip is not encrypted.
    public var keys: [String]
    public var counters: CountersDump
}

/// One member as this node sees it.
public struct MemberDump: Sendable, Codable, Hashable {
    public var name: String
    public var address: String
    public var incarnation: UInt64
    /// alive, suspect, dead or left.
    public var status: String
    /// How long ago the status last changed.
    public var statusAgeMilliseconds: Int64
}

/// A joined network and its members (this node included).
public struct NetworkDump: Sendable, Codable, Hashable {
    public var name: String
    public var members: [String]
}

/// One stored table entry.
public struct EntryDump: Sendable, Codable, Hashable {
    public var network: String
    public var table: String
    public var key: String
    public var owner: String
    /// The Lamport time of this version.
    public var time: UInt64
    /// A tombstone, kept until it is reaped.
    public var deleting: Bool
    /// What consumers see: false for tombstones and for entries whose owner has failed.
    public var visible: Bool
    /// The value as UTF-8 text when it is valid UTF-8.
    public var text: String?
    public var base64: String
}

/// The core's counters and the transport's, flattened for printing.
public struct CountersDump: Sendable, Codable, Hashable {
    public var packetsSent: Int
    public var packetsReceived: Int
    public var bytesSent: Int
    public var bytesReceived: Int
    public var streamsSent: Int
    public var streamsReceived: Int
    public var malformedInputs: Int
    public var probes: Int
    public var indirectProbes: Int
    public var failedProbes: Int
    public var nacksReceived: Int
    public var suspicionsStarted: Int
    public var refutations: Int
    public var membersDeclaredDead: Int
    public var ownEntriesRepublished: Int
    public var tombstonesReaped: Int
    public var membersReaped: Int
    /// What left and reached the sockets (sealed sizes).
    public var transport: TransportCounters

    init(core c: GossipCounters, transport: TransportCounters) {
        packetsSent = c.packetsSent
        packetsReceived = c.packetsReceived
        bytesSent = c.bytesSent
        bytesReceived = c.bytesReceived
        streamsSent = c.streamsSent
        streamsReceived = c.streamsReceived
        malformedInputs = c.malformedInputs
        probes = c.probes
        indirectProbes = c.indirectProbes
        failedProbes = c.failedProbes
        nacksReceived = c.nacksReceived
        suspicionsStarted = c.suspicionsStarted
        refutations = c.refutations
        membersDeclaredDead = c.membersDeclaredDead
        ownEntriesRepublished = c.ownEntriesRepublished
        tombstonesReaped = c.tombstonesReaped
        membersReaped = c.membersReaped
        self.transport = transport
    }
}

extension GossipDump {
    init(core: GossipNode, keyring: Keyring?, transport: TransportCounters, now: GossipInstant, network: String?, table: String?) {
        node = core.name
        address = core.address.description
        incarnation = core.incarnation
        localHealth = core.localHealthScore
        leaving = core.isLeaving
        let memberList = core.memberList
        members = memberList.map { member in
            MemberDump(name: member.name, address: member.address.description, incarnation: member.incarnation,
                       status: member.status.description,
                       statusAgeMilliseconds: now.nanoseconds(since: member.statusChangedAt) / 1_000_000)
        }
        networks = core.networks.filter { network == nil || $0 == network }.map {
            NetworkDump(name: $0, members: core.members(ofNetwork: $0))
        }
        let active = Set(memberList.filter { $0.status.isActive }.map(\.name))
        entries = core.storedEntries.filter { stored in
            (network == nil || stored.key.network == network) && (table == nil || stored.key.table == table)
        }.map { stored in
            EntryDump(network: stored.key.network, table: stored.key.table, key: stored.key.key, owner: stored.entry.owner,
                      time: stored.entry.time, deleting: stored.entry.deleting,
                      visible: !stored.entry.deleting && (stored.entry.owner == core.name || active.contains(stored.entry.owner)),
                      text: String(validating: stored.entry.value, as: UTF8.self),
                      base64: Data(stored.entry.value).base64EncodedString())
        }
        keys = keyring?.keys.map(\.fingerprint) ?? []
        counters = CountersDump(core: core.counters, transport: transport)
    }
}

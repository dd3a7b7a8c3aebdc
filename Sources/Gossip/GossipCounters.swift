/// Counters for `swarmnet debug` and tests; they only ever grow.
public struct GossipCounters: Sendable, Hashable {
    public var packetsSent = 0
    public var packetsReceived = 0
    public var bytesSent = 0
    public var bytesReceived = 0
    public var streamsSent = 0
    public var streamsReceived = 0
    /// Packets or streams that failed to decode and were dropped.
    public var malformedInputs = 0
    public var probes = 0
    public var indirectProbes = 0
    public var failedProbes = 0
    public var nacksReceived = 0
    public var suspicionsStarted = 0
    public var refutations = 0
    public var membersDeclaredDead = 0
    public var ownEntriesRepublished = 0
    public var tombstonesReaped = 0
    public var membersReaped = 0

    public init() {}
}

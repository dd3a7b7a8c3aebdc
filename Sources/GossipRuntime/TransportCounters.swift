/// What the runtime itself counts, beside the core's `GossipCounters`: bytes as they leave and
/// reach the sockets (sealed, so including the keyring's overhead), and what it had to drop.
/// They only ever grow.
public struct TransportCounters: Sendable, Hashable, Codable {
    public var udpPacketsSent = 0
    public var udpBytesSent = 0
    public var udpPacketsReceived = 0
    public var udpBytesReceived = 0
    /// Push-pull frames written, requests and responses (TCP).
    public var streamsSent = 0
    public var streamBytesSent = 0
    public var streamsReceived = 0
    public var streamBytesReceived = 0
    /// UDP packets that no key of the keyring opened (wrong key, not encrypted, or tampered with).
    public var undecryptablePackets = 0
    /// Push-pull frames that no key of the keyring opened.
    public var undecryptableStreams = 0
    /// Streams closed for a frame over the size limit or a broken connection.
    public var streamErrors = 0
    /// Push-pull connections that could not be made, or closed without a response.
    public var streamConnectFailures = 0
    /// Datagrams the socket refused, or addressed to something that is not an IP address.
    public var sendErrors = 0

    public init() {}

    /// Every byte this node put on the wire, UDP and TCP payloads.
    public var bytesSent: Int { udpBytesSent + streamBytesSent }

    /// Every message dropped because no key opened it.
    public var undecryptable: Int { undecryptablePackets + undecryptableStreams }
}

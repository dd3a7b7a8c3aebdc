/// Bytes the caller must transmit on the core's behalf.
public enum GossipOutput: Sendable, Hashable {
    /// One UDP datagram of at most `maxPacketSize` bytes.
    case packet(to: NodeAddress, bytes: [UInt8])
    /// One push-pull message over a stream (TCP). A response to a received stream is addressed to
    /// the `from` that stream was received with; a runtime writes it back on the same connection.
    case stream(to: NodeAddress, bytes: [UInt8])

    public var destination: NodeAddress {
        switch self {
        case .packet(let to, _), .stream(let to, _): to
        }
    }
}

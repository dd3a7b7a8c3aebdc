import Namespaces

/// `net.ipv4.tcp_timestamps` in a namespace whose own connections a VIP
/// balancer rewrites: a workload's, where its table DNATs what it sends to
/// a VIP.
///
/// Why: with 1, Linux's default since 4.10, a connection's timestamps
/// start from a random offset keyed by its source and destination
/// addresses as the socket sees them. A client that reaches a backend both
/// through a VIP (destination: the VIP) and straight (the backend's own
/// address, from `tasks.NAME`) so runs two unrelated clocks into the same
/// backend.
/// - A backend that closed first (an HTTP/1.0 server) holds the connection
///   in TIME_WAIT for 60 s. It accepts a new SYN from the same address and
///   port only if the SYN's timestamp is newer (PAWS). When it is not, the
///   backend answers with an ACK, the client resets and sends its SYN
///   again: 2 ms later, or after the 1 s retransmission timeout when that
///   second SYN overtakes the reset. Two such misses in a row exceed a
///   client's 2 s timeout.
/// - Conntrack keeps a source port from being reused towards a backend
///   while it knows the old connection. But a new connection from the
///   same port to the VIP replaces the old entry, and may land on another
///   backend; the first backend's TIME_WAIT is then unknown to it.
/// - Measured on the test bed (a client alternating between a VIP and its
///   three tasks): 773 of 35,462 connections sent their SYN twice and 10
///   waited 1 s. With one clock, none did.
///
/// 2 keeps RFC 7323 timestamps without the random offset: every connection
/// from the namespace reads one clock, which only goes forward. The cost
/// is what the offset was added to avoid: a peer can read the host's
/// millisecond clock, as before Linux 4.10. Only 1 is changed: 0
/// (timestamps off, chosen by someone) and 2 are left as they are.
public enum TCPTimestampClock {
    static let path = "/proc/sys/net/ipv4/tcp_timestamps"

    /// Sets 2 where the namespace has 1; returns whether it changed it.
    @discardableResult
    public static func useOneClock(in namespace: NetworkNamespace) throws -> Bool {
        try namespace.run {
            guard try Sysctl.readInt(path) == 1 else { return false }
            try Sysctl.write(path, "2\n")
            return true
        }
    }

    /// Undoes `useOneClock` (the namespace leaves swarmnet's care but lives
    /// on: a namespace attached by hand and disconnected): 2 back to 1. A
    /// value someone changed since is left alone.
    public static func restoreClockPerDestination(in namespace: NetworkNamespace) throws {
        try namespace.run {
            guard try Sysctl.readInt(path) == 2 else { return }
            try Sysctl.write(path, "1\n")
        }
    }
}

import Namespaces
import NIOCore

/// Every knob of the embedded server, with defaults for production; tests
/// shrink the timings.
public struct DNSServerConfiguration: Sendable {
    /// Where the server listens inside the workload namespace.
    public var listenHost = ResolvConf.embeddedServerAddress
    public var listenPort = 53

    /// TTL of our answers and the search domains stripped before lookup.
    public var policy = DNSResolverPolicy()

    /// How long one upstream has to answer one attempt (UDP, or the TCP
    /// retry of a truncated answer). libnetwork waits 4 s per server;
    /// shorter here so that with two upstreams the SERVFAIL still comes
    /// before glibc's 5 s client timeout.
    public var upstreamTimeout: TimeAmount = .seconds(2)
    /// The whole forwarding of one query, across upstreams.
    public var forwardTimeout: TimeAmount = .milliseconds(4_500)
    /// Upstreams tried per query, in order (libnetwork's `maxExtDNS`).
    public var maxUpstreamsPerQuery = 3
    /// Forwarded queries in flight at once; more get SERVFAIL at once
    /// (libnetwork's `maxConcurrent`).
    public var maxConcurrentForwards = 100
    /// The namespace whose network the forwarding sockets use; nil for the
    /// daemon's own (the process's). Tests set it to reach a resolver in a
    /// test namespace without touching the host's network.
    public var forwardingNamespace: NetworkNamespace?

    /// A TCP client connection with no query outstanding is closed after
    /// this long (RFC 7766 §6.2.3 asks for seconds, not minutes).
    public var tcpIdleTimeout: TimeAmount = .seconds(10)
    /// TCP connections served at once; more are closed on accept.
    public var maxTCPConnections = 64
    /// Queries one TCP connection may have outstanding; beyond that the
    /// connection stops being read until answers go out.
    public var maxQueriesPerTCPConnection = 16

    public init() {}
}

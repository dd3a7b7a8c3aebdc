import Logging
import Synchronization

/// Turns received bytes into reply bytes: decode, ask the policy, encode
/// within the transport's size, or hand the query to the forwarder. Shared
/// by the UDP and TCP handlers; safe from any thread.
final class DNSQueryEngine: Sendable {
    enum Transport: String, Sendable {
        case udp, tcp
    }

    enum Outcome: Sendable {
        case reply([UInt8])
        /// Nothing to send: fewer than twelve bytes, or a response rather
        /// than a query (answering those would let two servers loop).
        case drop
        case forward(Forwarding)
    }

    /// A query for the forwarder, with what it needs to finish the reply.
    struct Forwarding: Sendable {
        let bytes: [UInt8]
        let query: DNSMessage
        /// The largest reply the client can take.
        let limit: Int
    }

    let policy: DNSResolverPolicy
    let records: any DNSRecordSource
    let forwarder: UpstreamForwarder
    let logger: Logger
    let counters = Mutex(DNSServerCounters())

    init(policy: DNSResolverPolicy, records: any DNSRecordSource, forwarder: UpstreamForwarder, logger: Logger) {
        self.policy = policy
        self.records = records
        self.forwarder = forwarder
        self.logger = logger
    }

    func handle(_ bytes: [UInt8], over transport: Transport) -> Outcome {
        counters.withLock { $0.queries += 1 }
        guard let header = DNSMessage.header(of: bytes), !header.isResponse else {
            counters.withLock { $0.dropped += 1 }
            return .drop
        }
        let query: DNSMessage
        do {
            query = try DNSMessage(decoding: bytes)
        } catch {
            counters.withLock { $0.malformed += 1 }
            logger.debug("malformed query", metadata: ["error": "\(error)", "transport": "\(transport.rawValue)"])
            var reply = DNSMessage(header: DNSHeader(id: header.id))
            reply.header.isResponse = true
            reply.header.opcode = header.opcode
            reply.header.recursionDesired = header.recursionDesired
            reply.header.recursionAvailable = true
            reply.header.responseCode = UInt8(DNSResponseCode.formatError.rawValue)
            return (try? reply.encoded()).map(Outcome.reply) ?? .drop
        }
        let limit = Self.limit(for: query, over: transport)
        var random = SystemRandomNumberGenerator()
        switch policy.decide(query, records: records, random: &random) {
        case .answer(let reply):
            counters.withLock { $0.answered += 1 }
            logger.trace("answered", metadata: ["question": "\(query.questions.first.map(describe) ?? "-")",
                                                "answers": "\(reply.answers.count)"])
            return (try? reply.encoded(limit: limit)).map(Outcome.reply) ?? .drop
        case .forward:
            return .forward(Forwarding(bytes: bytes, query: query, limit: limit))
        }
    }

    /// Forwards, and answers SERVFAIL when no upstream does.
    func forward(_ forwarding: Forwarding) async -> [UInt8]? {
        counters.withLock { $0.forwarded += 1 }
        if let reply = await forwarder.forward(forwarding.bytes, question: forwarding.query.questions[0], limit: forwarding.limit) {
            return reply
        }
        counters.withLock { $0.serverFailures += 1 }
        logger.debug("no upstream answered", metadata: ["question": "\(describe(forwarding.query.questions[0]))"])
        return try? policy.reply(forwarding.query, .serverFailure).encoded(limit: forwarding.limit)
    }

    /// RFC 1035 §4.2.1: 512 bytes over UDP unless the client's OPT offers
    /// more (RFC 6891 §6.2.5); TCP carries up to 65,535.
    static func limit(for query: DNSMessage, over transport: Transport) -> Int {
        switch transport {
        case .tcp: 65_535
        case .udp: max(512, Int(query.edns?.udpPayloadSize ?? 512))
        }
    }

    private func describe(_ question: DNSQuestion) -> String {
        "\(question.name) \(question.type)"
    }
}

/// What the server has done since it started, for `swarmnet debug dns`.
public struct DNSServerCounters: Sendable, Hashable {
    public var queries = 0
    public var answered = 0
    public var forwarded = 0
    public var serverFailures = 0
    public var malformed = 0
    public var dropped = 0
}

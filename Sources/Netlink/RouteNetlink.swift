#if canImport(Glibc)
import Glibc
#endif
import CNetlinkShim
import SystemBasics
import Namespaces

/// A session with the kernel's routing netlink (rtnetlink) in one network
/// namespace. Methods are named after iproute2's verbs (`linkAdd`,
/// `addressAdd`, `neighbourReplace`, `fdbAppend`...), so a reader who knows
/// `ip` and `bridge` knows the API. Safe to share between threads: requests
/// are serialized on the session's socket.
public final class RouteNetlink: @unchecked Sendable {
    /// The namespace the socket lives in; nil for the caller's own.
    public let namespace: NetworkNamespace?
    private let transport: NetlinkTransport
    private let lock = Lock()
    private var lastSequence: UInt32

    /// Opens a session in `namespace`, or in the caller's own when nil.
    public convenience init(namespace: NetworkNamespace? = nil) throws {
        try namespace?.checkExists()
        try self.init(transport: MnlSocket(namespace: namespace), namespace: namespace)
    }

    /// A session over any transport; tests pass one that replays replies.
    public init(transport: NetlinkTransport, namespace: NetworkNamespace? = nil, firstSequence: UInt32 = 1) {
        self.transport = transport
        self.namespace = namespace
        lastSequence = firstSequence &- 1
    }

    /// "namespace 'x'" or "the host namespace", for messages.
    public var namespaceDescription: String {
        namespace.map { "namespace \($0)" } ?? "the current namespace"
    }

    /// How many times a dump is retried when the kernel marks it interrupted.
    static let dumpAttempts = 10

    // MARK: - One request

    // execute, query, dump and apply(_:describe:) serve any netlink protocol:
    // the IPVS back end (LoadBalancing) runs them over a NETLINK_GENERIC socket.

    /// Sends a request that changes something and waits for the kernel's ack.
    public func execute(_ request: NetlinkRequest, operation: String, object: String) throws {
        _ = try exchange(request, operation: operation, object: object)
    }

    /// Sends a request for one object and returns the reply message.
    public func query(_ request: NetlinkRequest, operation: String, object: String) throws -> NetlinkMessage {
        let replies = try exchange(request, operation: operation, object: object)
        guard let reply = replies.first else {
            throw NetlinkError.malformedMessage("\(operation) \(object): the kernel acknowledged without a reply")
        }
        return reply
    }

    /// Dumps a table. A dump the kernel marks interrupted (the table changed
    /// while it was read, NLM_F_DUMP_INTR) is read to its end, discarded and
    /// asked for again: a caller never sees half a table.
    public func dump(_ request: NetlinkRequest, operation: String) throws -> [NetlinkMessage] {
        for _ in 0..<Self.dumpAttempts {
            var interrupted = false
            let messages = try exchange(request, operation: operation, object: "", interrupted: &interrupted)
            if !interrupted { return messages }
        }
        throw NetlinkError.dumpInterrupted(operation: operation, attempts: Self.dumpAttempts)
    }

    private func exchange(_ request: NetlinkRequest, operation: String, object: String) throws -> [NetlinkMessage] {
        var interrupted = false
        return try exchange(request, operation: operation, object: object, interrupted: &interrupted)
    }

    private func exchange(
        _ request: NetlinkRequest, operation: String, object: String, interrupted: inout Bool
    ) throws -> [NetlinkMessage] {
        try lock.withLock {
            var request = request
            let sequence = nextSequence()
            request.setSequence(sequence)
            try transport.send(request.bytes)
            var replies: [NetlinkMessage] = []
            while true {
                for message in try NetlinkMessage.split(transport.receive()) {
                    // Replies to an earlier request that gave up (a thrown
                    // error mid-dump) are skipped by their sequence number.
                    guard message.sequence == sequence else { continue }
                    if message.flags & UInt16(NLM_F_DUMP_INTR) != 0 { interrupted = true }
                    switch Int32(message.type) {
                    case NLMSG_ERROR:
                        let ack = try Acknowledgement(message)
                        if ack.errno != 0 {
                            throw NetlinkError.kernel(KernelError(
                                operation: operation, object: object.isEmpty ? "in \(namespaceDescription)" : object,
                                errno: ack.errno, kernelMessage: ack.kernelMessage))
                        }
                        return replies
                    case NLMSG_DONE:
                        // A dump that failed part-way ends with DONE carrying -errno.
                        if message.payload.count >= 4 {
                            let status = Int32(bitPattern: message.payload.loadHost(UInt32.self, at: message.payload.startIndex))
                            if status < 0 {
                                throw NetlinkError.kernel(KernelError(
                                    operation: operation, object: object.isEmpty ? "in \(namespaceDescription)" : object,
                                    errno: -status, kernelMessage: nil))
                            }
                        }
                        return replies
                    case NLMSG_NOOP:
                        continue
                    default:
                        replies.append(message)
                    }
                }
            }
        }
    }

    // MARK: - Batches

    /// Most bytes sent in one datagram; the kernel refuses a datagram larger
    /// than the socket's send buffer (about 208 KiB by default).
    static let batchDatagramLimit = 64 * 1024

    /// Applies many independent requests with few system calls: requests
    /// are packed into large datagrams, and only the last of each carries
    /// NLM_F_ACK. The kernel handles a datagram's messages in order before
    /// sendmsg returns and answers every failure with an error (ack flag or
    /// not), so once the last message's ack arrives, every failure of that
    /// datagram has been read. A failed request does not stop the others.
    ///
    /// Throws `NetlinkError.batchFailed` listing each failed request.
    public func apply(_ batch: NetlinkBatch) throws {
        try apply(batch.requests) { (batch.operation(at: $0), batch.object(at: $0)) }
    }

    /// `apply(_:)` for requests of any netlink protocol; `describe` names the
    /// operation and object of request `index`, called only for a failure.
    public func apply(_ requests: [NetlinkRequest], describe: (Int) -> (operation: String, object: String)) throws {
        var failures: [BatchFailure] = []
        try lock.withLock {
            var start = 0
            while start < requests.count {
                var datagram: [UInt8] = []
                var sequences: [UInt32: Int] = [:]
                var end = start
                while end < requests.count,
                      datagram.isEmpty || datagram.count + requests[end].bytes.count <= Self.batchDatagramLimit {
                    var request = requests[end]
                    let sequence = nextSequence()
                    request.setSequence(sequence)
                    sequences[sequence] = end
                    if end + 1 < requests.count,
                       datagram.count + request.bytes.count + requests[end + 1].bytes.count <= Self.batchDatagramLimit {
                        request.clearAckFlag()
                    }
                    datagram += request.bytes
                    end += 1
                }
                let lastSequence = self.lastSequence
                try transport.send(datagram)
                var finished = false
                while !finished {
                    for message in try NetlinkMessage.split(transport.receive()) {
                        guard Int32(message.type) == NLMSG_ERROR, let index = sequences[message.sequence] else { continue }
                        let ack = try Acknowledgement(message)
                        if ack.errno != 0 {
                            let (operation, object) = describe(index)
                            failures.append(BatchFailure(index: index, error: KernelError(
                                operation: operation, object: object,
                                errno: ack.errno, kernelMessage: ack.kernelMessage)))
                        }
                        if message.sequence == lastSequence { finished = true }
                    }
                }
                start = end
            }
        }
        if !failures.isEmpty {
            throw NetlinkError.batchFailed(failures: failures, total: requests.count)
        }
    }

    private func nextSequence() -> UInt32 {
        lastSequence &+= 1
        if lastSequence == 0 { lastSequence = 1 }
        return lastSequence
    }
}

/// An NLMSG_ERROR message: errno 0 is an acknowledgement. With NETLINK_EXT_ACK
/// the kernel appends attributes, among them a message explaining the error.
public struct Acknowledgement: Sendable {
    public let errno: Int32
    public let kernelMessage: String?

    public init(_ message: NetlinkMessage) throws {
        guard message.payload.count >= 20 else {
            throw NetlinkError.malformedMessage("error message of \(message.payload.count) bytes, need 20")
        }
        let start = message.payload.startIndex
        errno = -Int32(bitPattern: message.payload.loadHost(UInt32.self, at: start))
        guard message.flags & UInt16(NLM_F_ACK_TLVS) != 0 else {
            kernelMessage = nil
            return
        }
        // After the error code comes the request's header, and its payload
        // too unless the kernel capped it (NLM_F_CAPPED).
        var offset = start + 4 + 16
        if message.flags & UInt16(NLM_F_CAPPED) == 0 {
            let echoedLength = Int(message.payload.loadHost(UInt32.self, at: start + 4))
            offset = start + 4 + Int(cnl_nlmsg_align(UInt32(echoedLength)))
        }
        guard offset <= message.payload.endIndex else {
            kernelMessage = nil
            return
        }
        let attributes = try Attributes(parsing: message.payload[offset...])
        kernelMessage = attributes.string(Int(NLMSGERR_ATTR_MSG.rawValue))
    }
}

extension NetlinkRequest {
    mutating func clearAckFlag() { setFlags(flags & ~UInt16(NLM_F_ACK)) }
}

#if canImport(Glibc)
import Glibc
#endif
import CNetlinkShim
import SystemBasics
import Namespaces

/// A change the kernel announced on the link or neighbour multicast groups.
public enum NetlinkEvent: Sendable {
    /// RTM_NEWLINK: a link appeared or changed (flags, master, MTU...).
    case linkChanged(Link)
    case linkRemoved(Link)
    case neighbourChanged(NeighbourEntry)
    case neighbourRemoved(NeighbourEntry)
    case fdbChanged(FDBEntry)
    case fdbRemoved(FDBEntry)
    /// The kernel dropped events because the socket's queue overflowed
    /// (ENOBUFS): the subscriber no longer knows the full state and must
    /// re-read it, as Calico's felix does on any doubt.
    case overrun
}

/// A subscription to link and neighbour (including FDB) events in one
/// namespace. Events arrive on `events`; a dedicated thread reads the
/// socket, since a blocking read has no place on Swift's shared pool.
public final class NetlinkEventSubscription: @unchecked Sendable {
    public let events: AsyncStream<NetlinkEvent>
    private let socket: MnlSocket
    private let stopRequested = Lock()
    private var stopped = false
    private var thread = pthread_t()
    private var joined = false

    /// Subscribes in `namespace` (the caller's own when nil).
    public init(namespace: NetworkNamespace? = nil) throws {
        try namespace?.checkExists()
        socket = try MnlSocket(namespace: namespace, groups: [UInt32(RTNLGRP_LINK.rawValue), UInt32(RTNLGRP_NEIGH.rawValue)])
        let (stream, continuation) = AsyncStream.makeStream(of: NetlinkEvent.self, bufferingPolicy: .unbounded)
        events = stream
        let context = ReaderContext(socket: socket, continuation: continuation, subscription: self)
        do {
            thread = try spawnThread(named: "netlink-events") { readEvents(context) }
        } catch {
            throw NetlinkError.socket(operation: "start event reader thread", errno: error.errno)
        }
        continuation.onTermination = { [weak self] _ in self?.requestStop() }
    }

    /// Stops reading and finishes the stream.
    public func cancel() {
        requestStop()
        let shouldJoin = stopRequested.withLock { () -> Bool in
            defer { joined = true }
            return !joined
        }
        // The reader may itself drop the last reference; it never joins itself.
        if shouldJoin && !pthread_equal(thread, pthread_self()).isNonZero { pthread_join(thread, nil) }
    }

    deinit {
        requestStop()
        // Nobody will join the reader now: let it clean up after itself.
        if !joined { pthread_detach(thread) }
    }

    private func requestStop() { stopRequested.withLock { stopped = true } }
    fileprivate var isStopped: Bool { stopRequested.withLock { stopped } }

    static func decode(_ message: NetlinkMessage) throws -> NetlinkEvent? {
        switch Int(message.type) {
        case RTM_NEWLINK: return .linkChanged(try Link(message: message))
        case RTM_DELLINK: return .linkRemoved(try Link(message: message))
        case RTM_NEWNEIGH, RTM_DELNEIGH:
            let removed = Int(message.type) == RTM_DELNEIGH
            if try message.familyHeader(ndmsg.self).ndm_family == UInt8(AF_BRIDGE) {
                let entry = try FDBEntry(message: message)
                return removed ? .fdbRemoved(entry) : .fdbChanged(entry)
            }
            let entry = try NeighbourEntry(message: message)
            return removed ? .neighbourRemoved(entry) : .neighbourChanged(entry)
        default:
            return nil
        }
    }
}

private extension Int32 {
    var isNonZero: Bool { self != 0 }
}

private final class ReaderContext {
    let socket: MnlSocket
    let continuation: AsyncStream<NetlinkEvent>.Continuation
    weak var subscription: NetlinkEventSubscription?
    init(socket: MnlSocket, continuation: AsyncStream<NetlinkEvent>.Continuation, subscription: NetlinkEventSubscription) {
        self.socket = socket
        self.continuation = continuation
        self.subscription = subscription
    }
}

/// The reader thread: polls with a short timeout so that a cancelled
/// subscription ends promptly without closing a descriptor under a reader.
private func readEvents(_ context: ReaderContext) {
    defer { context.continuation.finish() }
    var descriptor = pollfd(fd: context.socket.fileDescriptor, events: Int16(POLLIN), revents: 0)
    while let subscription = context.subscription, !subscription.isStopped {
        let ready = poll(&descriptor, 1, 100)
        if ready <= 0 { continue }
        do {
            for message in try NetlinkMessage.split(context.socket.receive()) {
                if let event = try? NetlinkEventSubscription.decode(message) {
                    context.continuation.yield(event)
                }
            }
        } catch NetlinkError.socket(_, let errno) where errno == ENOBUFS {
            context.continuation.yield(.overrun)
        } catch {
            return
        }
    }
}

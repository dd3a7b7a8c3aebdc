#if canImport(Glibc)
import Glibc
#endif
import Namespaces

/// A request the kernel refused: what was asked, of which object, the errno,
/// and the kernel's own explanation when it gave one (extended ack).
public struct KernelError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The verb, as iproute2 users say it: "create link", "append fdb entry".
    public let operation: String
    /// The object, named: "vxlan 'vx0'", "10.0.0.2 lladdr 02:42:0a:00:00:02 dev 'vx0'".
    public let object: String
    public let errno: Int32
    /// NLMSGERR_ATTR_MSG, when the kernel explained itself.
    public let kernelMessage: String?

    public var errnoName: String { ErrnoName.name(errno) }

    public var description: String {
        var text = "\(operation) \(object): \(String(cString: strerror(errno))) (\(errnoName))"
        if let kernelMessage, !kernelMessage.isEmpty { text += "; kernel: \(kernelMessage)" }
        return text
    }
}

/// Errors from swarmnet's netlink layer.
public enum NetlinkError: Error, Sendable, CustomStringConvertible {
    /// The kernel answered a request with an error.
    case kernel(KernelError)
    /// An argument was rejected before anything was sent.
    case invalidArgument(String)
    /// A named link does not exist in the namespace.
    case linkNotFound(name: String, namespace: String)
    /// A reply did not parse.
    case malformedMessage(String)
    /// A dump kept being interrupted by concurrent changes (NLM_F_DUMP_INTR).
    case dumpInterrupted(operation: String, attempts: Int)
    /// Some requests of a batch failed; the others were applied.
    case batchFailed(failures: [BatchFailure], total: Int)
    /// A socket call failed.
    case socket(operation: String, errno: Int32)

    /// The errno behind the error, if there is one.
    public var errno: Int32? {
        switch self {
        case .kernel(let error): error.errno
        case .socket(_, let errno): errno
        case .linkNotFound: ENODEV
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .kernel(let error): error.description
        case .invalidArgument(let text): text
        case .linkNotFound(let name, let namespace): "link '\(name)' does not exist in \(namespace) (ENODEV)"
        case .malformedMessage(let text): "malformed netlink message: \(text)"
        case .dumpInterrupted(let operation, let attempts):
            "\(operation): the dump was interrupted by concurrent changes \(attempts) times in a row (NLM_F_DUMP_INTR)"
        case .batchFailed(let failures, let total):
            "\(failures.count) of \(total) requests failed; first: \(failures.first.map { "\($0.error)" } ?? "")"
        case .socket(let operation, let errno):
            "netlink socket: \(operation): \(String(cString: strerror(errno))) (\(ErrnoName.name(errno)))"
        }
    }
}

/// One failed request of a batch, by its position in the batch.
public struct BatchFailure: Sendable, CustomStringConvertible {
    public let index: Int
    public let error: KernelError
    public var description: String { "#\(index): \(error)" }
}

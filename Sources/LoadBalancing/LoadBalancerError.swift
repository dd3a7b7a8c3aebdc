import Netlink

/// Why a load-balancer operation failed.
public enum LoadBalancerError: Error, Sendable, CustomStringConvertible {
    /// The kernel refused a request; names the operation ("add service"),
    /// the object ("TCP 10.0.0.5:80 in namespace 'lb'") and the errno.
    case kernel(KernelError)
    /// The back end cannot run here (IPVS missing from the kernel...).
    case unavailable(String)
    /// The desired state was rejected before anything was sent.
    case invalidArgument(String)
    /// A reply from the kernel did not parse.
    case malformedReply(String)
    /// The netlink socket failed (open, send, receive).
    case netlink(NetlinkError)
    /// Some operations of a reconcile failed; the others were applied. The
    /// next reconcile starts again from what the kernel then holds.
    case reconcileFailed(failures: [ReconcileFailure], total: Int)
    /// Writing or reading an IPVS sysctl failed.
    case sysctl(path: String, errno: Int32)

    /// The errno behind the error, when there is one.
    public var errno: Int32? {
        switch self {
        case .kernel(let error): error.errno
        case .netlink(let error): error.errno
        case .reconcileFailed(let failures, _): failures.first?.error.errno
        case .sysctl(_, let errno): errno
        default: nil
        }
    }

    /// The kernel's error, when the kernel refused something.
    public var kernelError: KernelError? {
        switch self {
        case .kernel(let error): error
        case .reconcileFailed(let failures, _): failures.first?.error
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .kernel(let error): "IPVS: \(error)"
        case .unavailable(let why): "load balancer unavailable: \(why)"
        case .invalidArgument(let why): "invalid load-balancer state: \(why)"
        case .malformedReply(let why): "malformed IPVS reply: \(why)"
        case .netlink(let error): "\(error)"
        case .reconcileFailed(let failures, let total):
            "reconcile: \(failures.count) of \(total) operations failed: "
                + failures.prefix(5).map { "IPVS: \($0.error)" }.joined(separator: "; ")
                + (failures.count > 5 ? "; ..." : "")
        case .sysctl(let path, let errno): "sysctl \(path): \(SystemErrno.describe(errno))"
        }
    }
}

/// One failed operation of a reconcile.
public struct ReconcileFailure: Sendable, CustomStringConvertible {
    public let operation: LoadBalancerOperation
    public let error: KernelError
    public var description: String { "\(operation): \(error)" }
}

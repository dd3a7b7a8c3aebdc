#if canImport(Glibc)
import Glibc
#endif

/// Why a namespace operation failed; each case names the namespace.
public enum NamespaceError: Error, CustomStringConvertible, Equatable, Sendable {
    case invalidName(String, reason: String)
    case notFound(String)
    case alreadyExists(String)
    case system(operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case .invalidName(let name, let reason):
            "invalid network namespace name '\(name)': \(reason)"
        case .notFound(let what):
            "network namespace \(what) does not exist"
        case .alreadyExists(let name):
            "network namespace '\(name)' already exists"
        case .system(let operation, let path, let errno):
            "\(operation) \(path): \(String(cString: strerror(errno))) (\(ErrnoName.name(errno)))"
        }
    }
}

/// Symbolic names for the errno values swarmnet reports, so messages show
/// `EEXIST` as well as the words strerror gives.
public enum ErrnoName {
    public static func name(_ value: Int32) -> String {
        switch value {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case ESRCH: "ESRCH"
        case EINTR: "EINTR"
        case EIO: "EIO"
        case EBADF: "EBADF"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EBUSY: "EBUSY"
        case EEXIST: "EEXIST"
        case ENODEV: "ENODEV"
        case ENOTDIR: "ENOTDIR"
        case EINVAL: "EINVAL"
        case ENOSPC: "ENOSPC"
        case ERANGE: "ERANGE"
        case ENAMETOOLONG: "ENAMETOOLONG"
        case EMSGSIZE: "EMSGSIZE"
        case EPROTONOSUPPORT: "EPROTONOSUPPORT"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case EAFNOSUPPORT: "EAFNOSUPPORT"
        case EADDRINUSE: "EADDRINUSE"
        case EADDRNOTAVAIL: "EADDRNOTAVAIL"
        case ENETDOWN: "ENETDOWN"
        case ENETUNREACH: "ENETUNREACH"
        case ENOBUFS: "ENOBUFS"
        case ENOTCONN: "ENOTCONN"
        case ETIMEDOUT: "ETIMEDOUT"
        case ECONNREFUSED: "ECONNREFUSED"
        case EHOSTUNREACH: "EHOSTUNREACH"
        case ENOTSUP: "ENOTSUP"
        default: "errno \(value)"
        }
    }
}

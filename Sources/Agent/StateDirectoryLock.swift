#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import SystemBasics

/// One daemon per state directory: an exclusive flock(2) on `STATE/lock`,
/// held for the life of the process (the kernel drops it when the process
/// dies, however it dies, so a `kill -9` leaves no stale lock). A second
/// daemon started with the same flags used to delete the running one's API
/// socket and take over its sandboxes; it now stops before touching
/// anything.
public final class StateDirectoryLock: Sendable {
    public struct Held: Error, CustomStringConvertible {
        public let directory: String
        public let holder: String?
        public var description: String {
            "another swarmnetd\(holder.map { " (pid \($0))" } ?? "") is running with state directory \(directory); stop it first, or give this one its own --state-dir, --socket and --namespace-prefix"
        }
    }

    private let descriptor: Int32

    /// Takes the lock or throws `Held` at once (never waits).
    public init(directory: String) throws {
        let path = directory + "/lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let failure = errno
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmed()
            close(fd)
            if failure == EWOULDBLOCK { throw Held(directory: directory, holder: holder?.isEmpty == false ? holder : nil) }
            throw POSIXError(POSIXErrorCode(rawValue: failure) ?? .EIO)
        }
        // The holder's pid, for the message a second daemon prints.
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        descriptor = fd
    }

    deinit { close(descriptor) }
}

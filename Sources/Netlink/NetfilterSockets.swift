#if canImport(Glibc)
import Glibc
#endif
import CNetlinkShim
import FoundationEssentials
import SystemBasics

/// Keeps libnftables' netfilter socket below FD_SETSIZE (1024).
///
/// libnftables 1.0.6 waits for a batch's acknowledgements with select(2),
/// and its FD_SET goes through glibc's fortify check, which aborts the
/// whole process ("bit out of range 0 - FD_SETSIZE on fd_set") when the
/// socket's descriptor is 1024 or more. A daemon with a thousand
/// connections or workloads reaches that (issue 17). libnftables opens its
/// socket in nft_ctx_new and gives no way to choose or read its number, so:
///
/// - a few descriptors below 1024 are held in reserve (on /dev/null), taken
///   while the process is young;
/// - a context is made with them closed just before, so the kernel's
///   lowest-free rule puts the new socket there (or lower), after the
///   descriptors opened on the way (the namespace's, files nft_ctx_new reads);
/// - every netfilter socket swarmnet opens is opened under the same lock
///   (`MnlSocket`), so a netfilter socket found in a freed slot is the
///   context's. When none is (another thread took the slots in between),
///   the context is freed and made again, this time comparing the
///   process's netfilter sockets at 1024 and above before and after (by
///   inode, since numbers are reused): a new one there is the context's,
///   landed high, and the context is freed again.
///
/// Nothing else in the process uses select(2); the daemon raises its
/// descriptor limit at start-up (`raiseDescriptorLimit`).
public enum NetfilterSockets {
    /// FD_SETSIZE.
    public static let selectLimit: Int32 = 1024
    static let lock = Lock()
    nonisolated(unsafe) private static var reserve: [Int32] = []
    private static let reserveSize = 8

    public struct Exhausted: Error, CustomStringConvertible {
        public let attempts: Int
        /// Where the last attempt's socket landed.
        public let landed: [Int32]
        public var description: String {
            "no descriptor below \(NetfilterSockets.selectLimit) was free for libnftables' socket after \(attempts) attempts (the last landed at \(landed.map(String.init).joined(separator: ", ")); libnftables 1.0.6 cannot use a higher one)"
        }
    }

    /// Takes the reserve now, while low descriptors are free (call early at start-up).
    public static func prepare() {
        lock.withLock { topUpReserve() }
    }

    /// Runs `open`, which makes exactly one netfilter socket (nft_ctx_new),
    /// so that the socket's descriptor is below 1024. `close` undoes `open`
    /// when it was not.
    public static func openBelowSelectLimit<T>(_ open: () throws -> T, close: (T) -> Void) throws -> T {
        try lock.withLock {
            let attempts = 4
            var landed: [Int32] = []
            for attempt in 0..<attempts {
                topUpReserve()
                // After a first attempt that could not tell where its
                // socket went, the exact (and costlier) check: a listing
                // of every descriptor from 1024 up, before and after.
                let before = attempt == 0 ? nil : netfilterSockets()
                // All of them: opening the namespace for nft_ctx_new's
                // thread takes a descriptor too, before the socket.
                let freed = reserve
                for slot in freed { Glibc.close(slot) }
                reserve = []
                let made: T
                do { made = try open() } catch {
                    topUpReserve()
                    throw error
                }
                // The usual case, cheap to see: the socket took one of the
                // freed slots (a netfilter socket there is the context's:
                // ours are opened under the lock).
                let inReserve = freed.contains(where: isNetfilterSocket)
                // Take back at once what `open` left free, before another
                // thread's socket or connection takes it for good.
                topUpReserve()
                if inReserve { return made }
                if let before {
                    // A new netfilter socket at 1024 or above can only be the context's.
                    let new = netfilterSockets().subtracting(before)
                    if new.isEmpty { return made }
                    landed = new.map(\.descriptor).sorted()
                }
                close(made)
            }
            throw Exhausted(attempts: attempts, landed: landed)
        }
    }

    /// Runs `close`, which closes a socket `openBelowSelectLimit` made, and
    /// takes its descriptor back into the reserve.
    public static func closing(_ close: () -> Void) {
        lock.withLock {
            close()
            topUpReserve()
        }
    }

    /// Runs `open`, which makes netfilter sockets of swarmnet's own, under
    /// the lock, so that `openBelowSelectLimit` never mistakes them for
    /// libnftables'.
    static func opening<T>(_ open: () throws -> T) rethrows -> T {
        try lock.withLock { try open() }
    }

    /// Raises the soft limit on open descriptors to the hard limit (a
    /// daemon with many workloads holds a few per workload). Returns the
    /// new soft limit.
    @discardableResult
    public static func raiseDescriptorLimit() -> UInt64 {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return UInt64(limit.rlim_cur)
    }

    /// Fills the reserve with /dev/null descriptors while they come out below the limit.
    private static func topUpReserve() {
        while reserve.count < reserveSize {
            let fd = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            guard fd < selectLimit else {
                Glibc.close(fd)
                return
            }
            reserve.append(fd)
        }
    }

    static func isNetfilterSocket(_ fd: Int32) -> Bool { netfilterSocketInode(fd) != nil }

    /// The socket's inode when `fd` is a NETLINK_NETFILTER socket.
    static func netfilterSocketInode(_ fd: Int32) -> UInt64? {
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return nil }
        var domain: Int32 = 0, proto: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0, domain == AF_NETLINK else { return nil }
        length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &length) == 0, proto == NETLINK_NETFILTER else { return nil }
        return UInt64(info.st_ino)
    }

    struct Socket: Hashable {
        var descriptor: Int32
        var inode: UInt64
    }

    /// The process's NETLINK_NETFILTER sockets at descriptors of 1024 and
    /// above, by descriptor and inode: a new one there is the only kind
    /// that matters, and a process with fewer descriptors pays only the
    /// directory listing.
    static func netfilterSockets() -> Set<Socket> {
        guard let directory = opendir("/proc/self/fd") else { return [] }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var found: Set<Socket> = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name), fd >= selectLimit, fd != own, let inode = netfilterSocketInode(fd) else { continue }
            found.insert(Socket(descriptor: fd, inode: inode))
        }
        return found
    }
}

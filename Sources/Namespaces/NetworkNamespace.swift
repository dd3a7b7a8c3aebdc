#if canImport(Glibc)
import Glibc
#endif
import CNetlinkShim

/// A Linux network namespace, addressed by a path to its nsfs file.
///
/// Named namespaces live where iproute2 keeps them (`/run/netns/NAME`, a bind
/// mount of the namespace file), so `ip netns` lists ours and we list its.
/// A process's namespace is `/proc/PID/ns/net`.
public struct NetworkNamespace: Sendable, Hashable, CustomStringConvertible {
    /// iproute2's directory of named namespaces.
    public static let directory = "/run/netns"

    public let path: String
    /// The iproute2 name, when the namespace lives in `/run/netns`.
    public let name: String?

    /// The named namespace, without checking that it exists.
    public static func named(_ name: String) throws -> NetworkNamespace {
        try validate(name: name)
        return NetworkNamespace(path: "\(directory)/\(name)", name: name)
    }

    /// The namespace of process `pid`.
    public static func process(_ pid: Int32) -> NetworkNamespace {
        NetworkNamespace(path: "/proc/\(pid)/ns/net", name: nil)
    }

    /// Any nsfs file, such as a bind mount made by another tool.
    public static func path(_ path: String) -> NetworkNamespace {
        let prefix = directory + "/"
        let name = path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : nil
        return NetworkNamespace(path: path, name: name)
    }

    public var description: String { name.map { "'\($0)'" } ?? path }

    /// True when the namespace file exists and is a namespace (nsfs), not a
    /// leftover empty file from an interrupted `create`.
    public var exists: Bool {
        cnl_is_nsfs(path) == 1
    }

    /// The namespace itself, whatever path names it: the device and inode
    /// of its nsfs file (what `ip netns identify` compares). Two paths
    /// (`/run/netns/NAME`, `/proc/PID/ns/net`, a bind mount elsewhere) name
    /// the same namespace exactly when these are equal. nil when the file
    /// cannot be read.
    public var identity: Identity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    public struct Identity: Sendable, Hashable {
        public var device: UInt64
        public var inode: UInt64
    }

    /// Opens the namespace file; the caller closes the descriptor.
    public func openDescriptor() throws -> Int32 {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw NamespaceError.notFound(description) }
            throw NamespaceError.system(operation: "open", path: path, errno: errno)
        }
        return fd
    }

    /// Fails with `notFound` unless the namespace exists.
    public func checkExists() throws {
        guard exists else { throw NamespaceError.notFound("\(description) (\(path))") }
    }

    /// Names in `/run/netns`, sorted; empty when the directory does not exist.
    public static func list() throws -> [String] {
        guard let dir = opendir(directory) else {
            if errno == ENOENT { return [] }
            throw NamespaceError.system(operation: "list", path: directory, errno: errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Creates a named namespace the way `ip netns add` does: a new namespace
    /// bind-mounted onto `/run/netns/NAME`, with `/run/netns` a shared mount
    /// so that the bind mount propagates to other mount namespaces.
    /// On failure nothing is left behind.
    @discardableResult
    public static func create(named name: String) throws -> NetworkNamespace {
        let namespace = try named(name)
        try prepareDirectory()
        let fd = open(namespace.path, O_RDONLY | O_CREAT | O_EXCL, 0)
        guard fd >= 0 else {
            if errno == EEXIST { throw NamespaceError.alreadyExists(name) }
            throw NamespaceError.system(operation: "create", path: namespace.path, errno: errno)
        }
        close(fd)
        do {
            // unshare(CLONE_NEWNET) moves only the calling thread, so it runs
            // on a thread of its own that ends right after the bind mount;
            // no thread of the caller's ever changes namespace.
            try DedicatedThread.run {
                guard cnl_unshare(cnl_clone_newnet()) == 0 else {
                    throw NamespaceError.system(operation: "unshare network namespace for", path: namespace.path, errno: errno)
                }
                let source = "/proc/self/task/\(cnl_gettid())/ns/net"
                guard cnl_mount_bind(source, namespace.path) == 0 else {
                    throw NamespaceError.system(operation: "bind mount \(source) onto", path: namespace.path, errno: errno)
                }
            }
        } catch {
            unlink(namespace.path)
            throw error
        }
        return namespace
    }

    /// Deletes a named namespace as `ip netns delete` does: detach the bind
    /// mount and remove the file. The namespace itself lives on while a
    /// process or an open descriptor still holds it.
    public func delete() throws {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { throw NamespaceError.notFound(description) }
            throw NamespaceError.system(operation: "delete", path: path, errno: errno)
        }
        // EINVAL means it was not a mount point (an interrupted create); the
        // file is removed all the same.
        if cnl_umount_detach(path) != 0 && errno != EINVAL {
            throw NamespaceError.system(operation: "unmount", path: path, errno: errno)
        }
        guard unlink(path) == 0 else {
            throw NamespaceError.system(operation: "remove", path: path, errno: errno)
        }
    }

    /// Runs `body` on a new thread that has entered this namespace, and
    /// waits for it. Use it for work that must be *started* inside the
    /// namespace, such as opening a netlink socket (a socket stays bound to
    /// the namespace it was created in, whichever thread later uses it).
    ///
    /// Why a thread of its own: setns(2) changes only the calling thread,
    /// and Swift tasks move between the threads of a shared pool, so
    /// entering a namespace on a pool thread would leak it into unrelated
    /// work. The dedicated thread ends with the body, taking the namespace
    /// with it; nothing needs to be switched back.
    public func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let fd = try openDescriptor()
        defer { close(fd) }
        return try DedicatedThread.run {
            guard cnl_setns(fd, cnl_clone_newnet()) == 0 else {
                throw NamespaceError.system(operation: "enter", path: path, errno: errno)
            }
            return try body()
        }
    }

    private static func prepareDirectory() throws {
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw NamespaceError.system(operation: "create directory", path: directory, errno: errno)
        }
        if cnl_mount_make_shared(directory) == 0 { return }
        guard errno == EINVAL else {
            throw NamespaceError.system(operation: "make shared mount", path: directory, errno: errno)
        }
        // Not yet a mount point: bind it onto itself first, as iproute2 does.
        guard cnl_mount_self_bind(directory) == 0, cnl_mount_make_shared(directory) == 0 else {
            throw NamespaceError.system(operation: "make shared mount", path: directory, errno: errno)
        }
    }

    static func validate(name: String) throws {
        if name.isEmpty { throw NamespaceError.invalidName(name, reason: "empty") }
        if name == "." || name == ".." { throw NamespaceError.invalidName(name, reason: "'.' and '..' are not names") }
        if name.contains("/") { throw NamespaceError.invalidName(name, reason: "contains '/'") }
        if name.utf8.count > 255 { throw NamespaceError.invalidName(name, reason: "longer than 255 bytes") }
    }
}

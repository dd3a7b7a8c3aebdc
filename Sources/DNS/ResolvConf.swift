#if canImport(Glibc)
import Glibc
#endif
import Addressing
import NIOCore

/// resolv.conf: reading the host's resolvers (the embedded server's
/// upstreams) and writing the file a workload namespace sees.
public enum ResolvConf {
    /// Where Docker's embedded server listens, and so ours.
    public static let embeddedServerAddress = "127.0.0.11"
    /// `ip netns exec NAME` bind-mounts `/etc/netns/NAME/resolv.conf` over
    /// `/etc/resolv.conf` (ip-netns(8)).
    public static let netnsDirectory = "/etc/netns"
    /// The first words of every file swarmnet writes, by which it knows its own.
    public static let marker = "# Written by swarmnet"

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case system(operation: String, path: String, errno: Int32)
        case badNamespaceName(String)

        public var description: String {
            switch self {
            case .system(let operation, let path, let errno):
                "\(operation) \(path): \(String(cString: strerror(errno)))"
            case .badNamespaceName(let name): "'\(name)' cannot name a directory under \(ResolvConf.netnsDirectory)"
            }
        }
    }

    /// What swarmnet reads from a resolv.conf.
    public struct Contents: Equatable, Sendable {
        public var nameservers: [IPAddress] = []
        public var search: [String] = []
        public var options: [String] = []
        /// Lines that were not understood (`nameserver fe80::1%eth0`, a bad
        /// address), for a warning.
        public var ignored: [String] = []
    }

    /// Parses resolv.conf text (resolv.conf(5)): `nameserver`, `search` (the
    /// last `search` or `domain` line wins), `options`; `#` and `;` comments.
    public static func parse(_ text: String) -> Contents {
        var contents = Contents()
        for rawLine in text.split(whereSeparator: \.isNewline) {
            let line = rawLine.prefix { $0 != "#" && $0 != ";" }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let keyword = fields.first else { continue }
            let values = fields.dropFirst().map(String.init)
            switch keyword {
            case "nameserver":
                if values.count == 1, let address = try? IPAddress(parsing: values[0]) {
                    contents.nameservers.append(address)
                } else {
                    contents.ignored.append(String(rawLine))
                }
            case "search": contents.search = values
            case "domain": contents.search = Array(values.prefix(1))
            case "options": contents.options += values
            default: contents.ignored.append(String(rawLine))
            }
        }
        return contents
    }

    /// The host's resolvers as upstreams for the embedded server (port 53),
    /// from `path` (normally `/etc/resolv.conf`). An empty list means no
    /// forwarding: the server answers SERVFAIL for names not its own (it
    /// never falls back to a public resolver, unlike old Docker).
    ///
    /// `skipLoopback` drops 127.0.0.0/8 and ::1, which Docker does when its
    /// resolver cannot reach them. The embedded server opens its forwarding
    /// sockets in the daemon's own namespace, where a loopback resolver
    /// (systemd-resolved's 127.0.0.53) *is* reachable, which is what current
    /// Docker does too (`HostLoopback`); pass `true` only when the daemon
    /// forwards from elsewhere.
    public static func hostUpstreams(path: String = "/etc/resolv.conf", skipLoopback: Bool = false) throws -> [SocketAddress] {
        let contents = parse(try read(path))
        return contents.nameservers
            .filter { !(skipLoopback && isLoopback($0)) }
            .compactMap { try? SocketAddress(ipAddress: $0.description, port: 53) }
    }

    public static func isLoopback(_ address: IPAddress) -> Bool {
        switch address {
        case .v4(let a): a.value >> 24 == 127
        case .v6(let a): a.bytes == [UInt8](repeating: 0, count: 15) + [1]
        }
    }

    /// The file a workload namespace gets: our server only, and `ndots:0`
    /// as Docker writes beside its embedded server, so a name with a dot is
    /// tried as given before any search domain.
    public static func render(search: [String] = [], options: [String] = ["ndots:0"]) -> String {
        var text = "\(marker): this namespace's embedded DNS server.\n"
        text += "nameserver \(embeddedServerAddress)\n"
        if !search.isEmpty { text += "search \(search.joined(separator: " "))\n" }
        if !options.isEmpty { text += "options \(options.joined(separator: " "))\n" }
        return text
    }

    /// The path `ip netns exec NAME` binds over `/etc/resolv.conf`.
    public static func path(forNamespaceNamed name: String, directory: String = netnsDirectory) throws -> String {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/") else { throw Error.badNamespaceName(name) }
        return "\(directory)/\(name)/resolv.conf"
    }

    /// Writes `/etc/netns/NAME/resolv.conf` atomically (a temporary file in
    /// the same directory, fsync, rename), creating the directories. Returns
    /// the path.
    @discardableResult
    public static func write(forNamespaceNamed name: String, search: [String] = [], options: [String] = ["ndots:0"],
                             directory: String = netnsDirectory) throws -> String {
        let path = try path(forNamespaceNamed: name, directory: directory)
        try makeDirectory(directory)
        try makeDirectory("\(directory)/\(name)")
        try writeAtomically(render(search: search, options: options), to: path)
        return path
    }

    /// Removes what `write` made: the file, the temporary files of writers
    /// that died before their rename (a daemon killed mid-write), then the
    /// namespace's directory if it is empty. Absent files are not an error.
    public static func remove(forNamespaceNamed name: String, directory: String = netnsDirectory) throws {
        let path = try path(forNamespaceNamed: name, directory: directory)
        if unlink(path) != 0 && errno != ENOENT {
            throw Error.system(operation: "remove", path: path, errno: errno)
        }
        let folder = "\(directory)/\(name)"
        for entry in entries(of: folder) where entry.hasPrefix("resolv.conf.tmp.") {
            unlink("\(folder)/\(entry)")
        }
        if rmdir(folder) != 0 && errno != ENOENT && errno != ENOTEMPTY && errno != EEXIST {
            throw Error.system(operation: "remove directory", path: folder, errno: errno)
        }
    }

    /// The names in a directory (none when it cannot be read).
    private static func entries(of folder: String) -> [String] {
        guard let stream = opendir(folder) else { return [] }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    static func read(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Error.system(operation: "open", path: path, errno: errno) }
        defer { close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw Error.system(operation: "read", path: path, errno: errno)
            }
            if count == 0 { break }
            data += chunk[0..<count]
            // resolv.conf is small; a huge file is not one.
            if data.count > 1 << 20 { break }
        }
        return String(decoding: data, as: UTF8.self)
    }

    private static func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw Error.system(operation: "create directory", path: path, errno: errno)
        }
    }

    private static func writeAtomically(_ text: String, to path: String) throws {
        let temporary = "\(path).tmp.\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Error.system(operation: "create", path: temporary, errno: errno) }
        var ok = false
        defer {
            if !ok { unlink(temporary) }
        }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                let error = errno
                close(fd)
                throw Error.system(operation: "write", path: temporary, errno: error)
            }
            written += count
        }
        // fchmod: the umask must not make the file unreadable to workloads.
        guard fchmod(fd, 0o644) == 0, fsync(fd) == 0 else {
            let error = errno
            close(fd)
            throw Error.system(operation: "sync", path: temporary, errno: error)
        }
        close(fd)
        guard rename(temporary, path) == 0 else { throw Error.system(operation: "rename onto", path: path, errno: errno) }
        ok = true
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Namespaces
import SystemBasics

/// The IPVS sysctls Swarm learned to set in its load-balancer namespaces
/// (net.ipv4.vs.*, per network namespace). nil leaves a value as it is.
public struct IPVSSysctls: Sendable, Hashable {
    /// `conn_reuse_mode`. 1 (the kernel's default) reschedules a connection
    /// that reuses the source port of an old entry only after a 1 s SYN
    /// retransmit: the stalls under connection churn (moby#35082, #31746).
    /// 0 reuses the old entry without delay; with `expireNodestConn` a reuse
    /// towards a removed real server is still expired.
    public var connReuseMode: Int?
    /// `expire_nodest_conn`. 1: connection entries whose real server was
    /// deleted are expired (since Linux 5.9 by work queued at the deletion,
    /// before that on their next packet), so no traffic reaches a removed
    /// backend (moby#33790, #30464).
    public var expireNodestConn: Bool?
    /// `expire_quiescent_template`. 1: persistence templates pointing to a
    /// real server of weight 0 are expired, so persistent clients move off
    /// a quiesced backend.
    public var expireQuiescentTemplate: Bool?
    /// `conntrack`. 1: IPVS keeps the netfilter conntrack entry of the
    /// connections it forwards (updating its reply direction) instead of
    /// untracking them, so that nftables NAT (a masquerade in postrouting)
    /// applies to them; Swarm sets it in its ingress namespace for the
    /// routing mesh's SNAT.
    public var conntrack: Bool?

    public init(connReuseMode: Int? = nil, expireNodestConn: Bool? = nil, expireQuiescentTemplate: Bool? = nil,
                conntrack: Bool? = nil) {
        self.connReuseMode = connReuseMode
        self.expireNodestConn = expireNodestConn
        self.expireQuiescentTemplate = expireQuiescentTemplate
        self.conntrack = conntrack
    }

    /// What libnetwork writes into every load-balancer namespace.
    /// `conntrack` is left as it is: another balancer in the same namespace
    /// (the routing mesh beside host-mode ports) may need it on.
    public static let swarm = IPVSSysctls(connReuseMode: 0, expireNodestConn: true, expireQuiescentTemplate: true)
    /// The same for the routing mesh's namespace, where connections are
    /// masqueraded by nftables after IPVS forwards them.
    public static let swarmIngress = IPVSSysctls(connReuseMode: 0, expireNodestConn: true, expireQuiescentTemplate: true,
                                                 conntrack: true)

    static let directory = "/proc/sys/net/ipv4/vs"

    var entries: [(name: String, value: Int)] {
        var result: [(String, Int)] = []
        if let connReuseMode { result.append(("conn_reuse_mode", connReuseMode)) }
        if let expireNodestConn { result.append(("expire_nodest_conn", expireNodestConn ? 1 : 0)) }
        if let expireQuiescentTemplate { result.append(("expire_quiescent_template", expireQuiescentTemplate ? 1 : 0)) }
        if let conntrack { result.append(("conntrack", conntrack ? 1 : 0)) }
        return result
    }
}

extension IPVS {
    /// Writes the sysctls in this back end's namespace. /proc/sys/net shows
    /// the namespace of the thread that opens a file, so the files are
    /// opened on a thread inside the namespace (`NetworkNamespace.run`).
    public func setSysctls(_ sysctls: IPVSSysctls) throws {
        try Self.setSysctls(sysctls, in: namespace)
    }

    /// Reads the three sysctls back.
    public func sysctls() throws -> IPVSSysctls {
        try Self.sysctls(in: namespace)
    }

    public static func setSysctls(_ sysctls: IPVSSysctls, in namespace: NetworkNamespace?) throws {
        let entries = sysctls.entries
        try inNamespace(namespace) {
            for entry in entries {
                try Sysctl.write("\(IPVSSysctls.directory)/\(entry.name)", "\(entry.value)\n")
            }
        }
    }

    public static func sysctls(in namespace: NetworkNamespace?) throws -> IPVSSysctls {
        try inNamespace(namespace) {
            let read = { (name: String) throws -> Int in try Sysctl.readInt("\(IPVSSysctls.directory)/\(name)") }
            return IPVSSysctls(connReuseMode: try read("conn_reuse_mode"),
                               expireNodestConn: try read("expire_nodest_conn") != 0,
                               expireQuiescentTemplate: try read("expire_quiescent_template") != 0,
                               conntrack: try read("conntrack") != 0)
        }
    }

    private static func inNamespace<T>(_ namespace: NetworkNamespace?, _ body: @escaping () throws -> T) throws -> T {
        if let namespace { return try namespace.run(body) }
        return try body()
    }
}

/// Reading and writing /proc/sys files, with errors naming the path.
enum Sysctl {
    static func write(_ path: String, _ value: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LoadBalancerError.sysctl(path: path, errno: errno) }
        defer { close(fd) }
        let written = value.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard written == value.utf8.count else { throw LoadBalancerError.sysctl(path: path, errno: written < 0 ? errno : EIO) }
    }

    static func readInt(_ path: String) throws -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LoadBalancerError.sysctl(path: path, errno: errno) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { throw LoadBalancerError.sysctl(path: path, errno: count < 0 ? errno : EIO) }
        let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmed()
        guard let value = Int(text) else { throw LoadBalancerError.sysctl(path: path, errno: EINVAL) }
        return value
    }
}

/// "File exists (EEXIST)".
enum SystemErrno {
    static func describe(_ errno: Int32) -> String {
        "\(String(cString: strerror(errno))) (\(ErrnoName.name(errno)))"
    }
}


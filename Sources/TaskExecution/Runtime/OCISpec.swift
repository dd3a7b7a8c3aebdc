/// The parts of the OCI runtime specification's `config.json` that a task
/// uses (github.com/opencontainers/runtime-spec, config.md and
/// config-linux.md), with the spec's JSON names.
public struct OCISpec: Codable, Sendable {
    public var ociVersion = "1.0.2"
    public var process: Process
    public var root: Root
    public var hostname: String
    public var mounts: [Mount]
    public var linux: Linux

    public struct Process: Codable, Sendable {
        public var terminal = false
        public var user: User
        public var args: [String]
        public var env: [String]
        public var cwd: String
        public var capabilities: Capabilities
        public var rlimits: [RLimit]
        public var noNewPrivileges = false
    }

    public struct User: Codable, Sendable {
        public var uid: UInt32
        public var gid: UInt32
        public var additionalGids: [UInt32]?
    }

    public struct Capabilities: Codable, Sendable {
        public var bounding: [String]
        public var effective: [String]
        public var permitted: [String]
    }

    public struct RLimit: Codable, Sendable {
        public var type: String
        public var hard: UInt64
        public var soft: UInt64
    }

    public struct Root: Codable, Sendable {
        public var path: String
        public var readonly: Bool
    }

    public struct Mount: Codable, Sendable {
        public var destination: String
        public var type: String
        public var source: String
        public var options: [String]
    }

    public struct Linux: Codable, Sendable {
        public var namespaces: [Namespace]
        public var resources: Resources
        public var cgroupsPath: String
        public var maskedPaths: [String]
        public var readonlyPaths: [String]
    }

    public struct Namespace: Codable, Sendable {
        public var type: String
        public var path: String?
    }

    public struct Resources: Codable, Sendable {
        public var devices: [DeviceRule]
        public var memory: Memory?
        public var cpu: CPU?
        public var pids: Pids?
    }

    public struct DeviceRule: Codable, Sendable {
        public var allow: Bool
        public var access: String
    }

    public struct Memory: Codable, Sendable {
        public var limit: Int64
    }

    public struct CPU: Codable, Sendable {
        public var quota: Int64
        public var period: UInt64
    }

    public struct Pids: Codable, Sendable {
        public var limit: Int64
    }

    /// Docker's default capabilities (moby's `oci/caps/defaults.go`).
    public static let defaultCapabilities = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
        "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ]

    /// The mounts every container has (as `runc spec` and Docker give them).
    public static let standardMounts: [Mount] = [
        Mount(destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"]),
        Mount(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount(destination: "/dev/pts", type: "devpts", source: "devpts",
              options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        Mount(destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        Mount(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
        Mount(destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
        Mount(destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"]),
    ]

    /// Docker's masked and read-only paths under /proc and /sys.
    public static let maskedPaths = [
        "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
        "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    ]
    public static let readonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
}

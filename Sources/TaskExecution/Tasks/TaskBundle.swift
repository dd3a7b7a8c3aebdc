#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials

/// How a task's image and spec become its process and its OCI bundle. Pure
/// (no I/O), except `resolveUser`, which reads the root filesystem's
/// /etc/passwd and /etc/group.
public enum TaskBundle {
    /// Docker's smallest memory limit: below it the runtime cannot start
    /// a container at all.
    public static let minimumMemoryLimit: Int64 = 6 << 20

    /// Entrypoint + Cmd, as Docker combines them: a spec's entrypoint drops
    /// the image's Cmd.
    public static func processArguments(spec: TaskSpec, image: ImageRuntimeConfig?) throws -> [String] {
        let entrypoint = spec.entrypoint ?? image?.entrypoint ?? []
        let command = spec.command ?? (spec.entrypoint != nil ? [] : image?.cmd ?? [])
        let arguments = entrypoint + command
        guard let first = arguments.first, !first.isEmpty else {
            throw ExecutorError.invalid("no command specified: the image has no Cmd or Entrypoint, and none was given")
        }
        return arguments
    }

    /// The image's Env with the spec's on top (by name), then HOSTNAME and
    /// a default PATH, as Docker sets them.
    public static func environment(spec: TaskSpec, image: ImageRuntimeConfig?, hostname: String) -> [String] {
        var order: [String] = []
        var values: [String: String] = [:]
        func add(_ entry: String) {
            let name = String(entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0])
            if values[name] == nil { order.append(name) }
            values[name] = entry
        }
        add("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        add("HOSTNAME=\(hostname)")
        (image?.env ?? []).forEach(add)
        spec.env.forEach(add)
        return order.compactMap { values[$0] }
    }

    public static func validate(_ spec: TaskSpec) throws {
        if let memory = spec.memoryLimit, memory != 0, memory < minimumMemoryLimit {
            throw ExecutorError.invalid("Minimum memory limit allowed is 6MB (asked for \(memory) bytes)")
        }
        if let cpus = spec.nanoCPUs, cpus < 0 { throw ExecutorError.invalid("invalid CPU limit \(cpus): must be positive") }
        if let pids = spec.pidsLimit, pids < 0 { throw ExecutorError.invalid("invalid pids limit \(pids): must be positive") }
        if let size = spec.logMaxBytes, size < 1024 { throw ExecutorError.invalid("invalid log max-size \(size): at least 1k") }
        if let files = spec.logMaxFiles, files < 1 { throw ExecutorError.invalid("invalid log max-file \(files): at least 1") }
        for mount in spec.mounts {
            guard mount.target.hasPrefix("/"), mount.target != "/" else {
                throw ExecutorError.invalid("invalid mount target \"\(mount.target)\": it must be an absolute path other than /")
            }
            switch mount.kind {
            case .bind:
                guard mount.source.hasPrefix("/") else {
                    throw ExecutorError.invalid("invalid mount source \"\(mount.source)\": a bind mount's source is an absolute path")
                }
                var info = stat()
                guard stat(mount.source, &info) == 0 else {
                    throw ExecutorError.invalid("invalid mount config for type \"bind\": bind source path does not exist: \(mount.source)")
                }
            case .volume:
                guard !mount.source.isEmpty, mount.source.allSatisfy({ $0.isLetter || $0.isNumber || "_.-".contains($0) }) else {
                    throw ExecutorError.invalid("invalid volume name \"\(mount.source)\": letters, digits, '_', '.' and '-' only")
                }
            case .tmpfs:
                break
            }
        }
        if let test = spec.healthcheck?.test, let kind = test.first, !["NONE", "CMD", "CMD-SHELL"].contains(kind) {
            throw ExecutorError.invalid("invalid health check test \(test): it starts with NONE, CMD or CMD-SHELL")
        }
    }

    /// The user to run as: `uid[:gid]` or `name[:group]`, names looked up
    /// in the task's root filesystem (Docker's rule). Files that are
    /// symbolic links are not followed: they would be read on the host.
    public static func resolveUser(_ user: String?, rootfs: String) throws -> OCISpec.User {
        guard let user, !user.isEmpty else { return OCISpec.User(uid: 0, gid: 0, additionalGids: nil) }
        let parts = user.split(separator: ":", maxSplits: 1).map(String.init)
        let passwd = readTable(rootfs + "/etc/passwd")
        var uid: UInt32
        var gid: UInt32 = 0
        if let number = UInt32(parts[0]) {
            uid = number
            if let entry = passwd.first(where: { $0.count > 3 && UInt32($0[2]) == number }) { gid = UInt32(entry[3]) ?? 0 }
        } else if let entry = passwd.first(where: { $0.count > 3 && $0[0] == parts[0] }), let number = UInt32(entry[2]) {
            uid = number
            gid = UInt32(entry[3]) ?? 0
        } else {
            throw ExecutorError.invalid("unable to find user \(parts[0]): no matching entries in passwd file")
        }
        if parts.count == 2 {
            if let number = UInt32(parts[1]) {
                gid = number
            } else if let entry = readTable(rootfs + "/etc/group").first(where: { $0.count > 2 && $0[0] == parts[1] }),
                      let number = UInt32(entry[2]) {
                gid = number
            } else {
                throw ExecutorError.invalid("unable to find group \(parts[1]): no matching entries in group file")
            }
        }
        return OCISpec.User(uid: uid, gid: gid, additionalGids: nil)
    }

    private static func readTable(_ path: String) -> [[String]] {
        var info = stat()
        guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFREG,
              let bytes = try? FileTree.read(path, limit: 4 << 20) else { return [] }
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map {
            $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
    }

    /// /etc/hosts: localhost, and the task's name for each of its addresses.
    public static func hostsFile(hostname: String, attachments: [NetworkAttachment]) -> String {
        var text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        for attachment in attachments {
            text += "\(attachment.address.split(separator: "/")[0])\t\(hostname)\n"
        }
        return text
    }

    /// /etc/resolv.conf: the embedded DNS server on a task with networks
    /// (as Docker's user-defined networks), else the host's.
    public static func resolvConf(attachments: [NetworkAttachment], host: String) -> String {
        attachments.isEmpty ? host : "nameserver 127.0.0.11\noptions ndots:0\n"
    }

    /// The OCI runtime spec for a task.
    public static func spec(record: TaskRecord, user: OCISpec.User, workingDir: String, taskDirectory: String,
                            volumeDirectory: (String) -> String) -> OCISpec {
        var mounts = OCISpec.standardMounts
        for (file, target) in [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"), ("hostname", "/etc/hostname")] {
            mounts.append(.init(destination: target, type: "bind", source: taskDirectory + "/" + file, options: ["rbind", "rprivate"]))
        }
        for mount in record.spec.mounts {
            switch mount.kind {
            case .bind, .volume:
                let source = mount.kind == .bind ? mount.source : volumeDirectory(mount.source)
                mounts.append(.init(destination: mount.target, type: "bind", source: source,
                                    options: ["rbind", "rprivate"] + (mount.readOnly ? ["ro"] : [])))
            case .tmpfs:
                mounts.append(.init(destination: mount.target, type: "tmpfs", source: "tmpfs",
                                    options: ["nosuid", "nodev", "noexec"] + (mount.readOnly ? ["ro"] : [])))
            }
        }
        var resources = OCISpec.Resources(devices: [.init(allow: false, access: "rwm")])
        if let memory = record.spec.memoryLimit, memory > 0 { resources.memory = .init(limit: memory) }
        if let cpus = record.spec.nanoCPUs, cpus > 0 { resources.cpu = .init(quota: cpus * 100_000 / 1_000_000_000, period: 100_000) }
        if let pids = record.spec.pidsLimit, pids > 0 { resources.pids = .init(limit: pids) }
        let capabilities = OCISpec.defaultCapabilities
        return OCISpec(
            process: .init(
                user: user, args: record.args, env: record.env, cwd: workingDir.isEmpty ? "/" : workingDir,
                capabilities: .init(bounding: capabilities, effective: capabilities, permitted: capabilities),
                // No rlimits: the process inherits the daemon's (its hard
                // limit is the machine's; a fixed 1048576, Docker's, can be
                // above the hard limit, and runc then fails with EPERM).
                rlimits: []),
            root: .init(path: "rootfs", readonly: record.spec.readOnlyRootFS),
            hostname: record.hostname,
            mounts: mounts,
            linux: .init(
                namespaces: [.init(type: "pid"), .init(type: "ipc"), .init(type: "uts"), .init(type: "mount"),
                             .init(type: "network", path: record.namespace)],
                resources: resources,
                cgroupsPath: "/swarmnet/\(record.id)",
                maskedPaths: OCISpec.maskedPaths,
                readonlyPaths: OCISpec.readonlyPaths))
    }
}

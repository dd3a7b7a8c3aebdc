#if canImport(Glibc)
import Glibc
#endif
import CExecutorShim

/// Why a layer was refused. Each names the member at fault.
public enum LayerError: Error, Sendable, Equatable, CustomStringConvertible {
    case pathEscapes(String)
    case throughSymlink(String, via: String)
    case notADirectory(String, parent: String)
    case hardLinkTarget(String, target: String)
    case deviceNode(String)
    case system(String, path: String, Int32)

    public var description: String {
        switch self {
        case .pathEscapes(let path): "layer member '\(path)' points outside the layer ('..' or an absolute path leaving it)"
        case .throughSymlink(let path, let via): "layer member '\(path)' would be written through the symbolic link '\(via)'"
        case .notADirectory(let path, let parent): "layer member '\(path)': '\(parent)' is not a directory"
        case .hardLinkTarget(let path, let target): "layer member '\(path)' is a hard link to '\(target)', which is not a file of the layer"
        case .deviceNode(let path): "layer member '\(path)' is a device node outside /dev; device nodes are refused"
        case .system(let call, let path, let code): "unpacking '\(path)': \(call): \(String(cString: strerror(code)))"
        }
    }
}

/// Unpacks one image layer (a tar) into an empty directory, as overlayfs
/// lower layers want it: `.wh.NAME` whiteouts become 0:0 character devices
/// and `.wh..wh..opq` marks its directory opaque (`trusted.overlay.opaque`).
///
/// Nothing is written outside the directory: member names are normalised and
/// `..` that would leave the layer is refused, and no member is written
/// through a symbolic link (a symlink may point anywhere: it is resolved
/// inside the container's root, never here). Device nodes are refused except
/// under `dev/`, where they are skipped (the container's /dev is a tmpfs).
public struct LayerUnpacker {
    public let root: String
    /// Bytes of regular files written (the layer's size, as Docker counts it).
    public private(set) var bytesWritten: Int64 = 0
    private var directoryTimes: [(String, Int64)] = []

    public init(root: String) { self.root = root }

    public mutating func unpack(_ archive: FileRegion) throws {
        var reader = TarReader(archive)
        while let entry = try reader.next() {
            try unpack(entry, from: archive)
        }
        // Directory times last: creating their children changed them.
        for (path, modified) in directoryTimes.reversed() { setTimes(path, modified) }
    }

    /// A member's path relative to the layer: `./a//b/` → `a/b`; nil for
    /// the root itself. `..` is refused rather than resolved, as no image
    /// writer produces it.
    public static func normalise(_ path: String) throws -> [Substring]? {
        var components: [Substring] = []
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".": continue
            case "..": throw LayerError.pathEscapes(path)
            default: components.append(component)
            }
        }
        return components.isEmpty ? nil : components
    }

    private mutating func unpack(_ entry: TarEntry, from archive: FileRegion) throws {
        guard let components = try Self.normalise(entry.path) else {
            // "./": the layer's root itself takes its mode.
            if entry.kind == .directory { chmod(root, mode_t(entry.mode & 0o7777)) }
            return
        }
        let name = components.last!
        let parent = try ensureParents(components.dropLast(), for: entry.path)
        if name == ".wh..wh..opq" {
            try check(cex_lsetxattr(parent, "trusted.overlay.opaque", "y", 1), "lsetxattr", parent)
            return
        }
        if name.hasPrefix(".wh.") {
            let hidden = parent + "/" + name.dropFirst(4)
            try removeExisting(hidden)
            try check(mknod(hidden, S_IFCHR | 0o000, 0), "mknod", hidden)
            return
        }
        let path = parent + "/" + name
        var existing = stat()
        let exists = lstat(path, &existing) == 0
        if exists, !(entry.kind == .directory && existing.st_mode & S_IFMT == S_IFDIR) {
            try removeExisting(path)
        }
        switch entry.kind {
        case .directory:
            if !(exists && existing.st_mode & S_IFMT == S_IFDIR) {
                try check(mkdir(path, 0o700), "mkdir", path)
            }
            directoryTimes.append((path, entry.modified))
        case .regular:
            let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            try check(descriptor, "open", path)
            defer { close(descriptor) }
            try archive.member(entry).forEachChunk { chunk in
                var written = 0
                while written < chunk.count {
                    let result = write(descriptor, chunk.baseAddress! + written, chunk.count - written)
                    if result < 0, errno == EINTR { continue }
                    try check(Int32(clamping: result), "write", path)
                    written += result
                }
            }
            bytesWritten += entry.size
        case .symbolicLink:
            try check(symlink(entry.linkTarget, path), "symlink", path)
        case .hardLink:
            guard let targetComponents = try? Self.normalise(entry.linkTarget) else {
                throw LayerError.hardLinkTarget(entry.path, target: entry.linkTarget)
            }
            let targetParent = try existingParents(targetComponents.dropLast(), for: entry.path)
            let target = targetParent + "/" + targetComponents.last!
            var targetStat = stat()
            guard lstat(target, &targetStat) == 0, targetStat.st_mode & S_IFMT != S_IFDIR else {
                throw LayerError.hardLinkTarget(entry.path, target: entry.linkTarget)
            }
            try check(link(target, path), "link", path)
            return // the target's owner, mode and times are the link's
        case .fifo:
            try check(mkfifo(path, 0o600), "mkfifo", path)
        case .characterDevice, .blockDevice:
            guard components.first == "dev" else { throw LayerError.deviceNode(entry.path) }
            return
        }
        try check(lchown(path, uid_t(clamping: entry.uid), gid_t(clamping: entry.gid)), "lchown", path)
        for (key, value) in entry.extendedAttributes.sorted(by: { $0.key < $1.key }) {
            try check(value.withUnsafeBytes { cex_lsetxattr(path, key, $0.baseAddress, $0.count) }, "lsetxattr \(key)", path)
        }
        if entry.kind != .symbolicLink {
            // After chown, which clears set-user-ID bits.
            try check(chmod(path, mode_t(entry.mode & 0o7777)), "chmod", path)
        }
        if entry.kind != .directory { setTimes(path, entry.modified) }
    }

    /// Makes the member's parent directories (0755, as tar does for
    /// directories with no member of their own), refusing a parent that is
    /// a symbolic link or not a directory. Returns the parent's path.
    private func ensureParents(_ components: ArraySlice<Substring>, for member: String) throws -> String {
        var path = root
        for component in components {
            path += "/" + component
            var info = stat()
            if lstat(path, &info) != 0 {
                guard errno == ENOENT else { throw LayerError.system("lstat", path: path, errno) }
                try check(mkdir(path, 0o755), "mkdir", path)
                continue
            }
            switch info.st_mode & S_IFMT {
            case S_IFDIR: continue
            case S_IFLNK: throw LayerError.throughSymlink(member, via: String(path.dropFirst(root.count + 1)))
            default: throw LayerError.notADirectory(member, parent: String(path.dropFirst(root.count + 1)))
            }
        }
        return path
    }

    /// As `ensureParents`, for a path that must already exist.
    private func existingParents(_ components: ArraySlice<Substring>, for member: String) throws -> String {
        var path = root
        for component in components {
            path += "/" + component
            var info = stat()
            guard lstat(path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
                throw LayerError.hardLinkTarget(member, target: String(path.dropFirst(root.count + 1)))
            }
        }
        return path
    }

    private func removeExisting(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        if info.st_mode & S_IFMT == S_IFDIR {
            try FileTree.remove(path)
        } else {
            try check(unlink(path), "unlink", path)
        }
    }

    private func setTimes(_ path: String, _ modified: Int64) {
        var times = [timespec(tv_sec: Int(modified), tv_nsec: 0), timespec(tv_sec: Int(modified), tv_nsec: 0)]
        _ = utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
    }

    private func check(_ result: Int32, _ call: String, _ path: String) throws {
        if result < 0 { throw LayerError.system(call, path: String(path.dropFirst(root.count)), errno) }
    }
}

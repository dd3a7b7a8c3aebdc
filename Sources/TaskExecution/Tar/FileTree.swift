#if canImport(Glibc)
import Glibc
#endif

/// File-tree operations that never follow symbolic links (image layers and
/// task directories hold links that point anywhere) and never cross into
/// another mount (a task's root filesystem may still be mounted).
public enum FileTree {
    /// Removes a file or a whole tree; a missing path is not an error.
    public static func remove(_ path: String) throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw LayerError.system("lstat", path: path, errno)
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            try removeContents(path, device: info.st_dev)
            if rmdir(path) != 0, errno != ENOENT { throw LayerError.system("rmdir", path: path, errno) }
        } else if unlink(path) != 0, errno != ENOENT {
            throw LayerError.system("unlink", path: path, errno)
        }
    }

    private static func removeContents(_ directory: String, device: dev_t) throws {
        guard let handle = opendir(directory) else {
            if errno == ENOENT { return }
            throw LayerError.system("opendir", path: directory, errno)
        }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(handle)
        for name in names {
            let path = directory + "/" + name
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            if info.st_mode & S_IFMT == S_IFDIR {
                guard info.st_dev == device else {
                    throw LayerError.system("refusing to remove across a mount point", path: path, EBUSY)
                }
                try removeContents(path, device: device)
                if rmdir(path) != 0, errno != ENOENT { throw LayerError.system("rmdir", path: path, errno) }
            } else if unlink(path) != 0, errno != ENOENT {
                throw LayerError.system("unlink", path: path, errno)
            }
        }
    }

    /// Makes a directory and its parents; an existing directory is fine.
    public static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws {
        var partial = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, mode) != 0, errno != EEXIST { throw LayerError.system("mkdir", path: partial, errno) }
        }
        // mkdir's mode passes through the umask; the caller's is meant.
        if chmod(path, mode) != 0 { throw LayerError.system("chmod", path: path, errno) }
    }

    /// Writes a file whole: a temporary file, fsync, then rename, so that a
    /// crash leaves the old content or the new, never half of it.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws {
        let temporary = path + ".tmp"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw LayerError.system("open", path: temporary, errno) }
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, bytes.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                let code = errno
                close(descriptor)
                throw LayerError.system("write", path: temporary, code)
            }
            written += result
        }
        fsync(descriptor)
        close(descriptor)
        guard rename(temporary, path) == 0 else { throw LayerError.system("rename", path: path, errno) }
    }

    /// A whole file's bytes, or nil when it does not exist.
    public static func read(_ path: String, limit: Int = 64 << 20) throws -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            if errno == ENOENT { return nil }
            throw LayerError.system("open", path: path, errno)
        }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress!, $0.count) }
            if got < 0 {
                if errno == EINTR { continue }
                throw LayerError.system("read", path: path, errno)
            }
            if got == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<got])
            guard bytes.count <= limit else { throw LayerError.system("read (file too large)", path: path, EFBIG) }
        }
    }

    /// A file's size in bytes, or nil when it cannot be read.
    public static func size(_ path: String) -> Int64? {
        var info = stat()
        return stat(path, &info) == 0 ? Int64(info.st_size) : nil
    }

    /// What a growing file holds past `offset` (a followed log), and its
    /// size; from its start when it shrank below `offset` (rotated). nil
    /// when it cannot be opened.
    public static func read(_ path: String, after offset: Int64) -> (bytes: [UInt8], size: Int64)? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { return nil }
        var position = Int64(info.st_size) < offset ? 0 : offset
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let got = chunk.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, $0.count, off_t(position)) }
            if got < 0 && errno == EINTR { continue }
            guard got > 0 else { break }
            bytes.append(contentsOf: chunk[0..<got])
            position += Int64(got)
        }
        return (bytes, position)
    }

    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }
}

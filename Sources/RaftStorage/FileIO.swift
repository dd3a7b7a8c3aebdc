#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Thin wrappers over the POSIX calls the storage needs: `EINTR` is retried, and a failure becomes
/// `StorageError.system` carrying the call's name, the path and errno.
enum FileIO {
    static func check(_ result: Int32, _ call: String, _ path: String) throws {
        if result < 0 { throw StorageError.system(call: call, path: path, errno: errno) }
    }

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw StorageError.system(call: "open", path: path, errno: errno)
        }
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Writes all of `bytes`, continuing after short writes.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StorageError.system(call: "write", path: path, errno: errno)
                }
                done += n
            }
        }
    }

    static func fsync(_ fd: Int32, path: String) throws {
        while Glibc.fsync(fd) < 0 {
            if errno == EINTR { continue }
            throw StorageError.system(call: "fsync", path: path, errno: errno)
        }
    }

    /// Makes a created, renamed or removed name durable: the entry lives in the directory, not the file.
    static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: path)
    }

    static func truncate(_ fd: Int32, to size: Int, path: String) throws {
        while ftruncate(fd, off_t(size)) < 0 {
            if errno == EINTR { continue }
            throw StorageError.system(call: "ftruncate", path: path, errno: errno)
        }
    }

    static func seekEnd(_ fd: Int32, path: String) throws -> Int {
        let off = lseek(fd, 0, SEEK_END)
        if off < 0 { throw StorageError.system(call: "lseek", path: path, errno: errno) }
        return Int(off)
    }

    static func readAll(_ path: String) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageError.system(call: "read", path: path, errno: errno)
            }
            if n == 0 { return out }
            out.append(contentsOf: chunk[0..<n])
        }
    }

    static func rename(_ from: String, _ to: String) throws {
        try check(Glibc.rename(from, to), "rename", from + " -> " + to)
    }

    static func unlink(_ path: String) throws {
        if Glibc.unlink(path) < 0, errno != ENOENT {
            throw StorageError.system(call: "unlink", path: path, errno: errno)
        }
    }

    static func mkdirs(_ path: String) throws {
        var prefix = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            prefix += "/" + part
            if mkdir(prefix, 0o755) < 0, errno != EEXIST {
                throw StorageError.system(call: "mkdir", path: prefix, errno: errno)
            }
        }
    }

    /// Names in a directory, sorted, without "." and "..".
    static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw StorageError.system(call: "opendir", path: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Writes a whole file so that it appears complete or not at all: temp file, fsync, rename, fsync of the directory.
    static func writeAtomically(_ bytes: [UInt8], directory: String, name: String) throws {
        let tmp = directory + "/" + name + ".tmp"
        let fd = try open(tmp, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try writeAll(fd, bytes, path: tmp)
            try fsync(fd, path: tmp)
        } catch {
            close(fd)
            try? unlink(tmp)
            throw error
        }
        close(fd)
        try rename(tmp, directory + "/" + name)
        try fsyncDirectory(directory)
    }
}

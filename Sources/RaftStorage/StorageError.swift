/// Why the durable storage refused to open or write; every case names the file involved.
public enum StorageError: Swift.Error, Sendable, Hashable, CustomStringConvertible {
    /// A system call failed; `errno` is the kernel's.
    case system(call: String, path: String, errno: Int32)
    /// A WAL record that cannot be a torn tail: a bad record followed by valid ones, a bad record in
    /// a segment that is not the last, or a record with a valid checksum and a malformed payload.
    case corruptRecord(file: String, offset: Int, reason: String)
    /// A snapshot file whose checksum or layout is wrong.
    case corruptSnapshot(file: String, reason: String)
    /// The files are individually valid but do not fit together (a missing segment, a gap in the
    /// log, a WAL that needs a snapshot no valid file holds).
    case inconsistent(String)

    public var description: String {
        switch self {
        case let .system(call, path, errno):
            "\(call)(\(path)) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        case let .corruptRecord(file, offset, reason):
            "corrupt WAL record in \(file) at offset \(offset): \(reason)"
        case let .corruptSnapshot(file, reason):
            "corrupt snapshot \(file): \(reason)"
        case let .inconsistent(why):
            "inconsistent storage: \(why)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

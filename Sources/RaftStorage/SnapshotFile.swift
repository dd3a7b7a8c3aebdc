import Raft

/// A snapshot on disk, one file per snapshot, named `<index>-<term>.snap` in hex so names sort by index:
///
///     magic   8 bytes  "SWNSNP01"
///     index, term               u64 LE
///     voters count, ids         u64 LE each, ids ascending
///     learners count, ids       u64 LE each, ids ascending
///     data length, data         u64 LE, bytes
///     crc                       u32 LE, CRC-32C over everything before it
public enum SnapshotFile {
    static let magic: [UInt8] = Array("SWNSNP01".utf8)
    static let suffix = ".snap"

    public static func name(for m: SnapshotMetadata) -> String {
        pad16(m.index) + "-" + pad16(m.term) + suffix
    }

    /// Index and term from a file name, or nil if the name is not one of ours.
    static func parseName(_ name: String) -> (index: Index, term: Term)? {
        guard name.hasSuffix(suffix) else { return nil }
        let parts = name.dropLast(suffix.count).split(separator: "-")
        guard parts.count == 2, parts.allSatisfy({ $0.count == 16 }),
              let i = UInt64(parts[0], radix: 16), let t = UInt64(parts[1], radix: 16) else { return nil }
        return (i, t)
    }

    public static func encode(_ s: Snapshot) -> [UInt8] {
        var w = ByteWriter()
        w.raw(magic)
        w.u64(s.metadata.index)
        w.u64(s.metadata.term)
        for set in [s.metadata.confState.voters, s.metadata.confState.learners] {
            w.u64(UInt64(set.count))
            for id in set.sorted() { w.u64(id) }
        }
        w.u64(UInt64(s.data.count))
        w.raw(s.data)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Decodes and verifies a snapshot file's bytes; `file` only labels errors.
    public static func decode(_ bytes: [UInt8], file: String) throws -> Snapshot {
        guard bytes.count >= magic.count + 4 else { throw StorageError.corruptSnapshot(file: file, reason: "only \(bytes.count) bytes") }
        let body = bytes[0..<(bytes.count - 4)]
        var tail = ByteReader(bytes[(bytes.count - 4)...])
        let stored = try! tail.u32()
        let crc = CRC32C.checksum(body)
        guard crc == stored else {
            throw StorageError.corruptSnapshot(file: file, reason: "checksum mismatch (stored \(hex(stored)), computed \(hex(crc)))")
        }
        var r = ByteReader(body)
        do {
            guard try r.raw(magic.count) == magic else { throw StorageError.corruptSnapshot(file: file, reason: "bad magic") }
            let index = try r.u64()
            let term = try r.u64()
            var sets: [Set<NodeID>] = []
            for _ in 0..<2 {
                let n = try r.u64()
                guard n <= UInt64(r.remaining / 8) else { throw ByteReader.Truncated() }
                var s = Set<NodeID>()
                for _ in 0..<n { s.insert(try r.u64()) }
                sets.append(s)
            }
            let len = try r.u64()
            guard len == UInt64(r.remaining) else {
                throw StorageError.corruptSnapshot(file: file, reason: "data length \(len) but \(r.remaining) bytes follow")
            }
            let data = r.rest()
            return Snapshot(metadata: SnapshotMetadata(index: index, term: term,
                                                       confState: ConfState(voters: sets[0], learners: sets[1])),
                            data: data)
        } catch is ByteReader.Truncated {
            throw StorageError.corruptSnapshot(file: file, reason: "truncated")
        }
    }

    /// Writes `s` into `directory` atomically (temp file, fsync, rename, fsync of the directory).
    public static func write(_ s: Snapshot, directory: String) throws {
        try FileIO.writeAtomically(encode(s), directory: directory, name: name(for: s.metadata))
    }

    /// Reads and verifies the snapshot at `path`; the metadata must agree with the file name.
    public static func read(path: String) throws -> Snapshot {
        let s = try decode(try FileIO.readAll(path), file: path)
        let base = path.split(separator: "/").last.map(String.init) ?? path
        if let (i, t) = parseName(base), i != s.metadata.index || t != s.metadata.term {
            throw StorageError.corruptSnapshot(file: path, reason: "holds \(s.metadata.index)/\(s.metadata.term), name says \(i)/\(t)")
        }
        return s
    }
}

func pad16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 16 - s.count)) + s
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Raft

/// The write-ahead log: numbered segment files `<sequence>.wal` (16 hex digits) of `Record`s.
///
/// Each segment starts with a header record and the hard state in force when it was created, so
/// deleting older segments never loses the hard state. Appends go to the last segment; a batch is
/// written with one `write` and made durable with one `fsync` before `append` returns.
final class WAL {
    struct Segment {
        var sequence: UInt64
        var path: String
        /// Highest entry index written into the segment (0 if none): a segment whose entries are all
        /// covered by a snapshot can go.
        var maxEntryIndex: Index
    }

    /// What `open` found at the tail.
    struct TailRepair: Sendable, Hashable {
        var file: String
        var offset: Int
        var droppedBytes: Int
        var reason: String
    }

    let directory: String
    let segmentSizeLimit: Int
    private(set) var segments: [Segment]
    private var fd: Int32
    private var activeSize: Int
    private var hardState: HardState

    private init(directory: String, segmentSizeLimit: Int, segments: [Segment], fd: Int32, activeSize: Int, hardState: HardState) {
        self.directory = directory
        self.segmentSizeLimit = segmentSizeLimit
        self.segments = segments
        self.fd = fd
        self.activeSize = activeSize
        self.hardState = hardState
    }

    deinit { FileIO.close(fd) }

    static func segmentName(_ seq: UInt64) -> String { pad16(seq) + ".wal" }

    static func parseSegmentName(_ name: String) -> UInt64? {
        guard name.hasSuffix(".wal"), name.count == 20 else { return nil }
        return UInt64(name.prefix(16), radix: 16)
    }

    /// Opens (creating if needed) the log in `directory`, handing every record after the segment
    /// headers to `visit` in order, with its file and offset. A torn tail of the last segment is
    /// truncated away and reported; any other damage throws.
    static func open(
        directory: String, segmentSizeLimit: Int,
        visit: (Record, _ file: String, _ offset: Int) throws -> Void
    ) throws -> (WAL, TailRepair?) {
        try FileIO.mkdirs(directory)
        let names = try FileIO.list(directory)
        var seqs = names.compactMap(parseSegmentName)
        for n in names where n.hasSuffix(".wal.tmp") { try FileIO.unlink(directory + "/" + n) }
        if seqs.isEmpty {
            let seg = try create(directory: directory, sequence: 1, hardState: .empty)
            return (WAL(directory: directory, segmentSizeLimit: segmentSizeLimit,
                        segments: [Segment(sequence: 1, path: seg.path, maxEntryIndex: 0)],
                        fd: seg.fd, activeSize: seg.size, hardState: .empty), nil)
        }
        seqs.sort()
        for (a, b) in zip(seqs, seqs.dropFirst()) where b != a + 1 {
            throw StorageError.inconsistent("WAL segment \(segmentName(a + 1)) is missing between \(segmentName(a)) and \(segmentName(b)) in \(directory)")
        }
        var segments: [Segment] = []
        var repair: TailRepair?
        var hardState = HardState.empty
        var lastValidEnd = 0
        for (i, seq) in seqs.enumerated() {
            let path = directory + "/" + segmentName(seq)
            let bytes = try FileIO.readAll(path)
            let isLast = i == seqs.count - 1
            var seg = Segment(sequence: seq, path: path, maxEntryIndex: 0)
            var off = 0
            scan: while off < bytes.count {
                let rec: Record
                let size: Int
                do {
                    (rec, size) = try Record.parse(bytes, at: off)
                } catch {
                    // Only the unsynced end of the last segment may be torn; anything else is damage.
                    if isLast, case .invalid = error, !Record.validRecordExists(bytes, after: off) {
                        repair = TailRepair(file: path, offset: off, droppedBytes: bytes.count - off, reason: error.reason)
                        break scan
                    }
                    var why = error.reason
                    if isLast, case .invalid = error { why += "; valid records follow, so this is not a torn write" }
                    throw StorageError.corruptRecord(file: path, offset: off, reason: why)
                }
                if off == 0 {
                    guard case let .segmentHeader(s) = rec else {
                        throw StorageError.corruptRecord(file: path, offset: 0, reason: "segment does not start with a header")
                    }
                    guard s == seq else {
                        throw StorageError.corruptRecord(file: path, offset: 0, reason: "header says segment \(s)")
                    }
                } else {
                    switch rec {
                    case .segmentHeader:
                        throw StorageError.corruptRecord(file: path, offset: off, reason: "segment header in the middle of a segment")
                    case let .entry(e):
                        seg.maxEntryIndex = max(seg.maxEntryIndex, e.index)
                    case let .hardState(hs):
                        hardState = hs
                    case .snapshotMarker:
                        break
                    }
                    try visit(rec, path, off)
                }
                off += size
            }
            lastValidEnd = off
            segments.append(seg)
        }
        let active = segments[segments.count - 1]
        let fd = try FileIO.open(active.path, O_WRONLY | O_APPEND)
        var size = lastValidEnd
        do {
            if repair != nil {
                try FileIO.truncate(fd, to: lastValidEnd, path: active.path)
                try FileIO.fsync(fd, path: active.path)
            }
            if size == 0 {
                // A crash while rolling left an empty segment: give it its header now.
                let head = Record.segmentHeader(sequence: active.sequence).framed + Record.hardState(hardState).framed
                try FileIO.writeAll(fd, head, path: active.path)
                try FileIO.fsync(fd, path: active.path)
                size = head.count
            }
        } catch {
            FileIO.close(fd)
            throw error
        }
        return (WAL(directory: directory, segmentSizeLimit: segmentSizeLimit, segments: segments, fd: fd,
                    activeSize: size, hardState: hardState), repair)
    }

    private static func create(directory: String, sequence: UInt64, hardState: HardState) throws -> (path: String, fd: Int32, size: Int) {
        let path = directory + "/" + segmentName(sequence)
        let fd = try FileIO.open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL)
        do {
            let head = Record.segmentHeader(sequence: sequence).framed + Record.hardState(hardState).framed
            try FileIO.writeAll(fd, head, path: path)
            try FileIO.fsync(fd, path: path)
            try FileIO.fsyncDirectory(directory)
            return (path, fd, head.count)
        } catch {
            FileIO.close(fd)
            throw error
        }
    }

    /// Appends `records` and returns once they are on stable storage.
    func append(_ records: [Record]) throws {
        guard !records.isEmpty else { return }
        if activeSize >= segmentSizeLimit { try roll() }
        var buf: [UInt8] = []
        var maxIndex = segments[segments.count - 1].maxEntryIndex
        for r in records {
            buf += r.framed
            switch r {
            case let .entry(e): maxIndex = max(maxIndex, e.index)
            case let .hardState(hs): hardState = hs
            default: break
            }
        }
        let path = segments[segments.count - 1].path
        try FileIO.writeAll(fd, buf, path: path)
        try FileIO.fsync(fd, path: path)
        activeSize += buf.count
        segments[segments.count - 1].maxEntryIndex = maxIndex
    }

    /// Starts a new segment; the old one was synced by the append that filled it.
    private func roll() throws {
        let seq = segments[segments.count - 1].sequence + 1
        let seg = try WAL.create(directory: directory, sequence: seq, hardState: hardState)
        FileIO.close(fd)
        fd = seg.fd
        activeSize = seg.size
        segments.append(Segment(sequence: seq, path: seg.path, maxEntryIndex: 0))
    }

    /// Deletes leading segments (never the active one) whose entries are all at or below `index`.
    func removeSegments(coveredBy index: Index) throws {
        var removed = false
        while segments.count > 1, segments[0].maxEntryIndex <= index {
            try FileIO.unlink(segments[0].path)
            segments.removeFirst()
            removed = true
        }
        if removed { try FileIO.fsyncDirectory(directory) }
    }
}

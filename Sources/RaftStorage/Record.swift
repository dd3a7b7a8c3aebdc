import Raft

/// One WAL record on disk:
///
///     length  u32 LE   payload bytes
///     type    u8       RecordType
///     crc     u32 LE   CRC-32C over type and payload
///     payload
///
/// The checksum covers the type so a flipped type byte is caught; the length is checked by the
/// checksum indirectly (a wrong length frames the wrong bytes).
public enum RecordType: UInt8, Sendable, Hashable {
    /// First record of every segment: magic and the segment's sequence number, so a misnamed or
    /// stale file is caught.
    case segmentHeader = 1
    case entry = 2
    case hardState = 3
    /// A snapshot (held in its own file) was persisted here; the log before it is replaced as
    /// `PersistentState.install` does.
    case snapshotMarker = 4
}

/// A decoded record; the byte offset is kept so errors can point at it.
enum Record: Sendable, Hashable {
    case segmentHeader(sequence: UInt64)
    case entry(Entry)
    case hardState(HardState)
    case snapshotMarker(index: Index, term: Term)

    static let headerSize = 9
    /// Larger records are refused on write and taken as garbage on read.
    static let maxPayload = 256 << 20
    static let segmentMagic: [UInt8] = Array("SWNWAL01".utf8)

    var type: RecordType {
        switch self {
        case .segmentHeader: .segmentHeader
        case .entry: .entry
        case .hardState: .hardState
        case .snapshotMarker: .snapshotMarker
        }
    }

    var payload: [UInt8] {
        var w = ByteWriter()
        switch self {
        case let .segmentHeader(seq):
            w.raw(Self.segmentMagic)
            w.u64(seq)
        case let .entry(e):
            w.u64(e.term)
            w.u64(e.index)
            w.u8(e.kind.rawValue)
            w.raw(e.data)
        case let .hardState(hs):
            w.u64(hs.term)
            w.u64(hs.vote)
            w.u64(hs.commit)
        case let .snapshotMarker(index, term):
            w.u64(index)
            w.u64(term)
        }
        return w.bytes
    }

    /// The framed bytes to append to a segment.
    var framed: [UInt8] {
        let p = payload
        precondition(p.count <= Self.maxPayload, "WAL record of \(p.count) bytes exceeds \(Self.maxPayload)")
        var w = ByteWriter()
        w.u32(UInt32(p.count))
        w.u8(type.rawValue)
        var crc = withUnsafeBytes(of: type.rawValue) { CRC32C.update(0, $0) }
        crc = p.withUnsafeBytes { CRC32C.update(crc, $0) }
        w.u32(crc)
        w.raw(p)
        return w.bytes
    }

    /// Decodes a payload whose checksum already matched; throws a reason for a malformed one.
    static func decode(type: RecordType, payload: ArraySlice<UInt8>) throws(FrameError) -> Record {
        var r = ByteReader(payload)
        do {
            let rec: Record
            switch type {
            case .segmentHeader:
                guard try r.raw(segmentMagic.count) == segmentMagic else { throw FrameError.malformed("bad segment magic") }
                rec = .segmentHeader(sequence: try r.u64())
            case .entry:
                let term = try r.u64()
                let index = try r.u64()
                guard let kind = EntryKind(rawValue: try r.u8()) else { throw FrameError.malformed("unknown entry kind") }
                rec = .entry(Entry(term: term, index: index, kind: kind, data: r.rest()))
            case .hardState:
                rec = .hardState(HardState(term: try r.u64(), vote: try r.u64(), commit: try r.u64()))
            case .snapshotMarker:
                rec = .snapshotMarker(index: try r.u64(), term: try r.u64())
            }
            guard r.atEnd else { throw FrameError.malformed("\(r.remaining) trailing bytes in \(type) record") }
            return rec
        } catch let e as FrameError {
            throw e
        } catch {
            throw FrameError.malformed("\(type) record too short")
        }
    }

    enum FrameError: Error, Equatable {
        /// Not a whole, checksummed record: what a torn write leaves (or corruption of one).
        case invalid(String)
        /// Checksum matches but the content does not decode: never a torn write.
        case malformed(String)

        var reason: String {
            switch self {
            case let .invalid(r), let .malformed(r): r
            }
        }
    }

    /// Parses the record at `offset`; returns it and its framed length.
    static func parse(_ bytes: [UInt8], at offset: Int) throws(FrameError) -> (Record, Int) {
        let avail = bytes.count - offset
        guard avail >= headerSize else { throw .invalid("\(avail) bytes left, less than a record header") }
        let len = Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3]) << 24
        let typeByte = bytes[offset + 4]
        let stored = UInt32(bytes[offset + 5]) | UInt32(bytes[offset + 6]) << 8 | UInt32(bytes[offset + 7]) << 16
            | UInt32(bytes[offset + 8]) << 24
        guard len <= maxPayload else { throw .invalid("length \(len) exceeds the record limit") }
        guard len <= avail - headerSize else { throw .invalid("length \(len) runs past the end of the file") }
        let start = offset + headerSize
        let crc = bytes.withUnsafeBytes { buf in
            CRC32C.update(CRC32C.update(0, UnsafeRawBufferPointer(rebasing: buf[(offset + 4)..<(offset + 5)])),
                          UnsafeRawBufferPointer(rebasing: buf[start..<(start + len)]))
        }
        guard crc == stored else { throw .invalid("checksum mismatch (stored \(hex(stored)), computed \(hex(crc)))") }
        guard let type = RecordType(rawValue: typeByte) else { throw .malformed("unknown record type \(typeByte)") }
        return (try decode(type: type, payload: bytes[start..<(start + len)]), headerSize + len)
    }

    /// True if a whole record with a valid checksum starts anywhere after `offset`: that tells a
    /// torn tail (nothing valid follows) from corruption in the middle (valid records follow).
    static func validRecordExists(_ bytes: [UInt8], after offset: Int) -> Bool {
        var p = offset + 1
        while p + headerSize <= bytes.count {
            // Cheap filters before the checksum: a known type and a length that fits.
            if RecordType(rawValue: bytes[p + 4]) != nil {
                let len = Int(bytes[p]) | Int(bytes[p + 1]) << 8 | Int(bytes[p + 2]) << 16 | Int(bytes[p + 3]) << 24
                if len <= bytes.count - p - headerSize, (try? parse(bytes, at: p)) != nil { return true }
            }
            p += 1
        }
        return false
    }
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
}

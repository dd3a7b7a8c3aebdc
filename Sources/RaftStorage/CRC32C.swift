/// CRC-32C (Castagnoli), the checksum of iSCSI, ext4 metadata and etcd's WAL: better error
/// detection than the zlib CRC-32 for the short records a log holds. Table-driven, reflected.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 == 1 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// Continues `crc` (the value returned by an earlier call, or 0 to start) over `bytes`.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0) }
    }

    public static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0) }
    }
}

/// Little-endian field writer for the on-disk formats; the formats are ours and versioned by magic.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func u32(_ v: UInt32) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func u64(_ v: UInt64) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func raw(_ b: [UInt8]) { bytes.append(contentsOf: b) }
}

/// The reader matching `ByteWriter`; every read is bounds-checked and throws instead of trapping.
struct ByteReader {
    struct Truncated: Error {}

    let bytes: ArraySlice<UInt8>
    var pos: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        pos = bytes.startIndex
    }

    var remaining: Int { bytes.endIndex - pos }
    var atEnd: Bool { pos == bytes.endIndex }

    mutating func u8() throws -> UInt8 {
        guard remaining >= 1 else { throw Truncated() }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func u32() throws -> UInt32 {
        guard remaining >= 4 else { throw Truncated() }
        var v: UInt32 = 0
        for i in (0..<4).reversed() { v = v << 8 | UInt32(bytes[pos + i]) }
        pos += 4
        return v
    }

    mutating func u64() throws -> UInt64 {
        guard remaining >= 8 else { throw Truncated() }
        var v: UInt64 = 0
        for i in (0..<8).reversed() { v = v << 8 | UInt64(bytes[pos + i]) }
        pos += 8
        return v
    }

    mutating func raw(_ n: Int) throws -> [UInt8] {
        guard n >= 0, remaining >= n else { throw Truncated() }
        defer { pos += n }
        return Array(bytes[pos..<pos + n])
    }

    mutating func rest() -> [UInt8] {
        defer { pos = bytes.endIndex }
        return Array(bytes[pos...])
    }
}

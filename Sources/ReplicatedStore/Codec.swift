/// Little-endian writer for the store's command and snapshot formats (ours, versioned by a tag byte).
struct Encoder {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }

    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }

    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }

    mutating func blob(_ b: [UInt8]) {
        u32(UInt32(b.count))
        bytes.append(contentsOf: b)
    }

    mutating func string(_ s: String) { blob(Array(s.utf8)) }
}

/// The bounds-checked reader matching `Encoder`.
struct Decoder {
    let bytes: [UInt8]
    var pos = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { pos == bytes.count }

    mutating func u8() throws(StoreError) -> UInt8 {
        guard pos < bytes.count else { throw .malformed("truncated") }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func u32() throws(StoreError) -> UInt32 {
        guard bytes.count - pos >= 4 else { throw .malformed("truncated") }
        var v: UInt32 = 0
        for i in (0..<4).reversed() { v = v << 8 | UInt32(bytes[pos + i]) }
        pos += 4
        return v
    }

    mutating func u64() throws(StoreError) -> UInt64 {
        guard bytes.count - pos >= 8 else { throw .malformed("truncated") }
        var v: UInt64 = 0
        for i in (0..<8).reversed() { v = v << 8 | UInt64(bytes[pos + i]) }
        pos += 8
        return v
    }

    mutating func blob() throws(StoreError) -> [UInt8] {
        let n = Int(try u32())
        guard bytes.count - pos >= n else { throw .malformed("truncated") }
        defer { pos += n }
        return Array(bytes[pos..<pos + n])
    }

    mutating func string() throws(StoreError) -> String {
        let b = try blob()
        guard let s = String(validating: b, as: UTF8.self) else { throw .malformed("invalid UTF-8") }
        return s
    }
}

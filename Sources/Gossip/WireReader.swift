/// Reads the wire primitives with a bounds check before every access; every failure is a thrown
/// `GossipCodecError`. Lengths from the input are compared with what is left before any allocation.
struct WireReader {
    private let bytes: [UInt8]
    private var offset: Int
    private let end: Int

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
        self.end = bytes.count
    }

    private init(bytes: [UInt8], offset: Int, end: Int) {
        self.bytes = bytes
        self.offset = offset
        self.end = end
    }

    var remaining: Int { end - offset }

    private mutating func require(_ count: Int) throws {
        guard count >= 0, count <= remaining else {
            throw GossipCodecError.truncated(needed: count, available: remaining)
        }
    }

    mutating func u8() throws -> UInt8 {
        try require(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func bool(_ field: String) throws -> Bool {
        let raw = try u8()
        switch raw {
        case 0: return false
        case 1: return true
        default: throw GossipCodecError.invalidField(name: field, value: UInt64(raw))
        }
    }

    mutating func u16() throws -> UInt16 {
        try require(2)
        defer { offset += 2 }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    mutating func u32() throws -> UInt32 {
        try require(4)
        var value: UInt32 = 0
        for i in 0..<4 { value = value << 8 | UInt32(bytes[offset + i]) }
        offset += 4
        return value
    }

    /// LEB128, at most ten bytes, rejecting bits beyond 64.
    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try u8()
            if shift == 63, byte > 1 { throw GossipCodecError.varintOverflow }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw GossipCodecError.varintOverflow }
        }
    }

    mutating func u32Varint(_ field: String) throws -> UInt32 {
        let raw = try varint()
        guard let value = UInt32(exactly: raw) else { throw GossipCodecError.invalidField(name: field, value: raw) }
        return value
    }

    /// A varint length, checked against `limit` and against the bytes actually left.
    mutating func length(limit: Int) throws -> Int {
        let raw = try varint()
        guard raw <= UInt64(limit) else { throw GossipCodecError.lengthTooLarge(length: raw, limit: limit) }
        let length = Int(raw)
        try require(length)
        return length
    }

    mutating func blob(limit: Int) throws -> [UInt8] {
        let count = try length(limit: limit)
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }

    mutating func string(limit: Int = WireLimits.name) throws -> String {
        let raw = try blob(limit: limit)
        guard let value = String(validating: raw, as: UTF8.self) else { throw GossipCodecError.invalidUTF8 }
        return value
    }

    mutating func address() throws -> NodeAddress {
        let host = try string()
        let port = try u16()
        return NodeAddress(host: host, port: port)
    }

    /// A reader over the next `count` bytes, which this reader skips.
    mutating func sub(_ count: Int) throws -> WireReader {
        try require(count)
        defer { offset += count }
        return WireReader(bytes: bytes, offset: offset, end: offset + count)
    }

    /// A count of items that each take at least `minimumItemSize` bytes, so a forged count cannot
    /// make the decoder reserve more than the input could hold.
    mutating func count(minimumItemSize: Int) throws -> Int {
        let raw = try varint()
        let limit = remaining / max(1, minimumItemSize)
        guard raw <= UInt64(limit) else { throw GossipCodecError.lengthTooLarge(length: raw, limit: limit) }
        return Int(raw)
    }

    func expectEnd() throws {
        guard remaining == 0 else { throw GossipCodecError.trailingBytes(count: remaining) }
    }
}

/// Size limits of individual fields on the wire.
public enum WireLimits {
    /// Node, network and table names, host texts.
    public static let name = 255
    /// Table keys.
    public static let key = 1024
    /// Table values; a table event must still fit one packet, checked when the entry is written.
    public static let value = 65_535
}

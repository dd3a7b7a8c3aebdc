/// JSON's null, in a parsed document.
public struct JSONNull: Sendable, Hashable {
    public init() {}
}

/// Untyped JSON, as `JSONSerialization.jsonObject` gave it, for documents
/// read by shape rather than decoded into types (nft's JSON listings,
/// runc's log lines, Docker's `filters`): objects are `[String: Any]`,
/// arrays `[Any]`, numbers `Int` when integral and in range (else
/// `Double`), then `String`, `Bool` and `JSONNull`.
public enum JSONObject {
    public struct Malformed: Error, CustomStringConvertible {
        public var offset: Int
        public var description: String { "malformed JSON at byte \(offset)" }
    }

    /// Nesting deeper than this is refused, so that a hostile document
    /// cannot exhaust the stack.
    public static let maximumDepth = 512

    public static func parse(_ text: some StringProtocol) throws(Malformed) -> Any {
        try parse(Array(text.utf8))
    }

    public static func parse(_ bytes: [UInt8]) throws(Malformed) -> Any {
        var parser = Parser(bytes: bytes)
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.offset == bytes.count else { throw Malformed(offset: parser.offset) }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var offset = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func skipSpace() {
            while offset < bytes.count {
                switch bytes[offset] {
                case 0x20, 0x09, 0x0a, 0x0d: offset += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(Malformed) -> Any {
            guard depth < JSONObject.maximumDepth else { throw Malformed(offset: offset) }
            skipSpace()
            guard offset < bytes.count else { throw Malformed(offset: offset) }
            switch bytes[offset] {
            case UInt8(ascii: "{"):
                offset += 1
                var object: [String: Any] = [:]
                skipSpace()
                if peek(UInt8(ascii: "}")) { return object }
                repeat {
                    skipSpace()
                    let key = try string()
                    skipSpace()
                    try expect(UInt8(ascii: ":"))
                    object[key] = try value(depth: depth + 1)
                    skipSpace()
                } while peek(UInt8(ascii: ","))
                try expect(UInt8(ascii: "}"))
                return object
            case UInt8(ascii: "["):
                offset += 1
                var array: [Any] = []
                skipSpace()
                if peek(UInt8(ascii: "]")) { return array }
                repeat {
                    array.append(try value(depth: depth + 1))
                    skipSpace()
                } while peek(UInt8(ascii: ","))
                try expect(UInt8(ascii: "]"))
                return array
            case UInt8(ascii: "\""):
                return try string()
            case UInt8(ascii: "t"):
                try literal("true")
                return true
            case UInt8(ascii: "f"):
                try literal("false")
                return false
            case UInt8(ascii: "n"):
                try literal("null")
                return JSONNull()
            default:
                return try number()
            }
        }

        /// Consumes `byte` when it is next.
        mutating func peek(_ byte: UInt8) -> Bool {
            guard offset < bytes.count, bytes[offset] == byte else { return false }
            offset += 1
            return true
        }

        mutating func expect(_ byte: UInt8) throws(Malformed) {
            guard peek(byte) else { throw Malformed(offset: offset) }
        }

        mutating func literal(_ word: StaticString) throws(Malformed) {
            let expected = UnsafeBufferPointer(start: word.utf8Start, count: word.utf8CodeUnitCount)
            guard offset + expected.count <= bytes.count, bytes[offset..<offset + expected.count].elementsEqual(expected) else {
                throw Malformed(offset: offset)
            }
            offset += expected.count
        }

        mutating func number() throws(Malformed) -> Any {
            let start = offset
            while offset < bytes.count, "+-0123456789.eE".utf8.contains(bytes[offset]) { offset += 1 }
            let text = String(decoding: bytes[start..<offset], as: UTF8.self)
            if let integer = Int(text) { return integer }
            guard !text.isEmpty, let real = Double(text) else { throw Malformed(offset: start) }
            return real
        }

        mutating func string() throws(Malformed) -> String {
            try expect(UInt8(ascii: "\""))
            // Most strings (nft's names, addresses, keywords) have no
            // escape: decoded from the bytes in one step.
            var end = offset
            scan: while end < bytes.count {
                switch bytes[end] {
                case UInt8(ascii: "\""):
                    let text = String(decoding: bytes[offset..<end], as: UTF8.self)
                    offset = end + 1
                    return text
                case UInt8(ascii: "\\"):
                    break scan
                case 0..<0x20:
                    throw Malformed(offset: end)
                default:
                    end += 1
                }
            }
            // An escape at `end` (or the input ended): what came before it
            // is plain text, not read again.
            var scalars = String.UnicodeScalarView()
            var plain = Array(bytes[offset..<end])
            offset = end
            func flush() {
                scalars.append(contentsOf: String(decoding: plain, as: UTF8.self).unicodeScalars)
                plain.removeAll(keepingCapacity: true)
            }
            while offset < bytes.count {
                let byte = bytes[offset]
                offset += 1
                switch byte {
                case UInt8(ascii: "\""):
                    flush()
                    return String(scalars)
                case UInt8(ascii: "\\"):
                    flush()
                    guard offset < bytes.count else { throw Malformed(offset: offset) }
                    let escape = bytes[offset]
                    offset += 1
                    switch escape {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(Unicode.Scalar(escape))
                    case UInt8(ascii: "b"): scalars.append("\u{08}")
                    case UInt8(ascii: "f"): scalars.append("\u{0C}")
                    case UInt8(ascii: "n"): scalars.append("\n")
                    case UInt8(ascii: "r"): scalars.append("\r")
                    case UInt8(ascii: "t"): scalars.append("\t")
                    case UInt8(ascii: "u"):
                        var code = try hex4()
                        // A surrogate pair: two escapes for one scalar.
                        if (0xD800..<0xDC00).contains(code), peek(UInt8(ascii: "\\")), peek(UInt8(ascii: "u")) {
                            let low = try hex4()
                            guard (0xDC00..<0xE000).contains(low) else { throw Malformed(offset: offset) }
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        }
                        guard let scalar = Unicode.Scalar(code) else { throw Malformed(offset: offset) }
                        scalars.append(scalar)
                    default:
                        throw Malformed(offset: offset - 1)
                    }
                case 0..<0x20:
                    throw Malformed(offset: offset - 1)
                default:
                    plain.append(byte)
                }
            }
            throw Malformed(offset: offset)
        }

        mutating func hex4() throws(Malformed) -> UInt32 {
            guard offset + 4 <= bytes.count, let code = UInt32(String(decoding: bytes[offset..<offset + 4], as: UTF8.self), radix: 16) else {
                throw Malformed(offset: offset)
            }
            offset += 4
            return code
        }
    }
}

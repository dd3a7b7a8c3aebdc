/// The string helpers the daemon took from Foundation.
extension StringProtocol {
    /// Without leading and trailing spaces, tabs and line ends.
    public func trimmed() -> String {
        trimming { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
    }

    /// Without leading and trailing characters of `characters`.
    public func trimming(_ characters: String) -> String {
        trimming { characters.contains($0) }
    }

    private func trimming(where drop: (Character) -> Bool) -> String {
        guard let first = firstIndex(where: { !drop($0) }), let last = lastIndex(where: { !drop($0) }) else { return "" }
        return String(self[first...last])
    }

    /// `%XX` escapes decoded (URL paths and queries); nil when an escape
    /// is malformed or the bytes are not UTF-8.
    public func percentDecoded() -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count)
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// The directory part of a path, as `NSString.deletingLastPathComponent`
/// gave it: "/a/b" → "/a", "/a" → "/", "a" → "".
public func directoryName(_ path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return "" }
    return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
}

/// A domain name as DNS carries it: a sequence of labels, each 1...63 bytes,
/// at most 255 bytes on the wire (RFC 1035 §2.3.4, §3.1).
///
/// Labels keep the bytes they arrived with, so an answer echoes the case the
/// client asked in (some resolvers randomise case, draft-vixie-dnsext-dns0x20);
/// equality and hashing ignore ASCII case, as DNS comparisons do (RFC 4343).
public struct DNSName: Hashable, Sendable, CustomStringConvertible {
    public static let maxWireLength = 255
    public static let maxLabelLength = 63

    public private(set) var labels: [[UInt8]]

    /// The root name ".".
    public static let root = DNSName(uncheckedLabels: [])

    /// Labels that were already checked (the decoder checks as it reads).
    init(uncheckedLabels labels: [[UInt8]]) {
        self.labels = labels
    }

    /// Validates label and name lengths.
    public init(labels: [[UInt8]]) throws(DNSError) {
        for label in labels where label.isEmpty || label.count > Self.maxLabelLength {
            throw DNSError.badName(reason: "label of \(label.count) bytes (must be 1...\(Self.maxLabelLength))")
        }
        let length = labels.reduce(1) { $0 + 1 + $1.count }
        guard length <= Self.maxWireLength else {
            throw DNSError.badName(reason: "\(length) bytes on the wire (at most \(Self.maxWireLength))")
        }
        self.labels = labels
    }

    /// Parses presentation text such as `web.`, `tasks.web` or `.`: labels
    /// separated by dots, a trailing dot optional. No escapes: swarmnet only
    /// builds names of service names and reverse-lookup labels.
    public init(_ text: some StringProtocol) throws(DNSError) {
        var text = Substring(text)
        if text == "." { self = .root; return }
        if text.hasSuffix(".") { text = text.dropLast() }
        guard !text.isEmpty else { throw DNSError.badName(reason: "empty name") }
        try self.init(labels: text.split(separator: ".", omittingEmptySubsequences: false).map { Array($0.utf8) })
    }

    /// Length of the uncompressed wire form, including the final zero byte.
    public var wireLength: Int { labels.reduce(1) { $0 + 1 + $1.count } }

    public var isRoot: Bool { labels.isEmpty }

    /// The name with ASCII letters folded to lower case.
    public var lowercased: DNSName {
        DNSName(uncheckedLabels: labels.map { $0.map(Self.lower) })
    }

    /// Dotted text without the trailing dot, ASCII-lowercased: the key a
    /// record source is asked for ("web", "tasks.web"). Bytes outside
    /// printable ASCII, and dots inside a label, are escaped as `\DDD`, so
    /// that no two different names give the same key.
    public var lookupKey: String {
        labels.map { Self.presentation($0.map(Self.lower)) }.joined(separator: ".")
    }

    /// Presentation form with a trailing dot (`web.`), escaping as `lookupKey` does.
    public var description: String {
        isRoot ? "." : labels.map { Self.presentation($0) }.joined(separator: ".") + "."
    }

    /// True when `suffix`'s labels end this name (case-insensitively).
    public func hasSuffix(_ suffix: DNSName) -> Bool {
        guard suffix.labels.count <= labels.count else { return false }
        return zip(labels.suffix(suffix.labels.count), suffix.labels).allSatisfy { Self.equalIgnoringCase($0, $1) }
    }

    /// The name without its last `count` labels.
    public func droppingLast(_ count: Int) -> DNSName {
        DNSName(uncheckedLabels: Array(labels.dropLast(count)))
    }

    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        lhs.labels.count == rhs.labels.count && zip(lhs.labels, rhs.labels).allSatisfy { equalIgnoringCase($0, $1) }
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(labels.count)
        for label in labels {
            hasher.combine(label.count)
            for byte in label { hasher.combine(Self.lower(byte)) }
        }
    }

    static func lower(_ byte: UInt8) -> UInt8 {
        (0x41...0x5a).contains(byte) ? byte | 0x20 : byte
    }

    static func equalIgnoringCase(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { lower($0) == lower($1) }
    }

    private static func presentation(_ label: [UInt8]) -> String {
        var text = ""
        for byte in label {
            if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "\\") {
                text += "\\" + String(UnicodeScalar(byte))
            } else if (0x21...0x7e).contains(byte) {
                text.unicodeScalars.append(UnicodeScalar(byte))
            } else {
                let digits = String(byte)
                text += "\\" + String(repeating: "0", count: 3 - digits.count) + digits
            }
        }
        return text
    }
}

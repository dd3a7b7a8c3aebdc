#if canImport(Glibc)
import Glibc
#endif

/// An error in the text or bytes of an address, naming what was wrong.
public struct AddressParseError: Error, CustomStringConvertible, Equatable, Sendable {
    public let input: String
    public let expected: String
    public var description: String { "'\(input)' is not a valid \(expected)" }
}

/// An IPv4 address, kept in host byte order.
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad notation, strictly: four decimal parts 0...255 of
    /// one to three ASCII digits each (a leading zero is decimal, not
    /// inet_aton's octal: "010.0.0.1" is 10.0.0.1). One pass over the UTF-8:
    /// splitting into substrings was most of reading back a table's
    /// backends.
    public init(parsing text: some StringProtocol) throws {
        guard let value = Self.parse(text.utf8) else { throw AddressParseError(input: String(text), expected: "IPv4 address") }
        self.value = value
    }

    private static func parse(_ text: some Sequence<UInt8>) -> UInt32? {
        var result: UInt32 = 0
        var octet: UInt32 = 0, digits = 0, dots = 0
        for character in text {
            if character == UInt8(ascii: ".") {
                guard digits > 0, dots < 3 else { return nil }
                result = result << 8 | octet
                octet = 0
                digits = 0
                dots += 1
            } else if character >= UInt8(ascii: "0"), character <= UInt8(ascii: "9"), digits < 3 {
                octet = octet * 10 + UInt32(character - UInt8(ascii: "0"))
                digits += 1
                guard octet <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, dots == 3 else { return nil }
        return result << 8 | octet
    }

    /// Network byte order, as netlink carries it.
    public var bytes: [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xff), UInt8(value >> 8 & 0xff), UInt8(value & 0xff)]
    }

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 4 else { return nil }
        value = bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)"
    }

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.value < rhs.value }

    public init(from decoder: Decoder) throws {
        self = try IPv4Address(parsing: try decoder.singleValueContainer().decode(String.self))
    }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An IPv6 address: sixteen bytes in network order.
public struct IPv6Address: Hashable, Sendable, CustomStringConvertible, Codable {
    public private(set) var bytes: [UInt8]

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        self.bytes = Array(bytes)
    }

    /// Parses RFC 4291 text (with `::` compression and a trailing dotted quad).
    public init(parsing text: some StringProtocol) throws {
        var storage = in6_addr()
        let parsed = String(text).withCString { inet_pton(AF_INET6, $0, &storage) }
        guard parsed == 1 else { throw AddressParseError(input: String(text), expected: "IPv6 address") }
        bytes = withUnsafeBytes(of: storage) { Array($0) }
    }

    /// RFC 5952 text, as inet_ntop and iproute2 print it.
    public var description: String {
        var storage = in6_addr()
        withUnsafeMutableBytes(of: &storage) { $0.copyBytes(from: bytes) }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        _ = inet_ntop(AF_INET6, &storage, &buffer, socklen_t(buffer.count))
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public init(from decoder: Decoder) throws {
        self = try IPv6Address(parsing: try decoder.singleValueContainer().decode(String.self))
    }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An IPv4 or IPv6 address.
public enum IPAddress: Hashable, Sendable, CustomStringConvertible, Codable {
    case v4(IPv4Address)
    case v6(IPv6Address)

    /// Parses either family; a `:` means IPv6.
    public init(parsing text: some StringProtocol) throws {
        if text.contains(":") {
            self = .v6(try IPv6Address(parsing: text))
        } else {
            do { self = .v4(try IPv4Address(parsing: text)) } catch {
                throw AddressParseError(input: String(text), expected: "IP address")
            }
        }
    }

    /// Reads 4 bytes as IPv4, 16 as IPv6; any other length is not an address.
    public init?(bytes: some Collection<UInt8>) {
        if let v4 = IPv4Address(bytes: bytes) { self = .v4(v4) }
        else if let v6 = IPv6Address(bytes: bytes) { self = .v6(v6) }
        else { return nil }
    }

    public var bytes: [UInt8] {
        switch self {
        case .v4(let a): a.bytes
        case .v6(let a): a.bytes
        }
    }

    public var isIPv4: Bool { if case .v4 = self { true } else { false } }

    /// The address family constant (AF_INET or AF_INET6) for system calls.
    public var family: Int32 { isIPv4 ? AF_INET : AF_INET6 }

    /// Length in bits: 32 or 128.
    public var bitWidth: Int { isIPv4 ? 32 : 128 }

    public var description: String {
        switch self {
        case .v4(let a): a.description
        case .v6(let a): a.description
        }
    }

    public init(from decoder: Decoder) throws {
        self = try IPAddress(parsing: try decoder.singleValueContainer().decode(String.self))
    }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An address with a prefix length, as in `10.0.0.1/24` (an interface
/// address) or `10.0.0.0/24` (a subnet). `network` gives the subnet.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible, Codable {
    public let address: IPAddress
    public let length: Int

    public init(address: IPAddress, length: Int) throws {
        guard (0...address.bitWidth).contains(length) else {
            throw AddressParseError(input: "\(address)/\(length)", expected: "prefix (length must be 0...\(address.bitWidth))")
        }
        self.address = address
        self.length = length
    }

    /// Parses `ADDRESS/LENGTH`; a bare address is a host prefix (/32 or /128).
    public init(parsing text: some StringProtocol) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let first = parts.first,
              let address = try? IPAddress(parsing: first) else {
            throw AddressParseError(input: String(text), expected: "CIDR prefix (ADDRESS/LENGTH)")
        }
        var length = address.bitWidth
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), parts[1].allSatisfy(\.isASCII), (0...address.bitWidth).contains(parsed) else {
                throw AddressParseError(input: String(text), expected: "CIDR prefix (length must be 0...\(address.bitWidth))")
            }
            length = parsed
        }
        try self.init(address: address, length: length)
    }

    /// The prefix with the host bits cleared.
    public var network: IPPrefix {
        let masked = zip(address.bytes, Self.maskBytes(length: length, count: address.bytes.count)).map { $0 & $1 }
        return try! IPPrefix(address: IPAddress(bytes: masked)!, length: length)
    }

    /// True when the host bits are all zero (a proper subnet like 10.0.0.0/24).
    public var isNetwork: Bool { network.address == address }

    /// True when `other` lies inside this prefix.
    public func contains(_ other: IPAddress) -> Bool {
        guard other.isIPv4 == address.isIPv4 else { return false }
        let mask = Self.maskBytes(length: length, count: address.bytes.count)
        return zip(zip(address.bytes, other.bytes), mask).allSatisfy { pair, m in pair.0 & m == pair.1 & m }
    }

    /// True when the two prefixes share any address.
    public func overlaps(_ other: IPPrefix) -> Bool {
        guard other.address.isIPv4 == address.isIPv4 else { return false }
        return length <= other.length ? contains(other.address) : other.contains(address)
    }

    public var description: String { "\(address)/\(length)" }

    static func maskBytes(length: Int, count: Int) -> [UInt8] {
        (0..<count).map { index in
            let bits = max(0, min(8, length - index * 8))
            return bits == 0 ? 0 : UInt8(truncatingIfNeeded: 0xff << (8 - bits))
        }
    }

    public init(from decoder: Decoder) throws {
        self = try IPPrefix(parsing: try decoder.singleValueContainer().decode(String.self))
    }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// An Ethernet (EUI-48) address.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible, Codable {
    public let bytes: [UInt8]

    /// The all-zero address: on a vxlan device's FDB it means "flood here"
    /// (broadcast, unknown unicast and multicast go to every such VTEP).
    public static let zero = MACAddress(unchecked: [0, 0, 0, 0, 0, 0])

    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 6 else { return nil }
        self.bytes = Array(bytes)
    }

    private init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    /// Parses six colon-separated hex pairs, `02:42:0a:00:00:02`.
    public init(parsing text: some StringProtocol) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { throw AddressParseError(input: String(text), expected: "MAC address (six hex pairs like 02:42:0a:00:00:02)") }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, part.allSatisfy(\.isHexDigit), let byte = UInt8(part, radix: 16) else {
                throw AddressParseError(input: String(text), expected: "MAC address (six hex pairs like 02:42:0a:00:00:02)")
            }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    /// A locally administered unicast MAC derived from an IPv4 address the
    /// way Docker does it (02:42 followed by the four address bytes), so a
    /// peer's MAC is known from its IP without asking.
    public init(derivedFrom address: IPv4Address) {
        self.bytes = [0x02, 0x42] + address.bytes
    }

    public var description: String {
        bytes.map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined(separator: ":")
    }

    public init(from decoder: Decoder) throws {
        self = try MACAddress(parsing: try decoder.singleValueContainer().decode(String.self))
    }
    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

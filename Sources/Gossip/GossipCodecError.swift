/// Why bytes from the network were rejected; the decoder throws one of these and never traps.
public enum GossipCodecError: Error, Sendable, Hashable, CustomStringConvertible {
    case truncated(needed: Int, available: Int)
    case unsupportedVersion(UInt8)
    case unknownMessageType(UInt8)
    case unknownStreamKind(UInt8)
    case lengthTooLarge(length: UInt64, limit: Int)
    case varintOverflow
    case invalidUTF8
    case invalidField(name: String, value: UInt64)
    case trailingBytes(count: Int)
    case emptyPacket
    case oversizeInput(size: Int, limit: Int)

    public var description: String {
        switch self {
        case .truncated(let needed, let available): "truncated: needed \(needed) bytes, \(available) left"
        case .unsupportedVersion(let version): "unsupported wire version \(version)"
        case .unknownMessageType(let type): "unknown message type \(type)"
        case .unknownStreamKind(let kind): "unknown stream kind \(kind)"
        case .lengthTooLarge(let length, let limit): "length \(length) exceeds limit \(limit)"
        case .varintOverflow: "varint longer than 64 bits"
        case .invalidUTF8: "string is not valid UTF-8"
        case .invalidField(let name, let value): "invalid value \(value) for \(name)"
        case .trailingBytes(let count): "\(count) unexpected trailing bytes"
        case .emptyPacket: "packet carries no message"
        case .oversizeInput(let size, let limit): "input of \(size) bytes exceeds limit \(limit)"
        }
    }
}

/// Why a DNS message could not be read or written; every case says where.
public enum DNSError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The message ended inside `field`.
    case truncated(field: String, offset: Int)
    /// A label's first two bits are 01 or 10 (RFC 6891 §5 retired them).
    case badLabelType(byte: UInt8, offset: Int)
    /// A compression pointer that does not point strictly backwards, or one
    /// chain of pointers too long: what a loop looks like.
    case badPointer(target: Int, offset: Int)
    case badName(reason: String)
    /// A record's RDLENGTH disagrees with its contents.
    case badRecordData(type: DNSRecordType, offset: Int, reason: String)
    /// More than one OPT record, or an OPT outside the additional section or
    /// not owned by the root (RFC 6891 §6.1.1).
    case badOPT(reason: String)
    /// Bytes left after the last section.
    case trailingBytes(count: Int)
    /// The encoded message would exceed 65,535 bytes.
    case tooLong(length: Int)

    public var description: String {
        switch self {
        case .truncated(let field, let offset): "message ends inside \(field) at byte \(offset)"
        case .badLabelType(let byte, let offset): "label type 0x\(String(byte, radix: 16)) at byte \(offset) is not a length or a pointer"
        case .badPointer(let target, let offset): "compression pointer at byte \(offset) to byte \(target) does not point back to an earlier name"
        case .badName(let reason): "bad name: \(reason)"
        case .badRecordData(let type, let offset, let reason): "bad \(type) record data at byte \(offset): \(reason)"
        case .badOPT(let reason): "bad OPT record: \(reason)"
        case .trailingBytes(let count): "\(count) bytes after the last record"
        case .tooLong(let length): "message of \(length) bytes is longer than 65535"
        }
    }
}

import CNetlinkShim

/// One message received from the kernel: the header's fields and the payload
/// after the header.
public struct NetlinkMessage: Sendable {
    public let type: UInt16
    public let flags: UInt16
    public let sequence: UInt32
    public let portID: UInt32
    public let payload: ArraySlice<UInt8>

    /// Splits a datagram into messages, checking every length against the
    /// buffer so that a malformed reply is an error, never a crash.
    public static func split(_ buffer: [UInt8]) throws -> [NetlinkMessage] {
        var messages: [NetlinkMessage] = []
        var offset = 0
        while offset + 16 <= buffer.count {
            let length = Int(buffer.loadHost(UInt32.self, at: offset))
            guard length >= 16, offset + length <= buffer.count else {
                throw NetlinkError.malformedMessage("message length \(length) at offset \(offset) does not fit a \(buffer.count)-byte datagram")
            }
            messages.append(NetlinkMessage(
                type: buffer.loadHost(UInt16.self, at: offset + 4),
                flags: buffer.loadHost(UInt16.self, at: offset + 6),
                sequence: buffer.loadHost(UInt32.self, at: offset + 8),
                portID: buffer.loadHost(UInt32.self, at: offset + 12),
                payload: buffer[(offset + 16)..<(offset + length)]))
            offset += Int(cnl_nlmsg_align(UInt32(length)))
        }
        return messages
    }

    /// The kernel structure at the start of the payload (ifinfomsg, ...).
    public func familyHeader<T>(_: T.Type) throws -> T {
        guard payload.count >= MemoryLayout<T>.size else {
            throw NetlinkError.malformedMessage("\(T.self) needs \(MemoryLayout<T>.size) bytes, message has \(payload.count)")
        }
        return payload.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }

    /// The attributes that follow a family header of type `T`.
    public func attributes<T>(after _: T.Type) throws -> Attributes {
        let start = payload.startIndex + Int(cnl_nlmsg_align(UInt32(MemoryLayout<T>.size)))
        guard start <= payload.endIndex else {
            throw NetlinkError.malformedMessage("\(T.self) does not fit the message")
        }
        return try Attributes(parsing: payload[start...])
    }
}

/// A parsed run of netlink attributes, by type. The nested flag and the
/// byte-order flag are masked off the type.
public struct Attributes: Sendable {
    private var values: [UInt16: ArraySlice<UInt8>] = [:]

    public init(parsing bytes: ArraySlice<UInt8>) throws {
        var offset = bytes.startIndex
        while offset + 4 <= bytes.endIndex {
            let length = Int(bytes.loadHost(UInt16.self, at: offset))
            let type = bytes.loadHost(UInt16.self, at: offset + 2) & ~UInt16(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
            guard length >= 4, offset + length <= bytes.endIndex else {
                throw NetlinkError.malformedMessage("attribute \(type) claims \(length) bytes, \(bytes.endIndex - offset) remain")
            }
            values[type] = bytes[(offset + 4)..<(offset + length)]
            offset += Int(cnl_nla_align(UInt32(length)))
        }
    }

    public subscript(_ type: Int) -> ArraySlice<UInt8>? { values[UInt16(type)] }

    public func uint8(_ type: Int) -> UInt8? {
        guard let v = self[type], v.count >= 1 else { return nil }
        return v[v.startIndex]
    }
    public func uint16(_ type: Int) -> UInt16? {
        guard let v = self[type], v.count >= 2 else { return nil }
        return v.loadHost(UInt16.self, at: v.startIndex)
    }
    public func uint32(_ type: Int) -> UInt32? {
        guard let v = self[type], v.count >= 4 else { return nil }
        return v.loadHost(UInt32.self, at: v.startIndex)
    }
    public func int32(_ type: Int) -> Int32? { uint32(type).map { Int32(bitPattern: $0) } }
    /// A 16-bit value sent in network byte order.
    public func bigEndian16(_ type: Int) -> UInt16? { uint16(type).map { UInt16(bigEndian: $0) } }
    /// A string, up to its NUL terminator.
    public func string(_ type: Int) -> String? {
        guard let v = self[type] else { return nil }
        return String(decoding: v.prefix { $0 != 0 }, as: UTF8.self)
    }
    public func nested(_ type: Int) throws -> Attributes? {
        guard let v = self[type] else { return nil }
        return try Attributes(parsing: v)
    }
}

extension Collection where Element == UInt8, Index == Int {
    /// Reads a host-order integer at `offset`; the caller has checked bounds.
    func loadHost<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { raw in
            for i in 0..<MemoryLayout<T>.size { raw[i] = self[offset + i] }
        }
        return value
    }
}

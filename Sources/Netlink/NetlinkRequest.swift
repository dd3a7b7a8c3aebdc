import CNetlinkShim

/// One netlink message under construction: a 16-byte header, a fixed
/// family header (ifinfomsg, ndmsg...) and attributes, each padded to four
/// bytes as the kernel expects. The length field is kept current as parts
/// are added; the sequence number is stamped when the message is sent.
public struct NetlinkRequest: Sendable, Equatable {
    public private(set) var bytes: [UInt8]

    public init(type: UInt16, flags: UInt16) {
        bytes = []
        bytes.reserveCapacity(64)
        append(UInt32(0)) // nlmsg_len, set by updateLength()
        append(type)
        append(flags)
        append(UInt32(0)) // nlmsg_seq
        append(UInt32(0)) // nlmsg_pid: 0, the kernel
        updateLength()
    }

    public var type: UInt16 { read(UInt16.self, at: 4) }
    public var flags: UInt16 { read(UInt16.self, at: 6) }
    public var sequence: UInt32 { read(UInt32.self, at: 8) }

    /// Stamps the sequence number the reply will carry.
    public mutating func setSequence(_ sequence: UInt32) { write(sequence, at: 8) }

    public mutating func setFlags(_ flags: UInt16) { write(flags, at: 6) }

    /// Adds a fixed-size kernel structure (ifinfomsg, ndmsg, ...) byte for byte.
    public mutating func appendStruct<T>(_ value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
        pad()
        updateLength()
    }

    /// Adds raw bytes (then padding), for payloads that are not a structure.
    public mutating func appendBytes(_ payload: some Collection<UInt8>) {
        bytes.append(contentsOf: payload)
        pad()
        updateLength()
    }

    /// Adds attribute `type` with a raw payload.
    public mutating func addAttribute(_ type: Int, _ payload: some Collection<UInt8>) {
        let length = 4 + payload.count
        append(UInt16(length))
        append(UInt16(type))
        bytes.append(contentsOf: payload)
        pad()
        updateLength()
    }

    public mutating func addAttribute(_ type: Int, uint8 value: UInt8) { addAttribute(type, [value]) }
    public mutating func addAttribute(_ type: Int, uint16 value: UInt16) { addAttribute(type, Self.hostBytes(value)) }
    public mutating func addAttribute(_ type: Int, uint32 value: UInt32) { addAttribute(type, Self.hostBytes(value)) }
    public mutating func addAttribute(_ type: Int, int32 value: Int32) { addAttribute(type, Self.hostBytes(value)) }
    /// A 16-bit value in network byte order (ports, as IFLA_VXLAN_PORT wants).
    public mutating func addAttribute(_ type: Int, bigEndian16 value: UInt16) { addAttribute(type, Self.hostBytes(value.bigEndian)) }
    /// A 32-bit value in network byte order (every nf_tables number).
    public mutating func addAttribute(_ type: Int, bigEndian32 value: UInt32) { addAttribute(type, Self.hostBytes(value.bigEndian)) }
    /// A NUL-terminated string (interface names, link kinds).
    public mutating func addAttribute(_ type: Int, string: String) { addAttribute(type, Array(string.utf8) + [0]) }

    /// Adds a nested attribute whose payload is built by `body`.
    public mutating func addNested(_ type: Int, _ body: (inout NetlinkRequest) -> Void) {
        let start = bytes.count
        append(UInt16(0))
        append(UInt16(type) | UInt16(NLA_F_NESTED))
        body(&self)
        write(UInt16(bytes.count - start), at: start)
        updateLength()
    }

    /// A value's bytes as they lie in memory (host order unless converted first).
    public static func hostBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value) { Array($0) }
    }

    private mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    private mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
    }

    private mutating func updateLength() { write(UInt32(bytes.count), at: 0) }

    private mutating func write<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        withUnsafeBytes(of: value) { raw in
            for (i, byte) in raw.enumerated() { bytes[offset + i] = byte }
        }
    }

    private func read<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }
}

extension DNSMessage {
    /// The wire form, names compressed (RFC 1035 §4.1.4).
    public func encoded() throws(DNSError) -> [UInt8] {
        var writer = DNSWriter()
        writer.message(self, answers: answers.count, authorities: authorities.count, additionals: additionals.count, truncated: header.truncated)
        guard writer.bytes.count <= 65_535 else { throw DNSError.tooLong(length: writer.bytes.count) }
        return writer.bytes
    }

    /// The wire form in at most `limit` bytes: when the whole message does
    /// not fit, records are dropped from the end (additional, then authority,
    /// then answer records) and TC is set, as a UDP server must (RFC 2181
    /// §9). The OPT record is kept so the client still learns our size.
    public func encoded(limit: Int) throws(DNSError) -> [UInt8] {
        let whole = try encoded()
        if whole.count <= limit { return whole }
        var counts = (answers.count, authorities.count, additionals.count)
        while true {
            if counts.2 > 0 { counts.2 -= 1 } else if counts.1 > 0 { counts.1 -= 1 } else if counts.0 > 0 { counts.0 -= 1 } else { break }
            var writer = DNSWriter()
            writer.message(self, answers: counts.0, authorities: counts.1, additionals: counts.2, truncated: true)
            if writer.bytes.count <= limit { return writer.bytes }
        }
        var writer = DNSWriter()
        writer.message(self, answers: 0, authorities: 0, additionals: 0, truncated: true)
        return writer.bytes
    }
}

/// Builds a message, remembering where each name suffix was written so
/// later names can point at it.
struct DNSWriter {
    private(set) var bytes: [UInt8] = []
    /// Lower-cased label sequences already written, by offset. Pointers
    /// hold fourteen bits, so only the first 16 KiB can be targets.
    private var suffixes: [[[UInt8]]: Int] = [:]

    init() { bytes.reserveCapacity(512) }

    mutating func message(_ message: DNSMessage, answers: Int, authorities: Int, additionals: Int, truncated: Bool) {
        var header = message.header
        header.truncated = truncated
        u16(header.id)
        u16(header.flags)
        u16(UInt16(message.questions.count))
        u16(UInt16(answers))
        u16(UInt16(authorities))
        u16(UInt16(additionals + (message.edns == nil ? 0 : 1)))
        for question in message.questions {
            name(question.name)
            u16(question.type.rawValue)
            u16(question.recordClass.rawValue)
        }
        for record in message.answers.prefix(answers) { self.record(record) }
        for record in message.authorities.prefix(authorities) { self.record(record) }
        for record in message.additionals.prefix(additionals) { self.record(record) }
        if let edns = message.edns { opt(edns) }
    }

    mutating func record(_ record: DNSResourceRecord) {
        name(record.name)
        u16(record.type.rawValue)
        u16(record.recordClass.rawValue)
        u32(record.ttl)
        let lengthAt = bytes.count
        u16(0)
        switch record.data {
        case .a(let address): bytes += address.bytes
        case .aaaa(let address): bytes += address.bytes
        case .ns(let target), .cname(let target), .ptr(let target): name(target)
        case .mx(let preference, let exchange):
            u16(preference)
            name(exchange)
        case .soa(let soa):
            name(soa.primary)
            name(soa.mailbox)
            for value in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] { u32(value) }
        case .srv(let srv):
            u16(srv.priority)
            u16(srv.weight)
            u16(srv.port)
            // RFC 2782: the target is not compressed.
            name(srv.target, compress: false)
        case .txt(let strings):
            for string in strings {
                bytes.append(UInt8(min(string.count, 255)))
                bytes += string.prefix(255)
            }
        case .other(_, let data): bytes += data
        }
        let length = bytes.count - lengthAt - 2
        bytes[lengthAt] = UInt8(truncatingIfNeeded: length >> 8)
        bytes[lengthAt + 1] = UInt8(truncatingIfNeeded: length)
    }

    mutating func opt(_ edns: EDNS) {
        bytes.append(0)
        u16(DNSRecordType.OPT.rawValue)
        u16(edns.udpPayloadSize)
        u32(edns.ttlField)
        let length = edns.options.reduce(0) { $0 + 4 + $1.data.count }
        u16(UInt16(truncatingIfNeeded: length))
        for option in edns.options {
            u16(option.code)
            u16(UInt16(truncatingIfNeeded: option.data.count))
            bytes += option.data
        }
    }

    mutating func name(_ name: DNSName, compress: Bool = true) {
        let lowered = name.labels.map { $0.map(DNSName.lower) }
        for index in name.labels.indices {
            let suffix = Array(lowered[index...])
            if compress, let target = suffixes[suffix] {
                u16(0xc000 | UInt16(target))
                return
            }
            if compress, bytes.count < 0x4000 { suffixes[suffix] = bytes.count }
            bytes.append(UInt8(name.labels[index].count))
            bytes += name.labels[index]
        }
        bytes.append(0)
    }

    mutating func u16(_ value: UInt16) {
        bytes.append(UInt8(value >> 8))
        bytes.append(UInt8(value & 0xff))
    }

    mutating func u32(_ value: UInt32) {
        u16(UInt16(value >> 16))
        u16(UInt16(value & 0xffff))
    }
}

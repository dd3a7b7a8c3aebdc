import Addressing

/// A DNS message (RFC 1035 §4.1): header, question, answer, authority and
/// additional sections. The EDNS OPT pseudo-record (RFC 6891) is lifted out
/// of the additional section into `edns`.
public struct DNSMessage: Hashable, Sendable {
    public var header: DNSHeader
    public var questions: [DNSQuestion]
    public var answers: [DNSResourceRecord]
    public var authorities: [DNSResourceRecord]
    public var additionals: [DNSResourceRecord]
    public var edns: EDNS?

    public init(header: DNSHeader, questions: [DNSQuestion] = [], answers: [DNSResourceRecord] = [],
                authorities: [DNSResourceRecord] = [], additionals: [DNSResourceRecord] = [], edns: EDNS? = nil) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
        self.edns = edns
    }

    /// The full response code: four bits in the header, eight more in OPT.
    public var responseCode: DNSResponseCode {
        DNSResponseCode(rawValue: UInt16(edns?.extendedResponseCode ?? 0) << 4 | UInt16(header.responseCode))
    }

    /// A reply skeleton to `query`, as a server builds one: same ID, opcode,
    /// RD and CD, the question echoed, QR and RA set.
    public static func reply(to query: DNSMessage, code: DNSResponseCode = .noError) -> DNSMessage {
        var header = DNSHeader(id: query.header.id)
        header.isResponse = true
        header.opcode = query.header.opcode
        header.recursionDesired = query.header.recursionDesired
        header.checkingDisabled = query.header.checkingDisabled
        header.recursionAvailable = true
        header.responseCode = UInt8(code.rawValue & 0xf)
        var reply = DNSMessage(header: header, questions: query.questions)
        if code.rawValue > 0xf { reply.edns = EDNS(extendedResponseCode: UInt8(code.rawValue >> 4)) }
        return reply
    }
}

/// The twelve-byte header, with the flag bits as fields.
public struct DNSHeader: Hashable, Sendable {
    public static let length = 12

    public var id: UInt16
    public var isResponse = false
    public var opcode: DNSOpcode = .query
    public var authoritative = false
    public var truncated = false
    public var recursionDesired = false
    public var recursionAvailable = false
    /// The bit between RA and AD; must be zero.
    public var zero = false
    public var authenticData = false
    public var checkingDisabled = false
    /// The low four bits of the response code (see `DNSMessage.responseCode`).
    public var responseCode: UInt8 = 0

    public init(id: UInt16) { self.id = id }

    /// The sixteen flag bits as they sit on the wire.
    public var flags: UInt16 {
        get {
            var value = UInt16(opcode.rawValue & 0xf) << 11 | UInt16(responseCode & 0xf)
            if isResponse { value |= 0x8000 }
            if authoritative { value |= 0x0400 }
            if truncated { value |= 0x0200 }
            if recursionDesired { value |= 0x0100 }
            if recursionAvailable { value |= 0x0080 }
            if zero { value |= 0x0040 }
            if authenticData { value |= 0x0020 }
            if checkingDisabled { value |= 0x0010 }
            return value
        }
        set {
            isResponse = newValue & 0x8000 != 0
            opcode = DNSOpcode(rawValue: UInt8(newValue >> 11 & 0xf))
            authoritative = newValue & 0x0400 != 0
            truncated = newValue & 0x0200 != 0
            recursionDesired = newValue & 0x0100 != 0
            recursionAvailable = newValue & 0x0080 != 0
            zero = newValue & 0x0040 != 0
            authenticData = newValue & 0x0020 != 0
            checkingDisabled = newValue & 0x0010 != 0
            responseCode = UInt8(newValue & 0xf)
        }
    }
}

public struct DNSOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let query = DNSOpcode(rawValue: 0)
    public static let inverseQuery = DNSOpcode(rawValue: 1)
    public static let status = DNSOpcode(rawValue: 2)
    public static let notify = DNSOpcode(rawValue: 4)
    public static let update = DNSOpcode(rawValue: 5)

    public var description: String {
        switch self {
        case .query: "QUERY"
        case .notify: "NOTIFY"
        case .update: "UPDATE"
        default: "OPCODE\(rawValue)"
        }
    }
}

/// RCODE (RFC 1035 §4.1.1, RFC 6895 §2.3); values above 15 need EDNS.
public struct DNSResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let noError = DNSResponseCode(rawValue: 0)
    public static let formatError = DNSResponseCode(rawValue: 1)
    public static let serverFailure = DNSResponseCode(rawValue: 2)
    public static let nameError = DNSResponseCode(rawValue: 3)
    public static let notImplemented = DNSResponseCode(rawValue: 4)
    public static let refused = DNSResponseCode(rawValue: 5)
    public static let badVersion = DNSResponseCode(rawValue: 16)

    public var description: String {
        switch self {
        case .noError: "NOERROR"
        case .formatError: "FORMERR"
        case .serverFailure: "SERVFAIL"
        case .nameError: "NXDOMAIN"
        case .notImplemented: "NOTIMP"
        case .refused: "REFUSED"
        case .badVersion: "BADVERS"
        default: "RCODE\(rawValue)"
        }
    }
}

/// TYPE and QTYPE values (RFC 1035 §3.2.2, 3596, 2782, 6891).
public struct DNSRecordType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let A = DNSRecordType(rawValue: 1)
    public static let NS = DNSRecordType(rawValue: 2)
    public static let CNAME = DNSRecordType(rawValue: 5)
    public static let SOA = DNSRecordType(rawValue: 6)
    public static let PTR = DNSRecordType(rawValue: 12)
    public static let MX = DNSRecordType(rawValue: 15)
    public static let TXT = DNSRecordType(rawValue: 16)
    public static let AAAA = DNSRecordType(rawValue: 28)
    public static let SRV = DNSRecordType(rawValue: 33)
    public static let OPT = DNSRecordType(rawValue: 41)
    public static let IXFR = DNSRecordType(rawValue: 251)
    public static let AXFR = DNSRecordType(rawValue: 252)
    public static let ANY = DNSRecordType(rawValue: 255)

    public var description: String {
        switch self {
        case .A: "A"
        case .NS: "NS"
        case .CNAME: "CNAME"
        case .SOA: "SOA"
        case .PTR: "PTR"
        case .MX: "MX"
        case .TXT: "TXT"
        case .AAAA: "AAAA"
        case .SRV: "SRV"
        case .OPT: "OPT"
        case .IXFR: "IXFR"
        case .AXFR: "AXFR"
        case .ANY: "ANY"
        default: "TYPE\(rawValue)"
        }
    }
}

/// CLASS values; swarmnet answers only IN.
public struct DNSRecordClass: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let IN = DNSRecordClass(rawValue: 1)
    public static let CH = DNSRecordClass(rawValue: 3)
    public static let ANY = DNSRecordClass(rawValue: 255)

    public var description: String {
        switch self {
        case .IN: "IN"
        case .CH: "CH"
        case .ANY: "ANY"
        default: "CLASS\(rawValue)"
        }
    }
}

public struct DNSQuestion: Hashable, Sendable {
    public var name: DNSName
    public var type: DNSRecordType
    public var recordClass: DNSRecordClass

    public init(name: DNSName, type: DNSRecordType, recordClass: DNSRecordClass = .IN) {
        self.name = name
        self.type = type
        self.recordClass = recordClass
    }
}

public struct DNSResourceRecord: Hashable, Sendable {
    public var name: DNSName
    public var recordClass: DNSRecordClass
    public var ttl: UInt32
    public var data: DNSRecordData

    public init(name: DNSName, recordClass: DNSRecordClass = .IN, ttl: UInt32, data: DNSRecordData) {
        self.name = name
        self.recordClass = recordClass
        self.ttl = ttl
        self.data = data
    }

    public var type: DNSRecordType { data.type }
}

/// RDATA, decoded for the types whose names may be compressed (RFC 3597
/// §4: only the RFC 1035 types) and those swarmnet answers with; any other
/// type keeps its bytes.
public enum DNSRecordData: Hashable, Sendable {
    case a(IPv4Address)
    case aaaa(IPv6Address)
    case ns(DNSName)
    case cname(DNSName)
    case ptr(DNSName)
    case mx(preference: UInt16, exchange: DNSName)
    case soa(DNSSOA)
    case txt([[UInt8]])
    case srv(DNSSRV)
    case other(type: DNSRecordType, bytes: [UInt8])

    public var type: DNSRecordType {
        switch self {
        case .a: .A
        case .aaaa: .AAAA
        case .ns: .NS
        case .cname: .CNAME
        case .ptr: .PTR
        case .mx: .MX
        case .soa: .SOA
        case .txt: .TXT
        case .srv: .SRV
        case .other(let type, _): type
        }
    }
}

public struct DNSSOA: Hashable, Sendable {
    public var primary: DNSName
    public var mailbox: DNSName
    public var serial: UInt32
    public var refresh: UInt32
    public var retry: UInt32
    public var expire: UInt32
    public var minimum: UInt32

    public init(primary: DNSName, mailbox: DNSName, serial: UInt32, refresh: UInt32, retry: UInt32, expire: UInt32, minimum: UInt32) {
        self.primary = primary
        self.mailbox = mailbox
        self.serial = serial
        self.refresh = refresh
        self.retry = retry
        self.expire = expire
        self.minimum = minimum
    }
}

public struct DNSSRV: Hashable, Sendable {
    public var priority: UInt16
    public var weight: UInt16
    public var port: UInt16
    public var target: DNSName

    public init(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName) {
        self.priority = priority
        self.weight = weight
        self.port = port
        self.target = target
    }
}

/// The OPT pseudo-record's contents (RFC 6891 §6.1): the requester's UDP
/// payload size lives in CLASS, the extended RCODE, version and DO bit in TTL.
public struct EDNS: Hashable, Sendable {
    public var udpPayloadSize: UInt16
    public var extendedResponseCode: UInt8
    public var version: UInt8
    public var dnssecOK: Bool
    /// The other fifteen flag bits, kept as they came.
    public var otherFlags: UInt16
    public var options: [Option]

    public struct Option: Hashable, Sendable {
        public var code: UInt16
        public var data: [UInt8]
        public init(code: UInt16, data: [UInt8]) {
            self.code = code
            self.data = data
        }
    }

    public init(udpPayloadSize: UInt16 = 1232, extendedResponseCode: UInt8 = 0, version: UInt8 = 0,
                dnssecOK: Bool = false, otherFlags: UInt16 = 0, options: [Option] = []) {
        self.udpPayloadSize = udpPayloadSize
        self.extendedResponseCode = extendedResponseCode
        self.version = version
        self.dnssecOK = dnssecOK
        self.otherFlags = otherFlags
        self.options = options
    }

    var ttlField: UInt32 {
        UInt32(extendedResponseCode) << 24 | UInt32(version) << 16 | (dnssecOK ? 0x8000 : 0) | UInt32(otherFlags & 0x7fff)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CLibMnl
import Foundation
import Namespaces
import Netlink

/// nf_tables netlink, spoken directly for the services' part of a
/// transaction: their chains, rules and map elements.
///
/// Why not libnftables for these too: libnftables 1.0.6 fetches its cache
/// (every chain of every table in the namespace) before any command that
/// adds a rule or an element, and fetches it again after every commit, so
/// one change to one service paid a dump of the whole table (1.4 s at
/// 10,000 services x 10). A batch of our own needs no cache: swarmnet knows
/// what it programmed (`NFTablesLoadBalancer`'s model), and the batch
/// carries the ruleset generation that model was read at
/// (NFNL_BATCH_GENID), so the kernel refuses it whole (ERESTART) if anyone
/// committed anything since, instead of applying it to a table that is not
/// the one the model describes.
///
/// The expressions are the ones nft 1.0.6 generates for the same rule text
/// (`nft --debug=netlink`), register for register, so `nft list` shows a
/// rule written here exactly as one written by nft, and the table read
/// back compares equal to the model (the kernel tests check both).
enum NFTNetlink {
    // nfnetlink
    static let subsystem: UInt16 = 10 // NFNL_SUBSYS_NFTABLES
    static let batchBegin: UInt16 = 16 // NFNL_MSG_BATCH_BEGIN
    static let batchEnd: UInt16 = 17
    static let batchGenerationID = 1 // NFNL_BATCH_GENID
    // enum nf_tables_msg_types
    static let newChain: UInt16 = 3, delChain: UInt16 = 5
    static let newRule: UInt16 = 6, delRule: UInt16 = 8
    static let newSetElement: UInt16 = 12, delSetElement: UInt16 = 14
    static let getGeneration: UInt16 = 16
    // attributes
    static let chainTable = 1, chainName = 3
    static let ruleTable = 1, ruleChain = 2, ruleExpressions = 4, ruleUserData = 7
    static let listElement = 1
    static let expressionName = 1, expressionData = 2
    static let dataValue = 1, dataVerdict = 2
    static let verdictCode = 1, verdictChain = 2
    static let elementListTable = 1, elementListSet = 2, elementListElements = 3
    static let elementKey = 1, elementData = 2
    static let generationID = 1
    // verdicts
    static let drop: Int32 = 0, goto: Int32 = -4

    static func type(_ message: UInt16) -> UInt16 { subsystem << 8 | message }
}

/// struct nfgenmsg.
struct NFGenMessage {
    var family: UInt8
    var version: UInt8 = 0
    /// Big-endian: the subsystem for batch messages, 0 otherwise.
    var resourceID: UInt16 = 0
}

extension NetlinkRequest {
    mutating func addAttribute(_ type: Int, bigEndian32 value: UInt32) { addAttribute(type, memoryBytes(value.bigEndian)) }
    mutating func addAttribute(_ type: Int, bigEndian32 value: Int32) { addAttribute(type, bigEndian32: UInt32(bitPattern: value)) }
}

/// A value's bytes as they lie in memory (host order unless converted first).
func memoryBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}

/// Turns a rule's expressions, in the JSON form nft lists them
/// (`NFTRule`'s), into nf_tables netlink expressions. Only the forms that
/// `NFTablesRenderer` writes into service and endpoint chains are known;
/// anything else is an error, never a rule silently written differently.
struct NFTExpressionEncoder {
    struct Unsupported: Error, CustomStringConvertible {
        let expression: String
        var description: String { "no netlink encoding for the nftables expression \(expression)" }
    }

    /// One expression: its name and the attributes inside NFTA_EXPR_DATA.
    struct Expression {
        let name: String
        let body: (inout NetlinkRequest) -> Void
    }

    // Registers as nft allocates them: the verdict register, then 16-byte registers 1 and 2.
    private static let verdictRegister: UInt32 = 0, register1: UInt32 = 1, register2: UInt32 = 2

    static func encode(_ expr: [Any]) throws -> [Expression] {
        var out: [Expression] = []
        for item in expr {
            guard let object = item as? [String: Any], object.count == 1, let (kind, value) = object.first else {
                throw Unsupported(expression: "\(item)")
            }
            switch kind {
            case "counter":
                out.append(Expression(name: "counter") { _ in })
            case "drop":
                out.append(verdict(NFTNetlink.drop, chain: nil))
            case "goto":
                guard let target = (value as? [String: Any])?["target"] as? String else { throw Unsupported(expression: "\(item)") }
                out.append(verdict(NFTNetlink.goto, chain: target))
            case "match":
                out += try match(value, item)
            case "mangle":
                out += try markOr(value, item)
            case "dnat":
                out += try dnat(value, item)
            default:
                throw Unsupported(expression: "\(item)")
            }
        }
        return out
    }

    private static func verdict(_ code: Int32, chain: String?) -> Expression {
        Expression(name: "immediate") { m in
            m.addAttribute(1, bigEndian32: verdictRegister) // NFTA_IMMEDIATE_DREG
            m.addNested(2) { m in // NFTA_IMMEDIATE_DATA
                m.addNested(NFTNetlink.dataVerdict) { m in
                    m.addAttribute(NFTNetlink.verdictCode, bigEndian32: code)
                    if let chain { m.addAttribute(NFTNetlink.verdictChain, string: chain) }
                }
            }
        }
    }

    /// NFT_CMP_EQ, NEQ, LT.
    private static let comparisons: [String: UInt32] = ["==": 0, "!=": 1, "<": 2]

    private static func compare(_ op: UInt32, _ data: [UInt8]) -> Expression {
        Expression(name: "cmp") { m in
            m.addAttribute(1, bigEndian32: register1) // NFTA_CMP_SREG
            m.addAttribute(2, bigEndian32: op) // NFTA_CMP_OP
            m.addNested(3) { $0.addAttribute(NFTNetlink.dataValue, data) } // NFTA_CMP_DATA
        }
    }

    private static func payload(base: UInt32, offset: UInt32, length: UInt32, into register: UInt32) -> Expression {
        Expression(name: "payload") { m in
            m.addAttribute(1, bigEndian32: register) // NFTA_PAYLOAD_DREG
            m.addAttribute(2, bigEndian32: base) // NFTA_PAYLOAD_BASE: 1 network header
            m.addAttribute(3, bigEndian32: offset)
            m.addAttribute(4, bigEndian32: length)
        }
    }

    private static func metaLoad(_ key: UInt32) -> Expression {
        Expression(name: "meta") { m in
            m.addAttribute(2, bigEndian32: key) // NFTA_META_KEY
            m.addAttribute(1, bigEndian32: register1) // NFTA_META_DREG
        }
    }

    /// The 32-bit result of numgen/jhash, turned to network order for the comparison.
    private static var toNetworkOrder: Expression { Expression(name: "byteorder") { m in
        m.addAttribute(1, bigEndian32: register1) // SREG
        m.addAttribute(2, bigEndian32: register1) // DREG
        m.addAttribute(3, bigEndian32: UInt32(1)) // OP: NFT_BYTEORDER_HTON
        m.addAttribute(4, bigEndian32: UInt32(4)) // LEN
        m.addAttribute(5, bigEndian32: UInt32(4)) // SIZE
    } }

    private static let metaMark: UInt32 = 3, metaL4Proto: UInt32 = 16

    /// `match`: meta l4proto == P, ip saddr == A, fib saddr type != local,
    /// numgen random mod R < W, jhash ip saddr mod R < W.
    private static func match(_ value: Any, _ item: Any) throws -> [Expression] {
        guard let match = value as? [String: Any], let opName = match["op"] as? String, let op = comparisons[opName],
              let left = match["left"] as? [String: Any], let right = match["right"]
        else { throw Unsupported(expression: "\(item)") }
        if let meta = left["meta"] as? [String: Any], meta["key"] as? String == "l4proto",
           let name = right as? String, let number = ["tcp": UInt8(6), "udp": 17, "sctp": 132][name] {
            return [metaLoad(metaL4Proto), compare(op, [number])]
        }
        if let field = left["payload"] as? [String: Any], field["protocol"] as? String == "ip", field["field"] as? String == "saddr",
           let text = right as? String, let address = ipv4Bytes(text) {
            return [payload(base: 1, offset: 12, length: 4, into: register1), compare(op, address)]
        }
        if let fib = left["fib"] as? [String: Any], fib["result"] as? String == "type",
           fib["flags"] as? [String] == ["saddr"], right as? String == "local" {
            return [Expression(name: "fib") { m in
                m.addAttribute(1, bigEndian32: register1) // NFTA_FIB_DREG
                m.addAttribute(2, bigEndian32: UInt32(3)) // NFTA_FIB_RESULT: NFT_FIB_RESULT_ADDRTYPE
                m.addAttribute(3, bigEndian32: UInt32(1)) // NFTA_FIB_FLAGS: NFTA_FIB_F_SADDR
            }, compare(op, memoryBytes(UInt32(2)))] // RTN_LOCAL, host order
        }
        if let numgen = left["numgen"] as? [String: Any], numgen["mode"] as? String == "random",
           (numgen["offset"] as? Int ?? 0) == 0, let modulus = numgen["mod"] as? Int, let bound = right as? Int {
            return [Expression(name: "numgen") { m in
                m.addAttribute(1, bigEndian32: register1) // NFTA_NG_DREG
                m.addAttribute(2, bigEndian32: UInt32(modulus)) // NFTA_NG_MODULUS
                m.addAttribute(3, bigEndian32: UInt32(1)) // NFTA_NG_TYPE: NFT_NG_RANDOM
                m.addAttribute(4, bigEndian32: UInt32(0)) // NFTA_NG_OFFSET
            }, toNetworkOrder, compare(op, memoryBytes(UInt32(bound).bigEndian))]
        }
        if let jhash = left["jhash"] as? [String: Any], let modulus = jhash["mod"] as? Int, jhash["seed"] == nil,
           let source = (jhash["expr"] as? [String: Any])?["payload"] as? [String: Any],
           source["protocol"] as? String == "ip", source["field"] as? String == "saddr", let bound = right as? Int {
            return [payload(base: 1, offset: 12, length: 4, into: register2), Expression(name: "hash") { m in
                m.addAttribute(1, bigEndian32: register2) // NFTA_HASH_SREG
                m.addAttribute(2, bigEndian32: register1) // NFTA_HASH_DREG
                m.addAttribute(3, bigEndian32: UInt32(4)) // NFTA_HASH_LEN
                m.addAttribute(4, bigEndian32: UInt32(modulus)) // NFTA_HASH_MODULUS
                m.addAttribute(6, bigEndian32: UInt32(0)) // NFTA_HASH_OFFSET
                m.addAttribute(7, bigEndian32: UInt32(0)) // NFTA_HASH_TYPE: jenkins; no seed: the kernel draws one
            }, toNetworkOrder, compare(op, memoryBytes(UInt32(bound).bigEndian))]
        }
        throw Unsupported(expression: "\(item)")
    }

    /// `meta mark set meta mark | M`: load, (mark & ~M) ^ M, store.
    private static func markOr(_ value: Any, _ item: Any) throws -> [Expression] {
        guard let mangle = value as? [String: Any], (mangle["key"] as? [String: Any])?["meta"] as? [String: String] == ["key": "mark"],
              let or = (mangle["value"] as? [String: Any])?["|"] as? [Any], or.count == 2,
              (or[0] as? [String: Any])?["meta"] as? [String: String] == ["key": "mark"], let mark = or[1] as? Int
        else { throw Unsupported(expression: "\(item)") }
        return [metaLoad(metaMark), Expression(name: "bitwise") { m in
            m.addAttribute(1, bigEndian32: register1) // NFTA_BITWISE_SREG
            m.addAttribute(2, bigEndian32: register1) // NFTA_BITWISE_DREG
            m.addAttribute(3, bigEndian32: UInt32(4)) // NFTA_BITWISE_LEN
            m.addNested(4) { $0.addAttribute(NFTNetlink.dataValue, memoryBytes(~UInt32(mark))) } // MASK
            m.addNested(5) { $0.addAttribute(NFTNetlink.dataValue, memoryBytes(UInt32(mark))) } // XOR
        }, Expression(name: "meta") { m in
            m.addAttribute(2, bigEndian32: metaMark) // NFTA_META_KEY
            m.addAttribute(3, bigEndian32: register1) // NFTA_META_SREG
        }]
    }

    /// `dnat to A[:P]`.
    private static func dnat(_ value: Any, _ item: Any) throws -> [Expression] {
        guard let dnat = value as? [String: Any], let text = dnat["addr"] as? String,
              let address = ipv4Bytes(text), dnat.count <= 2
        else { throw Unsupported(expression: "\(item)") }
        let port = dnat["port"] as? Int
        guard dnat.count == 1 || port != nil else { throw Unsupported(expression: "\(item)") }
        var out = [immediate(address, into: register1)]
        if let port { out.append(immediate(memoryBytes(UInt16(port).bigEndian), into: register2)) }
        out.append(Expression(name: "nat") { m in
            m.addAttribute(1, bigEndian32: UInt32(1)) // NFTA_NAT_TYPE: NFT_NAT_DNAT
            m.addAttribute(2, bigEndian32: UInt32(2)) // NFTA_NAT_FAMILY: NFPROTO_IPV4
            m.addAttribute(3, bigEndian32: register1) // NFTA_NAT_REG_ADDR_MIN
            if port != nil {
                m.addAttribute(5, bigEndian32: register2) // NFTA_NAT_REG_PROTO_MIN
                m.addAttribute(7, bigEndian32: UInt32(2)) // NFTA_NAT_FLAGS: NF_NAT_RANGE_PROTO_SPECIFIED
            }
        })
        return out
    }

    /// "10.0.1.2" as four bytes; nil unless four decimal octets. (Parsing
    /// through IPAddress was a tenth of programming 10,000 rules.)
    static func ipv4Bytes(_ text: String) -> [UInt8]? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4)
        var value = 0, digits = 0
        for character in text.utf8 {
            if character == UInt8(ascii: ".") {
                guard digits > 0, bytes.count < 3 else { return nil }
                bytes.append(UInt8(value))
                value = 0
                digits = 0
            } else if character >= UInt8(ascii: "0"), character <= UInt8(ascii: "9"), digits < 3 {
                value = value * 10 + Int(character - UInt8(ascii: "0"))
                digits += 1
                guard value <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, bytes.count == 3 else { return nil }
        bytes.append(UInt8(value))
        return bytes
    }

    private static func immediate(_ data: [UInt8], into register: UInt32) -> Expression {
        Expression(name: "immediate") { m in
            m.addAttribute(1, bigEndian32: register) // NFTA_IMMEDIATE_DREG
            m.addNested(2) { $0.addAttribute(NFTNetlink.dataValue, data) } // NFTA_IMMEDIATE_DATA
        }
    }
}

/// The services' commands of one transaction as nf_tables netlink
/// messages, framed by BATCH_BEGIN (with the expected generation) and
/// BATCH_END so the kernel commits them as one transaction.
struct NFTNetlinkBatch {
    let table: String
    private(set) var messages: [NetlinkRequest] = []
    /// The commands, one a message, to name a failure.
    let commands: [NFTCommand]
    let prefix: String

    init(table: String, commands: [NFTCommand], prefix: String) throws {
        self.table = table
        self.commands = commands
        self.prefix = prefix
        messages.reserveCapacity(commands.count)
        for command in commands { try append(command) }
    }

    /// The command of message `index`, as nft text.
    func source(of index: Int) -> String { commands[index].text(prefix: prefix) }

    private mutating func message(_ type: UInt16, flags: Int32, _ body: (inout NetlinkRequest) -> Void) {
        var request = NetlinkRequest(type: NFTNetlink.type(type), flags: UInt16(NLM_F_REQUEST | flags))
        request.appendStruct(NFGenMessage(family: UInt8(AF_INET)))
        body(&request)
        messages.append(request)
    }

    private mutating func append(_ command: NFTCommand) throws {
        let table = self.table
        switch command {
        case .structure:
            throw NFTExpressionEncoder.Unsupported(expression: command.text(prefix: prefix))
        case .createChain(let name):
            message(NFTNetlink.newChain, flags: NLM_F_CREATE | NLM_F_EXCL) { m in
                m.addAttribute(NFTNetlink.chainTable, string: table)
                m.addAttribute(NFTNetlink.chainName, string: name)
            }
        case .deleteChain(let name):
            message(NFTNetlink.delChain, flags: 0) { m in
                m.addAttribute(NFTNetlink.chainTable, string: table)
                m.addAttribute(NFTNetlink.chainName, string: name)
            }
        case .flushChain(let name):
            // DELRULE naming only the chain deletes all its rules.
            message(NFTNetlink.delRule, flags: 0) { m in
                m.addAttribute(NFTNetlink.ruleTable, string: table)
                m.addAttribute(NFTNetlink.ruleChain, string: name)
            }
        case .addRule(let chain, let rule):
            let expressions = try NFTExpressionEncoder.encode(rule.expressions)
            message(NFTNetlink.newRule, flags: NLM_F_CREATE | NLM_F_APPEND) { m in
                m.addAttribute(NFTNetlink.ruleTable, string: table)
                m.addAttribute(NFTNetlink.ruleChain, string: chain)
                m.addNested(NFTNetlink.ruleExpressions) { m in
                    for expression in expressions {
                        m.addNested(NFTNetlink.listElement) { m in
                            m.addAttribute(NFTNetlink.expressionName, string: expression.name)
                            m.addNested(NFTNetlink.expressionData, expression.body)
                        }
                    }
                }
                if let comment = rule.comment {
                    // libnftnl's user data: TLV NFTNL_UDATA_RULE_COMMENT (0), length with the NUL.
                    let text = Array(comment.utf8.prefix(253)) + [0] // NFT_USERDATA_MAXLEN: 256 with the TLV header
                    m.addAttribute(NFTNetlink.ruleUserData, [0, UInt8(text.count)] + text)
                }
            }
        case .addElement(let element):
            let key = try Self.key(element)
            message(NFTNetlink.newSetElement, flags: NLM_F_CREATE) { m in
                m.addAttribute(NFTNetlink.elementListTable, string: table)
                m.addAttribute(NFTNetlink.elementListSet, string: element.map)
                m.addNested(NFTNetlink.elementListElements) { m in
                    m.addNested(NFTNetlink.listElement) { m in
                        m.addNested(NFTNetlink.elementKey) { $0.addAttribute(NFTNetlink.dataValue, key) }
                        m.addNested(NFTNetlink.elementData) { m in
                            m.addNested(NFTNetlink.dataVerdict) { m in
                                m.addAttribute(NFTNetlink.verdictCode, bigEndian32: NFTNetlink.goto)
                                m.addAttribute(NFTNetlink.verdictChain, string: element.target)
                            }
                        }
                    }
                }
            }
        case .deleteElement(let element):
            let key = try Self.key(element)
            message(NFTNetlink.delSetElement, flags: 0) { m in
                m.addAttribute(NFTNetlink.elementListTable, string: table)
                m.addAttribute(NFTNetlink.elementListSet, string: element.map)
                m.addNested(NFTNetlink.elementListElements) { m in
                    m.addNested(NFTNetlink.listElement) { m in
                        m.addNested(NFTNetlink.elementKey) { $0.addAttribute(NFTNetlink.dataValue, key) }
                    }
                }
            }
        }
    }

    /// A map key as nft writes it ("10.0.0.5 . tcp . 80") in the kernel's
    /// layout: each field of a concatenation padded to four bytes; address
    /// and port in network order.
    static func key(_ element: NFTElement) throws -> [UInt8] {
        let fields = element.key.components(separatedBy: " . ")
        var bytes: [UInt8] = []
        for field in fields {
            if let address = NFTExpressionEncoder.ipv4Bytes(field) {
                bytes += address
            } else if let proto = ["tcp": UInt8(6), "udp": 17, "sctp": 132][field] {
                bytes += [proto, 0, 0, 0]
            } else if let port = UInt16(field) {
                bytes += [UInt8(port >> 8), UInt8(port & 0xff), 0, 0]
            } else {
                throw NFTExpressionEncoder.Unsupported(expression: "map key \(element.key)")
            }
        }
        return bytes
    }

    /// The whole datagram: begin (expecting `generation`), the messages, end.
    func datagram(generation: UInt32, firstSequence: UInt32) -> [UInt8] {
        var begin = NetlinkRequest(type: NFTNetlink.batchBegin, flags: UInt16(NLM_F_REQUEST))
        begin.appendStruct(NFGenMessage(family: UInt8(AF_UNSPEC), resourceID: NFTNetlink.subsystem.bigEndian))
        begin.addAttribute(NFTNetlink.batchGenerationID, bigEndian32: generation)
        begin.setSequence(firstSequence)
        var out = begin.bytes
        out.reserveCapacity(messages.reduce(64) { $0 + $1.bytes.count })
        for (index, message) in messages.enumerated() {
            var message = message
            message.setSequence(firstSequence &+ 1 &+ UInt32(index))
            out += message.bytes
        }
        var end = NetlinkRequest(type: NFTNetlink.batchEnd, flags: UInt16(NLM_F_REQUEST))
        end.appendStruct(NFGenMessage(family: UInt8(AF_UNSPEC), resourceID: NFTNetlink.subsystem.bigEndian))
        end.setSequence(firstSequence &+ 1 &+ UInt32(messages.count))
        out += end.bytes
        return out
    }
}

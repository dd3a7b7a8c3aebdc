#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CLibMnl
import CNetlinkShim
import FoundationEssentials
import Namespaces
import Netlink

/// nf_tables' message types inside nfnetlink.
enum NFTNetlink {
    static func type(_ message: nf_tables_msg_types) -> UInt16 { UInt16(NFNL_SUBSYS_NFTABLES) << 8 | UInt16(message.rawValue) }
}

extension NFTCommand {
    /// The element an element command adds (`add`) or deletes; nil for any other command.
    var elementChange: (element: NFTElement, add: Bool)? {
        switch self {
        case .addElement(let element): (element, true)
        case .deleteElement(let element): (element, false)
        default: nil
        }
    }
}

/// A kernel enum constant as a netlink attribute type.
func attribute<T: RawRepresentable>(_ constant: T) -> Int where T.RawValue: BinaryInteger { Int(constant.rawValue) }

/// A kernel enum constant as a 32-bit value.
func number<T: RawRepresentable>(_ constant: T) -> UInt32 where T.RawValue: BinaryInteger { UInt32(truncatingIfNeeded: constant.rawValue) }

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
    private static let verdictRegister = number(NFT_REG_VERDICT), register1 = number(NFT_REG_1), register2 = number(NFT_REG_2)

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
                out.append(verdict(UInt32(NF_DROP), chain: nil))
            case "goto":
                guard let target = (value as? [String: Any])?["target"] as? String else { throw Unsupported(expression: "\(item)") }
                out.append(verdict(number(NFT_GOTO), chain: target))
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

    private static func verdict(_ code: UInt32, chain: String?) -> Expression {
        Expression(name: "immediate") { m in
            m.addAttribute(attribute(NFTA_IMMEDIATE_DREG), bigEndian32: verdictRegister)
            m.addNested(attribute(NFTA_IMMEDIATE_DATA)) { m in
                m.addNested(attribute(NFTA_DATA_VERDICT)) { m in
                    m.addAttribute(attribute(NFTA_VERDICT_CODE), bigEndian32: code)
                    if let chain { m.addAttribute(attribute(NFTA_VERDICT_CHAIN), string: chain) }
                }
            }
        }
    }

    private static let comparisons: [String: UInt32] = ["==": number(NFT_CMP_EQ), "!=": number(NFT_CMP_NEQ), "<": number(NFT_CMP_LT)]

    private static func compare(_ op: UInt32, _ data: [UInt8]) -> Expression {
        Expression(name: "cmp") { m in
            m.addAttribute(attribute(NFTA_CMP_SREG), bigEndian32: register1)
            m.addAttribute(attribute(NFTA_CMP_OP), bigEndian32: op)
            m.addNested(attribute(NFTA_CMP_DATA)) { $0.addAttribute(attribute(NFTA_DATA_VALUE), data) }
        }
    }

    /// `ip saddr` (4 bytes at offset 12 of the network header).
    private static func sourceAddress(into register: UInt32) -> Expression {
        Expression(name: "payload") { m in
            m.addAttribute(attribute(NFTA_PAYLOAD_DREG), bigEndian32: register)
            m.addAttribute(attribute(NFTA_PAYLOAD_BASE), bigEndian32: number(NFT_PAYLOAD_NETWORK_HEADER))
            m.addAttribute(attribute(NFTA_PAYLOAD_OFFSET), bigEndian32: 12)
            m.addAttribute(attribute(NFTA_PAYLOAD_LEN), bigEndian32: 4)
        }
    }

    private static func metaLoad(_ key: nft_meta_keys) -> Expression {
        Expression(name: "meta") { m in
            m.addAttribute(attribute(NFTA_META_KEY), bigEndian32: number(key))
            m.addAttribute(attribute(NFTA_META_DREG), bigEndian32: register1)
        }
    }

    /// The 32-bit result of numgen/jhash, turned to network order for the comparison.
    private static var toNetworkOrder: Expression { Expression(name: "byteorder") { m in
        m.addAttribute(attribute(NFTA_BYTEORDER_SREG), bigEndian32: register1)
        m.addAttribute(attribute(NFTA_BYTEORDER_DREG), bigEndian32: register1)
        m.addAttribute(attribute(NFTA_BYTEORDER_OP), bigEndian32: number(NFT_BYTEORDER_HTON))
        m.addAttribute(attribute(NFTA_BYTEORDER_LEN), bigEndian32: 4)
        m.addAttribute(attribute(NFTA_BYTEORDER_SIZE), bigEndian32: 4)
    } }

    /// `match`: meta l4proto == P, ip saddr == A, fib saddr type != local,
    /// numgen random mod R < W, jhash ip saddr mod R < W.
    private static func match(_ value: Any, _ item: Any) throws -> [Expression] {
        guard let match = value as? [String: Any], let opName = match["op"] as? String, let op = comparisons[opName],
              let left = match["left"] as? [String: Any], let right = match["right"]
        else { throw Unsupported(expression: "\(item)") }
        if let meta = left["meta"] as? [String: Any], meta["key"] as? String == "l4proto",
           let name = right as? String, let proto = TransportProtocol(rawValue: name) {
            return [metaLoad(NFT_META_L4PROTO), compare(op, [UInt8(proto.number)])]
        }
        if let field = left["payload"] as? [String: Any], field["protocol"] as? String == "ip", field["field"] as? String == "saddr",
           let text = right as? String, let address = ipv4Bytes(text) {
            return [sourceAddress(into: register1), compare(op, address)]
        }
        if let fib = left["fib"] as? [String: Any], fib["result"] as? String == "type",
           fib["flags"] as? [String] == ["saddr"], right as? String == "local" {
            return [Expression(name: "fib") { m in
                m.addAttribute(attribute(NFTA_FIB_DREG), bigEndian32: register1)
                m.addAttribute(attribute(NFTA_FIB_RESULT), bigEndian32: number(NFT_FIB_RESULT_ADDRTYPE))
                m.addAttribute(attribute(NFTA_FIB_FLAGS), bigEndian32: number(NFTA_FIB_F_SADDR))
            }, compare(op, NetlinkRequest.hostBytes(UInt32(RTN_LOCAL)))] // fib's result is in host order
        }
        if let numgen = left["numgen"] as? [String: Any], numgen["mode"] as? String == "random",
           (numgen["offset"] as? Int ?? 0) == 0, let modulus = numgen["mod"] as? Int, let bound = right as? Int {
            return [Expression(name: "numgen") { m in
                m.addAttribute(attribute(NFTA_NG_DREG), bigEndian32: register1)
                m.addAttribute(attribute(NFTA_NG_MODULUS), bigEndian32: UInt32(modulus))
                m.addAttribute(attribute(NFTA_NG_TYPE), bigEndian32: number(NFT_NG_RANDOM))
                m.addAttribute(attribute(NFTA_NG_OFFSET), bigEndian32: 0)
            }, toNetworkOrder, compare(op, NetlinkRequest.hostBytes(UInt32(bound).bigEndian))]
        }
        if let jhash = left["jhash"] as? [String: Any], let modulus = jhash["mod"] as? Int, jhash["seed"] == nil,
           let source = (jhash["expr"] as? [String: Any])?["payload"] as? [String: Any],
           source["protocol"] as? String == "ip", source["field"] as? String == "saddr", let bound = right as? Int {
            return [sourceAddress(into: register2), Expression(name: "hash") { m in
                m.addAttribute(attribute(NFTA_HASH_SREG), bigEndian32: register2)
                m.addAttribute(attribute(NFTA_HASH_DREG), bigEndian32: register1)
                m.addAttribute(attribute(NFTA_HASH_LEN), bigEndian32: 4)
                m.addAttribute(attribute(NFTA_HASH_MODULUS), bigEndian32: UInt32(modulus))
                m.addAttribute(attribute(NFTA_HASH_OFFSET), bigEndian32: 0)
                // No seed: the kernel draws one, as for nft's `jhash` without `seed`.
                m.addAttribute(attribute(NFTA_HASH_TYPE), bigEndian32: number(NFT_HASH_JENKINS))
            }, toNetworkOrder, compare(op, NetlinkRequest.hostBytes(UInt32(bound).bigEndian))]
        }
        throw Unsupported(expression: "\(item)")
    }

    /// `meta mark set meta mark | M`: load, (mark & ~M) ^ M, store.
    private static func markOr(_ value: Any, _ item: Any) throws -> [Expression] {
        guard let mangle = value as? [String: Any], (mangle["key"] as? [String: Any])?["meta"] as? [String: String] == ["key": "mark"],
              let or = (mangle["value"] as? [String: Any])?["|"] as? [Any], or.count == 2,
              (or[0] as? [String: Any])?["meta"] as? [String: String] == ["key": "mark"], let mark = or[1] as? Int
        else { throw Unsupported(expression: "\(item)") }
        return [metaLoad(NFT_META_MARK), Expression(name: "bitwise") { m in
            m.addAttribute(attribute(NFTA_BITWISE_SREG), bigEndian32: register1)
            m.addAttribute(attribute(NFTA_BITWISE_DREG), bigEndian32: register1)
            m.addAttribute(attribute(NFTA_BITWISE_LEN), bigEndian32: 4)
            m.addNested(attribute(NFTA_BITWISE_MASK)) { $0.addAttribute(attribute(NFTA_DATA_VALUE), NetlinkRequest.hostBytes(~UInt32(mark))) }
            m.addNested(attribute(NFTA_BITWISE_XOR)) { $0.addAttribute(attribute(NFTA_DATA_VALUE), NetlinkRequest.hostBytes(UInt32(mark))) }
        }, Expression(name: "meta") { m in
            m.addAttribute(attribute(NFTA_META_KEY), bigEndian32: number(NFT_META_MARK))
            m.addAttribute(attribute(NFTA_META_SREG), bigEndian32: register1)
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
        if let port { out.append(immediate(NetlinkRequest.hostBytes(UInt16(port).bigEndian), into: register2)) }
        out.append(Expression(name: "nat") { m in
            m.addAttribute(attribute(NFTA_NAT_TYPE), bigEndian32: number(NFT_NAT_DNAT))
            m.addAttribute(attribute(NFTA_NAT_FAMILY), bigEndian32: UInt32(NFPROTO_IPV4))
            m.addAttribute(attribute(NFTA_NAT_REG_ADDR_MIN), bigEndian32: register1)
            if port != nil {
                m.addAttribute(attribute(NFTA_NAT_REG_PROTO_MIN), bigEndian32: register2)
                m.addAttribute(attribute(NFTA_NAT_FLAGS), bigEndian32: UInt32(NF_NAT_RANGE_PROTO_SPECIFIED))
            }
        })
        return out
    }

    /// "10.0.1.2" as four bytes; nil unless four decimal octets.
    static func ipv4Bytes(_ text: String) -> [UInt8]? { (try? IPv4Address(parsing: text))?.bytes }

    private static func immediate(_ data: [UInt8], into register: UInt32) -> Expression {
        Expression(name: "immediate") { m in
            m.addAttribute(attribute(NFTA_IMMEDIATE_DREG), bigEndian32: register)
            m.addNested(attribute(NFTA_IMMEDIATE_DATA)) { $0.addAttribute(attribute(NFTA_DATA_VALUE), data) }
        }
    }
}

/// The services' commands of one transaction as nf_tables netlink
/// messages, framed by BATCH_BEGIN (with the expected generation) and
/// BATCH_END so the kernel commits them as one transaction.
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
struct NFTNetlinkBatch {
    let table: String
    private(set) var messages: [NetlinkRequest] = []
    /// The commands, to name a failure, and which of them each message holds.
    let commands: [NFTCommand]
    private var sources: [Range<Int>] = []
    let prefix: String
    /// Set and map name to its type as nft lists it: how keys and data are laid out.
    let types: [String: String]

    /// Elements added to (or deleted from) one set by consecutive commands
    /// share a message, up to this many: as `nft -f` sends them.
    static let elementsPerMessage = 512

    init(table: String, commands: [NFTCommand], prefix: String, types: [String: String]) throws {
        self.table = table
        self.commands = commands
        self.prefix = prefix
        self.types = types
        messages.reserveCapacity(commands.count)
        var index = 0
        while index < commands.count {
            var end = index + 1
            if let (first, add) = commands[index].elementChange {
                var group = [first]
                while end < commands.count, group.count < Self.elementsPerMessage,
                      let (next, nextAdd) = commands[end].elementChange, nextAdd == add, next.map == first.map {
                    group.append(next)
                    end += 1
                }
                try elements(group, add: add)
            } else {
                try append(commands[index])
            }
            sources.append(index..<end)
            index = end
        }
    }

    /// The command(s) of message `index`, as nft text.
    func source(of index: Int) -> String {
        let range = sources[index]
        let first = commands[range.lowerBound].text(prefix: prefix)
        return range.count == 1 ? first : first + " (and \(range.count - 1) more elements of that message)"
    }

    private mutating func message(_ type: nf_tables_msg_types, flags: Int32, _ body: (inout NetlinkRequest) -> Void) {
        var request = NetlinkRequest(type: NFTNetlink.type(type), flags: UInt16(NLM_F_REQUEST | flags))
        request.appendStruct(nfgenmsg(nfgen_family: UInt8(AF_INET), version: UInt8(NFNETLINK_V0), res_id: 0))
        body(&request)
        messages.append(request)
    }

    private mutating func append(_ command: NFTCommand) throws {
        let table = self.table
        switch command {
        case .structure:
            throw NFTExpressionEncoder.Unsupported(expression: command.text(prefix: prefix))
        case .createChain(let name):
            message(NFT_MSG_NEWCHAIN, flags: NLM_F_CREATE | NLM_F_EXCL) { m in
                m.addAttribute(attribute(NFTA_CHAIN_TABLE), string: table)
                m.addAttribute(attribute(NFTA_CHAIN_NAME), string: name)
            }
        case .deleteChain(let name):
            message(NFT_MSG_DELCHAIN, flags: 0) { m in
                m.addAttribute(attribute(NFTA_CHAIN_TABLE), string: table)
                m.addAttribute(attribute(NFTA_CHAIN_NAME), string: name)
            }
        case .flushChain(let name):
            // DELRULE naming only the chain deletes all its rules.
            message(NFT_MSG_DELRULE, flags: 0) { m in
                m.addAttribute(attribute(NFTA_RULE_TABLE), string: table)
                m.addAttribute(attribute(NFTA_RULE_CHAIN), string: name)
            }
        case .addRule(let chain, let rule):
            let expressions = try NFTExpressionEncoder.encode(rule.expressions)
            message(NFT_MSG_NEWRULE, flags: NLM_F_CREATE | NLM_F_APPEND) { m in
                m.addAttribute(attribute(NFTA_RULE_TABLE), string: table)
                m.addAttribute(attribute(NFTA_RULE_CHAIN), string: chain)
                m.addNested(attribute(NFTA_RULE_EXPRESSIONS)) { m in
                    for expression in expressions {
                        m.addNested(attribute(NFTA_LIST_ELEM)) { m in
                            m.addAttribute(attribute(NFTA_EXPR_NAME), string: expression.name)
                            m.addNested(attribute(NFTA_EXPR_DATA), expression.body)
                        }
                    }
                }
                if let comment = rule.comment {
                    // libnftnl's user data: TLV NFTNL_UDATA_RULE_COMMENT (0), length with the NUL.
                    let text = Array(comment.utf8.prefix(253)) + [0] // NFT_USERDATA_MAXLEN: 256 with the TLV header
                    m.addAttribute(attribute(NFTA_RULE_USERDATA), [0, UInt8(text.count)] + text)
                }
            }
        case .addElement, .deleteElement:
            preconditionFailure("elements are sent by elements(_:add:)")
        }
    }

    /// One NEWSETELEM (or DELSETELEM) message for elements of one set.
    private mutating func elements(_ elements: [NFTElement], add: Bool) throws {
        let table = self.table
        let set = elements[0].map
        guard let type = types[set] else { throw NFTExpressionEncoder.Unsupported(expression: "an element of the unknown set \(set)") }
        let parts = type.split(separator: " : ", omittingEmptySubsequences: false).map(String.init)
        let encoded: [(key: [UInt8], data: ElementData?, comment: String?)] = try elements.map { element in
            let key = try Self.bytes(element.key, type: parts[0])
            guard add else { return (key, nil, nil) }
            var data: ElementData?
            if parts.count == 2 {
                guard let value = element.data else { throw NFTExpressionEncoder.Unsupported(expression: "map element \(element.text) without data") }
                data = try Self.data(value, type: parts[1])
            }
            return (key, data, element.comment)
        }
        message(add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, flags: add ? NLM_F_CREATE : 0) { m in
            m.addAttribute(attribute(NFTA_SET_ELEM_LIST_TABLE), string: table)
            m.addAttribute(attribute(NFTA_SET_ELEM_LIST_SET), string: set)
            m.addNested(attribute(NFTA_SET_ELEM_LIST_ELEMENTS)) { m in
                for element in encoded {
                    m.addNested(attribute(NFTA_LIST_ELEM)) { m in
                        m.addNested(attribute(NFTA_SET_ELEM_KEY)) { $0.addAttribute(attribute(NFTA_DATA_VALUE), element.key) }
                        switch element.data {
                        case .verdict(let code, let chain):
                            m.addNested(attribute(NFTA_SET_ELEM_DATA)) { m in
                                m.addNested(attribute(NFTA_DATA_VERDICT)) { m in
                                    m.addAttribute(attribute(NFTA_VERDICT_CODE), bigEndian32: code)
                                    m.addAttribute(attribute(NFTA_VERDICT_CHAIN), string: chain)
                                }
                            }
                        case .value(let bytes):
                            m.addNested(attribute(NFTA_SET_ELEM_DATA)) { $0.addAttribute(attribute(NFTA_DATA_VALUE), bytes) }
                        case nil:
                            break
                        }
                        if let comment = element.comment {
                            // libnftnl's user data: TLV NFTNL_UDATA_SET_ELEM_COMMENT (0), length with the NUL.
                            let text = Array(comment.utf8.prefix(253)) + [0]
                            m.addAttribute(attribute(NFTA_SET_ELEM_USERDATA), [0, UInt8(text.count)] + text)
                        }
                    }
                }
            }
        }
    }

    /// What a map element maps to, in the kernel's form.
    enum ElementData {
        case verdict(UInt32, String)
        case value([UInt8])
    }

    static func data(_ text: String, type: String) throws -> ElementData {
        guard type == "verdict" else { return .value(try bytes(text, type: type)) }
        let words = text.split(separator: " ")
        guard words.count == 2 else { throw NFTExpressionEncoder.Unsupported(expression: "verdict \(text)") }
        switch words[0] {
        case "goto": return .verdict(number(NFT_GOTO), String(words[1]))
        case "jump": return .verdict(number(NFT_JUMP), String(words[1]))
        default: throw NFTExpressionEncoder.Unsupported(expression: "verdict \(text)")
        }
    }

    /// A key or data as nft writes it ("10.0.0.5 . tcp . 80 . 3") in the
    /// kernel's layout for `type` ("ipv4_addr . inet_proto . inet_service
    /// . integer"): addresses and ports in network order, an integer (a
    /// numgen or jhash result) in host order, and in a concatenation each
    /// field padded to four bytes.
    static func bytes(_ text: String, type: String) throws -> [UInt8] {
        let fields = NFTElement.fields(text)
        let types = NFTElement.fields(type)
        guard fields.count == types.count else {
            throw NFTExpressionEncoder.Unsupported(expression: "\(text) for the type \(type)")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 * fields.count)
        for (field, type) in zip(fields, types) {
            var value: [UInt8]
            switch type {
            case "ipv4_addr":
                guard let address = try? IPv4Address(parsing: field) else { throw NFTExpressionEncoder.Unsupported(expression: "address \(field)") }
                value = address.bytes
            case "inet_proto":
                guard let proto = TransportProtocol(rawValue: String(field)) else { throw NFTExpressionEncoder.Unsupported(expression: "protocol \(field)") }
                value = [UInt8(proto.number)]
            case "inet_service":
                guard let port = UInt16(field) else { throw NFTExpressionEncoder.Unsupported(expression: "port \(field)") }
                value = [UInt8(port >> 8), UInt8(port & 0xff)]
            case "integer":
                guard let integer = UInt32(field) else { throw NFTExpressionEncoder.Unsupported(expression: "integer \(field)") }
                value = withUnsafeBytes(of: integer) { Array($0) } // host order, as numgen writes its register
            default:
                throw NFTExpressionEncoder.Unsupported(expression: "a field of type \(type)")
            }
            if types.count > 1 { value += [UInt8](repeating: 0, count: (4 - value.count % 4) % 4) }
            bytes += value
        }
        return bytes
    }

    /// The whole datagram: begin (expecting `generation`), the messages, end.
    func datagram(generation: UInt32, firstSequence: UInt32) -> [UInt8] {
        // Batch messages name their subsystem in res_id, in network order.
        let batchHeader = nfgenmsg(nfgen_family: UInt8(AF_UNSPEC), version: UInt8(NFNETLINK_V0), res_id: UInt16(NFNL_SUBSYS_NFTABLES).bigEndian)
        var begin = NetlinkRequest(type: UInt16(NFNL_MSG_BATCH_BEGIN), flags: UInt16(NLM_F_REQUEST))
        begin.appendStruct(batchHeader)
        begin.addAttribute(Int(NFNL_BATCH_GENID.rawValue), bigEndian32: generation)
        begin.setSequence(firstSequence)
        var out = begin.bytes
        out.reserveCapacity(messages.reduce(64) { $0 + $1.bytes.count })
        for (index, message) in messages.enumerated() {
            var message = message
            message.setSequence(firstSequence &+ 1 &+ UInt32(index))
            out += message.bytes
        }
        var end = NetlinkRequest(type: UInt16(NFNL_MSG_BATCH_END), flags: UInt16(NLM_F_REQUEST))
        end.appendStruct(batchHeader)
        end.setSequence(firstSequence &+ 1 &+ UInt32(messages.count))
        out += end.bytes
        return out
    }
}

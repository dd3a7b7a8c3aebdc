import Addressing
import CNetlinkShim
import Foundation
import Netlink
import Testing
@testable import LoadBalancing

/// The services' part of a transaction as nf_tables netlink messages,
/// without a kernel: every rule the renderer writes has an encoding, map
/// keys are laid out as the kernel wants them, and the batch is framed with
/// the expected generation. (The kernel tests check that what is sent lists
/// exactly as nft writes it.)
@Suite struct NFTablesNetlinkTests {
    func server(_ address: String, port: UInt16 = 8080, weight: UInt32 = 1) -> RealServer {
        RealServer(address: try! IPAddress(parsing: address), port: port, weight: weight)
    }

    /// Services that between them use every rule form: each scheduler,
    /// weights and weight 0, a service with no active backend, a VIP on
    /// every port, a published port, TCP and UDP.
    var everyKind: [VirtualService] {
        let vip = { (address: String, proto: TransportProtocol, port: UInt16) in
            ServiceKey.address(try! IPAddress(parsing: address), proto, port: port)
        }
        return [
            VirtualService(key: vip("10.0.0.5", .tcp, 80), realServers: [server("10.0.1.2"), server("10.0.1.3")]),
            VirtualService(key: vip("10.0.0.6", .udp, 53), scheduler: .weightedRoundRobin,
                           realServers: [server("10.0.1.2", weight: 3), server("10.0.1.4", weight: 0), server("10.0.1.5")]),
            VirtualService(key: vip("10.0.0.7", .tcp, 443), scheduler: .sourceHashing, realServers: [server("10.0.1.2"), server("10.0.1.3")]),
            VirtualService(key: vip("10.0.0.8", .tcp, 443), scheduler: .maglevHashing, realServers: [server("10.0.1.6")]),
            VirtualService(key: vip("10.0.0.9", .tcp, 80), realServers: [server("10.0.1.2", weight: 0)]),
            VirtualService(key: vip("10.0.0.10", .udp, 0), realServers: [server("10.0.1.2", port: 0), server("10.0.1.3", port: 0)]),
            VirtualService(key: vip("0.0.0.0", .tcp, 30080), realServers: [server("10.0.1.2"), server("10.0.1.3")]),
        ]
    }

    static let configurations: [NFTablesConfiguration] = NFTablesConfiguration.Layout.allCases.flatMap { layout in [
        NFTablesConfiguration(layout: layout),
        NFTablesConfiguration(hooks: .routingMesh, masquerade: .all, layout: layout),
        NFTablesConfiguration(hooks: .routingMesh, masquerade: .nonLocalClients, layout: layout),
        NFTablesConfiguration(hooks: .routingMesh, masquerade: .never,
                              publishedPorts: .localBackendsOnly([try! IPPrefix(parsing: "10.0.1.0/24")]), layout: layout),
    ] }

    @Test(arguments: configurations) func everyRuleTheRendererWritesHasAnEncoding(configuration: NFTablesConfiguration) throws {
        let renderer = NFTablesRenderer(configuration: configuration)
        let transaction = NFTTransaction(family: "ip", table: configuration.tableName)
        let image = renderer.image(for: everyKind.map(renderer.effective))
        let plan = transaction.plan(from: NFTImage(exists: false), to: image)
        let services = plan.filter { !$0.isStructure }
        let batch = try NFTNetlinkBatch(table: configuration.tableName, commands: services, prefix: transaction.prefix, types: image.maps)
        // One message a command, but elements of one set share theirs.
        var sets: [String] = []
        for command in services {
            switch command {
            case .addElement(let element), .deleteElement(let element): if sets.last != element.map { sets.append(element.map) }
            default: sets.append("")
            }
        }
        #expect(batch.messages.count == sets.count)
        // Every service's objects are typed; the structure (table, maps,
        // hook and dispatch chains) is the only text.
        for command in plan where command.isStructure {
            let text = command.text(prefix: transaction.prefix)
            #expect(!text.contains("svc-") && !text.contains("ep-"), "\(text)")
        }
        #expect(services.contains { if case .addElement = $0 { true } else { false } })
    }

    @Test func anExpressionOrCommandWithoutAnEncodingIsRefused() throws {
        #expect(throws: NFTExpressionEncoder.Unsupported.self) { try NFTExpressionEncoder.encode([["masquerade": NSNull()]]) }
        #expect(throws: NFTExpressionEncoder.Unsupported.self) {
            try NFTExpressionEncoder.encode([NFTExpr.match(NFTExpr.meta("l4proto"), "==", "icmp")])
        }
        #expect(throws: NFTExpressionEncoder.Unsupported.self) {
            try NFTExpressionEncoder.encode([["dnat": ["addr": "fd00::1", "port": 80]]])
        }
        #expect(throws: NFTExpressionEncoder.Unsupported.self) {
            try NFTNetlinkBatch(table: "t", commands: [.structure("add table ip t")], prefix: "ip t", types: [:])
        }
        let types = [NFTNames.serviceIPs: NFTNames.serviceIPsType]
        let element = NFTElement(map: NFTNames.serviceIPs, key: "10.0.0.5 . icmp . 80", target: "svc-x")
        #expect(throws: NFTExpressionEncoder.Unsupported.self) {
            try NFTNetlinkBatch(table: "t", commands: [.addElement(element)], prefix: "ip t", types: types)
        }
        // A set the batch does not know the type of, a map element without data.
        #expect(throws: NFTExpressionEncoder.Unsupported.self) {
            try NFTNetlinkBatch(table: "t", commands: [.addElement(NFTElement(map: "other", key: "tcp . 80"))], prefix: "ip t", types: types)
        }
        #expect(throws: NFTExpressionEncoder.Unsupported.self) {
            try NFTNetlinkBatch(table: "t", commands: [.addElement(NFTElement(map: NFTNames.serviceIPs, key: "10.0.0.5 . tcp . 80"))],
                                prefix: "ip t", types: types)
        }
    }

    /// The layouts nft 1.0.6 sends (`nft --debug=mnl add element ...`): each
    /// field of a concatenation in four bytes, address and port in network order.
    @Test func mapKeysAreLaidOutAsTheKernelWantsThem() throws {
        func key(_ text: String, _ type: String = "") throws -> [UInt8] {
            let types = ["10.0.0.5 . tcp . 80": "ipv4_addr . inet_proto . inet_service", "udp . 8080": "inet_proto . inet_service",
                         "10.96.0.1 . udp": "ipv4_addr . inet_proto", "10.0.0.256 . tcp": "ipv4_addr . inet_proto",
                         "tcp . 65536": "inet_proto . inet_service"]
            return try NFTNetlinkBatch.bytes(text, type: type.isEmpty ? types[text]! : type)
        }
        #expect(try key("10.0.0.5 . tcp . 80") == [10, 0, 0, 5, 6, 0, 0, 0, 0, 80, 0, 0])
        #expect(try key("udp . 8080") == [17, 0, 0, 0, 0x1f, 0x90, 0, 0])
        #expect(try key("10.96.0.1 . udp") == [10, 96, 0, 1, 17, 0, 0, 0])
        #expect(throws: NFTExpressionEncoder.Unsupported.self) { try key("10.0.0.256 . tcp") }
        #expect(throws: NFTExpressionEncoder.Unsupported.self) { try key("tcp . 65536") }
        // The maps layout: a slot (numgen's result) in host order, a
        // backend as address and port, a lone address unpadded.
        let slot: [UInt8] = withUnsafeBytes(of: UInt32(3)) { Array($0) }
        #expect(try key("10.0.0.5 . tcp . 80 . 3", "ipv4_addr . inet_proto . inet_service . integer")
            == [10, 0, 0, 5, 6, 0, 0, 0, 0, 80, 0, 0] + slot)
        #expect(try key("10.0.1.2 . 8080", "ipv4_addr . inet_service") == [10, 0, 1, 2, 0x1f, 0x90, 0, 0])
        #expect(try key("10.0.1.2", "ipv4_addr") == [10, 0, 1, 2])
        #expect(throws: NFTExpressionEncoder.Unsupported.self) { try key("10.0.1.2 . 8080", "ipv4_addr") }
        #expect(throws: NFTExpressionEncoder.Unsupported.self) { try key("10.0.0.5 . tcp . x", "ipv4_addr . inet_proto . integer") }
    }

    @Test func fieldsSplitOnSpaceDotSpaceOnly() {
        #expect(NFTElement.fields("10.0.0.5 . tcp . 80") == ["10.0.0.5", "tcp", "80"])
        #expect(NFTElement.fields("10.0.0.5") == ["10.0.0.5"])
        #expect(NFTElement.fields("") == [""])
        #expect(NFTElement.fields("a . ") == ["a", ""])
        #expect(NFTElement.fields("a .b . c") == ["a .b", "c"])
    }

    /// The kernel's generation skips 0 when it wraps, and 0 in a batch
    /// means "do not check": the next generation after 2^32-1 is 1.
    @Test func theGenerationAfterTheLastIsOneNotZero() {
        #expect(NFTablesSocket.generation(after: 41) == 42)
        #expect(NFTablesSocket.generation(after: .max) == 1)
    }

    @Test func dottedQuadsParseStrictly() {
        #expect(NFTExpressionEncoder.ipv4Bytes("10.0.1.2") == [10, 0, 1, 2])
        #expect(NFTExpressionEncoder.ipv4Bytes("255.255.255.255") == [255, 255, 255, 255])
        for bad in ["", "10.0.1", "10.0.1.2.3", "10.0.1.256", "10..1.2", "10.0.1.", "1000.0.0.1", "10.0.1.x", "fd00::1"] {
            #expect(NFTExpressionEncoder.ipv4Bytes(bad) == nil, "\(bad)")
        }
    }

    /// BATCH_BEGIN carries the generation the model was read at; the
    /// messages follow with consecutive sequence numbers; BATCH_END closes.
    @Test func theBatchIsFramedWithTheExpectedGeneration() throws {
        let rule = NFTRule(text: "counter", expr: [["counter": ["bytes": 0, "packets": 0]]], comment: "swarmnet rr 0")
        let batch = try NFTNetlinkBatch(table: "sn", commands: [.createChain("svc-a"), .addRule(chain: "svc-a", rule)], prefix: "ip sn",
                                        types: [:])
        let messages = try NetlinkMessage.split(batch.datagram(generation: 41, firstSequence: 100))
        #expect(messages.map(\.type) == [16, 10 << 8 | 3, 10 << 8 | 6, 17])
        #expect(messages.map(\.sequence) == [100, 101, 102, 103])
        let begin = try messages[0].attributes(after: nfgenmsg.self)
        #expect(begin.uint32(1).map { UInt32(bigEndian: $0) } == 41)
        // The chain is created exclusively (EEXIST if present), the rule appended.
        let create: UInt16 = 0x400, exclusive: UInt16 = 0x200, append: UInt16 = 0x800 // NLM_F_*
        #expect(messages[1].flags & (create | exclusive) == create | exclusive)
        #expect(messages[2].flags & append != 0)
        // The comment is libnftnl's user data TLV: type 0, length with the NUL.
        let rule2 = try messages[2].attributes(after: nfgenmsg.self)
        #expect(rule2[7].map(Array.init) == [0, 14] + Array("swarmnet rr 0".utf8) + [0])
        #expect(batch.source(of: 1) == "add rule ip sn svc-a counter comment \"swarmnet rr 0\"")
    }
}

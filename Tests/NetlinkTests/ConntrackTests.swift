#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CNetlinkShim
import Testing
@testable import Netlink

/// The conntrack client without a kernel: the bytes of its requests, the
/// parsing of dump messages built as ctnetlink builds them, and malformed
/// messages refused with an error.
@Suite struct ConntrackTests {
    static let ctNew = UInt16(NFNL_SUBSYS_CTNETLINK) << 8 | UInt16(IPCTNL_MSG_CT_NEW.rawValue)

    static func ip(_ text: String) -> IPAddress { try! IPAddress(parsing: text) }

    /// A UDP client 10.0.0.2:40000 to the VIP 10.96.0.1:53, DNATed to 10.77.0.11:8080.
    static let natedUDP = ConntrackEntry(
        family: AF_INET,
        original: ConntrackTuple(source: ip("10.0.0.2"), destination: ip("10.96.0.1"), protocolNumber: 17,
                                 sourcePort: 40000, destinationPort: 53),
        reply: ConntrackTuple(source: ip("10.77.0.11"), destination: ip("10.0.0.2"), protocolNumber: 17,
                              sourcePort: 8080, destinationPort: 40000),
        status: [.seenReply, .confirmed, .destinationNAT], mark: 0, id: 0x1234_5678, timeout: 29)

    /// An IPCTNL_MSG_CT_NEW message as the kernel's ctnetlink_fill_info lays
    /// it out: nfgenmsg, nested tuples (flagged NLA_F_NESTED), then status,
    /// timeout, mark, id and attributes the parser skips.
    static func kernelMessage(_ entry: ConntrackEntry, sequence: UInt32 = 1,
                              edit: (inout NetlinkRequest) -> Void = { _ in }) -> [UInt8] {
        var message = NetlinkRequest(type: ctNew, flags: UInt16(NLM_F_MULTI))
        message.setSequence(sequence)
        message.appendStruct(nfgenmsg(nfgen_family: UInt8(entry.family), version: UInt8(NFNETLINK_V0), res_id: 0))
        func tuple(_ t: ConntrackTuple, _ type: ctattr_type) {
            message.addNested(Int(type.rawValue)) { m in
                let v4 = t.source.isIPv4
                m.addNested(Int(CTA_TUPLE_IP.rawValue)) {
                    $0.addAttribute(Int((v4 ? CTA_IP_V4_SRC : CTA_IP_V6_SRC).rawValue), t.source.bytes)
                    $0.addAttribute(Int((v4 ? CTA_IP_V4_DST : CTA_IP_V6_DST).rawValue), t.destination.bytes)
                }
                m.addNested(Int(CTA_TUPLE_PROTO.rawValue)) {
                    $0.addAttribute(Int(CTA_PROTO_NUM.rawValue), uint8: t.protocolNumber)
                    if let p = t.sourcePort { $0.addAttribute(Int(CTA_PROTO_SRC_PORT.rawValue), bigEndian16: p) }
                    if let p = t.destinationPort { $0.addAttribute(Int(CTA_PROTO_DST_PORT.rawValue), bigEndian16: p) }
                    if let icmp = t.icmp {
                        $0.addAttribute(Int(CTA_PROTO_ICMP_ID.rawValue), bigEndian16: icmp.id)
                        $0.addAttribute(Int(CTA_PROTO_ICMP_TYPE.rawValue), uint8: icmp.type)
                        $0.addAttribute(Int(CTA_PROTO_ICMP_CODE.rawValue), uint8: icmp.code)
                    }
                }
                // The zone attribute of a tuple, which the kernel adds for zone 0 too.
                m.addAttribute(Int(CTA_TUPLE_ZONE.rawValue), bigEndian16: 0)
            }
        }
        tuple(entry.original, CTA_TUPLE_ORIG)
        tuple(entry.reply, CTA_TUPLE_REPLY)
        message.addAttribute(Int(CTA_STATUS.rawValue), uint32: entry.status.rawValue.bigEndian)
        if let timeout = entry.timeout { message.addAttribute(Int(CTA_TIMEOUT.rawValue), uint32: timeout.bigEndian) }
        if let mark = entry.mark { message.addAttribute(Int(CTA_MARK.rawValue), uint32: mark.bigEndian) }
        // CTA_PROTOINFO (nested TCP state) and CTA_USE: present in real dumps, not parsed.
        message.addNested(Int(CTA_PROTOINFO.rawValue)) { $0.addNested(Int(CTA_PROTOINFO_TCP.rawValue)) { $0.addAttribute(1, uint8: 3) } }
        message.addAttribute(Int(CTA_USE.rawValue), uint32: UInt32(1).bigEndian)
        if let id = entry.id { message.addAttribute(Int(CTA_ID.rawValue), uint32: id.bigEndian) }
        edit(&message)
        return message.bytes
    }

    static func parse(_ bytes: [UInt8]) throws -> ConntrackEntry {
        let messages = try NetlinkMessage.split(bytes)
        // Not #require: the truncation loop below expects errors, not recorded issues.
        guard messages.count == 1 else { throw NetlinkError.malformedMessage("\(messages.count) messages") }
        return try ConntrackMessages.entry(from: messages[0])
    }

    // MARK: - Requests

    @Test func deleteNamesTheOriginalTupleAndTheID() throws {
        var request = ConntrackMessages.deleteRequest(Self.natedUDP)
        request.setSequence(0)
        let expected: [UInt8] =
            // netlink header (16 B): length 80, NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_DELETE (0x0102),
            // REQUEST|ACK (0x0005), seq 0, pid 0
            [80, 0, 0, 0, 0x02, 0x01, 0x05, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]
            // nfgenmsg (4 B): AF_INET, NFNETLINK_V0, res_id 0
            + [2, 0, 0, 0]
            // CTA_TUPLE_ORIG (1 | NLA_F_NESTED): 4 + 20 + 28 = 52 bytes
            + [52, 0, 0x01, 0x80]
            //   CTA_TUPLE_IP (1, nested): 4 + 8 + 8
            + [20, 0, 0x01, 0x80]
            //     CTA_IP_V4_SRC (1) 10.0.0.2, CTA_IP_V4_DST (2) 10.96.0.1
            + [8, 0, 1, 0, 10, 0, 0, 2] + [8, 0, 2, 0, 10, 96, 0, 1]
            //   CTA_TUPLE_PROTO (2, nested): 4 + 5(+3) + 6(+2) + 6(+2) = 28
            + [28, 0, 0x02, 0x80]
            //     CTA_PROTO_NUM (1) UDP 17, padded
            + [5, 0, 1, 0, 17, 0, 0, 0]
            //     CTA_PROTO_SRC_PORT (2) 40000 = 0x9c40, CTA_PROTO_DST_PORT (3) 53, big-endian
            + [6, 0, 2, 0, 0x9c, 0x40, 0, 0] + [6, 0, 3, 0, 0, 53, 0, 0]
            // CTA_ID (12) 0x12345678, big-endian
            + [8, 0, 12, 0, 0x12, 0x34, 0x56, 0x78]
        #expect(request.bytes == expected)
    }

    @Test func aDumpAsksForOneFamily() {
        var request = ConntrackMessages.dumpRequest(family: AF_INET6)
        request.setSequence(0)
        // netlink header: length 20, IPCTNL_MSG_CT_GET (0x0101), REQUEST|DUMP (0x0301); nfgenmsg AF_INET6 (10)
        #expect(request.bytes == [20, 0, 0, 0, 0x01, 0x01, 0x01, 0x03, 0, 0, 0, 0, 0, 0, 0, 0] + [10, 0, 0, 0])
    }

    @Test func anIPv6DeleteCarriesSixteenByteAddressesAndTheZone() throws {
        var entry = Self.natedUDP
        entry.family = AF_INET6
        entry.original.source = Self.ip("fd00::2")
        entry.original.destination = Self.ip("fd00:96::1")
        entry.zone = 7
        entry.id = nil
        let message = try #require(try NetlinkMessage.split(ConntrackMessages.deleteRequest(entry).bytes).first)
        #expect(try message.familyHeader(nfgenmsg.self).nfgen_family == UInt8(AF_INET6))
        let attributes = try message.attributes(after: nfgenmsg.self)
        let ip = try #require(try attributes.nested(Int(CTA_TUPLE_ORIG.rawValue))?.nested(Int(CTA_TUPLE_IP.rawValue)))
        #expect(ip[Int(CTA_IP_V6_SRC.rawValue)].map(Array.init) == Self.ip("fd00::2").bytes)
        #expect(ip[Int(CTA_IP_V6_DST.rawValue)].map(Array.init) == Self.ip("fd00:96::1").bytes)
        #expect(ip[Int(CTA_IP_V4_SRC.rawValue)] == nil)
        #expect(attributes.bigEndian16(Int(CTA_ZONE.rawValue)) == 7)
        #expect(attributes[Int(CTA_ID.rawValue)] == nil)
    }

    // MARK: - Parsing

    @Test func aKernelDumpMessageParses() throws {
        let entry = try Self.parse(Self.kernelMessage(Self.natedUDP))
        #expect(entry == Self.natedUDP)
        #expect(entry.isDestinationNATed)
        #expect(entry.description ==
            "udp src=10.0.0.2 dst=10.96.0.1 sport=40000 dport=53 src=10.77.0.11 dst=10.0.0.2 sport=8080 dport=40000 mark=0")
    }

    @Test func anICMPEntryParsesAndItsDeleteRoundTrips() throws {
        let ping = ConntrackEntry(
            family: AF_INET,
            original: ConntrackTuple(source: Self.ip("10.0.0.2"), destination: Self.ip("10.0.0.3"), protocolNumber: 1,
                                     icmp: .init(id: 77, type: 8, code: 0)),
            reply: ConntrackTuple(source: Self.ip("10.0.0.3"), destination: Self.ip("10.0.0.2"), protocolNumber: 1,
                                  icmp: .init(id: 77, type: 0, code: 0)),
            status: [.confirmed])
        #expect(try Self.parse(Self.kernelMessage(ping)) == ping)
        #expect(!ping.isDestinationNATed)
        // The delete names the ICMP id, type and code, as the kernel's tuple needs them.
        let message = try #require(try NetlinkMessage.split(ConntrackMessages.deleteRequest(ping).bytes).first)
        let original = try #require(try message.attributes(after: nfgenmsg.self).nested(Int(CTA_TUPLE_ORIG.rawValue)))
        let proto = try #require(try original.nested(Int(CTA_TUPLE_PROTO.rawValue)))
        #expect(proto.uint8(Int(CTA_PROTO_NUM.rawValue)) == 1)
        #expect(proto.bigEndian16(Int(CTA_PROTO_ICMP_ID.rawValue)) == 77)
        #expect(proto.uint8(Int(CTA_PROTO_ICMP_TYPE.rawValue)) == 8)
        #expect(proto.uint8(Int(CTA_PROTO_ICMP_CODE.rawValue)) == 0)
        #expect(proto[Int(CTA_PROTO_SRC_PORT.rawValue)] == nil)
    }

    @Test func malformedMessagesAreErrorsNotCrashes() throws {
        func rejected(_ label: String, _ bytes: [UInt8]) {
            #expect(throws: NetlinkError.self, "\(label)") { try Self.parse(bytes) }
        }
        let good = Self.kernelMessage(Self.natedUDP)
        // An attribute claiming more bytes than remain: CTA_TUPLE_ORIG's length raised to 0xff.
        var long = good
        long[20] = 0xff
        rejected("attribute overruns the message", long)
        // A 3-byte address.
        rejected("short address", Self.kernelMessage(Self.natedUDP) { m in
            m = NetlinkRequest(type: Self.ctNew, flags: 0)
            m.appendStruct(nfgenmsg(nfgen_family: UInt8(AF_INET), version: 0, res_id: 0))
            m.addNested(Int(CTA_TUPLE_ORIG.rawValue)) { t in
                t.addNested(Int(CTA_TUPLE_IP.rawValue)) {
                    $0.addAttribute(Int(CTA_IP_V4_SRC.rawValue), [10, 0, 0])
                    $0.addAttribute(Int(CTA_IP_V4_DST.rawValue), [10, 0, 0, 1])
                }
            }
            m.addNested(Int(CTA_TUPLE_REPLY.rawValue)) { _ in }
        })
        // No reply tuple.
        var noReply = NetlinkRequest(type: Self.ctNew, flags: 0)
        noReply.appendStruct(nfgenmsg(nfgen_family: UInt8(AF_INET), version: 0, res_id: 0))
        rejected("no tuples", noReply.bytes)
        // A one-byte port, a two-byte status: values of the wrong size are not read as absent.
        rejected("short status", Self.kernelMessage(Self.natedUDP) { $0.addAttribute(Int(CTA_STATUS.rawValue), uint16: 1) })
        rejected("short mark", Self.kernelMessage(Self.natedUDP) { $0.addAttribute(Int(CTA_MARK.rawValue), uint8: 1) })
        // Another message type, another address family, a message shorter than nfgenmsg.
        var other = good
        other[4] = UInt8(IPCTNL_MSG_CT_DELETE.rawValue)
        rejected("message type", other)
        var family = good
        family[16] = 7
        rejected("family", family)
        rejected("no nfgenmsg", Array(good[0..<16]).replacingLength(18) + [2, 0])
        // Every truncation and every single-byte change of a good message
        // either parses or throws: nothing reads past the buffer.
        for length in 0..<good.count {
            _ = try? Self.parse(Array(good[0..<length]).replacingLength(UInt32(length)))
        }
        for index in 16..<good.count {
            for value: UInt8 in [0, 1, 3, 0x7f, 0xff] {
                var changed = good
                changed[index] = value
                _ = try? Self.parse(changed)
            }
        }
    }

    // MARK: - The session over recorded replies

    static let statsType = UInt16(NFNL_SUBSYS_CTNETLINK) << 8 | UInt16(IPCTNL_MSG_CT_GET_STATS.rawValue)

    /// A transport that answers a dump with `entries`, the count request
    /// with their number, and each delete with `deleteErrno`.
    static func transport(_ entries: [ConntrackEntry], deleteErrno: Int32 = 0) -> ReplayTransport {
        ReplayTransport { requests in
            requests.flatMap { request -> [[UInt8]] in
                if request.flags & UInt16(NLM_F_DUMP) != 0 {
                    return entries.map { kernelMessage($0, sequence: request.sequence) } + [Kernel.done(request.sequence)]
                }
                if request.type == statsType {
                    var reply = NetlinkRequest(type: statsType, flags: 0)
                    reply.setSequence(request.sequence)
                    reply.appendStruct(nfgenmsg(nfgen_family: UInt8(AF_UNSPEC), version: 0, res_id: 0))
                    reply.addAttribute(Int(CTA_STATS_GLOBAL_ENTRIES.rawValue), uint32: UInt32(entries.count).bigEndian)
                    return [reply.bytes, Kernel.ack(request.sequence)]
                }
                // Batched deletes: every request is answered when it fails, the acked one always.
                if deleteErrno != 0 { return [Kernel.ack(request.sequence, errno: deleteErrno)] }
                return request.flags & UInt16(NLM_F_ACK) != 0 ? [Kernel.ack(request.sequence)] : []
            }
        }
    }

    /// Entries of a table: the NATed one, one NATed to another backend, one
    /// to the same backend through another VIP, a direct connection to the
    /// backend (not NATed), and a TCP one to the backend.
    static var table: [ConntrackEntry] {
        var otherBackend = natedUDP
        otherBackend.reply.source = ip("10.77.0.12")
        otherBackend.id = 2
        var otherVIP = natedUDP
        otherVIP.original.destination = ip("10.96.0.2")
        otherVIP.id = 3
        var direct = natedUDP
        direct.original.destination = ip("10.77.0.11")
        direct.original.destinationPort = 8080
        direct.id = 4
        var tcp = natedUDP
        tcp.original.protocolNumber = 6
        tcp.reply.protocolNumber = 6
        tcp.id = 5
        return [natedUDP, otherBackend, otherVIP, direct, tcp]
    }

    @Test func deletingByBackendSelectsOnlyEntriesNATedToIt() throws {
        let transport = Self.transport(Self.table)
        let conntrack = Conntrack(transport: transport)
        #expect(try conntrack.list(family: AF_INET) == Self.table)
        let vipOnly = ConntrackNATMatch(backend: Self.ip("10.77.0.11"), backendPort: 8080, protocolNumber: 17,
                                        originalDestination: Self.ip("10.96.0.1"), originalDestinationPort: 53)
        #expect(try conntrack.deleteEntries(natedTo: [vipOnly]) == 1)
        // The listing above, then the count, the dump, the deletes.
        let deletes = try transport.sent.dropFirst(3).flatMap(NetlinkMessage.split)
        #expect(deletes.map { $0.type } == [UInt16(NFNL_SUBSYS_CTNETLINK) << 8 | UInt16(IPCTNL_MSG_CT_DELETE.rawValue)])
        #expect(try deletes.first?.attributes(after: nfgenmsg.self).uint32(Int(CTA_ID.rawValue)) == Self.natedUDP.id?.bigEndian)
        // Any original destination (a published port): the other VIP's entry too, never the direct one.
        let anyAddress = ConntrackNATMatch(backend: Self.ip("10.77.0.11"), backendPort: 8080, protocolNumber: 17)
        #expect(Self.table.filter(anyAddress.matches).map(\.id) == [Self.natedUDP.id, 3])
        #expect(Self.table.filter(ConntrackNATMatch(backend: Self.ip("10.77.0.11")).matches).map(\.id) == [Self.natedUDP.id, 3, 5])
    }

    @Test func anEntryAlreadyGoneIsNotAnErrorButOtherFailuresAre() throws {
        let gone = Conntrack(transport: Self.transport(Self.table, deleteErrno: ENOENT))
        #expect(try gone.delete(Self.table) == 0)
        let refused = Conntrack(transport: Self.transport(Self.table, deleteErrno: EPERM))
        let error = #expect(throws: NetlinkError.self) { try refused.delete(Self.table) }
        guard case .batchFailed(let failures, let total)? = error else {
            Issue.record("expected batchFailed, got \(String(describing: error))")
            return
        }
        #expect(failures.count == Self.table.count && total == Self.table.count && failures[0].error.errno == EPERM)
        #expect(try Conntrack(transport: Self.transport([])).deleteEntries(natedTo: [ConntrackNATMatch(backend: Self.ip("10.77.0.11"))]) == 0)
    }

    @Test func aMalformedEntryFailsTheListing() throws {
        let transport = ReplayTransport { requests in
            let sequence = requests[0].sequence
            return [Self.kernelMessage(Self.natedUDP, sequence: sequence) { $0.addAttribute(Int(CTA_ID.rawValue), uint8: 1) },
                    Kernel.done(sequence)]
        }
        #expect(throws: NetlinkError.self) { try Conntrack(transport: transport).list() }
    }
}

private extension Array where Element == UInt8 {
    /// The same bytes with the netlink header's length field set.
    func replacingLength(_ length: UInt32) -> [UInt8] {
        guard count >= 4 else { return self }
        var copy = self
        Swift.withUnsafeBytes(of: length) { for i in 0..<4 { copy[i] = $0[i] } }
        return copy
    }
}

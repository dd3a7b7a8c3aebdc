import Addressing
import CIPVSShim
import Netlink
import Testing
@testable import LoadBalancing

let vip = try! IPAddress(parsing: "10.0.0.5")
let web = ServiceKey.address(vip, .tcp, port: 80)

func server(_ address: String, _ port: UInt16 = 8080, weight: UInt32 = 1) -> RealServer {
    RealServer(address: try! IPAddress(parsing: address), port: port, weight: weight)
}

/// A back end over a replay transport: the family resolves to 0x23, every
/// request with NLM_F_ACK is acknowledged unless `answer` says otherwise.
func replayIPVS(_ answer: @escaping (NetlinkMessage, UInt8) -> [[UInt8]]? = { _, _ in nil }) throws
    -> (IPVS, ReplayTransport)
{
    let transport = ReplayTransport { requests in
        var datagrams: [[UInt8]] = []
        for request in requests {
            if request.type == UInt16(Kernel.GENL_ID_CTRL_VALUE) {
                datagrams.append(Kernel.family(request.sequence))
                continue
            }
            let command = request.payload[request.payload.startIndex]
            if let scripted = answer(request, command) {
                datagrams += scripted
            } else if request.flags & UInt16(NLM_F_ACK) != 0 {
                datagrams.append(Kernel.ack(request.sequence))
            }
        }
        return datagrams
    }
    return (try IPVS(transport: transport), transport)
}

/// Golden bytes: what the kernel receives for the two requests every
/// service needs, segment by segment (sequence numbers zeroed).
@Suite struct IPVSRequestBytesTests {
    @Test func newServiceCarriesIdentityAndEverySetting() {
        var request = IPVSMessage.service(Int32(IPVS_CMD_NEW_SERVICE),
                                          VirtualService(key: web, scheduler: .roundRobin), family: 0x23)
        request.setSequence(0)
        let expected: [UInt8] =
            // netlink header (16 B): length 104, type 0x23 (the IPVS family id), REQUEST|ACK (0x0005), seq 0, pid 0
            [104, 0, 0, 0, 0x23, 0, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            // genlmsghdr (4 B): IPVS_CMD_NEW_SERVICE (1), version 1, reserved
            + [1, 1, 0, 0]
            // IPVS_CMD_ATTR_SERVICE (1) | NLA_F_NESTED: 84 bytes
            + [84, 0, 0x01, 0x80]
            // IPVS_SVC_ATTR_AF (1): AF_INET (2), padded
            + [6, 0, 1, 0, 2, 0, 0, 0]
            // IPVS_SVC_ATTR_PROTOCOL (2): IPPROTO_TCP (6), padded
            + [6, 0, 2, 0, 6, 0, 0, 0]
            // IPVS_SVC_ATTR_ADDR (3): union nf_inet_addr, 10.0.0.5 then 12 zero bytes
            + [20, 0, 3, 0, 10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            // IPVS_SVC_ATTR_PORT (4): 80 in network order, padded
            + [6, 0, 4, 0, 0, 80, 0, 0]
            // IPVS_SVC_ATTR_SCHED_NAME (6): "rr\0", padded
            + [7, 0, 6, 0, 0x72, 0x72, 0, 0]
            // IPVS_SVC_ATTR_FLAGS (7): struct ip_vs_flags { flags 0, mask ~0 }
            + [12, 0, 7, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
            // IPVS_SVC_ATTR_TIMEOUT (8): 0, no persistence
            + [8, 0, 8, 0, 0, 0, 0, 0]
            // IPVS_SVC_ATTR_NETMASK (9): 255.255.255.255
            + [8, 0, 9, 0, 0xff, 0xff, 0xff, 0xff]
        #expect(request.bytes == expected)
    }

    @Test func newDestIsAMasqueradedRealServerOfTheService() {
        var request = IPVSMessage.destination(Int32(IPVS_CMD_NEW_DEST), server("10.0.1.2", weight: 3),
                                              service: web, family: 0x23)
        request.setSequence(0)
        let expected: [UInt8] =
            // netlink header (16 B): length 140, type 0x23, REQUEST|ACK, seq 0, pid 0
            [140, 0, 0, 0, 0x23, 0, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            // genlmsghdr: IPVS_CMD_NEW_DEST (5), version 1
            + [5, 1, 0, 0]
            // IPVS_CMD_ATTR_SERVICE (1) | NLA_F_NESTED, 48 bytes: the service's identity only
            + [48, 0, 0x01, 0x80]
            + [6, 0, 1, 0, 2, 0, 0, 0] // AF_INET
            + [6, 0, 2, 0, 6, 0, 0, 0] // TCP
            + [20, 0, 3, 0, 10, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] // 10.0.0.5
            + [6, 0, 4, 0, 0, 80, 0, 0] // port 80
            // IPVS_CMD_ATTR_DEST (2) | NLA_F_NESTED, 72 bytes
            + [72, 0, 0x02, 0x80]
            // IPVS_DEST_ATTR_ADDR (1): 10.0.1.2, zero-padded to 16
            + [20, 0, 1, 0, 10, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            // IPVS_DEST_ATTR_PORT (2): 8080 = 0x1f90, network order
            + [6, 0, 2, 0, 0x1f, 0x90, 0, 0]
            // IPVS_DEST_ATTR_ADDR_FAMILY (11): AF_INET
            + [6, 0, 11, 0, 2, 0, 0, 0]
            // IPVS_DEST_ATTR_FWD_METHOD (3): IP_VS_CONN_F_MASQ (0)
            + [8, 0, 3, 0, 0, 0, 0, 0]
            // IPVS_DEST_ATTR_WEIGHT (4): 3
            + [8, 0, 4, 0, 3, 0, 0, 0]
            // IPVS_DEST_ATTR_U_THRESH (5), IPVS_DEST_ATTR_L_THRESH (6): 0, no limits
            + [8, 0, 5, 0, 0, 0, 0, 0]
            + [8, 0, 6, 0, 0, 0, 0, 0]
        #expect(request.bytes == expected)
    }

    @Test func firewallMarkServiceWithPersistenceAndHashFlags() throws {
        let service = VirtualService(key: .firewallMark(42, family: .ipv4), scheduler: .maglevHashing,
                                     schedulerFlags: [.fallback, .hashPort], persistence: 600)
        let request = IPVSMessage.service(Int32(IPVS_CMD_SET_SERVICE), service, family: 0x23)
        let message = try NetlinkMessage.split(request.bytes)[0]
        #expect(try message.familyHeader(genlmsghdr.self).cmd == UInt8(IPVS_CMD_SET_SERVICE))
        let outer = try message.attributes(after: genlmsghdr.self)
        let attributes = try #require(try outer.nested(Int(IPVS_CMD_ATTR_SERVICE)))
        #expect(attributes.uint16(Int(IPVS_SVC_ATTR_AF)) == 2)
        #expect(attributes.uint32(Int(IPVS_SVC_ATTR_FWMARK)) == 42)
        // a firewall-mark service has no protocol, address or port
        #expect(attributes[Int(IPVS_SVC_ATTR_PROTOCOL)] == nil && attributes[Int(IPVS_SVC_ATTR_ADDR)] == nil)
        #expect(attributes.string(Int(IPVS_SVC_ATTR_SCHED_NAME)) == "mh")
        // PERSISTENT (1) | SCHED1 (8) | SCHED2 (0x10), mask ~0
        #expect(attributes[Int(IPVS_SVC_ATTR_FLAGS)].map(Array.init) == [0x19, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])
        #expect(attributes.uint32(Int(IPVS_SVC_ATTR_TIMEOUT)) == 600)
    }

    @Test func ipv6ServiceUsesAPrefixLengthAsNetmask() throws {
        let key = ServiceKey.address(try IPAddress(parsing: "fd00::5"), .udp, port: 53)
        let request = IPVSMessage.service(Int32(IPVS_CMD_NEW_SERVICE), VirtualService(key: key), family: 0x23)
        let message = try NetlinkMessage.split(request.bytes)[0]
        let attributes = try #require(try message.attributes(after: genlmsghdr.self).nested(Int(IPVS_CMD_ATTR_SERVICE)))
        #expect(attributes.uint16(Int(IPVS_SVC_ATTR_AF)) == 10)
        #expect(attributes.uint16(Int(IPVS_SVC_ATTR_PROTOCOL)) == 17)
        #expect(attributes[Int(IPVS_SVC_ATTR_ADDR)].map(Array.init) == [0xfd] + [UInt8](repeating: 0, count: 14) + [5])
        #expect(attributes.uint32(Int(IPVS_SVC_ATTR_NETMASK)) == 128)
    }

    @Test func deleteRequestsCarryIdentitiesOnly() throws {
        let request = IPVSMessage.deleteDestination(server("10.0.1.2").key, service: web, family: 0x23)
        let message = try NetlinkMessage.split(request.bytes)[0]
        let outer = try message.attributes(after: genlmsghdr.self)
        let dest = try #require(try outer.nested(Int(IPVS_CMD_ATTR_DEST)))
        #expect(dest[Int(IPVS_DEST_ATTR_WEIGHT)] == nil && dest[Int(IPVS_DEST_ATTR_FWD_METHOD)] == nil)
        #expect(dest.bigEndian16(Int(IPVS_DEST_ATTR_PORT)) == 8080)
        let service = IPVSMessage.deleteService(web, family: 0x23)
        let serviceAttributes = try #require(try NetlinkMessage.split(service.bytes)[0]
            .attributes(after: genlmsghdr.self).nested(Int(IPVS_CMD_ATTR_SERVICE)))
        #expect(serviceAttributes[Int(IPVS_SVC_ATTR_SCHED_NAME)] == nil)
    }

    @Test func familyIsResolvedThroughTheController() throws {
        let (ipvs, transport) = try replayIPVS()
        #expect(ipvs.familyID == Kernel.ipvsFamily)
        let message = try NetlinkMessage.split(transport.sent[0])[0]
        #expect(message.type == 0x10) // GENL_ID_CTRL
        #expect(try message.familyHeader(genlmsghdr.self).cmd == UInt8(CTRL_CMD_GETFAMILY))
        #expect(try message.attributes(after: genlmsghdr.self).string(Int(CTRL_ATTR_FAMILY_NAME)) == "IPVS")
    }
}

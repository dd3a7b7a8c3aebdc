import CNetlinkShim
import Testing
import Addressing
@testable import Netlink

/// Golden bytes: what the kernel receives for the requests the overlay
/// depends on, segment by segment.
@Suite struct RequestBytesTests {
    @Test func fdbAppendIsASelfPermanentBridgeNeighbour() throws {
        let entry = FDBEntry(linkIndex: 7, mac: try MACAddress(parsing: "02:42:0a:00:00:05"),
                             destination: try IPAddress(parsing: "192.0.2.10"))
        var request = FDBEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_APPEND)
        request.setSequence(0)
        let expected: [UInt8] =
            // netlink header (16 B): length 48, RTM_NEWNEIGH (28), REQUEST|ACK|CREATE|APPEND (0x0c05), seq 0, pid 0
            [48, 0, 0, 0, 28, 0, 0x05, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0]
            // ndmsg (12 B): AF_BRIDGE (7), pad, ifindex 7, state NUD_PERMANENT (0x80), flags NTF_SELF (2), type 0
            + [7, 0, 0, 0, 7, 0, 0, 0, 0x80, 0, 2, 0]
            // NDA_LLADDR (2): 4 + 6 bytes, padded to 12
            + [10, 0, 2, 0, 0x02, 0x42, 0x0a, 0x00, 0x00, 0x05, 0, 0]
            // NDA_DST (1): 4 + 4 bytes
            + [8, 0, 1, 0, 192, 0, 2, 10]
        #expect(request.bytes == expected)
    }

    @Test func neighbourReplaceIsPermanentAndIdempotent() throws {
        let entry = NeighbourEntry(linkIndex: 3, address: try IPAddress(parsing: "10.0.0.5"),
                                   mac: try MACAddress(parsing: "02:42:0a:00:00:05"))
        var request = NeighbourEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_REPLACE)
        request.setSequence(0)
        let expected: [UInt8] =
            // netlink header: length 48, RTM_NEWNEIGH, REQUEST|ACK|REPLACE|CREATE (0x0505)
            [48, 0, 0, 0, 28, 0, 0x05, 0x05, 0, 0, 0, 0, 0, 0, 0, 0]
            // ndmsg: AF_INET (2), ifindex 3, NUD_PERMANENT, no flags
            + [2, 0, 0, 0, 3, 0, 0, 0, 0x80, 0, 0, 0]
            // NDA_DST 10.0.0.5
            + [8, 0, 1, 0, 10, 0, 0, 5]
            // NDA_LLADDR
            + [10, 0, 2, 0, 0x02, 0x42, 0x0a, 0x00, 0x00, 0x05, 0, 0]
        #expect(request.bytes == expected)
    }

    @Test func vxlanCreationNestsItsSettings() throws {
        let transport = ReplayTransport()
        let session = RouteNetlink(transport: transport)
        try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(
            vni: 4097, port: 4789, local: try IPAddress(parsing: "192.0.2.1"))), mtu: 1450, up: true))
        let messages = try NetlinkMessage.split(transport.sent[0])
        #expect(messages.count == 1)
        let message = messages[0]
        #expect(Int(message.type) == RTM_NEWLINK)
        #expect(message.flags == UInt16(NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL))
        let header = try message.familyHeader(ifinfomsg.self)
        #expect(header.ifi_flags == UInt32(IFF_UP) && header.ifi_change == UInt32(IFF_UP))
        let attributes = try message.attributes(after: ifinfomsg.self)
        #expect(attributes.string(Int(IFLA_IFNAME)) == "vx0")
        #expect(attributes.uint32(Int(IFLA_MTU)) == 1450)
        let info = try #require(try attributes.nested(Int(IFLA_LINKINFO)))
        #expect(info.string(Int(IFLA_INFO_KIND)) == "vxlan")
        let data = try #require(try info.nested(Int(IFLA_INFO_DATA)))
        #expect(data.uint32(Int(IFLA_VXLAN_ID)) == 4097)
        #expect(data[Int(IFLA_VXLAN_PORT)].map(Array.init) == [0x12, 0xb5]) // 4789, network order
        #expect(data[Int(IFLA_VXLAN_LOCAL)].map(Array.init) == [192, 0, 2, 1])
        #expect(data.uint8(Int(IFLA_VXLAN_LEARNING)) == 0)
    }

    @Test func vethPeerCarriesItsOwnInterfaceMessage() throws {
        let transport = ReplayTransport { requests in
            let request = requests[0]
            if Int(request.type) == RTM_GETLINK {
                return [Kernel.link(request.sequence, index: 8, name: "veth-b", flags: 0) + Kernel.ack(request.sequence)]
            }
            return [Kernel.ack(request.sequence)]
        }
        let session = RouteNetlink(transport: transport)
        try session.linkAdd(LinkSpec(name: "veth-a", kind: .veth(peer: VethPeer(name: "veth-b", up: true, mtu: 1400))))
        let message = try NetlinkMessage.split(transport.sent[0])[0]
        let info = try #require(try message.attributes(after: ifinfomsg.self).nested(Int(IFLA_LINKINFO)))
        let data = try #require(try info.nested(Int(IFLA_INFO_DATA)))
        let peer = try #require(data[Int(VETH_INFO_PEER)])
        // The peer is an ifinfomsg followed by its own attributes.
        #expect(peer.count > 16)
        // The peer is brought up by a second request (see linkAdd).
        let peerFlags = peer.loadHost(UInt32.self, at: peer.startIndex + 8)
        #expect(peerFlags == 0)
        let peerAttributes = try Attributes(parsing: peer.dropFirst(16))
        #expect(peerAttributes.string(Int(IFLA_IFNAME)) == "veth-b")
        #expect(peerAttributes.uint32(Int(IFLA_MTU)) == 1400)
    }

    @Test func attributesArePaddedToFourBytes() {
        var request = NetlinkRequest(type: 16, flags: 1)
        request.addAttribute(3, string: "ab")  // 4 + 3 bytes -> 8
        request.addAttribute(4, uint8: 1)       // 4 + 1 -> 8
        #expect(request.bytes.count == 16 + 8 + 8)
        #expect(Array(request.bytes[0..<4]) == [32, 0, 0, 0])
    }
}

import Foundation
import Testing
import Addressing
import Namespaces
import Netlink

@Suite struct LinkTests {
    @Test func bridgeAndVethPairWithThePeerInAnotherNamespace() throws {
        try TestHost.withNamespaces(2) { namespaces in
            let (host, workload) = (namespaces[0], namespaces[1])
            let session = try RouteNetlink(namespace: host)
            try session.linkAdd(LinkSpec(name: "br0", kind: .bridge, mtu: 1400, up: true))
            try session.linkAdd(LinkSpec(
                name: "veth-host", kind: .veth(peer: VethPeer(name: "eth0", namespace: workload, up: true, mtu: 1400)),
                mtu: 1400, master: "br0", up: true))

            // Second reader: iproute2.
            let ipHost = try TestHost.ipLinks(host)
            let bridge = try #require(ipHost["br0"])
            #expect((bridge["linkinfo"] as? [String: Any])?["info_kind"] as? String == "bridge")
            #expect(bridge["mtu"] as? Int == 1400)
            let vethHost = try #require(ipHost["veth-host"])
            #expect(vethHost["master"] as? String == "br0")
            #expect((vethHost["flags"] as? [String])?.contains("UP") == true)
            #expect((vethHost["linkinfo"] as? [String: Any])?["info_kind"] as? String == "veth")
            let ipWorkload = try TestHost.ipLinks(workload)
            let peer = try #require(ipWorkload["eth0"], "the peer is created straight in the workload namespace")
            #expect(peer["mtu"] as? Int == 1400)
            #expect((peer["flags"] as? [String])?.contains("UP") == true)
            #expect(ipHost["eth0"] == nil)

            // Our own reader agrees.
            let ours = Dictionary(try session.links().map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            #expect(ours["br0"]?.kind == "bridge")
            #expect(ours["veth-host"]?.masterIndex == ours["br0"]?.index)
            #expect(ours["veth-host"]?.isUp == true)
            #expect(ours["veth-host"]?.linkNetnsID != nil, "the peer lives in another namespace")
            #expect(try RouteNetlink(namespace: workload).link(named: "eth0").kind == "veth")

            // Set: down, MTU, no master, rename, then move to the other namespace.
            try session.linkSet(name: "veth-host", up: false, mtu: 1300, master: .some(nil), newName: "veth-moved")
            let changed = try #require(try TestHost.ipLinks(host)["veth-moved"])
            #expect(changed["mtu"] as? Int == 1300)
            #expect(changed["master"] == nil)
            #expect((changed["flags"] as? [String])?.contains("UP") == false)

            // Deleting one end of a veth pair removes both.
            try session.linkDelete(name: "veth-moved")
            #expect(try TestHost.ipLinks(host)["veth-moved"] == nil)
            #expect(try TestHost.ipLinks(workload)["eth0"] == nil)
            #expect(throws: NetlinkError.self) { try session.linkDelete(name: "veth-moved") }
        }
    }

    @Test func movingALinkToAnotherNamespace() throws {
        try TestHost.withNamespaces(2) { namespaces in
            let session = try RouteNetlink(namespace: namespaces[0])
            try session.linkAdd(LinkSpec(name: "va", kind: .veth(peer: VethPeer(name: "vb"))))
            try session.linkSet(name: "vb", namespace: namespaces[1])
            #expect(try TestHost.ipLinks(namespaces[1])["vb"] != nil)
            #expect(try TestHost.ipLinks(namespaces[0])["vb"] == nil)
            #expect(throws: NetlinkError.self) { try session.link(named: "vb") }
            // Bridges are local to their namespace: the kernel refuses to move one.
            try session.linkAdd(LinkSpec(name: "br0", kind: .bridge))
            do {
                try session.linkSet(name: "br0", namespace: namespaces[1])
                Issue.record("moving a bridge must fail")
            } catch NetlinkError.kernel(let error) {
                #expect(error.errnoName == "EINVAL")
                #expect(error.operation == "set link")
            }
        }
    }

    @Test func vxlanMadeInTheUnderlayLivesInTheSandbox() throws {
        try TestHost.withNamespaces(2) { namespaces in
            let (underlay, sandbox) = (namespaces[0], namespaces[1])
            let session = try RouteNetlink(namespace: underlay)
            try session.linkAdd(LinkSpec(name: "ul0", kind: .veth(peer: VethPeer(name: "ul1")), up: true))
            try session.addressAdd(try IPPrefix(parsing: "192.0.2.1/24"), device: "ul0")
            try session.linkAdd(LinkSpec(
                name: "vx4242", kind: .vxlan(VXLANOptions(
                    vni: 4242, port: 4789, local: try IPAddress(parsing: "192.0.2.1"), underlay: "ul0",
                    learning: false, udpChecksum: true)),
                mtu: 1450, namespace: sandbox))

            #expect(try TestHost.ipLinks(underlay)["vx4242"] == nil)
            let link = try #require(try TestHost.ipLinks(sandbox)["vx4242"])
            let data = try #require((link["linkinfo"] as? [String: Any])?["info_data"] as? [String: Any])
            #expect((link["linkinfo"] as? [String: Any])?["info_kind"] as? String == "vxlan")
            #expect(data["id"] as? Int == 4242)
            #expect(data["port"] as? Int == 4789)
            #expect(data["local"] as? String == "192.0.2.1")
            #expect(data["learning"] as? Bool == false)
            #expect(data["udp_csum"] as? Bool == true)
            #expect(link["mtu"] as? Int == 1450)

            let ours = try RouteNetlink(namespace: sandbox).link(named: "vx4242")
            #expect(ours.vxlan?.vni == 4242)
            #expect(ours.vxlan?.port == 4789)
            #expect(ours.vxlan?.local == (try IPAddress(parsing: "192.0.2.1")))
            #expect(ours.vxlan?.learning == false)
            #expect(ours.vxlan?.udpChecksum == true)
            #expect(ours.mtu == 1450)

            try RouteNetlink(namespace: sandbox).linkDelete(name: "vx4242")
            #expect(try TestHost.ipLinks(sandbox)["vx4242"] == nil)
        }
    }

    /// This machine's kernel is built without the dummy driver; where it
    /// exists the link is made and checked, and where it does not both
    /// readers must agree that the kernel refuses it, with a clear error.
    @Test func dummyLinksWhereTheKernelHasThem() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let session = try RouteNetlink(namespace: namespaces[0])
            do {
                try session.linkAdd(LinkSpec(name: "dm0", kind: .dummy, up: true))
                let link = try #require(try TestHost.ipLinks(namespaces[0])["dm0"])
                #expect((link["linkinfo"] as? [String: Any])?["info_kind"] as? String == "dummy")
                #expect(try session.link(named: "dm0").kind == "dummy")
                try session.linkDelete(name: "dm0")
                #expect(try TestHost.ipLinks(namespaces[0])["dm0"] == nil)
            } catch NetlinkError.kernel(let error) where error.errno == EOPNOTSUPP {
                #expect(error.description.contains("create link dummy 'dm0'"))
                #expect(throws: CommandFailure.self) {
                    try TestHost.run(["ip", "-n", namespaces[0].name!, "link", "add", "dm0", "type", "dummy"])
                }
            }
        }
    }
}

import CTestSupport
import Foundation
import Testing
import Addressing
import Namespaces
import Netlink

/// Each error the layer reports, provoked on the real kernel, with a check
/// that nothing was left half-made.
@Suite struct ErrorTests {
    @Test func duplicateLinkIsEEXIST() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let session = try RouteNetlink(namespace: namespaces[0])
            try session.linkAdd(LinkSpec(name: "br0", kind: .bridge))
            do {
                try session.linkAdd(LinkSpec(name: "br0", kind: .bridge))
                Issue.record("a duplicate link must fail")
            } catch NetlinkError.kernel(let error) {
                #expect(error.errnoName == "EEXIST")
                #expect(error.description.hasPrefix("create link bridge 'br0' in namespace '\(namespaces[0].name!)': File exists (EEXIST)"))
            }
        }
    }

    @Test func missingUnderlayOrMasterCreatesNothing() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let session = try RouteNetlink(namespace: namespaces[0])
            #expect(throws: NetlinkError.self) {
                try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(vni: 10, underlay: "no-such-dev"))))
            }
            #expect(throws: NetlinkError.self) {
                try session.linkAdd(LinkSpec(name: "va", kind: .veth(peer: VethPeer(name: "vb")), master: "no-such-br"))
            }
            #expect(try TestHost.ipLinks(namespaces[0]).keys.sorted() == ["lo"])
        }
    }

    @Test func aVethWhosePeerCannotBeMadeLeavesNoHalf() throws {
        try TestHost.withNamespaces(2) { namespaces in
            // The peer's name is taken in the target namespace.
            try RouteNetlink(namespace: namespaces[1]).linkAdd(LinkSpec(name: "eth0", kind: .bridge))
            let session = try RouteNetlink(namespace: namespaces[0])
            do {
                try session.linkAdd(LinkSpec(name: "veth-x", kind: .veth(peer: VethPeer(name: "eth0", namespace: namespaces[1]))))
                Issue.record("a clashing peer name must fail")
            } catch NetlinkError.kernel(let error) {
                #expect(error.errnoName == "EEXIST")
            }
            #expect(try TestHost.ipLinks(namespaces[0])["veth-x"] == nil)
            #expect(try TestHost.ipLinks(namespaces[1])["eth0"]?["linkinfo"].map { ($0 as? [String: Any])?["info_kind"] as? String } == "bridge")
        }
    }

    @Test func badArgumentsReachNothing() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let session = try RouteNetlink(namespace: namespaces[0])
            #expect(throws: NetlinkError.self) { try session.linkAdd(LinkSpec(name: "sixteen-bytes-xx", kind: .bridge)) }
            #expect(throws: NetlinkError.self) { try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(vni: 20_000_000)))) }
            #expect(throws: AddressParseError.self) { _ = try MACAddress(parsing: "02:42:zz:00:00:01") }
            #expect(try TestHost.ipLinks(namespaces[0]).keys.sorted() == ["lo"])
        }
    }

    /// A vxlan device opens its UDP port when it comes up; a port taken by
    /// another socket makes the creation fail as a whole.
    @Test func aVXLANPortInUseIsEADDRINUSEAndLeavesNoDevice() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let port: UInt16 = 4799
            let socket = try namespaces[0].run { () -> Int32 in
                let fd = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
                var address = sockaddr_in()
                address.sin_family = sa_family_t(AF_INET)
                address.sin_port = port.bigEndian
                let bound = withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
                return bound == 0 ? fd : -1
            }
            try #require(socket >= 0)
            defer { close(socket) }
            let session = try RouteNetlink(namespace: namespaces[0])
            do {
                try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(vni: 77, port: port)), up: true))
                Issue.record("a vxlan on a port in use must fail")
            } catch NetlinkError.kernel(let error) {
                #expect(error.errnoName == "EADDRINUSE")
                #expect(error.description.hasPrefix("create link vxlan 'vx0'"))
            }
            #expect(try TestHost.ipLinks(namespaces[0])["vx0"] == nil)
        }
    }

    @Test func requestsOnAMissingLinkAreENODEV() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let session = try RouteNetlink(namespace: namespaces[0])
            do {
                try session.fdbAppend(FDBEntry(linkIndex: 424_242, mac: .zero, destination: .v4(IPv4Address(192, 0, 2, 1))))
                Issue.record("an entry on a missing link must fail")
            } catch NetlinkError.kernel(let error) {
                #expect(error.errnoName == "ENODEV")
                #expect(error.operation == "append fdb entry")
            }
            do {
                _ = try session.link(named: "ghost0")
                Issue.record("a missing link must fail")
            } catch {
                #expect("\(error)" == "link 'ghost0' does not exist in namespace '\(namespaces[0].name!)' (ENODEV)")
            }
        }
    }

    @Test func withoutCAPNETADMINTheKernelSaysEPERM() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let namespace = namespaces[0]
            // Capabilities are per thread: drop CAP_NET_ADMIN on a thread of
            // the test's own, open a session there and try to change something.
            let outcome = Outcome()
            let thread = Thread {
                guard cts_drop_net_admin_on_this_thread() == 0 else {
                    outcome.set("capset failed: errno \(errno)")
                    return
                }
                do {
                    let session = try RouteNetlink(namespace: namespace)
                    try session.linkAdd(LinkSpec(name: "br0", kind: .bridge))
                    outcome.set("no error")
                } catch {
                    outcome.set("\(error)")
                }
            }
            thread.start()
            let deadline = Date().addingTimeInterval(10)
            while outcome.get() == nil && Date() < deadline { usleep(10_000) }
            let text = try #require(outcome.get())
            #expect(text.contains("Operation not permitted (EPERM)"), "got: \(text)")
            #expect(try TestHost.ipLinks(namespace)["br0"] == nil)
        }
    }
}

private final class Outcome: @unchecked Sendable {
    private var value: String?
    private let lock = NSLock()
    func set(_ text: String) { lock.withLock { value = text } }
    func get() -> String? { lock.withLock { value } }
}

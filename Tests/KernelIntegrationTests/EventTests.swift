import Foundation
import Testing
import Addressing
import Namespaces
import Netlink

@Suite struct EventTests {
    @Test func linkAndFDBChangesArriveAsEvents() async throws {
        try TestHost.requireRoot()
        let namespace = try NetworkNamespace.create(named: TestHost.uniqueName())
        defer { try? namespace.delete() }
        let subscription = try NetlinkEventSubscription(namespace: namespace)
        defer { subscription.cancel() }
        let session = try RouteNetlink(namespace: namespace)

        try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(vni: 600)), up: true))
        let index = try session.link(named: "vx0").index
        let remote = try IPAddress(parsing: "192.0.2.33")
        try session.fdbAppend(FDBEntry(linkIndex: index, mac: .zero, destination: remote))
        try session.fdbDelete(FDBEntry(linkIndex: index, mac: .zero, destination: remote))
        try session.linkDelete(name: "vx0")

        var sawLink = false, sawFDBAdd = false, sawFDBRemove = false, sawLinkRemove = false
        let deadline = ContinuousClock.now + .seconds(5)
        for await event in subscription.events {
            switch event {
            case .linkChanged(let link) where link.name == "vx0": sawLink = true
            case .fdbChanged(let entry) where entry.destination == remote: sawFDBAdd = true
            case .fdbRemoved(let entry) where entry.destination == remote: sawFDBRemove = true
            case .linkRemoved(let link) where link.name == "vx0": sawLinkRemove = true
            default: break
            }
            if (sawLink && sawFDBAdd && sawFDBRemove && sawLinkRemove) || ContinuousClock.now > deadline { break }
        }
        #expect(sawLink, "RTM_NEWLINK for vx0")
        #expect(sawFDBAdd, "RTM_NEWNEIGH (AF_BRIDGE) for the flood entry")
        #expect(sawFDBRemove, "RTM_DELNEIGH (AF_BRIDGE) for the flood entry")
        #expect(sawLinkRemove, "RTM_DELLINK for vx0")
    }
}

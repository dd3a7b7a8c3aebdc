import Foundation
import Namespaces
import Netlink
import Testing

/// rtnetlink errors that this machine's kernel (6.18) no longer produces but
/// the guest's Debian 6.1 kernel does: renaming a link that is up is EBUSY
/// before Linux 6.2 (live renaming came then). Runs where the IPVS suites
/// run, so in the VM it is required; elsewhere it accepts either outcome
/// of the kernel, and checks the error's words whenever there is one.
@Suite struct GuestKernelErrorTests {
    @Test func renamingAnUpLinkIsEBUSYOnKernelsBefore6_2() throws {
        try IPVSTestHost.withNamespaces(1) { namespaces in
            let session = try RouteNetlink(namespace: namespaces[0])
            try session.linkAdd(LinkSpec(name: "br0", kind: .bridge, up: true))
            do {
                try session.linkSet(name: "br0", newName: "br1")
                #expect(!IPVSEnvironment.required, "the guest's 6.1 kernel must refuse to rename an up link")
            } catch NetlinkError.kernel(let error) {
                #expect(error.errnoName == "EBUSY")
                #expect(error.description.hasPrefix("set link 'br0' in namespace '\(namespaces[0].name!)': Device or resource busy (EBUSY)"))
                let names = try session.links().map(\.name)
                #expect(names.contains("br0") && !names.contains("br1"), "nothing changed")
            }
        }
    }
}

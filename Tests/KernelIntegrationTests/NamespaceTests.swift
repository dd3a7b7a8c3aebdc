import Foundation
import Testing
import Namespaces
import Netlink

@Suite struct NamespaceTests {
    @Test func ourNamespacesAreIproute2sAndTheirsAreOurs() throws {
        try TestHost.requireRoot()
        let ours = TestHost.uniqueName()
        let theirs = TestHost.uniqueName()
        let namespace = try NetworkNamespace.create(named: ours)
        defer { try? namespace.delete() }
        try TestHost.run(["ip", "netns", "add", theirs])
        defer { _ = try? TestHost.run(["ip", "netns", "delete", theirs]) }

        let ipNames = try TestHost.json(["ip", "-j", "netns", "list"]).compactMap { $0["name"] as? String }
        #expect(ipNames.contains(ours))
        #expect(try NetworkNamespace.list().contains(theirs))
        #expect(try NetworkNamespace.named(theirs).exists)

        // A namespace made by ip is usable through our layer.
        let links = try RouteNetlink(namespace: try NetworkNamespace.named(theirs)).links()
        #expect(links.map(\.name) == ["lo"])

        try namespace.delete()
        #expect(!(try TestHost.json(["ip", "-j", "netns", "list"]).contains { $0["name"] as? String == ours }))
        #expect(!namespace.exists)
    }

    @Test func missingAndDuplicateNamespacesAreClearErrors() throws {
        try TestHost.requireRoot()
        let name = TestHost.uniqueName()
        #expect(throws: NamespaceError.notFound("'\(name)'")) { try NetworkNamespace.named(name).delete() }
        do {
            _ = try RouteNetlink(namespace: try NetworkNamespace.named(name))
            Issue.record("a session in a missing namespace must fail")
        } catch let error as NamespaceError {
            #expect(error.description == "network namespace '\(name)' (/run/netns/\(name)) does not exist")
        }
        let namespace = try NetworkNamespace.create(named: name)
        defer { try? namespace.delete() }
        #expect(throws: NamespaceError.alreadyExists(name)) { try NetworkNamespace.create(named: name) }
        #expect(namespace.exists, "a failed duplicate create must not disturb the existing namespace")
    }

    @Test func runDoesNotLeakTheNamespaceIntoTheCaller() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let callerLink = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self/ns/net")
            let inside = try namespaces[0].run {
                try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self/ns/net")
            }
            #expect(inside != callerLink)
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self/ns/net") == callerLink)
        }
    }
}

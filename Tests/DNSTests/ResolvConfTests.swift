import Addressing
import Foundation
import Testing
@testable import DNS

@Suite("resolv.conf")
struct ResolvConfTests {
    @Test("parses nameservers, search, options and comments; notes what it skipped")
    func parse() {
        let contents = ResolvConf.parse("""
        # a comment
        nameserver 10.255.255.53
        nameserver 127.0.0.53   ; systemd-resolved
        nameserver fe80::1%eth0
        nameserver 2001:db8::53
        domain first.example
        search corp.example lab.example
        options edns0 trust-ad
        options ndots:2
        sortlist 10.0.0.0
        """)
        #expect(contents.nameservers == [.v4(IPv4Address(10, 255, 255, 53)), .v4(IPv4Address(127, 0, 0, 53)), try! IPAddress(parsing: "2001:db8::53")])
        #expect(contents.search == ["corp.example", "lab.example"])
        #expect(contents.options == ["edns0", "trust-ad", "ndots:2"])
        #expect(contents.ignored == ["nameserver fe80::1%eth0", "sortlist 10.0.0.0"])
    }

    @Test("host upstreams on port 53, loopback kept unless asked to skip")
    func upstreams() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dns-resolvconf-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/resolv.conf"
        try "nameserver 127.0.0.53\nnameserver 10.1.2.3\nnameserver ::1\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try ResolvConf.hostUpstreams(path: path).map { "\($0.ipAddress!) \($0.port!)" } ==
                ["127.0.0.53 53", "10.1.2.3 53", "::1 53"])
        #expect(try ResolvConf.hostUpstreams(path: path, skipLoopback: true).map { $0.ipAddress! } == ["10.1.2.3"])
        #expect(throws: ResolvConf.Error.self) { try ResolvConf.hostUpstreams(path: directory + "/missing") }
    }

    @Test("writes the namespace's file atomically, as Docker's, and removes it")
    func writeAndRemove() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dns-netns-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = try ResolvConf.write(forNamespaceNamed: "w1", search: ["corp.example"], directory: directory)
        #expect(path == directory + "/w1/resolv.conf")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("\nnameserver 127.0.0.11\n"))
        #expect(text.contains("\nsearch corp.example\n"))
        #expect(text.hasSuffix("options ndots:0\n"))
        #expect(ResolvConf.parse(text).nameservers == [.v4(IPv4Address(127, 0, 0, 11))])
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        #expect((attributes[.posixPermissions] as? Int) == 0o644)
        // Rewriting replaces; no temporary file is left behind.
        try ResolvConf.write(forNamespaceNamed: "w1", directory: directory)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/w1") == ["resolv.conf"])
        try ResolvConf.remove(forNamespaceNamed: "w1", directory: directory)
        #expect(!FileManager.default.fileExists(atPath: directory + "/w1"))
        try ResolvConf.remove(forNamespaceNamed: "w1", directory: directory)
        // A writer killed before its rename left its temporary file: removed too.
        try ResolvConf.write(forNamespaceNamed: "w2", directory: directory)
        try "nameserver 127.0.0.11\n".write(toFile: directory + "/w2/resolv.conf.tmp.4242", atomically: false, encoding: .utf8)
        try ResolvConf.remove(forNamespaceNamed: "w2", directory: directory)
        #expect(!FileManager.default.fileExists(atPath: directory + "/w2"))
        #expect(throws: ResolvConf.Error.self) { try ResolvConf.write(forNamespaceNamed: "../x", directory: directory) }
    }
}

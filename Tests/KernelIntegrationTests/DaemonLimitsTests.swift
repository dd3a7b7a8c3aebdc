import Foundation
import Testing
import DockerAPI
import Namespaces
import TestKit
#if canImport(Glibc)
import Glibc
#endif

/// swarmnetd under what an operator, a careless script or a hostile client
/// does to it (issue 17): more than 1,024 descriptors, a second daemon on
/// the same state, huge or slow requests, a damaged identity, one namespace
/// named twice. Each test is the regression test of one crash or leak found
/// by probing the daemon.
@Suite(.serialized) struct DaemonLimitsTests {
    /// libnftables 1.0.6 puts its socket in an fd_set: above descriptor
    /// 1023 glibc aborted the daemon. 1,100 idle API connections, then a
    /// service whose backends make libnftables write tables.
    @Test func nftablesProgrammingWithMoreThan1024DescriptorsOpen() throws {
        raiseDescriptorLimit(to: 4096)
        try withTestbed(hosts: 1) { testbed in
            let pid = try #require(testbed.pid("h1"))
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.91.0.0/24", "web"])
            try testbed.swarmnet("h1", ["service", "create", "--network", "web", "svc"])
            var held: [Int32] = []
            defer { held.forEach { close($0) } }
            for _ in 0..<1_100 { held.append(try UnixHTTPClient.connectedSocket(path: testbed.socket("h1"))) }
            #expect(eventually(10) { openDescriptors(of: pid) > 1_100 }, "the daemon holds the connections: \(openDescriptors(of: pid))")

            // Each backend's namespace gets a table through libnftables.
            var workloads: [NetworkNamespace] = []
            for index in 0..<3 {
                let workload = try testbed.workload("lim\(index)")
                workloads.append(workload)
                try testbed.swarmnet("h1", ["network", "connect", "--service", "svc", "web", workload.name!])
            }
            let vip = try ServiceTests.vip(testbed, "svc")
            for workload in workloads {
                #expect(eventually(10) {
                    (try? TestHost.run(["ip", "netns", "exec", workload.name!, "nft", "-j", "list", "table", "ip", "swarmnet"]))?
                        .contains("\"\(vip)\"") == true
                }, "the VIP's table is in \(workload.name!)")
            }
            #expect(kill(pid, 0) == 0, "the daemon is alive")
            #expect(!testbed.log("h1").contains("FD_SETSIZE"))
            #expect(!testbed.log("h1").contains("no descriptor below 1024"), "libnftables always got a low descriptor")
            // And it still answers with the connections held.
            #expect(try testbed.docker("h1", ["version", "--format", "{{.Server.Version}}"]).contains("."))
        }
    }

    /// The idle daemon's memory is mostly the code it maps (issue 17's
    /// 30 MB target): it links FoundationEssentials only, not Foundation's
    /// own library and ICU (about 6 MB resident). Read from the running
    /// daemon's mappings, while it serves a network and a swarm.
    @Test func theDaemonMapsNeitherFoundationNorICU() throws {
        try withTestbed(hosts: 1) { testbed in
            try testbed.docker("h1", ["swarm", "init"])
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--attachable", "mapped"])
            #expect(try testbed.docker("h1", ["network", "ls", "--format", "{{.Name}}"]).contains("mapped"))
            let pid = try #require(testbed.pid("h1"))
            // cat: String(contentsOfFile:) gave a cut-short copy of it here.
            let libraries = Set(try TestHost.run(["cat", "/proc/\(pid)/maps"]).split(separator: "\n").compactMap {
                $0.split(separator: " ", omittingEmptySubsequences: true).last.map { String($0.split(separator: "/").last ?? "") }
            }.filter { $0.hasPrefix("lib") })
            #expect(libraries.contains("libFoundationEssentials.so"), "\(libraries.sorted())")
            #expect(libraries.isDisjoint(with: ["libFoundation.so", "libFoundationInternationalization.so", "lib_FoundationICU.so"]),
                    "\(libraries.sorted())")
        }
    }

    /// A second daemon started with the same flags used to delete the
    /// running one's socket; it now stops before touching anything.
    @Test func secondDaemonOnTheSameStateDirectoryIsRefused() throws {
        try withTestbed(hosts: 1) { testbed in
            let first = try #require(testbed.pid("h1"))
            let failure = try #require(throws: CommandFailure.self) {
                try TestHost.run(["timeout", "20", "nsenter"] + testbed.daemonArguments("h1"))
            }
            #expect(failure.stderr.contains("another swarmnetd (pid \(first)) is running with state directory \(testbed.stateDirectory("h1"))"),
                    "\(failure.stderr)")
            #expect(try testbed.docker("h1", ["version", "--format", "{{.Server.Version}}"]).contains("."), "the first daemon still serves")

            // Another state directory with the same socket: refused too, socket kept.
            let other = testbed.stateDirectory("h1") + "-other"
            let second = try #require(throws: CommandFailure.self) {
                try TestHost.run(["timeout", "20", "nsenter"] + testbed.daemonArguments("h1", stateDirectory: other))
            }
            #expect(second.stderr.contains("another daemon is serving \(testbed.socket("h1"))"), "\(second.stderr)")
            #expect(try testbed.docker("h1", ["version", "--format", "{{.Server.Version}}"]).contains("."))
        }
    }

    /// Responses larger than the socket's buffer were cut off for clients
    /// that sent `Connection: close` (the connection closed while the rest
    /// was still queued).
    @Test func largeResponsesReachConnectionCloseClients() throws {
        try withTestbed(hosts: 1, daemonArguments: ["--no-gossip"]) { testbed in
            let label = String(repeating: "x", count: 600_000)
            let body = #"{"Name":"big","Driver":"overlay","Labels":{"big":"\#(label)"}}"#
            let created = try httpExchange(testbed.socket("h1"), "POST", "/networks/create", body: body)
            #expect(created.status == 201, "\(created.status)")
            for _ in 0..<3 {
                let answer = try httpExchange(testbed.socket("h1"), "GET", "/networks/big")
                #expect(answer.status == 200)
                #expect(answer.body.count == answer.contentLength, "got \(answer.body.count) of \(answer.contentLength) bytes")
                let object = try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any]
                #expect(((object?["Labels"] as? [String: String])?["big"])?.count == label.count)
            }
            // Two requests sent at once on one connection (pipelined) get two answers, in order.
            let fd = try UnixHTTPClient.connectedSocket(path: testbed.socket("h1"))
            defer { close(fd) }
            try writeAll(fd, Array("GET /_ping HTTP/1.1\r\nHost: x\r\n\r\nGET /networks/big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
            let both = readUntilClosed(fd, seconds: 10)
            let text = String(decoding: both.bytes, as: UTF8.self)
            #expect(both.closed)
            #expect(text.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "two answers: \(text.prefix(300))")
            #expect(text.hasSuffix("}\n") || text.hasSuffix("}"), "the second answer is whole")
        }
    }

    /// A body over the limit is refused at its head (413), and a client
    /// that trickles a request head is cut off after the idle timeout.
    @Test func oversizedBodiesAndSlowClientsAreCutOff() throws {
        try withTestbed(hosts: 1, daemonArguments: ["--api-idle-timeout", "2", "--api-max-body", "1048576"]) { testbed in
            let pid = try #require(testbed.pid("h1"))
            let before = residentKilobytes(pid)
            // 200 MB announced: refused before any of it is read.
            let fd = try UnixHTTPClient.connectedSocket(path: testbed.socket("h1"))
            defer { close(fd) }
            try writeAll(fd, Array("POST /networks/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200000000\r\n\r\n{".utf8))
            let refused = readUntilClosed(fd, seconds: 5)
            #expect(String(decoding: refused.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 413"), "\(String(decoding: refused.bytes, as: UTF8.self))")
            #expect(String(decoding: refused.bytes, as: UTF8.self).contains("request body too large: the limit is 1048576 bytes"))
            #expect(refused.closed)
            // Chunked, no length: cut off when the limit is passed.
            let chunked = try UnixHTTPClient.connectedSocket(path: testbed.socket("h1"))
            defer { close(chunked) }
            try writeAll(chunked, Array("POST /networks/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
            let chunk = Array("100000\r\n".utf8) + [UInt8](repeating: 0x20, count: 0x100000) + Array("\r\n".utf8)
            try? writeAll(chunked, chunk)
            try? writeAll(chunked, chunk)
            let cut = readUntilClosed(chunked, seconds: 5)
            #expect(String(decoding: cut.bytes, as: UTF8.self).hasPrefix("HTTP/1.1 413"))
            #expect(residentKilobytes(pid) < before + 50_000, "the daemon did not buffer the bodies: \(before) kB, then \(residentKilobytes(pid)) kB")

            // 50 clients that send part of a head and then a byte a second.
            var slow: [Int32] = []
            defer { slow.forEach { close($0) } }
            for _ in 0..<50 {
                let fd = try UnixHTTPClient.connectedSocket(path: testbed.socket("h1"))
                try writeAll(fd, Array("GET /version HTTP/1.1\r\nHost: x\r\n".utf8))
                slow.append(fd)
            }
            let started = Date()
            var closed = 0
            while Date().timeIntervalSince(started) < 8, closed < slow.count {
                closed = 0
                for fd in slow {
                    var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    if poll(&poller, 1, 0) == 1 && poller.revents & Int16(POLLIN | POLLHUP) != 0 { closed += 1 } else { _ = try? writeAll(fd, Array("X".utf8)) }
                }
                usleep(500_000)
            }
            #expect(closed == slow.count, "every slow client is cut off after the 2 s idle timeout: \(closed) of \(slow.count)")
            // A client that speaks normally is still answered.
            #expect(try testbed.docker("h1", ["version", "--format", "{{.Server.Version}}"]).contains("."))
        }
    }

    /// A damaged node identity stops the daemon (it used to take a new one
    /// and remove every sandbox as another node's leftovers); a fresh state
    /// directory with the same prefix leaves the sandboxes it cannot prove
    /// its own.
    @Test func damagedIdentityStopsTheDaemonAndForeignSandboxesStay() throws {
        try withTestbed(hosts: 1) { testbed in
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.92.0.0/24", "web"])
            let workload = try testbed.workload("idw")
            try testbed.docker("h1", ["network", "connect", "web", workload.name!])
            let sandboxes = try NetworkNamespace.list().filter { $0.hasPrefix(testbed.lab.prefix + "h1-ov-") }
            #expect(sandboxes.count == 1)
            let sandbox = try #require(sandboxes.first)
            let nodeID = try String(contentsOfFile: testbed.stateDirectory("h1") + "/node-id", encoding: .utf8)
            // The bridge names its owner (ip -d link is the second reader).
            let bridge = try TestHost.json(["ip", "-n", sandbox, "-j", "-d", "link", "show", "br0"]).first
            #expect(bridge?["ifalias"] as? String == "swarmnet node \(nodeID)")

            testbed.stop("h1")
            try "not-an-id\n".write(toFile: testbed.stateDirectory("h1") + "/node-id", atomically: true, encoding: .utf8)
            let failure = try #require(throws: CommandFailure.self) { try TestHost.run(["timeout", "20", "nsenter"] + testbed.daemonArguments("h1")) }
            #expect(failure.stderr.contains("node identity \(testbed.stateDirectory("h1"))/node-id is damaged"), "\(failure.stderr)")
            #expect(try NetworkNamespace.list().contains(sandbox), "nothing was removed")

            // A fresh state directory: a new identity, which leaves the old one's sandbox.
            let fresh = testbed.stateDirectory("h1") + "-fresh"
            try testbed.start("h1", stateDirectory: fresh)
            #expect(eventually(5) { testbed.log("h1").contains("leaving a sandbox that is not proven to be this node's") })
            usleep(1_500_000) // a reconcile interval more
            #expect(try NetworkNamespace.list().contains(sandbox), "the other identity's sandbox stays")
            #expect(try TestHost.run(["ip", "netns", "exec", workload.name!, "ip", "-j", "addr"]).contains("10.92.0."))
            testbed.stop("h1")

            // The node itself, back with its identity: its leftover (no network wants it now) goes.
            try nodeID.write(toFile: testbed.stateDirectory("h1") + "/node-id", atomically: true, encoding: .utf8)
            for file in ["state.json", "state.journal"] { try? FileManager.default.removeItem(atPath: testbed.stateDirectory("h1") + "/" + file) }
            try testbed.start("h1")
            #expect(eventually(5) { (try? NetworkNamespace.list().contains(sandbox)) == false }, "this node's own leftover is removed")
        }
    }

    /// One namespace named by two paths (its ip netns name and a bind
    /// mount elsewhere) is one namespace: the second connect is refused.
    @Test func oneNamespaceByTwoPathsIsAttachedOnce() throws {
        try withTestbed(hosts: 1) { testbed in
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.93.0.0/24", "web"])
            let workload = try testbed.workload("twice")
            let alias = "/run/swarmnet-test/\(testbed.lab.prefix)alias"
            FileManager.default.createFile(atPath: alias, contents: nil)
            try TestHost.run(["mount", "--bind", workload.path, alias])
            defer {
                _ = try? TestHost.run(["umount", alias])
                unlink(alias)
            }
            try testbed.docker("h1", ["network", "connect", "web", workload.name!])
            let failure = try #require(throws: CommandFailure.self) { try testbed.docker("h1", ["network", "connect", "web", alias]) }
            #expect(failure.stderr.contains("is already attached to network web (as \(workload.path))"), "\(failure.stderr)")
            let links = try TestHost.json(["ip", "-n", workload.name!, "-j", "link"]).compactMap { $0["ifname"] as? String }
            #expect(links.filter { $0 != "lo" }.count == 1, "one interface only: \(links)")
        }
    }

    // MARK: - Helpers

    struct Exchange {
        var status: Int
        var contentLength: Int
        var body: [UInt8]
    }

    /// One request with `Connection: close`, read to the end.
    func httpExchange(_ socket: String, _ method: String, _ path: String, body: String? = nil) throws -> Exchange {
        let fd = try UnixHTTPClient.connectedSocket(path: socket)
        defer { close(fd) }
        let payload = Array((body ?? "").utf8)
        var head = "\(method) \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        if body != nil { head += "Content-Type: application/json\r\nContent-Length: \(payload.count)\r\n" }
        try writeAll(fd, Array((head + "\r\n").utf8) + payload)
        let (bytes, closed) = readUntilClosed(fd, seconds: 10)
        #expect(closed, "the server closes after answering")
        let separator = Array("\r\n\r\n".utf8)
        guard let end = (0..<max(0, bytes.count - 3)).first(where: { Array(bytes[$0..<$0 + 4]) == separator }) else {
            throw CommandFailure(arguments: [method, path], status: -1, stderr: "no response head in \(bytes.count) bytes")
        }
        let headText = String(decoding: bytes[..<end], as: UTF8.self)
        let status = Int(headText.split(separator: " ").dropFirst().first ?? "") ?? 0
        let length = headText.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
            .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? -1
        return Exchange(status: status, contentLength: length, body: Array(bytes[(end + 4)...]))
    }

    func residentKilobytes(_ pid: Int32) -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
}

import Addressing
import DNS
import Foundation
import Namespaces
import NIOCore
import Testing

/// The embedded server in a real namespace, read by dig, getent and Python
/// run inside that namespace. Upstreams are dnsmasq in another test
/// namespace; nothing leaves the machine.
@Suite("embedded DNS server (root)", .serialized)
struct EmbeddedDNSServerTests {
    static func ip(_ text: String) -> IPAddress { try! IPAddress(parsing: text) }

    static let web = [DNSNameRecords(network: "front", endpointMode: .vip, virtualIPs: [ip("10.0.1.2")],
                                     backends: [ip("10.0.1.5"), ip("10.0.1.6"), ip("10.0.1.7")])]
    static let cache = [DNSNameRecords(network: "back", endpointMode: .dnsrr, backends: [ip("10.0.2.5"), ip("10.0.2.6")])]

    static func table() -> DNSRecordTable { DNSRecordTable(["web": web, "cache": cache]) }

    @Test("dig over UDP and TCP: VIP, tasks., dnsrr, AAAA empty, PTR; no upstream means SERVFAIL")
    func servesUDPAndTCP() async throws {
        try await DNSTestHost.withNamespaces(1) { namespaces in
            let workload = namespaces[0]
            try await DNSTestHost.withServer(in: workload, records: Self.table()) { server in
                for transport in ["+notcp", "+tcp"] {
                    let at = ["@127.0.0.11", transport]
                    #expect(try DNSTestHost.short(workload, at + ["web"]) == ["10.0.1.2"])
                    #expect(try DNSTestHost.short(workload, at + ["tasks.web"]) == ["10.0.1.5", "10.0.1.6", "10.0.1.7"])
                    #expect(try DNSTestHost.short(workload, at + ["CACHE."]) == ["10.0.2.5", "10.0.2.6"])
                    #expect(try DNSTestHost.short(workload, at + ["-x", "10.0.1.2"]) == ["web."])
                    let aaaa = DNSTestHost.status(try DNSTestHost.dig(workload, at + ["web", "AAAA", "+tries=1"]))
                    #expect(aaaa.status == "NOERROR" && aaaa.answers == 0)
                    let unknown = DNSTestHost.status(try DNSTestHost.dig(workload, at + ["www.example.test", "+tries=1"]))
                    #expect(unknown.status == "SERVFAIL")
                }
                let full = try DNSTestHost.dig(workload, ["@127.0.0.11", "tasks.web", "+tries=1"])
                #expect(full.contains("600\tIN\tA\t10.0.1.5"))
                #expect(DNSTestHost.status(full).flags.contains("ra"))
                // The shuffle: several dig runs do not all give one order.
                var orders = Set<String>()
                for _ in 0..<12 {
                    orders.insert(try DNSTestHost.dig(workload, ["@127.0.0.11", "tasks.web", "+short", "+tries=1"]))
                }
                #expect(orders.count > 1)
                #expect(server.counters.answered >= 24)
            }
        }
    }

    @Test("a workload's resolv.conf (/etc/netns/NS/resolv.conf) sends getent and dig without @ to the server")
    func resolvConf() async throws {
        try await DNSTestHost.withNamespaces(1) { namespaces in
            let workload = namespaces[0]
            let path = try ResolvConf.write(forNamespaceNamed: workload.name!)
            #expect(path == "/etc/netns/\(workload.name!)/resolv.conf")
            defer { try? ResolvConf.remove(forNamespaceNamed: workload.name!) }
            try await DNSTestHost.withServer(in: workload, records: Self.table()) { _ in
                let seen = try DNSTestHost.run(["ip", "netns", "exec", workload.name!, "cat", "/etc/resolv.conf"])
                #expect(seen.contains("nameserver 127.0.0.11") && seen.contains("options ndots:0"))
                let hosts = try DNSTestHost.run(["ip", "netns", "exec", workload.name!, "getent", "ahostsv4", "web"])
                #expect(hosts.hasPrefix("10.0.1.2 "))
                let plain = try DNSTestHost.run(["ip", "netns", "exec", workload.name!, "getent", "hosts", "cache"])
                #expect(["10.0.2.5", "10.0.2.6"].contains(plain.split(separator: " ").first.map(String.init) ?? ""))
                #expect(try DNSTestHost.short(workload, ["tasks.cache"]) == ["10.0.2.5", "10.0.2.6"])
            }
            try ResolvConf.remove(forNamespaceNamed: workload.name!)
            #expect(!FileManager.default.fileExists(atPath: path))
        }
    }

    @Test("forwarding to dnsmasq in another namespace over a veth: UDP, TCP, a truncated answer retried over TCP")
    func forwarding() async throws {
        // workload: the server; daemon: where forwarding sockets open;
        // resolver: dnsmasq on 198.51.100.2, reached from daemon by veth.
        try await DNSTestHost.withNamespaces(3) { namespaces in
            let (workload, daemon, resolver) = (namespaces[0], namespaces[1], namespaces[2])
            try DNSTestHost.link(daemon, "198.51.100.1", resolver, "198.51.100.2")
            let big = (1...60).map { "10.1.0.\($0) big.example.test" }
            // edns-packet-max 512: dnsmasq truncates big answers over UDP
            // even for an EDNS client, so the TCP retry is what delivers.
            let dnsmasq = try DNSTestHost.Dnsmasq(in: resolver, address: "198.51.100.2",
                                                  hosts: ["10.1.0.200 host.example.test"] + big, extra: ["--edns-packet-max=512"])
            defer { dnsmasq.stop() }
            try await DNSTestHost.waitForResolver(from: daemon, server: "198.51.100.2", name: "www.example.test")
            var configuration = DNSServerConfiguration()
            configuration.forwardingNamespace = daemon
            let upstream = try SocketAddress(ipAddress: "198.51.100.2", port: 53)
            try await DNSTestHost.withServer(in: workload, records: Self.table(), upstreams: [upstream], configuration: configuration) { server in
                #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "www.example.test"]) == ["192.0.2.99"])
                #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "+tcp", "host.example.test"]) == ["10.1.0.200"])
                #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "web"]) == ["10.0.1.2"])
                // dnsmasq, with no upstream of its own, refuses AAAA for its
                // --address domain; the only upstream's REFUSED is passed on.
                let aaaa = DNSTestHost.status(try DNSTestHost.dig(workload, ["@127.0.0.11", "www.example.test", "AAAA", "+tries=1"]))
                #expect(aaaa.status == "REFUSED" && aaaa.answers == 0)

                // EDNS client, 4096 bytes: the UDP answer from dnsmasq is
                // truncated, our TCP retry gets all 60 and they fit.
                let whole = try DNSTestHost.dig(workload, ["@127.0.0.11", "big.example.test", "+bufsize=4096", "+ignore", "+tries=1"])
                #expect(DNSTestHost.status(whole).answers == 60)
                #expect(!DNSTestHost.status(whole).flags.contains("tc"))
                // No EDNS: 512 bytes hold 29 records, so the client gets TC
                // and asks again over TCP itself.
                let cut = try DNSTestHost.dig(workload, ["@127.0.0.11", "big.example.test", "+noedns", "+ignore", "+tries=1"])
                #expect(DNSTestHost.status(cut).flags.contains("tc"))
                let retried = try DNSTestHost.dig(workload, ["@127.0.0.11", "big.example.test", "+noedns", "+tries=1"])
                #expect(DNSTestHost.status(retried).answers == 60)
                #expect(server.counters.forwarded >= 6)

                // And through the workload's resolv.conf.
                try ResolvConf.write(forNamespaceNamed: workload.name!)
                let hosts = try DNSTestHost.run(["ip", "netns", "exec", workload.name!, "getent", "ahostsv4", "host.example.test"])
                #expect(hosts.hasPrefix("10.1.0.200 "))
            }
        }
    }

    @Test("a dead upstream gives SERVFAIL quickly: a closed port at once, a silent address at the timeout")
    func deadUpstream() async throws {
        try await DNSTestHost.withNamespaces(3) { namespaces in
            let (workload, daemon, resolver) = (namespaces[0], namespaces[1], namespaces[2])
            try DNSTestHost.link(daemon, "198.51.100.5", resolver, "198.51.100.6")
            // Nothing listens on 198.51.100.6:53 (ICMP port unreachable);
            // 198.51.100.7 is nobody (no ARP reply, silence). A silent
            // resolver: nft drop would need nftables; an absent host does.
            var configuration = DNSServerConfiguration()
            configuration.forwardingNamespace = daemon
            configuration.upstreamTimeout = .milliseconds(300)
            let closed = try SocketAddress(ipAddress: "198.51.100.6", port: 53)
            let absent = try SocketAddress(ipAddress: "198.51.100.7", port: 53)
            for (upstreams, bound) in [([closed], 0.5), ([absent], 1.2), ([closed, absent], 1.2)] {
                try await DNSTestHost.withServer(in: workload, records: Self.table(), upstreams: upstreams,
                                                 configuration: configuration) { _ in
                    let start = ContinuousClock.now
                    let output = try DNSTestHost.dig(workload, ["@127.0.0.11", "www.example.test", "+tries=1", "+time=5"])
                    let elapsed = ContinuousClock.now - start
                    #expect(DNSTestHost.status(output).status == "SERVFAIL")
                    #expect(elapsed < .seconds(bound), "\(upstreams): SERVFAIL after \(elapsed)")
                    print("dead upstream \(upstreams.map { $0.ipAddress ?? "?" }): SERVFAIL after \(elapsed) (dig included)")
                }
            }
        }
    }

    @Test("answers follow the record source: a removed backend disappears, a new service appears")
    func recordsChange() async throws {
        try await DNSTestHost.withNamespaces(1) { namespaces in
            let workload = namespaces[0]
            let table = Self.table()
            try await DNSTestHost.withServer(in: workload, records: table) { _ in
                #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "tasks.web"]) == ["10.0.1.5", "10.0.1.6", "10.0.1.7"])
                table.set("web", [DNSNameRecords(network: "front", endpointMode: .vip, virtualIPs: [Self.ip("10.0.1.2")],
                                                 backends: [Self.ip("10.0.1.5"), Self.ip("10.0.1.7")])])
                for _ in 0..<5 {
                    #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "tasks.web"]) == ["10.0.1.5", "10.0.1.7"])
                }
                #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "api"]) == [])
                table.set("api", [DNSNameRecords(network: "front", endpointMode: .dnsrr, backends: [Self.ip("10.0.1.9")])])
                #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "api"]) == ["10.0.1.9"])
                table.set("web", [])
                let gone = DNSTestHost.status(try DNSTestHost.dig(workload, ["@127.0.0.11", "web", "+tries=1"]))
                #expect(gone.status == "SERVFAIL")   // no longer ours, and no upstream here
            }
        }
    }

    @Test("malformed packets: FORMERR when the header is readable, silence otherwise, and the server serves on")
    func malformed() async throws {
        try await DNSTestHost.withNamespaces(1) { namespaces in
            let workload = namespaces[0]
            try await DNSTestHost.withServer(in: workload, records: Self.table()) { server in
                let output = try DNSTestHost.python(workload, """
                import os, socket, random
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.3)
                def ask(packet):
                    s.sendto(packet, ("127.0.0.11", 53))
                    try: return s.recv(65535)
                    except socket.timeout: return None
                # Readable header (ID 0xbeef, QD 1) and a question cut short.
                r = ask(bytes.fromhex("beef01000001000000000000") + b"\\x03web")
                print("formerr", r is not None and r[:2] == b"\\xbe\\xef" and r[3] & 15 == 1)
                # A loop: the question's name points at itself.
                r = ask(bytes.fromhex("beef01000001000000000000c00c00010001"))
                print("loop", r is not None and r[3] & 15 == 1)
                print("short", ask(b"\\x01\\x02\\x03") is None)
                print("response", ask(bytes.fromhex("beef81800000000000000000")) is None)
                random.seed(5)
                for _ in range(300):
                    s.sendto(bytes(random.getrandbits(8) for _ in range(random.randrange(0, 600))), ("127.0.0.11", 53))
                s.sendto(b"", ("127.0.0.11", 53))
                """)
                #expect(output.contains("formerr True"))
                #expect(output.contains("loop True"))
                #expect(output.contains("short True"))
                #expect(output.contains("response True"))
                // Garbage over TCP too: a frame of junk, then a half frame and a close.
                _ = try DNSTestHost.python(workload, """
                import socket
                c = socket.create_connection(("127.0.0.11", 53), timeout=1)
                c.sendall(b"\\x00\\x05hello\\x00\\x30abc"); c.close()
                """)
                #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "web"]) == ["10.0.1.2"])
                #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "+tcp", "web"]) == ["10.0.1.2"])
                #expect(server.counters.malformed >= 2)
            }
        }
    }

    @Test("TCP: several queries on one connection, answered; an idle connection is closed")
    func tcpConnections() async throws {
        try await DNSTestHost.withNamespaces(1) { namespaces in
            let workload = namespaces[0]
            var configuration = DNSServerConfiguration()
            configuration.tcpIdleTimeout = .milliseconds(300)
            try await DNSTestHost.withServer(in: workload, records: Self.table(), configuration: configuration) { server in
                let output = try DNSTestHost.python(workload, """
                import socket, struct, time
                def query(qid, name):
                    body = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
                    for label in name.split("."): body += bytes([len(label)]) + label.encode()
                    return body + b"\\x00\\x00\\x01\\x00\\x01"
                c = socket.create_connection(("127.0.0.11", 53), timeout=2)
                frames = b"".join(struct.pack(">H", len(q)) + q for q in [query(1, "web"), query(2, "tasks.web"), query(3, "cache")])
                c.sendall(frames)
                buffer = b""; ids = []
                while len(ids) < 3:
                    chunk = c.recv(65535)
                    if not chunk: break
                    buffer += chunk
                    while len(buffer) >= 2 and len(buffer) >= 2 + struct.unpack(">H", buffer[:2])[0]:
                        n = struct.unpack(">H", buffer[:2])[0]; m = buffer[2:2+n]; buffer = buffer[2+n:]
                        ids.append((struct.unpack(">H", m[:2])[0], struct.unpack(">H", m[6:8])[0]))
                print("answers", sorted(ids))
                start = time.time(); c.settimeout(3)
                closed = c.recv(1) == b""
                print("idle-closed", closed, round(time.time() - start, 2))
                """)
                #expect(output.contains("answers [(1, 1), (2, 3), (3, 2)]"))
                #expect(output.contains("idle-closed True"))
                try await Task.sleep(for: .milliseconds(50))
                #expect(server.tcpConnections == 0)
            }
        }
    }

    @Test("lo down: starting fails with a clear error, and nothing is left listening")
    func loopbackDown() async throws {
        try await DNSTestHost.withNamespaces(1) { namespaces in
            let workload = namespaces[0]
            try DNSTestHost.run(["ip", "-n", workload.name!, "link", "set", "lo", "down"])
            await #expect(throws: EmbeddedDNSServer.Error.self) {
                try await DNSTestHost.withServer(in: workload, records: Self.table()) { (_: EmbeddedDNSServer) async throws -> Void in }
            }
            try DNSTestHost.run(["ip", "-n", workload.name!, "link", "set", "lo", "up"])
            try await DNSTestHost.withServer(in: workload, records: Self.table()) { (server: EmbeddedDNSServer) async throws -> Void in
                #expect(try DNSTestHost.short(workload, ["@127.0.0.11", "web"]) == ["10.0.1.2"])
                #expect(server.address.ipAddress == "127.0.0.11")
            }
            // Stopped: the port is free again; a second start in the same namespace works.
            try await DNSTestHost.withServer(in: workload, records: Self.table()) { (_: EmbeddedDNSServer) async throws -> Void in }
        }
    }

    @Test("how long a query takes: local names and forwarded names, p50 and p99 from a client in the namespace")
    func latency() async throws {
        try await DNSTestHost.withNamespaces(3) { namespaces in
            let (workload, daemon, resolver) = (namespaces[0], namespaces[1], namespaces[2])
            try DNSTestHost.link(daemon, "198.51.100.9", resolver, "198.51.100.10")
            let dnsmasq = try DNSTestHost.Dnsmasq(in: resolver, address: "198.51.100.10", hosts: [])
            defer { dnsmasq.stop() }
            try await DNSTestHost.waitForResolver(from: daemon, server: "198.51.100.10", name: "www.example.test")
            var configuration = DNSServerConfiguration()
            configuration.forwardingNamespace = daemon
            let upstream = try SocketAddress(ipAddress: "198.51.100.10", port: 53)
            // The same client against dnsmasq directly, for scale: from the
            // daemon namespace, one veth hop, as our forwarder does.
            let measure = { (namespace: NetworkNamespace, server: String, name: String, count: Int) throws -> String in
                try DNSTestHost.python(namespace, """
                import socket, struct, time
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
                q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
                for label in "\(name)".split("."): q += bytes([len(label)]) + label.encode()
                q += b"\\x00\\x00\\x01\\x00\\x01"
                times = []
                for i in range(\(count)):
                    start = time.perf_counter(); s.sendto(q, ("\(server)", 53)); s.recv(65535)
                    times.append((time.perf_counter() - start) * 1e6)
                times.sort()
                print("p50 %.0f us, p99 %.0f us" % (times[len(times)//2], times[int(len(times)*0.99)]))
                """).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            try await DNSTestHost.withServer(in: workload, records: Self.table(), upstreams: [upstream], configuration: configuration) { _ in
                let local = try measure(workload, "127.0.0.11", "tasks.web", 1000)
                let forwarded = try measure(workload, "127.0.0.11", "www.example.test", 300)
                let direct = try measure(daemon, "198.51.100.10", "www.example.test", 300)
                print("query latency: local name \(local); forwarded \(forwarded); dnsmasq asked directly \(direct)")
                let dig = try DNSTestHost.dig(workload, ["@127.0.0.11", "tasks.web", "+tries=1"])
                if let line = dig.split(separator: "\n").first(where: { $0.contains("Query time") }) { print("dig: \(line)") }
            }
        }
    }
}

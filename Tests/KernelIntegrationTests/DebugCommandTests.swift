import Foundation
import Testing
import Addressing
import Namespaces
import Netlink

/// The `swarmnet debug` commands, run as an operator would, must show what
/// iproute2 shows for the same namespace.
@Suite struct DebugCommandTests {
    private func swarmnetJSON(_ arguments: [String]) throws -> [[String: Any]] {
        let text = try TestHost.run([TestHost.swarmnetExecutable] + arguments + ["--format", "json"])
        return try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
    }

    /// A small topology: a bridge with an address, a vxlan port with a
    /// flood entry and a remote endpoint, a veth, a route and a neighbour.
    private func buildTopology(_ namespace: NetworkNamespace, peer: NetworkNamespace) throws {
        let session = try RouteNetlink(namespace: namespace)
        try session.linkAdd(LinkSpec(name: "br0", kind: .bridge, mtu: 1450, up: true))
        try session.addressAdd(try IPPrefix(parsing: "10.0.9.1/24"), device: "br0")
        try session.linkAdd(LinkSpec(name: "vxlan0", kind: .vxlan(VXLANOptions(vni: 4100)), mtu: 1450, master: "br0", up: true))
        try session.linkAdd(LinkSpec(name: "veth0", kind: .veth(peer: VethPeer(name: "eth0", namespace: peer, up: true)),
                                     mtu: 1450, master: "br0", up: true))
        let vxlan = try session.link(named: "vxlan0").index
        try session.fdbAppend(FDBEntry(linkIndex: vxlan, mac: .zero, destination: try IPAddress(parsing: "192.0.2.2")))
        try session.fdbAppend(FDBEntry(linkIndex: vxlan, mac: try MACAddress(parsing: "02:42:0a:00:09:05"),
                                       destination: try IPAddress(parsing: "192.0.2.2")))
        try session.neighbourReplace(NeighbourEntry(linkIndex: try session.link(named: "br0").index,
                                                    address: try IPAddress(parsing: "10.0.9.5"),
                                                    mac: try MACAddress(parsing: "02:42:0a:00:09:05")))
        try session.routeAdd(RouteEntry(destination: try IPPrefix(parsing: "10.0.10.0/24"), gateway: try IPAddress(parsing: "10.0.9.254")))
    }

    @Test func debugCommandsAgreeWithIproute2() throws {
        try TestHost.withNamespaces(2) { namespaces in
            let namespace = namespaces[0]
            let name = namespace.name!
            try buildTopology(namespace, peer: namespaces[1])

            let ipLinks = try TestHost.json(["ip", "-n", name, "-j", "-d", "link", "show"])
            let ourLinks = try swarmnetJSON(["debug", "links", "--netns", name])
            func summary(_ link: [String: Any]) -> String {
                let kind = (link["linkinfo"] as? [String: Any])?["info_kind"] as? String ?? link["kind"] as? String ?? "-"
                return "\(link["ifname"]!) \(link["mtu"]!) \(link["master"] as? String ?? "-") \(kind) \(link["address"] as? String ?? "-")"
            }
            #expect(Set(ourLinks.map(summary)) == Set(ipLinks.map(summary)))
            let vx = try #require(ourLinks.first { $0["ifname"] as? String == "vxlan0" }?["vxlan"] as? [String: Any])
            #expect(vx["id"] as? Int == 4100 && vx["port"] as? Int == 4789 && vx["learning"] as? Bool == false)
            #expect(Set((ourLinks.first { $0["ifname"] as? String == "br0" }?["flags"] as? [String]) ?? [])
                    == Set((ipLinks.first { $0["ifname"] as? String == "br0" }?["flags"] as? [String]) ?? []))

            let ipAddrs = try TestHost.json(["ip", "-n", name, "-j", "addr", "show"]).flatMap { link in
                ((link["addr_info"] as? [[String: Any]]) ?? []).map { "\(link["ifname"]!) \($0["local"]!)/\($0["prefixlen"]!)" }
            }
            let ourAddrs = try swarmnetJSON(["debug", "addrs", "--netns", name]).map { "\($0["ifname"]!) \($0["local"]!)/\($0["prefixlen"]!)" }
            #expect(Set(ourAddrs) == Set(ipAddrs))

            let ipRoutes = try TestHost.json(["ip", "-n", name, "-j", "-4", "route", "show"]).map {
                "\($0["dst"]!) \($0["gateway"] as? String ?? "-") \($0["dev"] as? String ?? "-") \($0["protocol"] as? String ?? "boot")"
            }
            let ourRoutes = try swarmnetJSON(["debug", "routes", "--netns", name])
                .filter { !(($0["dst"] as? String) ?? "").contains(":") }
                .map { "\($0["dst"]!) \($0["gateway"] as? String ?? "-") \($0["dev"] as? String ?? "-") \($0["protocol"]!)" }
            #expect(Set(ourRoutes) == Set(ipRoutes))

            let ipNeigh = try TestHost.json(["ip", "-n", name, "-j", "neigh", "show", "nud", "permanent"]).map {
                "\($0["dst"]!) \($0["lladdr"] as? String ?? "-") \($0["dev"]!)"
            }
            let ourNeigh = try swarmnetJSON(["debug", "neigh", "--netns", name])
                .filter { ($0["state"] as? [String]) == ["PERMANENT"] }
                .map { "\($0["dst"]!) \($0["lladdr"] as? String ?? "-") \($0["dev"]!)" }
            #expect(Set(ourNeigh) == Set(ipNeigh))

            let ipFDB = try TestHost.json(["bridge", "-n", name, "-j", "fdb", "show", "dev", "vxlan0"]).map {
                "\($0["mac"]!) \($0["dst"] as? String ?? "-") \($0["state"] as? String ?? "-") \(($0["flags"] as? [String] ?? []).sorted())"
            }
            let ourFDB = try swarmnetJSON(["debug", "fdb", "--netns", name, "--dev", "vxlan0"]).map {
                "\($0["mac"]!) \($0["dst"] as? String ?? "-") \($0["state"] as? String ?? "-") \(($0["flags"] as? [String] ?? []).sorted())"
            }
            #expect(Set(ourFDB) == Set(ipFDB))
            #expect(ourFDB.contains { $0.hasPrefix("00:00:00:00:00:00 192.0.2.2 permanent") })

            let netns = try swarmnetJSON(["debug", "netns"])
            #expect(netns.contains { $0["name"] as? String == name && $0["valid"] as? Bool == true })

            // The table form is readable: a header and one line per link.
            let table = try TestHost.run([TestHost.swarmnetExecutable, "debug", "links", "--netns", name])
            let lines = table.split(separator: "\n")
            #expect(lines.first?.hasPrefix("INDEX") == true)
            #expect(lines.count == ipLinks.count + 1)
            #expect(table.contains("vni 4100 dstport 4789"))
        }
    }

    @Test func aMissingNamespaceIsAClearErrorAndExitStatus() throws {
        try TestHost.requireRoot()
        let name = TestHost.uniqueName()
        do {
            try TestHost.run([TestHost.swarmnetExecutable, "debug", "links", "--netns", name])
            Issue.record("a missing namespace must fail")
        } catch let failure as CommandFailure {
            #expect(failure.status != 0)
            #expect(failure.stderr.contains("network namespace '\(name)' (/run/netns/\(name)) does not exist"))
        }
    }
}

import Foundation
import Testing
import Addressing
import Namespaces
import Netlink

@Suite struct AddressRouteNeighbourTests {
    @Test func addressesOfBothFamilies() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let name = namespaces[0].name!
            let session = try RouteNetlink(namespace: namespaces[0])
            try session.linkAdd(LinkSpec(name: "br0", kind: .bridge, up: true))
            try session.addressAdd(try IPPrefix(parsing: "10.77.0.1/24"), device: "br0")
            try session.addressAdd(try IPPrefix(parsing: "fd77::1/64"), device: "br0")

            let ip = try TestHost.json(["ip", "-n", name, "-j", "addr", "show", "dev", "br0"])
            let addresses = ((ip.first?["addr_info"] as? [[String: Any]]) ?? []).map {
                "\($0["local"] as! String)/\($0["prefixlen"] as! Int)"
            }
            #expect(addresses.contains("10.77.0.1/24"))
            #expect(addresses.contains("fd77::1/64"))
            let ours = try session.addresses().map(\.prefix.description)
            #expect(ours.contains("10.77.0.1/24") && ours.contains("fd77::1/64"))

            do {
                try session.addressAdd(try IPPrefix(parsing: "10.77.0.1/24"), device: "br0")
                Issue.record("a duplicate address must fail")
            } catch NetlinkError.kernel(let error) {
                #expect(error.errnoName == "EEXIST")
                #expect(error.description.hasPrefix("add address 10.77.0.1/24 to 'br0'"))
            }
            try session.addressDelete(try IPPrefix(parsing: "10.77.0.1/24"), device: "br0")
            let after = try TestHost.json(["ip", "-n", name, "-j", "-4", "addr", "show", "dev", "br0"])
            #expect(((after.first?["addr_info"] as? [[String: Any]]) ?? []).isEmpty)
        }
    }

    @Test func routesWithAndWithoutGateways() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let name = namespaces[0].name!
            let session = try RouteNetlink(namespace: namespaces[0])
            try session.linkAdd(LinkSpec(name: "br0", kind: .bridge, up: true))
            try session.addressAdd(try IPPrefix(parsing: "10.77.0.1/24"), device: "br0")
            let index = try session.link(named: "br0").index
            let viaGateway = RouteEntry(destination: try IPPrefix(parsing: "10.78.0.0/24"),
                                        gateway: try IPAddress(parsing: "10.77.0.254"), priority: 50)
            let defaultRoute = RouteEntry(destination: nil, gateway: try IPAddress(parsing: "10.77.0.254"))
            let onLink = RouteEntry(destination: try IPPrefix(parsing: "10.79.0.0/16"), outputIndex: index)
            try session.routeAdd(viaGateway)
            try session.routeAdd(defaultRoute)
            try session.routeAdd(onLink)

            let ip = try TestHost.json(["ip", "-n", name, "-j", "route", "show"])
            let route = try #require(ip.first { $0["dst"] as? String == "10.78.0.0/24" })
            #expect(route["gateway"] as? String == "10.77.0.254")
            #expect(route["dev"] as? String == "br0")
            #expect(route["metric"] as? Int == 50)
            #expect(route["protocol"] as? String == "static")
            #expect(ip.contains { $0["dst"] as? String == "default" && $0["gateway"] as? String == "10.77.0.254" })
            #expect(ip.contains { $0["dst"] as? String == "10.79.0.0/16" && $0["scope"] as? String == "link" })

            let ours = try session.routes(family: AF_INET)
            #expect(ours.contains { $0.destination == nil && $0.gateway == (try? IPAddress(parsing: "10.77.0.254")) })
            #expect(ours.contains { $0.destination?.description == "10.78.0.0/24" && $0.priority == 50 })

            try session.routeDelete(viaGateway)
            try session.routeDelete(defaultRoute)
            let after = try TestHost.json(["ip", "-n", name, "-j", "route", "show"])
            #expect(!after.contains { $0["dst"] as? String == "10.78.0.0/24" || $0["dst"] as? String == "default" })

            // A gateway that no link reaches is refused by the kernel.
            do {
                try session.routeAdd(RouteEntry(destination: try IPPrefix(parsing: "10.90.0.0/24"),
                                                gateway: try IPAddress(parsing: "10.200.0.1")))
                Issue.record("an unreachable gateway must fail")
            } catch NetlinkError.kernel(let error) {
                #expect(error.errnoName == "ENETUNREACH")
            }
        }
    }

    @Test func permanentNeighboursAreReplacedIdempotently() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let name = namespaces[0].name!
            let session = try RouteNetlink(namespace: namespaces[0])
            try session.linkAdd(LinkSpec(name: "br0", kind: .bridge, up: true))
            let index = try session.link(named: "br0").index
            let entry = NeighbourEntry(linkIndex: index, address: try IPAddress(parsing: "10.77.0.5"),
                                       mac: try MACAddress(parsing: "02:42:0a:4d:00:05"))
            try session.neighbourReplace(entry)
            try session.neighbourReplace(entry)
            let v6 = NeighbourEntry(linkIndex: index, address: try IPAddress(parsing: "fd77::5"),
                                    mac: try MACAddress(parsing: "02:42:0a:4d:00:06"))
            try session.neighbourReplace(v6)

            let ip = try TestHost.json(["ip", "-n", name, "-j", "neigh", "show", "dev", "br0"])
            let found = try #require(ip.first { $0["dst"] as? String == "10.77.0.5" })
            #expect(found["lladdr"] as? String == "02:42:0a:4d:00:05")
            #expect((found["state"] as? [String]) == ["PERMANENT"])
            #expect(ip.contains { $0["dst"] as? String == "fd77::5" && $0["lladdr"] as? String == "02:42:0a:4d:00:06" })
            #expect(ip.filter { $0["dst"] as? String == "10.77.0.5" }.count == 1)

            let ours = try session.neighbours()
            #expect(ours.contains { $0 == entry })

            do {
                try session.neighbourAdd(entry)
                Issue.record("adding an existing neighbour exclusively must fail")
            } catch NetlinkError.kernel(let error) {
                #expect(error.errnoName == "EEXIST")
            }
            try session.neighbourDelete(entry)
            let remaining = try TestHost.json(["ip", "-n", name, "-j", "neigh", "show", "dev", "br0"])
            #expect(!remaining.contains { $0["dst"] as? String == "10.77.0.5" })
        }
    }
}

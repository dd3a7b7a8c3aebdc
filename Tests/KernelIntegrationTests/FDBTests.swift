import Foundation
import Testing
import Addressing
import Namespaces
import Netlink

@Suite struct FDBTests {
    @Test func vxlanFDBEntriesAppendAndDelete() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let name = namespaces[0].name!
            let session = try RouteNetlink(namespace: namespaces[0])
            try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(vni: 5001)), up: true))
            let index = try session.link(named: "vx0").index
            let remoteA = try IPAddress(parsing: "192.0.2.11")
            let remoteB = try IPAddress(parsing: "192.0.2.12")
            let endpointMAC = try MACAddress(parsing: "02:42:0a:00:00:07")
            // Flooding to two VTEPs: the all-zero MAC, appended twice.
            try session.fdbAppend(FDBEntry(linkIndex: index, mac: .zero, destination: remoteA))
            try session.fdbAppend(FDBEntry(linkIndex: index, mac: .zero, destination: remoteB))
            try session.fdbAppend(FDBEntry(linkIndex: index, mac: endpointMAC, destination: remoteA))

            func bridgeView() throws -> [[String: Any]] {
                try TestHost.json(["bridge", "-n", name, "-j", "fdb", "show", "dev", "vx0"])
            }
            let entries = try bridgeView()
            let flood = entries.filter { $0["mac"] as? String == "00:00:00:00:00:00" }
            #expect(Set(flood.compactMap { $0["dst"] as? String }) == ["192.0.2.11", "192.0.2.12"])
            let unicast = try #require(entries.first { $0["mac"] as? String == "02:42:0a:00:00:07" })
            #expect(unicast["dst"] as? String == "192.0.2.11")
            #expect((unicast["flags"] as? [String])?.contains("self") == true)
            #expect(unicast["state"] as? String == "permanent")

            let ours = try session.fdbEntries(linkIndex: index)
            #expect(ours.filter { $0.mac == .zero }.count == 2)
            #expect(ours.contains { $0.mac == endpointMAC && $0.destination == remoteA && $0.isSelf && $0.isPermanent })

            // Deleting one destination of the flood list leaves the other.
            try session.fdbDelete(FDBEntry(linkIndex: index, mac: .zero, destination: remoteA))
            try session.fdbDelete(FDBEntry(linkIndex: index, mac: endpointMAC, destination: remoteA))
            let after = try bridgeView()
            #expect(after.filter { $0["mac"] as? String == "00:00:00:00:00:00" }.compactMap { $0["dst"] as? String } == ["192.0.2.12"])
            #expect(!after.contains { $0["mac"] as? String == "02:42:0a:00:00:07" })
        }
    }

    @Test func batchesProgramManyEntriesAndReportEachFailure() throws {
        try TestHost.withNamespaces(1) { namespaces in
            let name = namespaces[0].name!
            let session = try RouteNetlink(namespace: namespaces[0])
            try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(vni: 5002)), up: true))
            let index = try session.link(named: "vx0").index
            var batch = NetlinkBatch()
            for host in 0..<2000 {
                let ip = IPv4Address(0x0a40_0000 + UInt32(host))
                batch.fdbAppend(FDBEntry(linkIndex: index, mac: MACAddress(derivedFrom: ip), destination: .v4(IPv4Address(192, 0, 2, 1))))
                batch.neighbourReplace(NeighbourEntry(linkIndex: index, address: .v4(ip), mac: MACAddress(derivedFrom: ip)))
            }
            // One request aimed at a link that does not exist.
            batch.fdbAppend(FDBEntry(linkIndex: 999_999, mac: .zero, destination: .v4(IPv4Address(192, 0, 2, 1))))
            do {
                try session.apply(batch)
                Issue.record("the request on a missing link must fail")
            } catch NetlinkError.batchFailed(let failures, let total) {
                #expect(total == 4001)
                #expect(failures.map(\.index) == [4000])
                #expect(failures[0].error.errnoName == "ENODEV")
            }
            let fdb = try TestHost.json(["bridge", "-n", name, "-j", "fdb", "show", "dev", "vx0"])
            #expect(fdb.filter { ($0["mac"] as? String)?.hasPrefix("02:42:0a:40") == true }.count == 2000)
            let neighbours = try TestHost.json(["ip", "-n", name, "-j", "neigh", "show", "dev", "vx0"])
            #expect(neighbours.filter { ($0["state"] as? [String]) == ["PERMANENT"] }.count == 2000)
        }
    }
}

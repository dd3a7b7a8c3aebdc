// swarmnet-bench: the in-process half of scripts/bench-netlink.
//
//   swarmnet-bench fdb-neigh NETNS DEVICE COUNT
//
// Programs COUNT static FDB entries (MAC -> VTEP) and COUNT permanent
// neighbour entries (IP -> MAC) on DEVICE in NETNS through swarmnet's
// netlink layer, with the same addresses scripts/bench-netlink gives
// iproute2, and prints the time taken as JSON.
#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Namespaces
import Netlink

func fail(_ message: String) -> Never {
    let text = "swarmnet-bench: \(message)\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
    exit(1)
}

let arguments = CommandLine.arguments
guard arguments.count == 5, arguments[1] == "fdb-neigh", let count = Int(arguments[4]), count > 0 else {
    fail("usage: swarmnet-bench fdb-neigh NETNS DEVICE COUNT")
}

/// The i-th endpoint: 10.128.0.0 + i, its Docker-style MAC, behind VTEP 192.0.2.(i % 250 + 1).
/// scripts/bench-netlink writes the same entries for iproute2.
func endpoint(_ i: Int) -> (ip: IPv4Address, mac: MACAddress, vtep: IPv4Address) {
    let ip = IPv4Address(0x0a80_0000 + UInt32(i))
    return (ip, MACAddress(derivedFrom: ip), IPv4Address(192, 0, 2, UInt8(i % 250 + 1)))
}

do {
    let start = ContinuousClock.now
    let session = try RouteNetlink(namespace: try NetworkNamespace.named(arguments[2]))
    let index = try session.link(named: arguments[3]).index
    var batch = NetlinkBatch()
    for i in 0..<count {
        let (_, mac, vtep) = endpoint(i)
        batch.fdbAppend(FDBEntry(linkIndex: index, mac: mac, destination: .v4(vtep)))
    }
    for i in 0..<count {
        let (ip, mac, _) = endpoint(i)
        batch.neighbourReplace(NeighbourEntry(linkIndex: index, address: .v4(ip), mac: mac))
    }
    let built = ContinuousClock.now
    try session.apply(batch)
    let end = ContinuousClock.now
    func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
    print("{\"entries\": \(2 * count), \"build_seconds\": \(seconds(built - start)), \"apply_seconds\": \(seconds(end - built)), \"total_seconds\": \(seconds(end - start))}")
} catch {
    fail("\(error)")
}

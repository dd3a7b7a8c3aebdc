import Addressing
import Foundation
import Testing
@testable import LoadBalancing

/// The maps layout without a kernel: slots and weights, class names, which
/// service an element belongs to, and a rendered table read back as the
/// services it was rendered from.
@Suite struct NFTablesMapLayoutTests {
    let renderer = NFTablesRenderer(configuration: NFTablesConfiguration(tableName: "sn", layout: .maps))

    func key(_ address: String, _ proto: TransportProtocol = .tcp, _ port: UInt16 = 80) -> ServiceKey {
        .address(try! IPAddress(parsing: address), proto, port: port)
    }

    func server(_ address: String, weight: UInt32 = 1, port: UInt16 = 8080) -> RealServer {
        RealServer(address: try! IPAddress(parsing: address), port: port, weight: weight)
    }

    @Test func slotsFollowWeightsForWeightedSchedulersOnly() {
        let servers = [server("10.0.1.3", weight: 4), server("10.0.1.2", weight: 2), server("10.0.1.4", weight: 0)]
        let rr = VirtualService(key: key("10.0.0.5"), realServers: servers)
        #expect(NFTablesRenderer.slots(of: rr).map(\.count) == [1, 1])
        // wrr: divided by the weights' gcd (2), in backend order.
        let wrr = VirtualService(key: key("10.0.0.5"), scheduler: .weightedRoundRobin, realServers: servers)
        #expect(NFTablesRenderer.slots(of: wrr).map { "\($0.server.address)x\($0.count)" } == ["10.0.1.2x1", "10.0.1.3x2"])
        // Beyond 256 slots in all: proportional, at least one each.
        let skewed = VirtualService(key: key("10.0.0.5"), scheduler: .sourceHashing,
                                    realServers: [server("10.0.1.2", weight: 1000), server("10.0.1.3", weight: 1)])
        #expect(NFTablesRenderer.slots(of: skewed).map(\.count) == [255, 1])
        // No active backend: the drop class.
        let idle = VirtualService(key: key("10.0.0.5"), realServers: [server("10.0.1.4", weight: 0)])
        #expect(renderer.mapClass(of: idle).name == "vips-tcp-drop")
        #expect(renderer.mapClass(of: wrr).name == "vips-tcp-random-3")
        #expect(renderer.mapClass(of: skewed).name == "vips-tcp-hash-256")
    }

    @Test func classNamesRoundTripAndStrangersAreNotClasses() {
        for name in ["vips-tcp-random-3", "vip-addrs-udp-hash-1", "ports-tcp-drop", "ports-udp-random-1000"] {
            #expect(NFTMapNames.Class(name: name)?.name == name, "\(name)")
        }
        for name in ["vips-tcp-random-0", "vips-tcp-random-03", "vips-sctp-random-3", "vips-tcp-backends", "idle", "vips-tcp-random-x",
                     "services"] {
            #expect(!NFTMapNames.isClassSet(name), "\(name)")
        }
    }

    @Test func everyElementNamesItsService() {
        let cases: [(NFTElement, ServiceKey?)] = [
            (NFTElement(map: "vips-tcp-random-2", key: "10.0.0.5 . 80"), key("10.0.0.5")),
            (NFTElement(map: "vips-udp-backends", key: "10.0.0.5 . 53 . 1", data: "10.0.1.2 . 8080"), key("10.0.0.5", .udp, 53)),
            (NFTElement(map: "vip-addrs-tcp-backends", key: "10.0.0.6 . 0", data: "10.0.1.2"), key("10.0.0.6", .tcp, 0)),
            (NFTElement(map: "ports-tcp-hash-2", key: "30080"), key("0.0.0.0", .tcp, 30080)),
            (NFTElement(map: "vips-tcp-hairpin", key: "10.0.1.2 . 10.0.0.5 . 80"), key("10.0.0.5")),
            (NFTElement(map: "idle", key: "0.0.0.0 . udp . 30053 . 10.0.1.2 . 53"), key("0.0.0.0", .udp, 30053)),
            // Strays: a set of someone else's, a key of the wrong shape.
            (NFTElement(map: "other", key: "10.0.0.5 . 80"), nil),
            (NFTElement(map: "vips-tcp-random-2", key: "10.0.0.5"), nil),
            (NFTElement(map: "vips-tcp-backends", key: "10.0.0.5 . 80 . x", data: "10.0.1.2 . 8080"), nil),
        ]
        for (element, expected) in cases {
            #expect(NFTMapNames.serviceKey(of: element) == expected, "\(element)")
        }
    }

    /// The daemon's path compares its desired set with the last one by
    /// position: nil when the keys or their order differ, else the
    /// positions of every service that differs in anything.
    @Test func theLastDesiredSetIsComparedByPosition() {
        let base = (1...4).map { VirtualService(key: key("10.0.0.\($0)"), realServers: [server("10.0.1.2")]) }
        #expect(NFTablesLoadBalancer.changedIndices(from: base, to: base) == [])
        #expect(NFTablesLoadBalancer.changedIndices(from: base, to: Array(base.dropLast())) == nil)
        #expect(NFTablesLoadBalancer.changedIndices(from: base, to: base.reversed()) == nil)
        var changed = base
        changed[0].realServers[0].weight = 2
        changed[1].scheduler = .sourceHashing
        changed[2].schedulerFlags = .hashPort
        changed[3].persistence = 30
        #expect(NFTablesLoadBalancer.changedIndices(from: base, to: changed) == [0, 1, 2, 3])
        // Those are all of a service's fields: one added must be compared too.
        #expect(Mirror(reflecting: base[0]).children.map(\.label) == ["key", "scheduler", "schedulerFlags", "persistence", "realServers"])
    }

    /// What the renderer writes reads back as the services it came from,
    /// weights, idle backends and scheduler included.
    @Test func aRenderedTableReadsBackAsItsServices() {
        let services = [
            VirtualService(key: key("10.0.0.5"), scheduler: .weightedRoundRobin,
                           realServers: [server("10.0.1.2", weight: 3), server("10.0.1.3", weight: 6), server("10.0.1.4", weight: 0)]),
            VirtualService(key: key("10.0.0.6", .udp, 0), scheduler: .maglevHashing, schedulerFlags: .fallback,
                           realServers: [server("10.0.1.2", port: 0)]),
            VirtualService(key: key("0.0.0.0", .tcp, 30080), realServers: [server("10.0.1.2"), server("10.0.1.5")]),
            VirtualService(key: key("10.0.0.7"), realServers: []),
        ].map(\.sorted)
        let image = renderer.image(for: services)
        #expect(NFTablesKernelState.services(in: image, layout: .maps) == services.sorted { $0.key < $1.key })
        #expect(image.classMembers == ["vips-tcp-random-3": 1, "vip-addrs-udp-hash-1": 1, "ports-tcp-random-2": 1, "vips-tcp-drop": 1])
        #expect(image.chains["services"]?.rules.count == 4 + 4) // four classes; hairpin for VIPs and every-port VIPs, TCP and UDP
    }
}

import Addressing
import Netlink
import Testing
@testable import LoadBalancing

/// Which backends a change removes, and which conntrack entries the nftables
/// back end then deletes for each.
@Suite struct RemovedBackendTests {
    let web = ServiceKey.address(try! IPAddress(parsing: "10.96.0.1"), .tcp, port: 80)
    let dns = ServiceKey.address(try! IPAddress(parsing: "10.96.0.2"), .udp, port: 53)
    let published = ServiceKey.address(try! IPAddress(parsing: "0.0.0.0"), .tcp, port: 30080)
    let everyPort = ServiceKey.address(try! IPAddress(parsing: "10.96.0.3"), .tcp, port: 0)

    func server(_ address: String, port: UInt16 = 8080, weight: UInt32 = 1) -> RealServer {
        RealServer(address: try! IPAddress(parsing: address), port: port, weight: weight)
    }

    @Test func droppedBackendsAndEveryBackendOfADeletedServiceAreRemoved() {
        let current = [
            VirtualService(key: web, realServers: [server("10.0.1.2"), server("10.0.1.3"), server("10.0.1.4")]),
            VirtualService(key: dns, realServers: [server("10.0.1.5", port: 53)]),
        ]
        // A weight change is not a removal; a port change is (another backend).
        let desired = [VirtualService(key: web, realServers: [server("10.0.1.2", weight: 5), server("10.0.1.3", port: 8081)])]
        #expect(RemovedBackend.between(current, desired) == [
            RemovedBackend(service: web, server: server("10.0.1.3").key),
            RemovedBackend(service: web, server: server("10.0.1.4").key),
            RemovedBackend(service: dns, server: server("10.0.1.5", port: 53).key),
        ].sorted())
        #expect(RemovedBackend.between(current, current).isEmpty)
        #expect(RemovedBackend.between([], desired).isEmpty)
        let gone = RemovedBackend(service: web, server: server("10.0.1.4").key)
        #expect(!gone.isPresent(in: desired))
        #expect(gone.isPresent(in: current))
    }

    @Test func aVIPServiceMatchesItsVIPPortProtocolAndTheBackendsPort() throws {
        let match = try #require(RemovedBackend(service: dns, server: server("10.0.1.5", port: 5353).key).match)
        #expect(match == ConntrackNATMatch(backend: try IPAddress(parsing: "10.0.1.5"), backendPort: 5353, protocolNumber: 17,
                                           originalDestination: try IPAddress(parsing: "10.96.0.2"), originalDestinationPort: 53))
    }

    @Test func aPublishedPortMatchesAnyLocalAddressOnItsPort() throws {
        let match = try #require(RemovedBackend(service: published, server: server("10.0.1.2").key).match)
        #expect(match.originalDestination == nil)
        #expect(match.originalDestinationPort == 30080)
        #expect(match.backendPort == 8080 && match.protocolNumber == 6)
    }

    @Test func aVIPOfEveryPortMatchesNoPort() throws {
        let match = try #require(RemovedBackend(service: everyPort, server: server("10.0.1.2", port: 0).key).match)
        #expect(match.originalDestinationPort == nil && match.backendPort == nil)
        #expect(match.originalDestination == (try IPAddress(parsing: "10.96.0.3")))
        #expect(RemovedBackend(service: .firewallMark(7, family: .ipv4), server: server("10.0.1.2").key).match == nil)
    }
}

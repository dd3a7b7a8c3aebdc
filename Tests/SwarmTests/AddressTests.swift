import Cluster
import Control
import Testing
@testable import Swarm

@Suite struct SwarmAddressTests {
    let interfaces: @Sendable (String) -> String? = { ["eth0": "192.0.2.11", "bare0": nil][$0] ?? nil }

    @Test func listenAddressesTakeIPsInterfacesAndPorts() throws {
        #expect(try SwarmRuntime.listenAddress(nil, defaultPort: 2377) == ("0.0.0.0", 2377))
        #expect(try SwarmRuntime.listenAddress(":4000", defaultPort: 2377) == ("0.0.0.0", 4000))
        #expect(try SwarmRuntime.listenAddress("192.0.2.5", defaultPort: 2377) == ("192.0.2.5", 2377))
        #expect(try SwarmRuntime.listenAddress("eth0:2377", defaultPort: 2377, interface: interfaces) == ("192.0.2.11", 2377))
        #expect(throws: ControlError.self) { try SwarmRuntime.listenAddress("bare0", defaultPort: 2377, interface: interfaces) }
        #expect(throws: ControlError.self) { try SwarmRuntime.listenAddress("192.0.2.5:99999", defaultPort: 2377) }
        #expect(throws: ControlError.self) { try SwarmRuntime.listenAddress("300.1.1.1", defaultPort: 2377) }
    }

    @Test func advertiseAddressesMustBeReachable() throws {
        #expect(try SwarmRuntime.advertiseAddress(nil, default: "192.0.2.9") == "192.0.2.9")
        #expect(try SwarmRuntime.advertiseAddress("192.0.2.12:2377", default: "") == "192.0.2.12")
        #expect(try SwarmRuntime.advertiseAddress("eth0", default: "", interface: interfaces) == "192.0.2.11")
        for bad in ["0.0.0.0", "127.0.0.1", "nosuch0", "bare0", "01.2.3.4", "a b"] {
            #expect(throws: ControlError.self, "\(bad)") { try SwarmRuntime.advertiseAddress(bad, default: "", interface: interfaces) }
        }
    }
}

import Testing
@testable import Addressing

@Suite struct AddressingTests {
    @Test func parsesAndPrintsIPv4() throws {
        let address = try IPv4Address(parsing: "10.0.3.254")
        #expect(address.bytes == [10, 0, 3, 254])
        #expect(address.description == "10.0.3.254")
        #expect(IPv4Address(bytes: [192, 0, 2, 1])?.description == "192.0.2.1")
        #expect(try IPv4Address(parsing: "255.255.255.255").value == .max)
        #expect(try IPv4Address(parsing: "0.0.0.0").value == 0)
        #expect(try IPv4Address(parsing: "010.001.0.9").bytes == [10, 1, 0, 9])
        #expect(try IPv4Address(parsing: "10.0.3.254"[...]).description == "10.0.3.254")
    }

    @Test(arguments: ["", "10.0.0", "10.0.0.256", "10.0.0.1.2", "a.b.c.d", "10..0.1", "1000.0.0.1", " 10.0.0.1",
                      "10.0.0.1 ", "10.0.0.", ".10.0.0", "10.0.0.-1", "10.0.0.+1", "\u{0661}0.0.0.1"])
    func rejectsBadIPv4(_ text: String) {
        #expect(throws: AddressParseError.self) { try IPv4Address(parsing: text) }
    }

    @Test func parsesIPv6InCanonicalForm() throws {
        let address = try IPAddress(parsing: "fd00:0:0::1")
        #expect(address.description == "fd00::1")
        #expect(address.bytes.count == 16)
        #expect(throws: AddressParseError.self) { try IPAddress(parsing: "fd00:::1") }
    }

    @Test func prefixesKnowTheirNetworkAndOverlaps() throws {
        let subnet = try IPPrefix(parsing: "10.0.1.0/24")
        #expect(subnet.isNetwork)
        #expect(try IPPrefix(parsing: "10.0.1.7/24").network == subnet)
        #expect(subnet.contains(try IPAddress(parsing: "10.0.1.200")))
        #expect(!subnet.contains(try IPAddress(parsing: "10.0.2.1")))
        #expect(subnet.overlaps(try IPPrefix(parsing: "10.0.0.0/16")))
        #expect(!subnet.overlaps(try IPPrefix(parsing: "10.0.2.0/24")))
        #expect(try IPPrefix(parsing: "10.0.0.5").length == 32)
        #expect(try IPPrefix(parsing: "fd00::/64").network.description == "fd00::/64")
    }

    @Test(arguments: ["10.0.0.0/33", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/2x", "nonsense/8", "10.0.0.0/8/8", "fd00::/129"])
    func rejectsBadPrefixes(_ text: String) {
        #expect(throws: AddressParseError.self) { try IPPrefix(parsing: text) }
    }

    @Test func parsesAndDerivesMACs() throws {
        let mac = try MACAddress(parsing: "02:42:0A:00:00:02")
        #expect(mac.description == "02:42:0a:00:00:02")
        #expect(MACAddress(derivedFrom: try IPv4Address(parsing: "10.0.0.2")) == mac)
        #expect(MACAddress.zero.description == "00:00:00:00:00:00")
    }

    @Test(arguments: ["02:42:0a:00:00", "02:42:0a:00:00:0g", "0242.0a00.0002", "02:42:0a:00:00:002", ""])
    func rejectsBadMACs(_ text: String) {
        #expect(throws: AddressParseError.self) { try MACAddress(parsing: text) }
    }

    @Test func errorsNameTheInput() {
        #expect(throws: AddressParseError(input: "zz:00", expected: "MAC address (six hex pairs like 02:42:0a:00:00:02)")) {
            try MACAddress(parsing: "zz:00")
        }
    }
}

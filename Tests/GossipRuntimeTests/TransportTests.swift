import Foundation
import Gossip
import GossipRuntime
import Testing

@Suite("transport edges")
struct TransportTests {
    /// Connects to `address` over TCP, writes `bytes`, and returns what comes back before the
    /// peer closes (with a 2 s receive timeout, so a listener that never closes fails the test).
    func exchange(_ bytes: [UInt8], with address: NodeAddress) throws -> [UInt8] {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = address.port.bigEndian
        inet_pton(AF_INET, address.host, &sin.sin_addr)
        let connected = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw TimedOut(what: "the listener to close the connection") }
            if n == 0 { break }
            received += buffer[0..<n]
        }
        return received
    }

    @Test("a push-pull frame over the size limit, or garbage, is refused without a reply and counted")
    func oversizeAndGarbageFrames() async throws {
        let node = LiveGossipNode(name: "solo", configuration: .fast, streamTimeout: .seconds(2))
        let address = try await node.start(bind: "127.0.0.1", port: 0)
        do {
            // A length of 4 GiB - 1: refused on the header alone, before any payload is buffered.
            #expect(try exchange([0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3], with: address).isEmpty)
            try await eventually("the oversize frame to be counted", within: .seconds(1)) {
                node.counters().transport.streamErrors == 1
            }
            // A well-framed payload that is not a push-pull: the core rejects it, no reply.
            #expect(try exchange([0, 0, 0, 3, 9, 9, 9], with: address).isEmpty)
            try await eventually("the malformed stream to be counted", within: .seconds(1)) {
                node.counters().core.malformedInputs == 1
            }
            #expect(node.members().count == 1)
        } catch {
            await node.shutdown()
            throw error
        }
        await node.shutdown()
    }

    @Test("a wildcard bind needs an advertised address; a node cannot start twice")
    func startErrors() async throws {
        let node = LiveGossipNode(name: "solo", configuration: .fast)
        await #expect(throws: LiveGossipNode.Error.advertiseAddressRequired(bind: "0.0.0.0")) {
            try await node.start(bind: "0.0.0.0", port: 0)
        }
        #expect(throws: LiveGossipNode.Error.notStarted) { try node.joinNetwork("n") }
        try await node.start(bind: "127.0.0.1", port: 0)
        await #expect(throws: LiveGossipNode.Error.alreadyStarted) { try await node.start(bind: "127.0.0.1", port: 0) }
        await node.shutdown()
        #expect(throws: LiveGossipNode.Error.stopped) { try node.put(network: "n", table: "t", key: "k", value: []) }
    }

    @Test("addresses parse as HOST:PORT and [IPV6]:PORT with IP literals only")
    func addressParsing() throws {
        #expect(try NodeAddress(parsing: "192.0.2.1:7946") == NodeAddress(host: "192.0.2.1", port: 7946))
        #expect(try NodeAddress(parsing: "[::1]:7946") == NodeAddress(host: "::1", port: 7946))
        for bad in ["192.0.2.1", "host.example:7946", "192.0.2.1:99999", "[::1]7946", ""] {
            #expect(throws: LiveGossipNode.Error.invalidAddress(bad)) { try NodeAddress(parsing: bad) }
        }
    }
}

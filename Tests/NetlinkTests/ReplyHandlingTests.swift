import CNetlinkShim
import Testing
import Addressing
import Namespaces
@testable import Netlink

@Suite struct ReplyHandlingTests {
    @Test func kernelErrorsNameOperationObjectAndErrno() throws {
        let transport = ReplayTransport { requests in
            [Kernel.ack(requests[0].sequence, errno: 17, message: "A VXLAN device with the specified VNI already exists")]
        }
        let session = RouteNetlink(transport: transport)
        do {
            try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(vni: 42))))
            Issue.record("expected an error")
        } catch NetlinkError.kernel(let error) {
            #expect(error.errno == 17)
            #expect(error.errnoName == "EEXIST")
            #expect(error.operation == "create link")
            #expect(error.object.contains("vxlan 'vx0'"))
            #expect(error.kernelMessage == "A VXLAN device with the specified VNI already exists")
            #expect(error.description.contains("File exists (EEXIST)"))
        }
    }

    @Test func missingLinkBecomesLinkNotFound() {
        let transport = ReplayTransport { requests in [Kernel.ack(requests[0].sequence, errno: 19)] }
        let session = RouteNetlink(transport: transport)
        #expect(throws: NetlinkError.self) { try session.link(named: "nope") }
        do { _ = try session.link(named: "nope") } catch {
            #expect("\(error)".contains("link 'nope' does not exist"))
            #expect((error as? NetlinkError)?.errno == 19)
        }
    }

    @Test func interruptedDumpsAreRetriedNeverReturnedHalf() throws {
        var attempt = 0
        let transport = ReplayTransport { requests in
            attempt += 1
            let sequence = requests[0].sequence
            if attempt == 1 {
                // First dump: one link, then the kernel marks the dump inconsistent.
                return [Kernel.link(sequence, index: 1, name: "lo"),
                        Kernel.done(sequence, flags: UInt16(NLM_F_DUMP_INTR))]
            }
            return [Kernel.link(sequence, index: 1, name: "lo") + Kernel.link(sequence, index: 2, name: "eth0"),
                    Kernel.done(sequence)]
        }
        let session = RouteNetlink(transport: transport)
        let links = try session.links()
        #expect(links.map(\.name) == ["lo", "eth0"])
        #expect(transport.sent.count == 2)
    }

    @Test func aDumpThatIsAlwaysInterruptedFails() {
        let transport = ReplayTransport { requests in
            [Kernel.link(requests[0].sequence, index: 1, name: "lo", flags: UInt16(NLM_F_MULTI | NLM_F_DUMP_INTR)),
             Kernel.done(requests[0].sequence)]
        }
        let session = RouteNetlink(transport: transport)
        #expect(throws: NetlinkError.self) { try session.links() }
        #expect(transport.sent.count == RouteNetlink.dumpAttempts)
    }

    @Test func repliesToOlderRequestsAreSkipped() throws {
        let transport = ReplayTransport { requests in
            let sequence = requests[0].sequence
            return [Kernel.link(sequence &- 1, index: 9, name: "stale") + Kernel.ack(sequence &- 1),
                    Kernel.link(sequence, index: 3, name: "br0", flags: 0) + Kernel.ack(sequence)]
        }
        let link = try RouteNetlink(transport: transport).link(named: "br0")
        #expect(link.index == 3 && link.mtu == 1450 && link.isUp)
    }

    @Test(arguments: [
        [UInt8](repeating: 0xff, count: 16),             // length larger than the datagram
        [8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], // length smaller than a header
    ])
    func malformedDatagramsAreErrors(_ bytes: [UInt8]) {
        #expect(throws: NetlinkError.self) { try NetlinkMessage.split(bytes) }
    }

    @Test func truncatedAttributesAreErrors() {
        #expect(throws: NetlinkError.self) { try Attributes(parsing: [40, 0, 1, 0, 1, 2][...]) }
        #expect(throws: NetlinkError.self) { try Attributes(parsing: [2, 0, 1, 0][...]) }
    }

    @Test func badArgumentsAreRejectedBeforeAnythingIsSent() throws {
        let transport = ReplayTransport()
        let session = RouteNetlink(transport: transport)
        #expect(throws: NetlinkError.self) { try session.linkAdd(LinkSpec(name: "a-name-longer-than-15", kind: .bridge)) }
        #expect(throws: NetlinkError.self) { try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(vni: 1 << 24)))) }
        #expect(throws: NetlinkError.self) { try session.linkAdd(LinkSpec(name: "bad/name", kind: .bridge)) }
        #expect(throws: NetlinkError.self) { try session.linkAdd(LinkSpec(name: "br0", kind: .bridge, mtu: 20)) }
        #expect(throws: NetlinkError.self) {
            try session.linkAdd(LinkSpec(name: "v0", kind: .veth(peer: VethPeer(name: "peer-name-way-too-long"))))
        }
        #expect(transport.sent.isEmpty)
        do {
            try session.linkAdd(LinkSpec(name: "vx0", kind: .vxlan(VXLANOptions(vni: 16_777_216))))
        } catch {
            #expect("\(error)" == "VNI 16777216 is out of range; a VXLAN network identifier is 0...16777215")
        }
        do {
            try session.linkAdd(LinkSpec(name: "abcdefghijklmnop", kind: .bridge))
        } catch {
            #expect("\(error)" == "interface name 'abcdefghijklmnop' is 16 bytes long; the kernel allows at most 15")
        }
    }

    @Test func batchesAckOnlyTheLastRequestOfADatagramAndReportFailuresByIndex() throws {
        let transport = ReplayTransport { requests in
            // The kernel answers the second request with ENODEV and acks the last.
            var replies = [Kernel.ack(requests[1].sequence, errno: 19)]
            if let last = requests.last, last.flags & UInt16(NLM_F_ACK) != 0 { replies.append(Kernel.ack(last.sequence)) }
            return replies
        }
        let session = RouteNetlink(transport: transport)
        var batch = NetlinkBatch()
        for host in 1...3 {
            batch.fdbAppend(FDBEntry(linkIndex: 5, mac: MACAddress(derivedFrom: IPv4Address(10, 0, 0, UInt8(host))),
                                     destination: .v4(IPv4Address(192, 0, 2, UInt8(host)))))
        }
        do {
            try session.apply(batch)
            Issue.record("expected a batch failure")
        } catch NetlinkError.batchFailed(let failures, let total) {
            #expect(total == 3)
            #expect(failures.map(\.index) == [1])
            #expect(failures[0].error.errnoName == "ENODEV")
            #expect(failures[0].error.operation == "append fdb entry")
        }
        #expect(transport.sent.count == 1)
        let sent = try NetlinkMessage.split(transport.sent[0])
        #expect(sent.map { $0.flags & UInt16(NLM_F_ACK) != 0 } == [false, false, true])
    }

    @Test func largeBatchesAreSplitIntoDatagramsUnderTheLimit() throws {
        let transport = ReplayTransport()
        let session = RouteNetlink(transport: transport)
        var batch = NetlinkBatch()
        for host in 0..<5000 {
            let ip = IPv4Address(UInt32(0x0a00_0000) + UInt32(host))
            batch.neighbourReplace(NeighbourEntry(linkIndex: 5, address: .v4(ip), mac: MACAddress(derivedFrom: ip)))
        }
        try session.apply(batch)
        #expect(transport.sent.count > 1)
        #expect(transport.sent.allSatisfy { $0.count <= RouteNetlink.batchDatagramLimit })
        let total = try transport.sent.map { try NetlinkMessage.split($0).count }.reduce(0, +)
        #expect(total == 5000)
    }

    @Test func aVethWhosePeerCannotBeBroughtUpIsDeletedAgain() throws {
        var types: [Int] = []
        let transport = ReplayTransport { requests in
            let request = requests[0]
            types.append(Int(request.type))
            // Creation succeeds; looking the peer up fails (it vanished).
            if Int(request.type) == RTM_GETLINK { return [Kernel.ack(request.sequence, errno: 19)] }
            return [Kernel.ack(request.sequence)]
        }
        let session = RouteNetlink(transport: transport)
        #expect(throws: NetlinkError.self) {
            try session.linkAdd(LinkSpec(name: "veth-a", kind: .veth(peer: VethPeer(name: "veth-b", up: true))))
        }
        #expect(types == [RTM_NEWLINK, RTM_GETLINK, RTM_DELLINK])
    }

    @Test func everyErrnoKeepsItsName() {
        for (errno, name) in [(17, "EEXIST"), (19, "ENODEV"), (1, "EPERM"), (16, "EBUSY"), (98, "EADDRINUSE"), (95, "EOPNOTSUPP")] {
            let error = KernelError(operation: "set link", object: "'x'", errno: Int32(errno), kernelMessage: nil)
            #expect(error.errnoName == name)
            #expect(error.description.hasSuffix("(\(name))"))
        }
    }

    @Test func namespaceNamesAreChecked() {
        #expect(throws: NamespaceError.invalidName("a/b", reason: "contains '/'")) { try NetworkNamespace.named("a/b") }
        #expect(throws: NamespaceError.self) { try NetworkNamespace.named("") }
        #expect(throws: NamespaceError.self) { try NetworkNamespace.named("..") }
    }
}

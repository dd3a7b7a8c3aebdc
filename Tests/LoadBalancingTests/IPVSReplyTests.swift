import Addressing
import CIPVSShim
import Foundation
import Glibc
import Netlink
import Testing
@testable import LoadBalancing

/// Replies as ip_vs_genl_fill_service / ip_vs_genl_fill_dest write them.
enum Recorded {
    static func service(_ sequence: UInt32, af: UInt16 = 2, proto: UInt16 = 6, address: [UInt8] = [10, 0, 0, 5],
                        port: UInt16 = 80, fwmark: UInt32 = 0, scheduler: String, flags: UInt32, timeout: UInt32)
        -> [UInt8]
    {
        Kernel.genl(sequence, family: Kernel.ipvsFamily, command: Int32(IPVS_CMD_NEW_SERVICE)) { reply in
            reply.addNested(Int(IPVS_CMD_ATTR_SERVICE)) { s in
                s.addAttribute(Int(IPVS_SVC_ATTR_AF), uint16: af)
                if fwmark != 0 {
                    s.addAttribute(Int(IPVS_SVC_ATTR_FWMARK), uint32: fwmark)
                } else {
                    s.addAttribute(Int(IPVS_SVC_ATTR_PROTOCOL), uint16: proto)
                    s.addAttribute(Int(IPVS_SVC_ATTR_ADDR), Kernel.inet(address))
                    s.addAttribute(Int(IPVS_SVC_ATTR_PORT), bigEndian16: port)
                }
                s.addAttribute(Int(IPVS_SVC_ATTR_SCHED_NAME), string: scheduler)
                s.addAttribute(Int(IPVS_SVC_ATTR_FLAGS), withUnsafeBytes(of: (flags, UInt32.max)) { Array($0) })
                s.addAttribute(Int(IPVS_SVC_ATTR_TIMEOUT), uint32: timeout)
                s.addAttribute(Int(IPVS_SVC_ATTR_NETMASK), uint32: 0xffff_ffff)
                Kernel.stats(&s, Int(IPVS_SVC_ATTR_STATS))
                Kernel.stats(&s, Int(IPVS_SVC_ATTR_STATS64))
            }
        }
    }

    static func dest(_ sequence: UInt32, address: [UInt8], port: UInt16, weight: UInt32, active: UInt32 = 0,
                     inactive: UInt32 = 0, method: UInt32 = 0) -> [UInt8]
    {
        Kernel.genl(sequence, family: Kernel.ipvsFamily, command: Int32(IPVS_CMD_NEW_DEST)) { reply in
            reply.addNested(Int(IPVS_CMD_ATTR_DEST)) { d in
                d.addAttribute(Int(IPVS_DEST_ATTR_ADDR), Kernel.inet(address))
                d.addAttribute(Int(IPVS_DEST_ATTR_PORT), bigEndian16: port)
                d.addAttribute(Int(IPVS_DEST_ATTR_FWD_METHOD), uint32: method)
                d.addAttribute(Int(IPVS_DEST_ATTR_WEIGHT), uint32: weight)
                d.addAttribute(Int(IPVS_DEST_ATTR_TUN_TYPE), uint8: 0)
                d.addAttribute(Int(IPVS_DEST_ATTR_U_THRESH), uint32: 0)
                d.addAttribute(Int(IPVS_DEST_ATTR_L_THRESH), uint32: 0)
                d.addAttribute(Int(IPVS_DEST_ATTR_ACTIVE_CONNS), uint32: active)
                d.addAttribute(Int(IPVS_DEST_ATTR_INACT_CONNS), uint32: inactive)
                d.addAttribute(Int(IPVS_DEST_ATTR_PERSIST_CONNS), uint32: 0)
                d.addAttribute(Int(IPVS_DEST_ATTR_ADDR_FAMILY), uint16: 2)
                Kernel.stats(&d, Int(IPVS_DEST_ATTR_STATS))
            }
        }
    }

    /// A kernel with two services: TCP 10.0.0.5:80 wrr (persistent 300 s,
    /// real servers .3 then .2, in the kernel's order) and FWM 42 sh with
    /// fallback, no real servers.
    static func twoServices(_ request: NetlinkMessage, _ command: UInt8) -> [[UInt8]]? {
        let sequence = request.sequence
        switch Int32(command) {
        case Int32(IPVS_CMD_GET_SERVICE):
            // HASHED (2) | PERSISTENT (1); the kernel always sets HASHED
            return [service(sequence, scheduler: "wrr", flags: 3, timeout: 300)
                + service(sequence, fwmark: 42, scheduler: "sh", flags: 2 | 8, timeout: 0),
                    Kernel.done(sequence)]
        case Int32(IPVS_CMD_GET_DEST):
            let attributes = try! request.attributes(after: genlmsghdr.self).nested(Int(IPVS_CMD_ATTR_SERVICE))!
            if attributes.uint32(Int(IPVS_SVC_ATTR_FWMARK)) != nil { return [Kernel.done(sequence)] }
            return [dest(sequence, address: [10, 0, 1, 3], port: 8080, weight: 2, active: 4, inactive: 1)
                + dest(sequence, address: [10, 0, 1, 2], port: 8080, weight: 1), Kernel.done(sequence)]
        default:
            return nil
        }
    }
}

@Suite struct IPVSReplyTests {
    @Test func servicesParsesDumpsIntoSortedServices() throws {
        let (ipvs, _) = try replayIPVS(Recorded.twoServices)
        let services = try ipvs.services()
        #expect(services == [
            VirtualService(key: web, scheduler: .weightedRoundRobin, persistence: 300,
                           realServers: [server("10.0.1.2", weight: 1), server("10.0.1.3", weight: 2)]),
            VirtualService(key: .firewallMark(42, family: .ipv4), scheduler: .sourceHashing,
                           schedulerFlags: .fallback),
        ])
        let destinations = try ipvs.destinations(of: web)
        #expect(destinations.map(\.activeConnections) == [0, 4])
        #expect(destinations.map(\.inactiveConnections) == [0, 1])
    }

    @Test func kernelErrorsNameOperationObjectAndErrno() throws {
        let (ipvs, _) = try replayIPVS { request, command in
            switch Int32(command) {
            case Int32(IPVS_CMD_NEW_SERVICE): [Kernel.ack(request.sequence, errno: EEXIST)]
            case Int32(IPVS_CMD_DEL_SERVICE): [Kernel.ack(request.sequence, errno: ESRCH)]
            case Int32(IPVS_CMD_DEL_DEST): [Kernel.ack(request.sequence, errno: ENOENT)]
            default: nil
            }
        }
        let added = #expect(throws: LoadBalancerError.self) { try ipvs.addService(VirtualService(key: web)) }
        #expect(added?.errno == EEXIST)
        #expect(added?.description == "IPVS: add service TCP 10.0.0.5:80: File exists (EEXIST)")
        let deleted = #expect(throws: LoadBalancerError.self) { try ipvs.deleteService(.firewallMark(9, family: .ipv4)) }
        #expect(deleted?.description == "IPVS: delete service FWM 9: No such process (ESRCH)")
        let gone = #expect(throws: LoadBalancerError.self) { try ipvs.deleteRealServer(server("10.0.1.9").key, of: web) }
        #expect(gone?.description == "IPVS: delete real server 10.0.1.9:8080 of TCP 10.0.0.5:80: No such file or directory (ENOENT)")
    }

    @Test func missingFamilyMeansUnavailable() throws {
        let transport = ReplayTransport { requests in requests.map { Kernel.ack($0.sequence, errno: ENOENT) } }
        let error = #expect(throws: LoadBalancerError.self) { try IPVS(transport: transport) }
        guard case .unavailable(let reason)? = error else {
            Issue.record("expected .unavailable, got \(String(describing: error))")
            return
        }
        #expect(reason.contains("no 'IPVS' generic netlink family"))
    }

    @Test func timeoutsRoundTrip() throws {
        let (ipvs, transport) = try replayIPVS { request, command in
            guard Int32(command) == Int32(IPVS_CMD_GET_CONFIG) else { return nil }
            return [Kernel.genl(request.sequence, family: Kernel.ipvsFamily, command: Int32(IPVS_CMD_SET_CONFIG), flags: 0) {
                $0.addAttribute(Int(IPVS_CMD_ATTR_TIMEOUT_TCP), uint32: 3600)
                $0.addAttribute(Int(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN), uint32: 120)
                $0.addAttribute(Int(IPVS_CMD_ATTR_TIMEOUT_UDP), uint32: 300)
            } + Kernel.ack(request.sequence)]
        }
        try ipvs.setTimeouts(IPVSTimeouts(tcp: 3600, tcpFin: 0, udp: 0))
        let set = transport.sentMessages[0]
        let attributes = try set.attributes(after: genlmsghdr.self)
        #expect(attributes.uint32(Int(IPVS_CMD_ATTR_TIMEOUT_TCP)) == 3600)
        #expect(attributes.uint32(Int(IPVS_CMD_ATTR_TIMEOUT_TCP_FIN)) == 0)
        #expect(try ipvs.timeouts() == IPVSTimeouts(tcp: 3600, tcpFin: 120, udp: 300))
    }

    @Test func malformedReplyIsAnErrorNotACrash() throws {
        let (ipvs, _) = try replayIPVS { request, command in
            guard Int32(command) == Int32(IPVS_CMD_GET_SERVICE) else { return nil }
            // A service attribute that claims more bytes than the message has.
            var bytes = Kernel.genl(request.sequence, family: Kernel.ipvsFamily, command: Int32(IPVS_CMD_NEW_SERVICE)) {
                $0.addAttribute(Int(IPVS_CMD_ATTR_SERVICE), [6, 0, 1, 0, 2, 0, 0, 0])
            }
            bytes[20] = 200
            return [bytes, Kernel.done(request.sequence)]
        }
        #expect(throws: LoadBalancerError.self) { try ipvs.services() }
    }

    /// The back end reads the kernel, then sends only the difference, in
    /// one batch: the leaving real server gets weight 0 before its delete.
    @Test func reconcileSendsOnlyTheDifference() throws {
        let (ipvs, transport) = try replayIPVS(Recorded.twoServices)
        let desired = [
            VirtualService(key: web, scheduler: .weightedRoundRobin, persistence: 300,
                           realServers: [server("10.0.1.2", weight: 5)]),
            VirtualService(key: .firewallMark(42, family: .ipv4), scheduler: .sourceHashing, schedulerFlags: .fallback),
        ]
        let sentBefore = transport.sent.count
        let changes = try ipvs.reconcile(to: desired)
        #expect(changes.operations == [
            .editRealServer(server("10.0.1.2", weight: 5), service: web),
            .quiesceRealServer(server("10.0.1.3", weight: 0), service: web),
            .deleteRealServer(server("10.0.1.3").key, service: web),
        ])
        // dump services, dump each service's real servers, then one datagram
        let batch = try NetlinkMessage.split(transport.sent.last!)
        #expect(transport.sent.count == sentBefore + 4)
        #expect(try batch.map { try $0.familyHeader(genlmsghdr.self).cmd }
            == [UInt8(IPVS_CMD_SET_DEST), UInt8(IPVS_CMD_SET_DEST), UInt8(IPVS_CMD_DEL_DEST)])
        // only the last message of the datagram asks for an ack
        #expect(batch.map { $0.flags & UInt16(NLM_F_ACK) != 0 } == [false, false, true])
        let quiesce = try #require(try batch[1].attributes(after: genlmsghdr.self).nested(Int(IPVS_CMD_ATTR_DEST)))
        #expect(quiesce.uint32(Int(IPVS_DEST_ATTR_WEIGHT)) == 0)
    }

    @Test func reconcileReportsEveryFailedOperation() throws {
        let (ipvs, _) = try replayIPVS { request, command in
            switch Int32(command) {
            case Int32(IPVS_CMD_GET_SERVICE): [Kernel.done(request.sequence)]
            case Int32(IPVS_CMD_NEW_DEST): [Kernel.ack(request.sequence, errno: EINVAL)]
            default: nil
            }
        }
        let error = #expect(throws: LoadBalancerError.self) {
            try ipvs.reconcile(to: [VirtualService(key: web, realServers: [server("10.0.1.2"), server("10.0.1.3")])])
        }
        guard case .reconcileFailed(let failures, let total)? = error else {
            Issue.record("expected reconcileFailed, got \(String(describing: error))")
            return
        }
        #expect(total == 3)
        #expect(failures.map(\.operation) == [.addRealServer(server("10.0.1.2"), service: web),
                                              .addRealServer(server("10.0.1.3"), service: web)])
        #expect(failures[0].error.description == "add real server 10.0.1.2:8080 of TCP 10.0.0.5:80: Invalid argument (EINVAL)")
    }
}

/// The back end against datagrams recorded from a real kernel: every request
/// must be the recorded one byte for byte (the recording session was fresh
/// too, so even the sequence numbers agree), and the recorded replies must
/// give back the table that was programmed.
@Suite struct RecordedKernelTests {
    final class Playback: NetlinkTransport {
        let portID: UInt32 = 0
        private var exchanges = RecordedKernel.exchanges[...]
        private var queued: [[UInt8]] = []
        private(set) var mismatches: [String] = []

        func send(_ bytes: [UInt8]) throws {
            guard let exchange = exchanges.popFirst() else {
                mismatches.append("unexpected request \(hex(bytes))")
                throw NetlinkError.socket(operation: "send (no recorded exchange left)", errno: EIO)
            }
            if hex(bytes) != exchange.request {
                mismatches.append("\(exchange.what): sent \(hex(bytes)), recorded \(exchange.request)")
            }
            queued += exchange.replies.map { Array(hexBytes: $0) }
        }

        func receive() throws -> [UInt8] {
            guard !queued.isEmpty else { throw NetlinkError.socket(operation: "receive (nothing recorded)", errno: EAGAIN) }
            return queued.removeFirst()
        }

        var finished: Bool { exchanges.isEmpty }

        private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
    }

    @Test func recordedDumpsParseIntoTheProgrammedTable() throws {
        let playback = Playback()
        let ipvs = try IPVS(transport: playback)
        #expect(ipvs.familyID == 0x20)
        let services = try ipvs.services()
        #expect(services == [
            VirtualService(key: web, scheduler: .weightedRoundRobin, persistence: 300,
                           realServers: [server("10.0.1.2", weight: 1), server("10.0.1.3", weight: 2)]),
            VirtualService(key: .address(try IPAddress(parsing: "fd00::5"), .udp, port: 53), scheduler: .roundRobin,
                           realServers: [RealServer(address: try IPAddress(parsing: "fd00::1:2"), port: 53)]),
            VirtualService(key: .firewallMark(42, family: .ipv4), scheduler: .sourceHashing, schedulerFlags: .fallback),
        ])
        #expect(try ipvs.timeouts() == IPVSTimeouts(tcp: 3600, tcpFin: 120, udp: 300))
        let error = #expect(throws: LoadBalancerError.self) { try ipvs.deleteService(.firewallMark(77, family: .ipv4)) }
        #expect(error?.description == "IPVS: delete service FWM 77: No such process (ESRCH)")
        #expect(playback.mismatches == [])
        #expect(playback.finished)
    }
}

extension Array where Element == UInt8 {
    init(hexBytes text: String) {
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            bytes.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        self = bytes
    }
}

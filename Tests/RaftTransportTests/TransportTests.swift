import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Raft
@testable import RaftTransport
import Synchronization
import Testing

/// Collects log lines, so tests can check what an operator would read.
final class CapturedLog: Sendable {
    let lines = Mutex<[String]>([])

    var logger: Logger {
        Logger(label: "test") { _ in Handler(log: self) }
    }

    func contains(_ parts: String...) -> Bool {
        lines.withLock { $0.contains { line in parts.allSatisfy { line.contains($0) } } }
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            log.lines.withLock { $0.append("\(level) \(message)") }
        }
    }
}

final class Inbox: Sendable {
    let messages = Mutex<[Message]>([])
    let deliveries = Mutex<[(NodeID, MessageType, Bool)]>([])
}

func eventually(_ what: String, within seconds: Double = 5, _ condition: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(seconds)
    while !condition() {
        guard Date() < deadline else {
            Issue.record("timed out waiting for \(what)")
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

@Suite("Raft transport", .serialized)
struct TransportTests {
    /// A transport for member `id` of `peers`, wired to an inbox.
    func transport(_ id: NodeID, _ peers: [NodeID: PeerAddress], log: CapturedLog, inbox: Inbox,
                   options: RaftTransport.Options = .init()) -> RaftTransport {
        RaftTransport(id: id, peers: peers, options: options, handlers: .init(
            message: { m in inbox.messages.withLock { $0.append(m) } },
            delivery: { to, type, sent in inbox.deliveries.withLock { $0.append((to, type, sent)) } }),
            logger: log.logger)
    }

    /// An inbound pipeline on an EmbeddedChannel, as the listener builds it.
    func inbound(_ t: RaftTransport, maxFrame: Int = 1 << 20) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RaftFrameDecoder(maxFrameSize: maxFrame)))
        try channel.pipeline.syncOperations.addHandler(InboundHandler(transport: t))
        try channel.connect(to: SocketAddress(ipAddress: "192.0.2.9", port: 4242)).wait()
        return channel
    }

    let peers: [NodeID: PeerAddress] = [1: PeerAddress(host: "127.0.0.1", port: 1), 2: PeerAddress(host: "127.0.0.1", port: 2)]

    @Test func messagesFromAKnownMemberAreDelivered() throws {
        let log = CapturedLog(), inbox = Inbox()
        let t = transport(1, peers, log: log, inbox: inbox)
        let ch = try inbound(t)
        try ch.writeInbound(RaftFrame.hello(.init(from: 2, to: 1)).encoded())
        let m = Message(type: .heartbeat, from: 2, to: 1, term: 3, commit: 9)
        try ch.writeInbound(RaftFrame.message(m).encoded())
        #expect(inbox.messages.withLock { $0 } == [m])
        #expect(ch.isActive)
        _ = try? ch.finish()
    }

    @Test func unknownMemberIsRejectedWithAClearError() throws {
        let log = CapturedLog(), inbox = Inbox()
        let t = transport(1, peers, log: log, inbox: inbox)
        let ch = try inbound(t)
        try ch.writeInbound(RaftFrame.hello(.init(from: 7, to: 1)).encoded())
        try ch.writeInbound(RaftFrame.message(Message(type: .vote, from: 7, to: 1, term: 99)).encoded())
        #expect(!ch.isActive)
        #expect(inbox.messages.withLock { $0.isEmpty })
        #expect(log.contains("error", "192.0.2.9", "unknown member 7"))
        #expect(t.counterValues.rejectedConnections == 1)
    }

    @Test func spoofedSenderAndMisaddressedMessagesAreRejected() throws {
        let log = CapturedLog(), inbox = Inbox()
        let t = transport(1, peers, log: log, inbox: inbox)
        var ch = try inbound(t)
        try ch.writeInbound(RaftFrame.hello(.init(from: 2, to: 1)).encoded())
        try ch.writeInbound(RaftFrame.message(Message(type: .vote, from: 3, to: 1, term: 99)).encoded())
        #expect(!ch.isActive)
        #expect(log.contains("member 2", "claims to be from member 3"))
        ch = try inbound(t)
        try ch.writeInbound(RaftFrame.hello(.init(from: 2, to: 5)).encoded())
        #expect(!ch.isActive)
        #expect(log.contains("meant for member 5"))
        ch = try inbound(t)
        try ch.writeInbound(RaftFrame.message(Message(type: .vote, from: 2, to: 1, term: 99)).encoded())
        #expect(!ch.isActive)
        #expect(log.contains("before the hello"))
        #expect(inbox.messages.withLock { $0.isEmpty })
    }

    @Test func oversizedFrameClosesTheConnectionAndNamesThePeer() throws {
        let log = CapturedLog(), inbox = Inbox()
        let t = transport(1, peers, log: log, inbox: inbox)
        let ch = try inbound(t, maxFrame: 1024)
        try ch.writeInbound(RaftFrame.hello(.init(from: 2, to: 1)).encoded())
        let big = Message(type: .append, from: 2, to: 1, term: 1, entries: [Entry(term: 1, index: 1, data: Array(repeating: 1, count: 4096))])
        _ = try? ch.writeInbound(RaftFrame.message(big).encoded())
        #expect(!ch.isActive)
        #expect(log.contains("error", "member 2", "exceeds the limit of 1024"))
        #expect(inbox.messages.withLock { $0.isEmpty })
    }

    @Test func garbageAndTruncationCloseTheConnection() throws {
        let log = CapturedLog(), inbox = Inbox()
        let t = transport(1, peers, log: log, inbox: inbox)
        var ch = try inbound(t)
        _ = try? ch.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        #expect(!ch.isActive)
        #expect(log.contains("192.0.2.9"))
        ch = try inbound(t)
        try ch.writeInbound(RaftFrame.hello(.init(from: 2, to: 1)).encoded())
        let frame = RaftFrame.message(CodecTests.samples[0]).encoded()
        try ch.writeInbound(frame.getSlice(at: 0, length: 20)!)
        _ = try? ch.close().wait()
        #expect(log.contains("member 2", "unfinished frame") || log.contains("member 2", "middle of a frame"))
        #expect(inbox.messages.withLock { $0.isEmpty })
    }

    /// Two transports on loopback: messages flow; a peer that does not listen makes sends drop
    /// (reported, never blocking) until it appears, then the link reconnects by itself.
    @Test func loopbackDeliveryDropAndReconnect() async throws {
        let log = CapturedLog(), a = Inbox(), b = Inbox()
        let portA = Int.random(in: 21_000..<26_000), portB = portA + 1  // below the ephemeral range
        let peers: [NodeID: PeerAddress] = [1: .init(host: "127.0.0.1", port: portA), 2: .init(host: "127.0.0.1", port: portB)]
        var options = RaftTransport.Options()
        options.maxQueuedMessages = 8
        // The hook where mutual TLS will go runs first on every connection, both directions.
        let hooked = Mutex<[Bool]>([])
        options.configureSecurity = { _, isServer in hooked.withLock { $0.append(isServer) } }
        let t1 = transport(1, peers, log: log, inbox: a, options: options)
        let t2 = transport(2, peers, log: log, inbox: b, options: options)
        try await t1.listen(host: "127.0.0.1", port: portA)
        // Member 2 is not listening yet: the queue holds 8, the rest are dropped at once.
        t1.send((1...20).map { Message(type: .heartbeat, from: 1, to: 2, term: UInt64($0)) })
        try await eventually("drops to be reported") { a.deliveries.withLock { $0.filter { !$0.2 }.count } >= 12 }
        try await t2.listen(host: "127.0.0.1", port: portB)
        try await eventually("member 1 to reconnect and deliver") {
            t1.send([Message(type: .heartbeat, from: 1, to: 2, term: 100)])
            return b.messages.withLock { $0.contains { $0.term == 100 } }
        }
        t2.send([Message(type: .appendResponse, from: 2, to: 1, term: 100, index: 5)])
        try await eventually("member 2's answer") { a.messages.withLock { $0.contains { $0.type == .appendResponse } } }
        #expect(t1.counterValues.connects >= 1)
        #expect(hooked.withLock { $0.contains(true) && $0.contains(false) })
        await t1.shutdown()
        await t2.shutdown()
    }
}

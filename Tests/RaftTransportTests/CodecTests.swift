import NIOCore
import Raft
@testable import RaftTransport
import Testing

/// The message codec and the framing: every message kind round-trips; oversized, truncated and
/// garbage input is refused with an error that says what is wrong.
@Suite("Raft frames and message codec")
struct CodecTests {
    static let samples: [Message] = [
        Message(type: .append, from: 1, to: 2, term: 7, logTerm: 6, index: 41, entries: [
            Entry(term: 6, index: 42, data: Array("hello".utf8)),
            Entry(term: 7, index: 43, kind: .confChange, data: ConfChange.addLearner(4).encoded),
            Entry(term: 7, index: 44),
        ], commit: 40),
        Message(type: .appendResponse, from: 2, to: 1, term: 7, logTerm: 5, index: 41, reject: true, rejectHint: 38),
        Message(type: .vote, from: 3, to: 1, term: 8, logTerm: 7, index: 44, context: Array("transfer".utf8)),
        Message(type: .preVoteResponse, from: 1, to: 3, term: 9, reject: true),
        Message(type: .heartbeat, from: 1, to: 2, term: 7, commit: 44, context: [0, 1, 2, 255]),
        Message(type: .readIndexResponse, from: 1, to: 2, term: 7, index: 44, context: [9, 9]),
        Message(type: .snapshot, from: 1, to: 4, term: 7, snapshot: Snapshot(
            metadata: SnapshotMetadata(index: 100, term: 6, confState: ConfState(voters: [1, 2, 3], learners: [4])),
            data: Array(repeating: 0xAB, count: 10_000))),
        Message(type: .propose, from: 2, to: 1, entries: [Entry(term: 0, index: 0, data: [1, 2, 3])]),
        Message(type: .timeoutNow, from: 1, to: 2, term: 7),
    ]

    @Test func everyMessageRoundTrips() throws {
        for m in Self.samples {
            #expect(try RaftMessageCodec.decode(RaftMessageCodec.encode(m)) == m)
            var stream = RaftFrame.message(m).encoded()
            let body = try #require(try RaftFrameDecoder.next(&stream, maxFrameSize: 1 << 20))
            #expect(try RaftFrame.decode(body: body) == .message(m))
            #expect(stream.readableBytes == 0)
        }
    }

    @Test func framesSplitAcrossReadsAndBackToBack() throws {
        var all = ByteBuffer()
        for m in Self.samples {
            var f = RaftFrame.message(m).encoded()
            all.writeBuffer(&f)
        }
        // Feed the stream a few bytes at a time, as TCP may deliver it.
        var pending = ByteBuffer()
        var decoded: [Message] = []
        while all.readableBytes > 0 {
            var chunk = all.readSlice(length: min(7, all.readableBytes))!
            pending.writeBuffer(&chunk)
            while let body = try RaftFrameDecoder.next(&pending, maxFrameSize: 1 << 20) {
                guard case let .message(m) = try RaftFrame.decode(body: body) else { Issue.record("not a message"); return }
                decoded.append(m)
            }
        }
        #expect(decoded == Self.samples)
    }

    @Test func helloRoundTrips() throws {
        var b = RaftFrame.hello(.init(from: 3, to: 1)).encoded()
        let body = try #require(try RaftFrameDecoder.next(&b, maxFrameSize: 64))
        #expect(try RaftFrame.decode(body: body) == .hello(.init(from: 3, to: 1)))
    }

    @Test func oversizedFrameIsRefusedBeforeItsBodyArrives() {
        var b = ByteBuffer()
        b.writeInteger(UInt32(1 << 30))
        b.writeInteger(UInt8(2))
        #expect(throws: RaftFrame.Error.tooLarge(size: 1 << 30, limit: 1 << 20)) {
            _ = try RaftFrameDecoder.next(&b, maxFrameSize: 1 << 20)
        }
        let text = "\(RaftFrame.Error.tooLarge(size: 1 << 30, limit: 1 << 20))"
        #expect(text.contains("1073741824") && text.contains("limit"))
    }

    @Test func truncatedFrameWaitsThenFailsAtEndOfStream() throws {
        let full = RaftFrame.message(Self.samples[0]).encoded()
        var partial = full.getSlice(at: 0, length: full.readableBytes - 3)!
        #expect(try RaftFrameDecoder.next(&partial, maxFrameSize: 1 << 20) == nil)
        // A message whose frame length is right but whose body stops short.
        for cut in [1, 10, 30, 60, full.readableBytes - 6] {
            var body = full.getSlice(at: 4, length: cut)!
            body.moveReaderIndex(forwardBy: 0)
            #expect(throws: RaftFrame.Error.self) { _ = try RaftFrame.decode(body: body) }
        }
    }

    @Test func garbageIsRefusedWithAReason() {
        func decode(_ bytes: [UInt8]) -> String {
            do {
                _ = try RaftFrame.decode(body: ByteBuffer(bytes: bytes))
                return "decoded"
            } catch {
                return "\(error)"
            }
        }
        #expect(decode([]) == "empty frame")
        #expect(decode([9, 1, 2]) == "unknown frame kind 9")
        #expect(decode([1] + Array("HTTP".utf8) + [1] + Array(repeating: 0, count: 16)).contains("bad magic"))
        #expect(decode([2, 7]).contains("unknown message format version 7"))
        #expect(decode([2, 1, 200]).contains("unknown message type 200"))
        #expect(decode([2, 1, MessageType.hup.rawValue]).contains("local"))
        #expect(decode([2, 1, MessageType.append.rawValue, 1, 2]).contains("truncated"))
        // A count that claims more entries than bytes remain must not be believed.
        var lying = RaftMessageCodec.encode(Message(type: .append, from: 1, to: 2, term: 1))
        let countAt = 2 + 7 * 8 + 1 + 4
        lying[countAt] = 0xFF; lying[countAt + 1] = 0xFF; lying[countAt + 2] = 0xFF; lying[countAt + 3] = 0x7F
        #expect(decode([2] + lying).contains("entry count claims"))
        #expect(decode([2] + RaftMessageCodec.encode(Self.samples[0]) + [0]).contains("after the end"))
        // Random bytes never crash the decoder.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let n = Int.random(in: 0..<200, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if !bytes.isEmpty { bytes[0] = 2 }
            if bytes.count > 1 { bytes[1] = 1 }
            _ = decode(bytes)
        }
    }
}

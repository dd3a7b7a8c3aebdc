import NIOCore
import Raft

/// Frames on a Raft connection: `length u32 (big-endian) | kind u8 | payload`, the length counting
/// kind and payload. The first frame a dialler sends is a `hello` naming itself and the member it
/// meant to reach; every later frame is one `message`.
public enum RaftFrame: Sendable, Hashable {
    case hello(Hello)
    case message(Message)

    public struct Hello: Sendable, Hashable {
        public var from: NodeID
        public var to: NodeID

        public init(from: NodeID, to: NodeID) {
            self.from = from
            self.to = to
        }
    }

    static let magic: [UInt8] = Array("SWRT".utf8)
    static let helloKind: UInt8 = 1
    static let messageKind: UInt8 = 2
    public static let headerSize = 4

    public enum Error: Swift.Error, Sendable, Hashable, CustomStringConvertible {
        case tooLarge(size: Int, limit: Int)
        case empty
        case unknownKind(UInt8)
        case badHello(String)
        case malformedMessage(RaftMessageCodec.Error)
        case truncated(buffered: Int, expected: Int)

        public var description: String {
            switch self {
            case let .tooLarge(size, limit): "frame of \(size) bytes exceeds the limit of \(limit) bytes"
            case .empty: "empty frame"
            case let .unknownKind(k): "unknown frame kind \(k)"
            case let .badHello(why): "bad hello frame: \(why)"
            case let .malformedMessage(e): "malformed message: \(e)"
            case let .truncated(buffered, expected):
                "connection closed in the middle of a frame (\(buffered) of \(expected) bytes received)"
            }
        }
    }

    /// The frame with its length prefix, ready to write.
    public func encoded(allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        var b: ByteBuffer
        switch self {
        case let .hello(h):
            b = allocator.buffer(capacity: 4 + 1 + 4 + 1 + 16)
            b.writeInteger(UInt32(0))
            b.writeInteger(Self.helloKind)
            b.writeBytes(Self.magic)
            b.writeInteger(RaftMessageCodec.version)
            b.writeInteger(h.from, endianness: .little)
            b.writeInteger(h.to, endianness: .little)
        case let .message(m):
            b = allocator.buffer(capacity: 5 + RaftMessageCodec.encodedSizeHint(m))
            b.writeInteger(UInt32(0))
            b.writeInteger(Self.messageKind)
            RaftMessageCodec.encode(m, into: &b)
        }
        b.setInteger(UInt32(b.readableBytes - Self.headerSize), at: b.readerIndex)
        return b
    }

    /// Decodes one frame's body (after the length prefix).
    public static func decode(body: ByteBuffer) throws(Error) -> RaftFrame {
        var b = body
        guard let kind = b.readInteger(as: UInt8.self) else { throw .empty }
        switch kind {
        case helloKind:
            guard b.readableBytes == 4 + 1 + 16 else { throw .badHello("\(b.readableBytes) bytes, expected 21") }
            guard b.readBytes(length: 4) == magic else { throw .badHello("bad magic (not a swarmnet Raft peer)") }
            let v = b.readInteger(as: UInt8.self)!
            guard v == RaftMessageCodec.version else { throw .badHello("version \(v), this node speaks \(RaftMessageCodec.version)") }
            let from = b.readInteger(endianness: .little, as: UInt64.self)!
            let to = b.readInteger(endianness: .little, as: UInt64.self)!
            return .hello(Hello(from: from, to: to))
        case messageKind:
            do {
                return .message(try RaftMessageCodec.decode(b))
            } catch {
                throw .malformedMessage(error)
            }
        default:
            throw .unknownKind(kind)
        }
    }
}

/// Splits a byte stream into frame bodies. The length is checked before any byte of the body is
/// buffered, so a peer cannot make this node hold more than `maxFrameSize` for one frame.
public struct RaftFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = ByteBuffer

    public let maxFrameSize: Int

    public init(maxFrameSize: Int) {
        self.maxFrameSize = maxFrameSize
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let body = try Self.next(&buffer, maxFrameSize: maxFrameSize) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(body))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            let expected = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self).map { Int($0) + RaftFrame.headerSize }
            let got = buffer.readableBytes
            buffer.clear()
            throw RaftFrame.Error.truncated(buffered: got, expected: expected ?? RaftFrame.headerSize)
        }
        return .needMoreData
    }

    /// The next whole frame body in `buffer`, or nil if more bytes are needed (pure, for tests).
    public static func next(_ buffer: inout ByteBuffer, maxFrameSize: Int) throws(RaftFrame.Error) -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard UInt64(length) <= UInt64(maxFrameSize) else { throw .tooLarge(size: Int(length), limit: maxFrameSize) }
        guard buffer.readableBytes >= RaftFrame.headerSize + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: RaftFrame.headerSize)
        return buffer.readSlice(length: Int(length))!
    }
}

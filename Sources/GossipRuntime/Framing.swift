import NIOCore

/// Push-pull streams carry one frame each way: `length u32 (big-endian) | payload`, the payload
/// sealed when a keyring is set. The length is checked before any byte of the payload is buffered,
/// so a peer cannot make this node hold more than `maxFrameSize`.
struct LengthPrefixedFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    enum Error: Swift.Error, CustomStringConvertible {
        case frameTooLarge(size: Int, limit: Int)

        var description: String {
            switch self {
            case .frameTooLarge(let size, let limit): "stream frame of \(size) bytes exceeds limit \(limit)"
            }
        }
    }

    static let headerSize = 4
    let maxFrameSize: Int

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard UInt64(length) <= UInt64(maxFrameSize) else {
            throw Error.frameTooLarge(size: Int(length), limit: maxFrameSize)
        }
        guard buffer.readableBytes >= Self.headerSize + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: Self.headerSize)
        let frame = buffer.readSlice(length: Int(length))!
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    static func frame(_ payload: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: headerSize + payload.count)
        buffer.writeInteger(UInt32(payload.count))
        buffer.writeBytes(payload)
        return buffer
    }
}

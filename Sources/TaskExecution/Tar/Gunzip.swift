#if canImport(Glibc)
import Glibc
#endif
import CZlib

/// gzip, for compressed layers and `docker import` tarballs: detected by
/// their magic bytes and inflated into a file, so that the tar reader and
/// the digest always see the uncompressed stream (a layer's diff ID is the
/// digest of its uncompressed tar).
public enum Gunzip {
    public static func isCompressed(_ region: FileRegion) -> Bool {
        (try? region.prefix(2)) == [0x1f, 0x8b]
    }

    /// Inflates `region` (one or more gzip members) into `descriptor`;
    /// returns the bytes written. A corrupt or truncated stream is an error.
    @discardableResult
    public static func inflate(_ region: FileRegion, into descriptor: Int32, limit: Int64 = 64 << 30) throws -> Int64 {
        var stream = z_stream()
        // 15 + 32: a zlib or gzip header, detected.
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw TarError.badHeader(at: 0, "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: 1 << 18)
        var total: Int64 = 0
        var ended = false
        try region.forEachChunk { chunk in
            var input = Array(chunk)
            try input.withUnsafeMutableBufferPointer { inputBuffer in
                stream.next_in = inputBuffer.baseAddress
                stream.avail_in = uInt(inputBuffer.count)
                while stream.avail_in > 0 {
                    if ended {
                        // A further gzip member follows (concatenated gzip).
                        inflateReset(&stream)
                        ended = false
                    }
                    let produced: Int = try output.withUnsafeMutableBufferPointer { outputBuffer in
                        stream.next_out = outputBuffer.baseAddress
                        stream.avail_out = uInt(outputBuffer.count)
                        let status = CZlib.inflate(&stream, Z_NO_FLUSH)
                        switch status {
                        case Z_OK, Z_BUF_ERROR: break
                        case Z_STREAM_END: ended = true
                        default:
                            throw TarError.badHeader(at: total, "the gzip stream is corrupt (zlib status \(status))")
                        }
                        return outputBuffer.count - Int(stream.avail_out)
                    }
                    if produced == 0 && !ended && stream.avail_in > 0 && stream.avail_out > 0 { break }
                    total += Int64(produced)
                    guard total <= limit else { throw TarError.badHeader(at: total, "the uncompressed stream is larger than \(limit) bytes") }
                    try output.withUnsafeBytes { try writeAll(descriptor, UnsafeRawBufferPointer(rebasing: $0[0..<produced])) }
                }
            }
        }
        guard ended else { throw TarError.truncated(at: total) }
        return total
    }

    static func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var written = 0
        while written < bytes.count {
            let result = write(descriptor, bytes.baseAddress! + written, bytes.count - written)
            if result < 0 {
                if errno == EINTR { continue }
                throw TarError.io("write", errno)
            }
            written += result
        }
    }
}

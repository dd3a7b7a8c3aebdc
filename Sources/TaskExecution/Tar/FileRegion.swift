#if canImport(Glibc)
import Glibc
#endif
import Crypto

/// A byte range of an open file: a whole archive, or one member inside it
/// (a layer inside `docker save`'s tarball is read in place, not copied).
/// The region does not own the descriptor.
public struct FileRegion: Sendable {
    public let descriptor: Int32
    public let start: Int64
    public let length: Int64

    public init(descriptor: Int32, start: Int64 = 0, length: Int64) {
        self.descriptor = descriptor
        self.start = start
        self.length = length
    }

    /// The part of this region a tar member's data occupies.
    public func member(_ entry: TarEntry) -> FileRegion {
        FileRegion(descriptor: descriptor, start: start + entry.dataOffset, length: entry.size)
    }

    /// Reads exactly `count` bytes at `offset` within the region.
    public func read(at offset: Int64, count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset + Int64(count) <= length else { throw TarError.truncated(at: offset) }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + done, count - done, off_t(start + offset) + off_t(done))
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw TarError.io("pread", errno)
            }
            if got == 0 { throw TarError.truncated(at: offset + Int64(done)) }
            done += got
        }
        return bytes
    }

    /// Calls `body` with successive chunks of the region, in order.
    public func forEachChunk(size chunkSize: Int = 1 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var offset: Int64 = 0
        while offset < length {
            let want = Int(min(Int64(chunkSize), length - offset))
            let got = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress!, want, off_t(start + offset)) }
            if got < 0 {
                if errno == EINTR { continue }
                throw TarError.io("pread", errno)
            }
            if got == 0 { throw TarError.truncated(at: offset) }
            try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<got])) }
            offset += Int64(got)
        }
    }

    /// The region's first bytes (fewer when the region is shorter).
    public func prefix(_ count: Int) throws -> [UInt8] {
        try read(at: 0, count: Int(min(Int64(count), length)))
    }

    /// `sha256:HEX` of the region's bytes.
    public func sha256Digest() throws -> String {
        var hasher = SHA256()
        try forEachChunk { hasher.update(bufferPointer: $0) }
        return "sha256:" + hexString(hasher.finalize())
    }
}

/// Lower-case hex of bytes (digests).
func hexString<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0xf)])
    }
    return String(decoding: text, as: UTF8.self)
}

/// SHA-256 of bytes in memory (image configs).
enum SHA256Digest {
    static func of(_ bytes: [UInt8]) -> SHA256.Digest { SHA256.hash(data: bytes) }
}

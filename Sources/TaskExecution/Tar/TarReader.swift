#if canImport(Glibc)
import Glibc
#endif

/// One member of a tar archive: its header, with GNU long names and PAX
/// records already applied, and where its data lies in the file.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case regular, hardLink, symbolicLink, characterDevice, blockDevice, directory, fifo
    }

    public var path: String
    public var kind: Kind
    public var mode: UInt32
    public var uid: Int
    public var gid: Int
    public var size: Int64
    public var modified: Int64
    public var linkTarget: String
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    /// Extended attributes from PAX `SCHILY.xattr.*` records.
    public var extendedAttributes: [String: [UInt8]]
    /// Offset of the member's data in the file.
    public var dataOffset: Int64
}

/// Why an archive could not be read.
public enum TarError: Error, Sendable, Equatable, CustomStringConvertible {
    case truncated(at: Int64)
    case badChecksum(at: Int64)
    case badHeader(at: Int64, String)
    case io(String, Int32)

    public var description: String {
        switch self {
        case .truncated(let offset): "the archive is truncated (it ends inside the member at byte \(offset))"
        case .badChecksum(let offset): "the archive is damaged: bad header checksum at byte \(offset)"
        case .badHeader(let offset, let why): "the archive is damaged: bad header at byte \(offset): \(why)"
        case .io(let call, let code): "reading the archive: \(call): \(String(cString: strerror(code)))"
        }
    }
}

/// Reads a tar archive (ustar, GNU and PAX) that lies in a region of an
/// open file, one header at a time, without reading members' data: callers
/// read that through `FileRegion` when they need it. Every size is checked
/// against the region, so a damaged or truncated archive is an error, never
/// a read past its end.
public struct TarReader {
    private let region: FileRegion
    private var offset: Int64 = 0
    private var finished = false

    public init(_ region: FileRegion) { self.region = region }

    /// All members, in order.
    public static func entries(of region: FileRegion) throws -> [TarEntry] {
        var reader = TarReader(region)
        var result: [TarEntry] = []
        while let entry = try reader.next() { result.append(entry) }
        return result
    }

    /// The next member, or nil at the end of the archive.
    public mutating func next() throws -> TarEntry? {
        guard !finished else { return nil }
        var longName: String?
        var longLink: String?
        var pax: [String: [UInt8]] = [:]
        while true {
            guard offset + 512 <= region.length else {
                // An archive that stops at a block boundary without its end
                // marker is accepted (some writers omit it); one that stops
                // inside a header is not.
                if offset == region.length { finished = true; return nil }
                throw TarError.truncated(at: offset)
            }
            let header = try region.read(at: offset, count: 512)
            let headerOffset = offset
            if header.allSatisfy({ $0 == 0 }) {
                finished = true
                return nil
            }
            try Self.verifyChecksum(header, at: headerOffset)
            let size = try Self.number(header[124..<136], at: headerOffset, field: "size")
            guard size >= 0, headerOffset + 512 + size <= region.length else {
                throw TarError.truncated(at: headerOffset)
            }
            let dataOffset = headerOffset + 512
            offset = dataOffset + (size + 511) / 512 * 512
            let flag = header[156]
            switch flag {
            case UInt8(ascii: "L"):
                longName = Self.string(try region.read(at: dataOffset, count: Int(size))[...])
                continue
            case UInt8(ascii: "K"):
                longLink = Self.string(try region.read(at: dataOffset, count: Int(size))[...])
                continue
            case UInt8(ascii: "x"):
                pax.merge(try Self.paxRecords(try region.read(at: dataOffset, count: Int(size)), at: headerOffset)) { $1 }
                continue
            case UInt8(ascii: "g"):
                continue // global PAX headers carry nothing a layer needs
            default:
                break
            }
            var entry = TarEntry(
                path: "", kind: .regular,
                mode: UInt32(truncatingIfNeeded: try Self.number(header[100..<108], at: headerOffset, field: "mode")),
                uid: Int(try Self.number(header[108..<116], at: headerOffset, field: "uid")),
                gid: Int(try Self.number(header[116..<124], at: headerOffset, field: "gid")),
                size: size,
                modified: try Self.number(header[136..<148], at: headerOffset, field: "mtime"),
                linkTarget: Self.string(header[157..<257]),
                deviceMajor: UInt32(truncatingIfNeeded: try Self.number(header[329..<337], at: headerOffset, field: "devmajor")),
                deviceMinor: UInt32(truncatingIfNeeded: try Self.number(header[337..<345], at: headerOffset, field: "devminor")),
                extendedAttributes: [:], dataOffset: dataOffset)
            var name = Self.string(header[0..<100])
            // ustar (not GNU's "ustar  ") keeps a path prefix.
            if header[257..<263].elementsEqual(Array("ustar\0".utf8)) {
                let prefix = Self.string(header[345..<500])
                if !prefix.isEmpty { name = prefix + "/" + name }
            }
            entry.path = longName ?? name
            if let longLink { entry.linkTarget = longLink }
            for (key, value) in pax {
                switch key {
                case "path": entry.path = String(decoding: value, as: UTF8.self)
                case "linkpath": entry.linkTarget = String(decoding: value, as: UTF8.self)
                case "uid": entry.uid = Int(String(decoding: value, as: UTF8.self)) ?? entry.uid
                case "gid": entry.gid = Int(String(decoding: value, as: UTF8.self)) ?? entry.gid
                case "size":
                    guard let paxSize = Int64(String(decoding: value, as: UTF8.self)), paxSize >= 0,
                          dataOffset + paxSize <= region.length else { throw TarError.truncated(at: headerOffset) }
                    entry.size = paxSize
                    offset = dataOffset + (paxSize + 511) / 512 * 512
                default:
                    if key.hasPrefix("SCHILY.xattr.") { entry.extendedAttributes[String(key.dropFirst(13))] = value }
                }
            }
            switch flag {
            case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): entry.kind = entry.path.hasSuffix("/") ? .directory : .regular
            case UInt8(ascii: "1"): entry.kind = .hardLink
            case UInt8(ascii: "2"): entry.kind = .symbolicLink
            case UInt8(ascii: "3"): entry.kind = .characterDevice
            case UInt8(ascii: "4"): entry.kind = .blockDevice
            case UInt8(ascii: "5"): entry.kind = .directory
            case UInt8(ascii: "6"): entry.kind = .fifo
            default:
                throw TarError.badHeader(at: headerOffset, "unknown member type '\(Character(Unicode.Scalar(flag)))' for \(entry.path)")
            }
            if entry.kind != .regular { entry.size = entry.kind == .hardLink ? 0 : entry.size }
            return entry
        }
    }

    // MARK: - Header fields

    static func verifyChecksum(_ header: [UInt8], at offset: Int64) throws {
        let recorded = try number(header[148..<156], at: offset, field: "checksum")
        var unsigned: Int64 = 0
        var signed: Int64 = 0
        for (index, byte) in header.enumerated() {
            let value = (148..<156).contains(index) ? UInt8(ascii: " ") : byte
            unsigned += Int64(value)
            signed += Int64(Int8(bitPattern: value))
        }
        guard recorded == unsigned || recorded == signed else { throw TarError.badChecksum(at: offset) }
    }

    /// A numeric field: octal text, or base-256 when the first byte's high
    /// bit is set (GNU, for sizes of 8 GiB and more).
    static func number(_ field: ArraySlice<UInt8>, at offset: Int64, field name: String) throws -> Int64 {
        guard let first = field.first else { return 0 }
        if first & 0x80 != 0 {
            var value: Int64 = Int64(first & 0x7f)
            for byte in field.dropFirst() {
                guard value < Int64.max >> 8 else { throw TarError.badHeader(at: offset, "\(name) is too large") }
                value = value << 8 | Int64(byte)
            }
            return value
        }
        var value: Int64 = 0
        var seenDigit = false
        for byte in field {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "7"):
                guard value < Int64.max >> 3 else { throw TarError.badHeader(at: offset, "\(name) is too large") }
                value = value << 3 | Int64(byte - UInt8(ascii: "0"))
                seenDigit = true
            case UInt8(ascii: " "), 0:
                if seenDigit { return value }
            default:
                throw TarError.badHeader(at: offset, "\(name) is not an octal number")
            }
        }
        return value
    }

    /// A NUL-terminated text field.
    static func string(_ field: ArraySlice<UInt8>) -> String {
        let end = field.firstIndex(of: 0) ?? field.endIndex
        return String(decoding: field[field.startIndex..<end], as: UTF8.self)
    }

    /// PAX records: `LENGTH KEY=VALUE\n`, where LENGTH counts the whole record.
    static func paxRecords(_ data: [UInt8], at offset: Int64) throws -> [String: [UInt8]] {
        var records: [String: [UInt8]] = [:]
        var index = 0
        while index < data.count {
            if data[index] == 0 { break }
            guard let space = data[index...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: data[index..<space], as: UTF8.self)), length > space - index,
                  index + length <= data.count, data[index + length - 1] == UInt8(ascii: "\n"),
                  let equals = data[(space + 1)..<(index + length)].firstIndex(of: UInt8(ascii: "="))
            else { throw TarError.badHeader(at: offset, "malformed PAX record") }
            let key = String(decoding: data[(space + 1)..<equals], as: UTF8.self)
            records[key] = Array(data[(equals + 1)..<(index + length - 1)])
            index += length
        }
        return records
    }
}

import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Builds tar archives in memory for tests (ustar, with GNU long names),
/// including the hostile ones the image store must refuse: `..` members,
/// links that escape, device nodes, truncated archives.
public struct TarWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public enum Kind: UInt8 {
        case file = 48, hardLink = 49, symlink = 50, characterDevice = 51, blockDevice = 52, directory = 53, fifo = 54
    }

    public mutating func file(_ name: String, _ content: String, mode: Int = 0o644) { file(name, Array(content.utf8), mode: mode) }

    public mutating func file(_ name: String, _ content: [UInt8], mode: Int = 0o644) {
        header(name, kind: .file, size: content.count, mode: mode)
        bytes += content
        pad()
    }

    public mutating func directory(_ name: String, mode: Int = 0o755) { header(name, kind: .directory, size: 0, mode: mode) }
    public mutating func symlink(_ name: String, to target: String) { header(name, kind: .symlink, size: 0, mode: 0o777, link: target) }
    public mutating func hardLink(_ name: String, to target: String) { header(name, kind: .hardLink, size: 0, mode: 0o644, link: target) }
    public mutating func device(_ name: String) { header(name, kind: .characterDevice, size: 0, mode: 0o666, major: 1, minor: 3) }

    /// The two zero blocks that end an archive.
    public mutating func finish() { bytes += [UInt8](repeating: 0, count: 1024) }

    public func finished() -> [UInt8] {
        var copy = self
        copy.finish()
        return copy.bytes
    }

    private mutating func header(_ name: String, kind: Kind, size: Int, mode: Int, link: String = "", major: Int = 0, minor: Int = 0) {
        if name.utf8.count > 99 {
            header("././@LongLink", kind: .file, size: name.utf8.count + 1, mode: 0, rawKind: UInt8(ascii: "L"))
            bytes += Array(name.utf8) + [0]
            pad()
        }
        header(String(name.prefix(99)), kind: kind, size: size, mode: mode, link: link, major: major, minor: minor, rawKind: kind.rawValue)
    }

    private mutating func header(_ name: String, kind: Kind, size: Int, mode: Int, link: String = "", major: Int = 0, minor: Int = 0,
                                 rawKind: UInt8) {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ text: String, at offset: Int, width: Int) {
            for (index, byte) in text.utf8.prefix(width).enumerated() { block[offset + index] = byte }
        }
        func octal(_ value: Int, at offset: Int, width: Int) {
            put(String(String(value, radix: 8).suffix(width - 1)).leftPadded(to: width - 1), at: offset, width: width - 1)
        }
        put(name, at: 0, width: 100)
        octal(mode, at: 100, width: 8)
        octal(0, at: 108, width: 8)
        octal(0, at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(1_700_000_000, at: 136, width: 12)
        block[156] = rawKind
        put(link, at: 157, width: 100)
        put("ustar\u{0}00", at: 257, width: 8)
        octal(major, at: 329, width: 8)
        octal(minor, at: 337, width: 8)
        put("        ", at: 148, width: 8)
        let sum = block.reduce(0) { $0 + Int($1) }
        put(String(String(sum, radix: 8)).leftPadded(to: 6) + "\u{0} ", at: 148, width: 8)
        bytes += block
    }

    private mutating func pad() {
        let remainder = bytes.count % 512
        if remainder != 0 { bytes += [UInt8](repeating: 0, count: 512 - remainder) }
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// `docker save`'s format (docker-archive), built from layer tarballs.
public enum DockerArchive {
    public static func digest(_ bytes: [UInt8]) -> String {
        "sha256:" + SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    /// An archive with one image; `diffIDs` overrides the layers' real
    /// digests in the config (a tampered image).
    public static func make(tag: String?, layers: [[UInt8]], config: [String: Any] = ["Cmd": ["sh"]], diffIDs: [String]? = nil) -> [UInt8] {
        let ids = diffIDs ?? layers.map(digest)
        let image: [String: Any] = ["architecture": "amd64", "os": "linux", "created": "2023-11-14T22:13:20Z", "config": config,
                                    "rootfs": ["type": "layers", "diff_ids": ids]]
        let raw = Array(try! JSONSerialization.data(withJSONObject: image, options: [.sortedKeys]))
        let configName = String(digest(raw).dropFirst(7)) + ".json"
        var archive = TarWriter()
        var names: [String] = []
        for (index, layer) in layers.enumerated() {
            archive.file("layer\(index)/layer.tar", layer)
            names.append("layer\(index)/layer.tar")
        }
        archive.file(configName, raw)
        var item: [String: Any] = ["Config": configName, "Layers": names]
        if let tag { item["RepoTags"] = [tag] }
        archive.file("manifest.json", Array(try! JSONSerialization.data(withJSONObject: [item])))
        return archive.finished()
    }
}

/// The images `scripts/images` builds (busybox, whoami), built on first use.
public enum TestImages {
    public static func path(_ name: String) throws -> String {
        let directory = "/var/cache/swarmnet/images"
        let path = "\(directory)/\(name).tar"
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/images").path
        try run([script, directory])
        guard FileManager.default.fileExists(atPath: path) else {
            throw CommandFailed(command: [script], status: 0, stderr: "\(path) was not built")
        }
        return path
    }
}

/// `bytes` compressed by gzip(1), through a scratch file in `directory`.
public func gzipped(_ bytes: [UInt8], in directory: String) throws -> [UInt8] {
    let path = directory + "/gzip-\(UInt32.random(in: 0...UInt32.max))"
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
    defer { try? FileManager.default.removeItem(atPath: path + ".gz") }
    try run(["gzip", path])
    return Array(try Data(contentsOf: URL(fileURLWithPath: path + ".gz")))
}

/// What tasks leave when a test ends early: every container `runc --root
/// runtimeRoot` knows is deleted (its process killed), and every mount
/// under `directory` (tasks' root filesystems) detached, deepest first.
public func removeTasks(runtimeRoot: String, mountsUnder directory: String) {
    for id in ((try? run(["runc", "--root", runtimeRoot, "list", "-q"])) ?? "").split(separator: "\n") {
        _ = try? run(["runc", "--root", runtimeRoot, "delete", "--force", String(id)])
    }
    unmountAll(under: directory)
}

/// Detaches every mount below `directory`, deepest first.
public func unmountAll(under directory: String) {
    let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
    for line in mounts.split(separator: "\n").reversed() {
        let fields = line.split(separator: " ")
        if fields.count > 1, fields[1].hasPrefix(directory + "/") { umount2(String(fields[1]), Int32(MNT_DETACH)) }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import Synchronization

/// One image in the store.
public struct Image: Sendable, Equatable {
    /// `sha256:HEX` of the config's bytes.
    public var id: String
    public var config: ImageConfig
    public var tags: [ImageReference]
    /// Bytes of the image's layers, unpacked.
    public var size: Int64

    public var shortID: String { String(id.dropFirst("sha256:".count).prefix(12)) }
}

/// The node's local images: content-addressed layers, each unpacked once
/// (`layers/HEX`, ready to be an overlayfs lower directory), configs by
/// image ID (`configs/HEX.json`), and tags (`index.json`). Blocking: call
/// it off the cooperative pool. Operations are serialised, and each either
/// completes or leaves the store as it was.
public final class ImageStore: Sendable {
    public let root: String
    private let index: Mutex<Index>
    /// Serialises loads, imports and removals (the index lock is held only
    /// briefly, so reads go on during a long load).
    private let writer = Mutex(())

    struct Index: Codable {
        var tags: [String: String] = [:]
        /// Unpacked size per layer (diff ID).
        var layerSizes: [String: Int64] = [:]
        var images: [String: ImageConfig] = [:]
        enum CodingKeys: String, CodingKey { case tags, layerSizes }
    }

    public init(root: String) throws {
        self.root = root
        for directory in [root, root + "/layers", root + "/configs", root + "/tmp"] {
            try FileTree.makeDirectory(directory)
        }
        // A load that was cut off leaves only its temporary files.
        try? FileTree.remove(root + "/tmp")
        try FileTree.makeDirectory(root + "/tmp")
        var loaded = Index()
        if let bytes = try FileTree.read(root + "/index.json") {
            loaded = try JSONDecoder().decode(Index.self, from: Data(bytes))
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root + "/configs")) ?? [] where name.hasSuffix(".json") {
            guard let bytes = try FileTree.read(root + "/configs/" + name),
                  let config = try? JSONDecoder().decode(ImageConfig.self, from: Data(bytes)) else { continue }
            loaded.images["sha256:" + name.dropLast(5)] = config
        }
        loaded.tags = loaded.tags.filter { loaded.images[$0.value] != nil }
        index = Mutex(loaded)
    }

    // MARK: - Reading

    public func list() -> [Image] {
        index.withLock { index in index.images.keys.sorted().compactMap { Self.image($0, in: index) } }
    }

    /// An image by tag (`busybox`, `busybox:1.36`), by full ID or by a
    /// unique ID prefix.
    public func image(_ reference: String) throws -> Image {
        try index.withLock { index in
            if let parsed = try? ImageReference(parsing: reference), let id = index.tags[parsed.description],
               let image = Self.image(id, in: index) {
                return image
            }
            let hex = reference.hasPrefix("sha256:") ? String(reference.dropFirst(7)) : reference
            guard !hex.isEmpty, hex.allSatisfy(\.isHexDigit) else { throw ImageError.notFound(reference) }
            let matches = index.images.keys.filter { $0.dropFirst(7).hasPrefix(hex) }
            guard matches.count <= 1 else { throw ImageError.ambiguous(reference) }
            guard let id = matches.first, let image = Self.image(id, in: index) else { throw ImageError.notFound(reference) }
            return image
        }
    }

    /// The directories of an image's layers, lowest first.
    public func layerDirectories(_ image: Image) -> [String] {
        image.config.rootfs.diffIDs.map { layerDirectory($0) }
    }

    func layerDirectory(_ diffID: String) -> String { root + "/layers/" + diffID.dropFirst("sha256:".count) }

    private static func image(_ id: String, in index: Index) -> Image? {
        guard let config = index.images[id] else { return nil }
        let tags = index.tags.filter { $0.value == id }.keys.sorted().compactMap { try? ImageReference(parsing: $0) }
        let size = config.rootfs.diffIDs.reduce(Int64(0)) { $0 + (index.layerSizes[$1] ?? 0) }
        return Image(id: id, config: config, tags: tags, size: size)
    }

    // MARK: - Loading

    /// Loads every image of a `docker save` tarball (docker-archive, or an
    /// OCI layout), which lies in `archive`. Digests are checked before
    /// anything is kept: on any error the store is as it was. Returns the
    /// lines Docker prints ("Loaded image: busybox:latest").
    public func load(_ archive: FileRegion, progress: (String) -> Void = { _ in }) throws -> [String] {
        try writer.withLock { _ in
            let members = try Self.members(of: archive)
            let images = try members["manifest.json"] != nil
                ? Self.dockerArchiveImages(archive, members) : Self.ociLayoutImages(archive, members)
            guard !images.isEmpty else { throw ImageError.invalidArchive("it holds no image (no manifest.json or index.json)") }
            var pending: [(id: String, raw: [UInt8], config: ImageConfig, tags: [ImageReference])] = []
            var added: [String] = []
            do {
                for image in images {
                    let raw = try archive.member(image.config).read(at: 0, count: Int(image.config.size))
                    let id = "sha256:" + hexString(SHA256Digest.of(raw))
                    if let expected = image.configDigest, expected != id {
                        throw ImageError.digestMismatch(what: "the image config \(image.config.path)", expected: expected, actual: id)
                    }
                    let config: ImageConfig
                    do {
                        config = try JSONDecoder().decode(ImageConfig.self, from: Data(raw))
                    } catch {
                        throw ImageError.invalidArchive("the image config \(image.config.path) is not valid JSON: \(error)")
                    }
                    guard config.rootfs.diffIDs.count == image.layers.count else {
                        throw ImageError.invalidArchive("the image config lists \(config.rootfs.diffIDs.count) layers, the manifest \(image.layers.count)")
                    }
                    for (layer, diffID) in zip(image.layers, config.rootfs.diffIDs) {
                        progress("Loading layer \(diffID.dropFirst(7).prefix(12))")
                        if try storeLayer(archive.member(layer), diffID: diffID, name: layer.path).isNew { added.append(diffID) }
                    }
                    pending.append((id, raw, config, image.tags))
                }
                for image in pending {
                    try FileTree.writeAtomically(image.raw, to: root + "/configs/" + image.id.dropFirst(7) + ".json")
                }
            } catch {
                for diffID in added where !isReferenced(diffID) { try? FileTree.remove(layerDirectory(diffID)) }
                throw error
            }
            var lines: [String] = []
            try index.withLock { index in
                for image in pending {
                    index.images[image.id] = image.config
                    for tag in image.tags {
                        if let previous = index.tags[tag.description], previous != image.id {
                            lines.append("The image \(tag) already exists, renaming the old one with ID \(previous) to empty string")
                        }
                        index.tags[tag.description] = image.id
                        lines.append("Loaded image: \(tag)")
                    }
                    if image.tags.isEmpty { lines.append("Loaded image ID: \(image.id)") }
                }
                try save(index)
            }
            return lines
        }
    }

    /// `docker import`: one rootfs tarball (plain or gzip) becomes a
    /// one-layer image, with the runtime defaults given (`--change`).
    public func importRootFS(_ archive: FileRegion, tag: ImageReference?, defaults: ImageRuntimeConfig?, comment: String?) throws -> Image {
        try writer.withLock { _ in
            let added = try storeLayer(archive, diffID: nil, name: "the tarball")
            let layerID = added.diffID
            let created = Date().formatted(Self.rfc3339)
            let config = ImageConfig(
                created: created, config: defaults ?? ImageRuntimeConfig(), rootfs: .init(diffIDs: [layerID]),
                history: [.init(created: created, comment: comment?.isEmpty == false ? comment : "Imported from -")])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            let raw = Array(try encoder.encode(config))
            let id = "sha256:" + hexString(SHA256Digest.of(raw))
            do {
                try FileTree.writeAtomically(raw, to: root + "/configs/" + id.dropFirst(7) + ".json")
                return try index.withLock { index in
                    index.images[id] = config
                    if let tag { index.tags[tag.description] = id }
                    try save(index)
                    return Self.image(id, in: index)!
                }
            } catch {
                if added.isNew, !isReferenced(layerID) { try? FileTree.remove(layerDirectory(layerID)) }
                throw error
            }
        }
    }

    /// Tags an image (`docker tag`).
    public func tag(_ reference: String, as tag: ImageReference) throws {
        let target = try image(reference)
        try writer.withLock { _ in
            try index.withLock { index in
                index.tags[tag.description] = target.id
                try save(index)
            }
        }
    }

    /// `docker rmi`: a tag of an image with other tags is only untagged;
    /// otherwise the image goes, with the layers no other image uses.
    /// `inUse` names what uses an image (a container), which refuses the
    /// removal unless forced. Returns Docker's `Untagged`/`Deleted` list.
    public func remove(_ reference: String, force: Bool, inUse: (String) -> String?) throws -> [(untagged: String?, deleted: String?)] {
        try writer.withLock { _ in
            let target = try image(reference)
            let byTag = (try? ImageReference(parsing: reference)).flatMap { parsed in target.tags.contains(parsed) ? parsed : nil }
            var result: [(untagged: String?, deleted: String?)] = []
            if let byTag, target.tags.count > 1 {
                try index.withLock { index in
                    index.tags[byTag.description] = nil
                    try save(index)
                }
                return [(byTag.description, nil)]
            }
            if !force, let user = inUse(target.id) {
                throw ImageError.inUse(byTag?.description ?? target.shortID, by: user)
            }
            try index.withLock { index in
                for tag in target.tags {
                    index.tags[tag.description] = nil
                    result.append((tag.description, nil))
                }
                index.images[target.id] = nil
                for diffID in Set(target.config.rootfs.diffIDs) where !index.images.values.contains(where: { $0.rootfs.diffIDs.contains(diffID) }) {
                    index.layerSizes[diffID] = nil
                }
                try save(index)
            }
            try? FileTree.remove(root + "/configs/" + target.id.dropFirst(7) + ".json")
            result.append((nil, target.id))
            for diffID in Set(target.config.rootfs.diffIDs) where !isReferenced(diffID) {
                try? FileTree.remove(layerDirectory(diffID))
                result.append((nil, diffID))
            }
            return result
        }
    }

    // MARK: - Layers

    /// Verifies a layer's digest (of its uncompressed tar) and unpacks it,
    /// once: an existing layer with that digest is kept. Returns whether it
    /// was new. With `diffID` nil the digest is what the content has.
    private func storeLayer(_ compressed: FileRegion, diffID expected: String?, name: String) throws -> (diffID: String, isNew: Bool) {
        let scratch = root + "/tmp/" + UUID().uuidString
        try FileTree.makeDirectory(scratch)
        defer { try? FileTree.remove(scratch) }
        var region = compressed
        var inflatedDescriptor: Int32 = -1
        defer { if inflatedDescriptor >= 0 { close(inflatedDescriptor) } }
        if Gunzip.isCompressed(compressed) {
            inflatedDescriptor = open(scratch + "/layer.tar", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            guard inflatedDescriptor >= 0 else { throw ImageError.storage("open: \(String(cString: strerror(errno)))") }
            let length: Int64
            do {
                length = try Gunzip.inflate(compressed, into: inflatedDescriptor)
            } catch {
                throw ImageError.layer("\(name): \(error)")
            }
            region = FileRegion(descriptor: inflatedDescriptor, length: length)
        }
        let actual = try region.sha256Digest()
        if let expected, expected != actual {
            throw ImageError.digestMismatch(what: "layer \(name)", expected: expected, actual: actual)
        }
        let directory = layerDirectory(actual)
        if FileTree.exists(directory) { return (actual, false) }
        let unpacked = scratch + "/rootfs"
        // The layer's root is the container's / (unless the tarball has a
        // "./" member of its own): everyone traverses it.
        try FileTree.makeDirectory(unpacked, mode: 0o755)
        var unpacker = LayerUnpacker(root: unpacked)
        do {
            try unpacker.unpack(region)
        } catch {
            throw ImageError.layer("\(name): \(error)")
        }
        // Size first: a layer directory on disk always has its size indexed.
        let size = unpacker.bytesWritten
        try index.withLock { index in
            index.layerSizes[actual] = size
            try save(index)
        }
        guard rename(unpacked, directory) == 0 else { throw ImageError.storage("rename \(directory): \(String(cString: strerror(errno)))") }
        return (actual, true)
    }

    private func isReferenced(_ diffID: String) -> Bool {
        index.withLock { $0.images.values.contains { $0.rootfs.diffIDs.contains(diffID) } }
    }

    private func save(_ index: Index) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try FileTree.writeAtomically(Array(try encoder.encode(index)), to: root + "/index.json")
    }

    // MARK: - Archive formats

    /// One image found in an archive: where its config and layers are.
    struct ArchivedImage {
        var config: TarEntry
        var configDigest: String?
        var layers: [TarEntry]
        var tags: [ImageReference]
    }

    /// The archive's regular files by normalised name (symlinked layers,
    /// which `docker save` writes for repeated layers, are followed once).
    static func members(of archive: FileRegion) throws -> [String: TarEntry] {
        let entries: [TarEntry]
        do {
            entries = try TarReader.entries(of: archive)
        } catch {
            throw ImageError.invalidArchive("\(error)")
        }
        var files: [String: TarEntry] = [:]
        var links: [(String, String)] = []
        for entry in entries {
            guard let components = try? LayerUnpacker.normalise(entry.path) else { continue }
            let name = components.joined(separator: "/")
            switch entry.kind {
            case .regular: files[name] = entry
            case .symbolicLink, .hardLink:
                var target = entry.linkTarget
                if entry.kind == .symbolicLink, !target.hasPrefix("/") {
                    target = (components.dropLast().map(String.init) + [target]).joined(separator: "/")
                }
                links.append((name, target))
            default: break
            }
        }
        for (name, target) in links {
            var resolved: [Substring] = []
            for component in target.split(separator: "/") {
                if component == ".." { _ = resolved.popLast() } else if component != "." { resolved.append(component) }
            }
            if let file = files[resolved.joined(separator: "/")] { files[name] = file }
        }
        return files
    }

    static func dockerArchiveImages(_ archive: FileRegion, _ members: [String: TarEntry]) throws -> [ArchivedImage] {
        let manifest: [ArchiveManifestItem] = try decodeMember("manifest.json", archive, members)
        return try manifest.map { item in
            guard let config = members[normalised(item.config)] else {
                throw ImageError.invalidArchive("manifest.json names the config \(item.config), which is not in the archive")
            }
            let layers = try item.layers.map { path in
                guard let layer = members[normalised(path)] else {
                    throw ImageError.invalidArchive("manifest.json names the layer \(path), which is not in the archive")
                }
                return layer
            }
            let tags = try (item.repoTags ?? []).map { try ImageReference(parsing: $0) }
            return ArchivedImage(config: config, configDigest: digest(fromPath: item.config), layers: layers, tags: tags)
        }
    }

    static func ociLayoutImages(_ archive: FileRegion, _ members: [String: TarEntry]) throws -> [ArchivedImage] {
        guard members["index.json"] != nil else { return [] }
        let index: OCIIndex = try decodeMember("index.json", archive, members)
        var images: [ArchivedImage] = []
        for descriptor in index.manifests {
            let manifest: OCIManifest = try decodeMember(blobPath(descriptor.digest), archive, members)
            // An index inside the index (Docker 25's save) points one level on.
            if let nested = manifest.manifests {
                for inner in nested where inner.mediaType?.contains("manifest") ?? true {
                    let innerManifest: OCIManifest = try decodeMember(blobPath(inner.digest), archive, members)
                    images.append(try ociImage(innerManifest, names: [descriptor.annotations, inner.annotations], archive, members))
                }
                continue
            }
            images.append(try ociImage(manifest, names: [descriptor.annotations], archive, members))
        }
        return images
    }

    private static func ociImage(_ manifest: OCIManifest, names: [[String: String]?], _ archive: FileRegion,
                                 _ members: [String: TarEntry]) throws -> ArchivedImage {
        guard let config = members[blobPath(manifest.config.digest)] else {
            throw ImageError.invalidArchive("the manifest names the config \(manifest.config.digest), which is not in the archive")
        }
        let layers = try (manifest.layers ?? []).map { layer in
            guard let member = members[blobPath(layer.digest)] else {
                throw ImageError.invalidArchive("the manifest names the layer \(layer.digest), which is not in the archive")
            }
            return member
        }
        var tags: [ImageReference] = []
        for annotations in names.compactMap({ $0 }) {
            if let name = annotations["io.containerd.image.name"] ?? annotations["org.opencontainers.image.ref.name"].map({ $0.contains(":") || $0.contains("/") ? $0 : "" }),
               !name.isEmpty, let reference = try? ImageReference(parsing: name) {
                tags.append(reference)
            }
        }
        return ArchivedImage(config: config, configDigest: manifest.config.digest, layers: layers, tags: Array(Set(tags)))
    }

    private static func decodeMember<T: Decodable>(_ name: String, _ archive: FileRegion, _ members: [String: TarEntry]) throws -> T {
        guard let entry = members[name] else { throw ImageError.invalidArchive("\(name) is missing") }
        guard entry.size <= 16 << 20 else { throw ImageError.invalidArchive("\(name) is larger than 16 MiB") }
        let bytes = try archive.member(entry).read(at: 0, count: Int(entry.size))
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            throw ImageError.invalidArchive("\(name) is not what Docker writes: \(error)")
        }
    }

    private static func normalised(_ path: String) -> String {
        ((try? LayerUnpacker.normalise(path)) ?? nil)?.joined(separator: "/") ?? path
    }

    private static func blobPath(_ digest: String) -> String { "blobs/" + digest.replacing(":", with: "/") }

    /// The digest a file name claims: `HEX.json` (docker-archive) or
    /// `blobs/sha256/HEX` (Docker 25's save).
    static func digest(fromPath path: String) -> String? {
        var name = Substring(path.split(separator: "/").last ?? "")
        if name.hasSuffix(".json") { name = name.dropLast(5) }
        guard name.count == 64, name.allSatisfy(\.isHexDigit) else { return nil }
        return "sha256:" + name
    }

    /// RFC 3339 with fractional seconds in UTC, as Docker writes `created`.
    static let rfc3339 = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)
}

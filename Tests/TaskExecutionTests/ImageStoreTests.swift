import CExecutorShim
import Foundation
import TaskExecution
import TestKit
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The image store on the real file system (root: whiteouts are character
/// devices, opaque directories trusted.* attributes), with archives built
/// here, hostile ones included.
@Suite(.serialized) struct ImageStoreTests {
    /// A fresh store in a directory of its own, removed afterwards.
    func withStore(_ body: (ImageStore, String) throws -> Void) throws {
        try requireRoot()
        let directory = "/tmp/swarmnet-images-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { _ = try? run(["rm", "-rf", directory]) }
        try body(try ImageStore(root: directory + "/store"), directory)
    }

    /// Writes bytes to a file and hands its region to `body`.
    func withArchive<T>(_ bytes: [UInt8], in directory: String, _ body: (FileRegion) throws -> T) throws -> T {
        let path = directory + "/archive-\(UInt32.random(in: 0...UInt32.max)).tar"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let descriptor = open(path, O_RDONLY)
        defer { close(descriptor) }
        return try body(FileRegion(descriptor: descriptor, length: Int64(bytes.count)))
    }

    func layer(_ build: (inout TarWriter) -> Void) -> [UInt8] {
        var writer = TarWriter()
        build(&writer)
        return writer.finished()
    }

    /// What the store holds on disk besides its index (nothing after a
    /// refused load).
    func storeContents(_ directory: String) -> [String] {
        let layers = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/store/layers")) ?? []
        let configs = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/store/configs")) ?? []
        let scratch = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/store/tmp")) ?? []
        return layers + configs + scratch
    }

    @Test func loadsTheScriptedBusyboxImage() throws {
        let path = try TestImages.path("busybox")
        try withStore { store, _ in
            let descriptor = open(path, O_RDONLY)
            defer { close(descriptor) }
            var info = stat()
            fstat(descriptor, &info)
            let lines = try store.load(FileRegion(descriptor: descriptor, length: Int64(info.st_size)))
            #expect(lines == ["Loaded image: busybox:latest"])
            let image = try store.image("busybox")
            #expect(image.tags.map(\.description) == ["busybox:latest"])
            #expect(try store.image("docker.io/library/busybox:latest").id == image.id)
            #expect(try store.image(String(image.id.dropFirst(7).prefix(8))).id == image.id)
            #expect(image.config.config?.cmd == ["sh"])
            let root = try #require(store.layerDirectories(image).first)
            var link = stat()
            #expect(lstat(root + "/bin/sh", &link) == 0 && link.st_mode & S_IFMT == S_IFLNK)
            #expect(access(root + "/bin/busybox", X_OK) == 0)
            #expect(image.size > 500_000)
            // Loading it again keeps the one layer and answers the same.
            let again = try store.load(FileRegion(descriptor: descriptor, length: Int64(info.st_size)))
            #expect(again == ["Loaded image: busybox:latest"])
            #expect(store.list().count == 1)
        }
    }

    @Test func layersAreVerifiedAgainstTheConfigBeforeAnythingIsKept() throws {
        try withStore { store, directory in
            let good = layer { $0.file("etc/hostname", "ok\n") }
            let archive = DockerArchive.make(tag: "bad:1", layers: [good],
                                             diffIDs: ["sha256:" + String(repeating: "0", count: 64)])
            #expect {
                try withArchive(archive, in: directory) { try store.load($0) }
            } throws: { error in
                "\(error)".contains("has digest \(DockerArchive.digest(good))") && "\(error)".contains("archive says sha256:0000")
            }
            #expect(storeContents(directory).isEmpty)
            #expect(store.list().isEmpty)
        }
    }

    @Test func aConfigWhoseDigestIsNotItsNameIsRefused() throws {
        try withStore { store, directory in
            var archive = TarWriter()
            let layerBytes = layer { $0.file("a", "a") }
            archive.file("l/layer.tar", layerBytes)
            let config = #"{"rootfs":{"type":"layers","diff_ids":["\#(DockerArchive.digest(layerBytes))"]}}"#
            archive.file(String(repeating: "a", count: 64) + ".json", config)
            archive.file("manifest.json", #"[{"Config":"\#(String(repeating: "a", count: 64)).json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#)
            #expect(throws: ImageError.self) { try withArchive(archive.finished(), in: directory) { try store.load($0) } }
            #expect(storeContents(directory).isEmpty)
        }
    }

    @Test func dotDotMembersAreRefusedAndNothingIsWrittenOutside() throws {
        try withStore { store, directory in
            let hostile = layer { $0.file("../../../escaped", "x") }
            #expect {
                try withArchive(DockerArchive.make(tag: "evil:1", layers: [hostile]), in: directory) { try store.load($0) }
            } throws: { "\($0)".contains("points outside the layer") }
            #expect(!FileManager.default.fileExists(atPath: directory + "/escaped"))
            #expect(!FileManager.default.fileExists(atPath: directory + "/store/escaped"))
            #expect(storeContents(directory).isEmpty)
        }
    }

    @Test func writingThroughASymlinkIsRefused() throws {
        try withStore { store, directory in
            let target = directory + "/outside"
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            let hostile = layer {
                $0.symlink("escape", to: target)
                $0.file("escape/pwned", "x")
            }
            #expect {
                try withArchive(DockerArchive.make(tag: "evil:2", layers: [hostile]), in: directory) { try store.load($0) }
            } throws: { "\($0)".contains("through the symbolic link 'escape'") }
            #expect(!FileManager.default.fileExists(atPath: target + "/pwned"))
            #expect(storeContents(directory).isEmpty)
        }
    }

    @Test func aHardLinkOutOfTheLayerIsRefused() throws {
        try withStore { store, directory in
            let hostile = layer { $0.hardLink("passwd", to: "../../../../etc/passwd") }
            #expect(throws: ImageError.self) {
                try withArchive(DockerArchive.make(tag: "evil:3", layers: [hostile]), in: directory) { try store.load($0) }
            }
            #expect(storeContents(directory).isEmpty)
        }
    }

    @Test func deviceNodesAreRefusedOutsideDev() throws {
        try withStore { store, directory in
            let hostile = layer { $0.device("usr/sda") }
            #expect {
                try withArchive(DockerArchive.make(tag: "evil:4", layers: [hostile]), in: directory) { try store.load($0) }
            } throws: { "\($0)".contains("device node") }
            // Under dev/ they are skipped (the container's /dev is a tmpfs).
            let devices = layer {
                $0.directory("dev")
                $0.device("dev/null")
                $0.file("etc/ok", "1")
            }
            _ = try withArchive(DockerArchive.make(tag: "dev:1", layers: [devices]), in: directory) { try store.load($0) }
            let root = try #require(store.layerDirectories(try store.image("dev:1")).first)
            #expect(!FileManager.default.fileExists(atPath: root + "/dev/null"))
            #expect(FileManager.default.fileExists(atPath: root + "/etc/ok"))
        }
    }

    @Test func aTruncatedArchiveIsRefusedWithNothingKept() throws {
        try withStore { store, directory in
            let full = DockerArchive.make(tag: "cut:1", layers: [layer { $0.file("big", [UInt8](repeating: 7, count: 5000)) }])
            for length in [100, 700, full.count / 2, full.count - 1100] {
                #expect(throws: ImageError.self) {
                    try withArchive(Array(full.prefix(length)), in: directory) { try store.load($0) }
                }
            }
            #expect(storeContents(directory).isEmpty)
            #expect(store.list().isEmpty)
        }
    }

    @Test func whiteoutsAndOpaqueDirectoriesBecomeOverlayfsMarkers() throws {
        try withStore { store, directory in
            let base = layer {
                $0.file("etc/gone", "1")
                $0.file("data/old", "1")
            }
            let top = layer {
                $0.file("etc/.wh.gone", "")
                $0.directory("data")
                $0.file("data/.wh..wh..opq", "")
                $0.file("data/new", "2")
            }
            _ = try withArchive(DockerArchive.make(tag: "wh:1", layers: [base, top]), in: directory) { try store.load($0) }
            let upper = store.layerDirectories(try store.image("wh:1"))[1]
            var info = stat()
            #expect(lstat(upper + "/etc/gone", &info) == 0)
            #expect(info.st_mode & S_IFMT == S_IFCHR && info.st_rdev == 0)
            var value = [UInt8](repeating: 0, count: 4)
            let length = cex_lgetxattr(upper + "/data", "trusted.overlay.opaque", &value, 4)
            #expect(length == 1 && value[0] == UInt8(ascii: "y"))
            #expect(FileManager.default.fileExists(atPath: upper + "/data/new"))
            #expect(!FileManager.default.fileExists(atPath: upper + "/data/.wh..wh..opq"))
        }
    }

    @Test func gzipLayersAreInflatedAndVerifiedUncompressed() throws {
        try withStore { store, directory in
            let plain = layer { $0.file("hello", "world\n") }
            let compressed = try gzipped(plain, in: directory)
            let archive = DockerArchive.make(tag: "gz:1", layers: [compressed], diffIDs: [DockerArchive.digest(plain)])
            _ = try withArchive(archive, in: directory) { try store.load($0) }
            let root = try #require(store.layerDirectories(try store.image("gz:1")).first)
            #expect(try String(contentsOfFile: root + "/hello", encoding: .utf8) == "world\n")
            #expect(store.layerDirectories(try store.image("gz:1")).first!.hasSuffix(String(DockerArchive.digest(plain).dropFirst(7))))
        }
    }

    /// An OCI image layout (index.json → manifest → config and layers as
    /// blobs, a gzip layer among them), as skopeo and Docker 25's save
    /// write it; the tag comes from the index's annotation.
    @Test func loadsAnOCILayout() throws {
        try withStore { store, directory in
            let plain = layer { $0.file("etc/os-release", "ID=test\n") }
            let compressed = try gzipped(plain, in: directory)
            let config = Array(#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["\#(DockerArchive.digest(plain))"]}}"#.utf8)
            let manifest = Array(#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"\#(DockerArchive.digest(config))","size":\#(config.count)},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"\#(DockerArchive.digest(compressed))","size":\#(compressed.count)}]}"#.utf8)
            let index = #"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"\#(DockerArchive.digest(manifest))","size":\#(manifest.count),"annotations":{"io.containerd.image.name":"docker.io/library/oci:7"}}]}"#
            var archive = TarWriter()
            archive.file("oci-layout", #"{"imageLayoutVersion":"1.0.0"}"#)
            archive.file("index.json", index)
            for blob in [config, manifest, compressed] {
                archive.file("blobs/sha256/" + DockerArchive.digest(blob).dropFirst(7), blob)
            }
            let lines = try withArchive(archive.finished(), in: directory) { try store.load($0) }
            #expect(lines == ["Loaded image: oci:7"])
            let image = try store.image("oci:7")
            #expect(image.id == DockerArchive.digest(config))
            let root = try #require(store.layerDirectories(image).first)
            #expect(try String(contentsOfFile: root + "/etc/os-release", encoding: .utf8) == "ID=test\n")
        }
    }

    @Test func importMakesAOneLayerImageWithChanges() throws {
        try withStore { store, directory in
            let rootfs = layer { $0.file("bin/tool", "#!/bin/sh\n", mode: 0o755) }
            let defaults = try ImageChanges.apply(["CMD [\"/bin/tool\", \"-v\"]", "ENV A=1", "WORKDIR /srv", "EXPOSE 80"],
                                                  to: ImageRuntimeConfig())
            let image = try withArchive(rootfs, in: directory) {
                try store.importRootFS($0, tag: try ImageReference(parsing: "tool:2"), defaults: defaults, comment: nil)
            }
            #expect(image.tags.map(\.description) == ["tool:2"])
            #expect(image.config.config?.cmd == ["/bin/tool", "-v"])
            #expect(image.config.config?.env == ["A=1"])
            #expect(image.config.config?.workingDir == "/srv")
            #expect(image.config.rootfs.diffIDs == [DockerArchive.digest(rootfs)])
            #expect(throws: ImageError.self) { try ImageChanges.apply(["RUN rm -rf /"], to: ImageRuntimeConfig()) }
        }
    }

    @Test func removeUntagsThenDeletesAndCollectsUnusedLayers() throws {
        try withStore { store, directory in
            let shared = layer { $0.file("shared", "s") }
            let own = layer { $0.file("own", "o") }
            _ = try withArchive(DockerArchive.make(tag: "a:1", layers: [shared]), in: directory) { try store.load($0) }
            _ = try withArchive(DockerArchive.make(tag: "b:1", layers: [shared, own], config: ["Cmd": ["b"]]), in: directory) {
                try store.load($0)
            }
            try store.tag("a:1", as: try ImageReference(parsing: "a:also"))
            // One of two tags: untagged only.
            let untag = try store.remove("a:also", force: false) { _ in nil }
            #expect(untag.map(\.untagged) == ["a:also"])
            // In use: refused without force.
            #expect(throws: ImageError.self) { try store.remove("b:1", force: false) { _ in "container 123" } }
            let removed = try store.remove("b:1", force: false) { _ in nil }
            #expect(removed.contains { $0.deleted == DockerArchive.digest(own) })
            #expect(!removed.contains { $0.deleted == DockerArchive.digest(shared) })
            let layers = try FileManager.default.contentsOfDirectory(atPath: directory + "/store/layers")
            #expect(layers == [String(DockerArchive.digest(shared).dropFirst(7))])
            #expect(throws: ImageError.self) { try store.image("b:1") }
            // A store reopened holds what the last one left.
            let reopened = try ImageStore(root: directory + "/store")
            #expect(reopened.list().map { $0.tags.map(\.description) } == [["a:1"]])
        }
    }

    @Test func referencesAreNormalisedAndBadOnesNamed() throws {
        #expect(try ImageReference(parsing: "busybox").description == "busybox:latest")
        #expect(try ImageReference(parsing: "docker.io/library/nginx:1.25").description == "nginx:1.25")
        #expect(try ImageReference(parsing: "registry:5000/team/app").description == "registry:5000/team/app:latest")
        #expect(throws: ImageError.self) { try ImageReference(parsing: "Busybox") }
        #expect(throws: ImageError.self) { try ImageReference(parsing: "busybox@sha256:abc") }
        #expect(throws: ImageError.self) { try ImageReference(parsing: "") }
    }

    func requireRoot() throws {
        guard getuid() == 0 else { throw CommandFailed(command: ["ImageStoreTests"], status: 1, stderr: "needs root (whiteouts are device nodes)") }
    }
}

import Cluster

/// An image's configuration, as `docker save` and OCI layouts store it (the
/// image ID is the sha256 of these bytes). Only the fields swarmnet uses
/// are decoded; the raw bytes are kept for the ID.
public struct ImageConfig: Codable, Sendable, Equatable {
    public var architecture: String?
    public var os: String?
    public var created: String?
    public var author: String?
    public var config: ImageRuntimeConfig?
    public var rootfs: RootFS
    public var history: [History]?

    public struct RootFS: Codable, Sendable, Equatable {
        public var type: String
        public var diffIDs: [String]
        enum CodingKeys: String, CodingKey { case type, diffIDs = "diff_ids" }

        public init(type: String = "layers", diffIDs: [String]) {
            self.type = type
            self.diffIDs = diffIDs
        }
    }

    public struct History: Codable, Sendable, Equatable {
        public var created: String?
        public var createdBy: String?
        public var comment: String?
        public var emptyLayer: Bool?
        enum CodingKeys: String, CodingKey { case created, createdBy = "created_by", comment, emptyLayer = "empty_layer" }

        public init(created: String?, createdBy: String? = nil, comment: String? = nil) {
            self.created = created
            self.createdBy = createdBy
            self.comment = comment
        }
    }

    public init(architecture: String? = "amd64", os: String? = "linux", created: String?, config: ImageRuntimeConfig?,
                rootfs: RootFS, history: [History]? = nil) {
        self.architecture = architecture
        self.os = os
        self.created = created
        self.config = config
        self.rootfs = rootfs
        self.history = history
    }
}

/// The image's defaults for a container (the image config's `config`),
/// with Docker's field names.
public struct ImageRuntimeConfig: Codable, Sendable, Equatable {
    public var user: String?
    public var exposedPorts: [String: EmptyObject]?
    public var env: [String]?
    public var entrypoint: [String]?
    public var cmd: [String]?
    public var volumes: [String: EmptyObject]?
    public var workingDir: String?
    public var labels: [String: String]?
    public var stopSignal: String?
    public var healthcheck: HealthConfig?

    enum CodingKeys: String, CodingKey {
        case user = "User", exposedPorts = "ExposedPorts", env = "Env", entrypoint = "Entrypoint", cmd = "Cmd"
        case volumes = "Volumes", workingDir = "WorkingDir", labels = "Labels", stopSignal = "StopSignal", healthcheck = "Healthcheck"
    }

    public init() {}
}

/// `{}` in JSON (Docker's sets: ExposedPorts, Volumes).
public struct EmptyObject: Codable, Sendable, Equatable {
    public init() {}
}

/// One image of `docker save`'s `manifest.json`.
struct ArchiveManifestItem: Codable {
    var config: String
    var repoTags: [String]?
    var layers: [String]
    enum CodingKeys: String, CodingKey { case config = "Config", repoTags = "RepoTags", layers = "Layers" }
}

/// OCI image layout: `index.json`, and the manifests it points to.
struct OCIIndex: Codable {
    var manifests: [OCIDescriptor]
}

struct OCIDescriptor: Codable {
    var mediaType: String?
    var digest: String
    var size: Int64?
    var annotations: [String: String]?
}

struct OCIManifest: Codable {
    var mediaType: String?
    var config: OCIDescriptor
    var layers: [OCIDescriptor]?
    var manifests: [OCIDescriptor]?
}

/// An image name as Docker normalises it for local lookup: `busybox`,
/// `library/busybox` and `docker.io/library/busybox:latest` are one image,
/// `busybox:latest`. Digest references are not supported (no registry).
public struct ImageReference: Sendable, Hashable, CustomStringConvertible {
    public var repository: String
    public var tag: String

    public var description: String { "\(repository):\(tag)" }

    public init(repository: String, tag: String) {
        self.repository = repository
        self.tag = tag
    }

    public init(parsing text: String, defaultTag: String = "latest") throws {
        guard !text.isEmpty else { throw ImageError.invalidReference(text, "the name is empty") }
        guard !text.contains("@") else {
            throw ImageError.invalidReference(text, "digest references need a registry, and none is reachable: use a tag")
        }
        var name = Substring(text)
        var tag = defaultTag
        // A tag follows the last ':' after the last '/' (a ':' before it is a
        // registry's port).
        if let colon = name.lastIndex(of: ":"), !name[colon...].contains("/") {
            tag = String(name[name.index(after: colon)...])
            name = name[..<colon]
        }
        for prefix in ["docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/", "library/"] where name.hasPrefix(prefix) {
            name = name.dropFirst(prefix.count)
            break
        }
        guard !name.isEmpty, name.allSatisfy({ $0.isLowercase || $0.isNumber || "._-/:".contains($0) }),
              !name.hasPrefix("/"), !name.hasSuffix("/"), !name.contains("//") else {
            throw ImageError.invalidReference(text, "repository names are lower-case letters, digits, '.', '_', '-' and '/'")
        }
        guard !tag.isEmpty, tag.count <= 128, tag.allSatisfy({ $0.isLetter || $0.isNumber || "._-".contains($0) }),
              tag.first != ".", tag.first != "-" else {
            throw ImageError.invalidReference(text, "a tag is up to 128 letters, digits, '.', '_' and '-'")
        }
        repository = String(name)
        self.tag = tag
    }
}

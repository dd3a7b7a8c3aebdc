/// Why an image operation failed; the API edge maps each case to Docker's
/// status (not found → 404, conflict → 409, the rest → 400 or 500).
public enum ImageError: Error, Sendable, Equatable, CustomStringConvertible {
    case notFound(String)
    case invalidReference(String, String)
    case invalidArchive(String)
    case digestMismatch(what: String, expected: String, actual: String)
    case inUse(String, by: String)
    case ambiguous(String)
    case layer(String)
    case storage(String)

    public var description: String {
        switch self {
        case .notFound(let name): "No such image: \(name)"
        case .invalidReference(let text, let why): "invalid reference format '\(text)': \(why)"
        case .invalidArchive(let why): "invalid image archive: \(why)"
        case .digestMismatch(let what, let expected, let actual):
            "invalid image archive: \(what) has digest \(actual), but the archive says \(expected)"
        case .inUse(let image, let user):
            "conflict: unable to remove image \(image) (must be forced) - it is used by \(user)"
        case .ambiguous(let prefix): "image ID prefix \(prefix) matches more than one image"
        case .layer(let why): "invalid image layer: \(why)"
        case .storage(let why): "image store: \(why)"
        }
    }
}

/// Why a task operation failed. The API edge maps the cases to statuses
/// (notFound → 404, conflict → 409, invalid → 400, runtime → 500).
public enum ExecutorError: Error, Sendable, Equatable, CustomStringConvertible {
    case noSuchImage(String)
    case noSuchTask(String)
    case conflict(String)
    case invalid(String)
    case runtime(String)

    public var description: String {
        switch self {
        case .noSuchImage(let image): "No such image: \(image)"
        case .noSuchTask(let reference): "No such container: \(reference)"
        case .conflict(let why), .invalid(let why), .runtime(let why): why
        }
    }
}

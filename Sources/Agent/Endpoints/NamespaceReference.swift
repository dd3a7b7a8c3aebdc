import Namespaces

/// What the Docker API's "Container" field names, here: a network namespace.
/// Accepted forms: an `ip netns` name, an absolute path to an nsfs file
/// (`/proc/PID/ns/net`, `/run/netns/NAME`), or `pid:PID`.
public enum NamespaceReference {
    public static func resolve(_ reference: String) throws -> NetworkNamespace {
        if reference.hasPrefix("/") { return .path(reference) }
        if reference.hasPrefix("pid:"), let pid = Int32(reference.dropFirst(4)), pid > 0 { return .process(pid) }
        return try .named(reference)
    }
}

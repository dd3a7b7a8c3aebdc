#if canImport(Glibc)
import Glibc
#endif
import SystemBasics

/// Runs a closure on a new POSIX thread and waits for it to finish.
///
/// Namespace work (setns, unshare) changes the thread it runs on; doing it
/// on a thread that exists only for that work keeps the change from
/// reaching any other code.
enum DedicatedThread {
    static func run<T>(_ body: @escaping () throws -> T) throws -> T {
        let outcome = Outcome<T>()
        try start { outcome.result = Result { try body() } }
        return try outcome.result!.get()
    }

    /// Starts a thread running `work` and joins it.
    private static func start(_ work: @escaping () -> Void) throws {
        let thread: pthread_t
        do {
            thread = try spawnThread(work)
        } catch {
            throw NamespaceError.system(operation: "start thread for", path: "namespace work", errno: error.errno)
        }
        pthread_join(thread, nil)
    }

    /// The result, written by the thread and read by its creator after the
    /// join: the join orders the two accesses.
    private final class Outcome<T> {
        var result: Result<T, Error>?
    }
}

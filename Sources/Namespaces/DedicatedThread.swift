#if canImport(Glibc)
import Glibc
#endif

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
        let context = Unmanaged.passRetained(Work(work)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, threadEntry, context)
        guard status == 0 else {
            Unmanaged<Work>.fromOpaque(context).release()
            throw NamespaceError.system(operation: "start thread for", path: "namespace work", errno: status)
        }
        pthread_join(thread, nil)
    }

    /// The result, written by the thread and read by its creator after the
    /// join: the join orders the two accesses.
    private final class Outcome<T> {
        var result: Result<T, Error>?
    }

    fileprivate final class Work {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
}

private func threadEntry(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    Unmanaged<DedicatedThread.Work>.fromOpaque(context!).takeRetainedValue().body()
    return nil
}

#if canImport(Glibc)
import Glibc
#endif

/// pthread_create's error number, for the caller to name in its own error.
public struct ThreadStartFailure: Error {
    public var errno: Int32
}

/// Starts `body` on a new POSIX thread and returns it, for the caller to
/// join or detach: for work that blocks in system calls, or that changes
/// its thread (setns), away from Swift's shared pool. `name` is what
/// `top -H` and backtraces show (the kernel keeps 15 bytes of it).
public func spawnThread(named name: String? = nil, _ body: @escaping () -> Void) throws(ThreadStartFailure) -> pthread_t {
    final class Start {
        let name: String?
        let body: () -> Void
        init(_ name: String?, _ body: @escaping () -> Void) { (self.name, self.body) = (name, body) }
    }
    let start = Unmanaged.passRetained(Start(name, body)).toOpaque()
    var thread = pthread_t()
    let status = pthread_create(&thread, nil, { argument in
        let start = Unmanaged<Start>.fromOpaque(argument!).takeRetainedValue()
        if let name = start.name { nameThisThread(name) }
        start.body()
        return nil
    }, start)
    guard status == 0 else {
        Unmanaged<Start>.fromOpaque(start).release()
        throw ThreadStartFailure(errno: status)
    }
    return thread
}

/// Runs `body` on a thread of its own that nobody joins, for a loop that
/// lives as long as the process.
public func startThread(named name: String, _ body: @escaping @Sendable () -> Void) {
    do {
        pthread_detach(try spawnThread(named: name, body))
    } catch {
        preconditionFailure("cannot start thread \(name): error \(error.errno)")
    }
}

/// Glibc's pthread_setname_np is not visible to Swift; this is what it
/// does for the calling thread.
private func nameThisThread(_ name: String) {
    let comm = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard comm >= 0 else { return }
    let bytes = Array(name.utf8.prefix(15))
    _ = bytes.withUnsafeBytes { write(comm, $0.baseAddress, $0.count) }
    close(comm)
}

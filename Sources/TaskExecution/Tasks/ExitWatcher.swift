#if canImport(Glibc)
import Glibc
#endif
import CExecutorShim
import FoundationEssentials
import SystemBasics
import Synchronization

/// Tells when task shims exit, through one thread polling a pidfd per shim
/// (pidfds work for processes that are not our children: a shim adopted
/// after a restart was started by an earlier daemon). One thread for every
/// task keeps a running task's cost to its shim.
public final class ExitWatcher: Sendable {
    private struct Watched {
        var descriptor: Int32
        var onExit: @Sendable () -> Void
    }

    private let state = Mutex<[String: Watched]>([:])
    /// Written to wake the thread when the watched set changes.
    private let wakeDescriptor: Int32

    public init() {
        wakeDescriptor = cex_eventfd()
        startThread(named: "task-exits") { [self] in loop() }
    }

    /// Calls `onExit` (once, on the watcher's thread) when `pid` exits; at
    /// once if it already has.
    public func watch(key: String, pid: pid_t, onExit: @escaping @Sendable () -> Void) {
        let descriptor = cex_pidfd_open(pid)
        guard descriptor >= 0 else {
            onExit()
            return
        }
        let previous = state.withLock { watched in
            defer { watched[key] = Watched(descriptor: descriptor, onExit: onExit) }
            return watched[key]
        }
        if let previous { close(previous.descriptor) }
        var one: UInt64 = 1
        _ = write(wakeDescriptor, &one, 8)
    }

    public func unwatch(key: String) {
        if let previous = state.withLock({ $0.removeValue(forKey: key) }) { close(previous.descriptor) }
        var one: UInt64 = 1
        _ = write(wakeDescriptor, &one, 8)
    }

    private func loop() {
        while true {
            let watched = state.withLock { $0.map { ($0.key, $0.value.descriptor) } }
            var pollers = [pollfd(fd: wakeDescriptor, events: Int16(POLLIN), revents: 0)]
                + watched.map { pollfd(fd: $0.1, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&pollers, nfds_t(pollers.count), 1000)
            guard ready > 0 else { continue }
            if pollers[0].revents != 0 {
                var value: UInt64 = 0
                _ = read(wakeDescriptor, &value, 8)
            }
            for (index, entry) in watched.enumerated() where pollers[index + 1].revents != 0 {
                let ended = state.withLock { current -> Watched? in
                    guard current[entry.0]?.descriptor == entry.1 else { return nil }
                    return current.removeValue(forKey: entry.0)
                }
                if let ended {
                    close(ended.descriptor)
                    ended.onExit()
                }
            }
        }
    }
}

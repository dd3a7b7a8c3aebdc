import SystemBasics
import Namespaces
import Netlink

/// Watches the sandboxes' netlink events and wakes the reconciler when
/// something it programmed is deleted (a link, an FDB or neighbour entry),
/// so tampering is repaired at once rather than at the next timer tick.
///
/// A subscription's socket keeps its namespace alive, so a sandbox must be
/// unwatched before it is removed.
final class SandboxWatcher: @unchecked Sendable {
    private let wake: @Sendable () -> Void
    private let lock = Lock()
    private var watched: [String: (subscription: NetlinkEventSubscription, task: Task<Void, Never>)] = [:]

    init(wake: @escaping @Sendable () -> Void) {
        self.wake = wake
    }

    /// Stops watching every sandbox not in `keep`.
    func retain(only keep: Set<String>) {
        let gone = lock.withLock { () -> [(NetlinkEventSubscription, Task<Void, Never>)] in
            let names = watched.keys.filter { !keep.contains($0) }
            return names.compactMap { watched.removeValue(forKey: $0) }
        }
        for (subscription, task) in gone {
            task.cancel()
            subscription.cancel()
        }
    }

    /// Starts watching the named sandboxes that exist and are not watched yet.
    func watch(_ names: Set<String>) {
        for name in names {
            guard lock.withLock({ watched[name] == nil }),
                  let namespace = try? NetworkNamespace.named(name), namespace.exists,
                  let subscription = try? NetlinkEventSubscription(namespace: namespace) else { continue }
            let wake = self.wake
            let task = Task {
                for await event in subscription.events {
                    switch event {
                    case .linkRemoved, .fdbRemoved, .neighbourRemoved, .overrun: wake()
                    default: break
                    }
                }
            }
            lock.withLock { watched[name] = (subscription, task) }
        }
    }

    func stopAll() { retain(only: []) }
}

import Cluster
import FoundationEssentials
import X509

/// What a node holds of the dispatcher's word.
struct HeldWork {
    /// The store index of the newest work taken.
    var index: UInt64 = 0
    var digest: UInt64?
    var downEngines: [String]?
    /// A worker's revision of the cluster's definitions.
    var definitionsRevision: UInt64?
}

/// A node's side of the dispatcher: its work comes from heartbeat answers
/// and from the work watch, and is taken in the order of the store's index
/// whichever arrives first.
extension SwarmRuntime {
    /// How long the leader may hold a watch before answering unchanged.
    static let workHold: Duration = .seconds(5)

    /// Waits on the leader (found by the heartbeats) for this node's work
    /// to change, over a mutual-TLS session of its own: a task assigned
    /// here, or a node marked down, reaches this node as soon as it is in
    /// the store rather than with the next heartbeat. The heartbeats still
    /// carry the same work, as the safety net.
    func watchWork() async {
        var session: ControlSession?
        var certificate: Certificate?
        while !Task.isCancelled {
            guard let membership else { break }
            guard let address = membership.dispatcher else {
                try? await Task.sleep(for: .milliseconds(250))
                continue
            }
            let identity = membership.identity
            if session?.address != address || certificate != identity.certificate {
                await session?.close()
                guard let context = try? ControlTLS.clientContext(identity: identity, root: identity.rootCA) else { break }
                session = ControlSession(address: address, context: context, timeout: .seconds(Self.workHold.components.seconds + 3))
                certificate = identity.certificate
            }
            let watch = WorkWatch(digest: membership.work.digest, index: membership.work.index,
                                  definitionsRevision: membership.local.role == .worker ? membership.work.definitionsRevision ?? 0 : nil,
                                  holdNanoseconds: Self.workHold.nanoseconds)
            do {
                let answer = try await session!.request(.POST, "/swarmnet/work", body: SwarmStore.encode(watch))
                guard answer.status == 200 else {
                    // A follower (the heartbeats will find the leader), or
                    // a manager that is stopping.
                    try? await Task.sleep(for: .milliseconds(250))
                    continue
                }
                await take(try JSONDecoder().decode(NodeWork.self, from: Data(answer.body)))
            } catch {
                await session?.close()
                try? await Task.sleep(for: .milliseconds(250))
            }
        }
        await session?.close()
    }

    /// Takes work newer than what the node holds, and returns once it is
    /// applied: the newest waiting is applied next, one at a time, so that
    /// older work never undoes newer.
    func take(_ work: NodeWork) async {
        if var membership, work.index > membership.work.index {
            membership.work.index = work.index
            membership.work.digest = work.digest
            self.membership = membership
            pendingWork = work
        }
        guard !applyingWork else {
            await withCheckedContinuation { workApplied.append($0) }
            return
        }
        applyingWork = true
        while let next = pendingWork {
            pendingWork = nil
            await apply(next)
        }
        applyingWork = false
        let waiting = workApplied
        workApplied = []
        for continuation in waiting { continuation.resume() }
    }

    private func apply(_ work: NodeWork) async {
        if work.downEngines != membership?.work.downEngines {
            membership?.work.downEngines = work.downEngines
            await configuration.onDownNodes(Set(work.downEngines))
        }
        // Before the tasks: they attach to these networks.
        if let definitions = work.definitions {
            membership?.work.definitionsRevision = definitions.revision
            _ = await configuration.onClusterDefinitions(.all(definitions))
        }
        await configuration.taskAgent?.assign(work.tasks, retaining: Set(work.retainedTasks))
    }
}

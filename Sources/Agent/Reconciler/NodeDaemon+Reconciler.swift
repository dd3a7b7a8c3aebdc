#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Cluster
import DockerAPI
import FoundationEssentials
import Logging
import NIOPosix
import Namespaces
import Netlink
import Overlay
import Synchronization

/// The reconciler: each change is applied as it comes (a change's pass:
/// balancers, DNS tables, sandbox watchers), and a full pass compares
/// every sandbox, endpoint and peer with the kernel and repairs the
/// difference (at start-up, on netlink delete events, on a timer). It
/// reads the node's desired state and never writes cluster state.
extension NodeDaemon {
    // MARK: - Reconciler

    /// Asks for a full pass soon: every sandbox, endpoint and balancer
    /// compared with the kernel (the timer, netlink delete events, a failed
    /// change).
    public nonisolated func wake() {
        passRequest.requestFull()
        wakeReconciler.yield()
    }

    /// Asks for a change's pass soon: the balancers and DNS tables whose
    /// desired state changed, and the sandbox watchers. The change itself
    /// (an endpoint's veth, a network's peers) was made by its request.
    public nonisolated func wakeForChange() { wakeReconciler.yield() }

    /// Returns once a pass that started after this call has finished (or
    /// after `timeout`): a task's namespace then has its DNS server and
    /// balancers before its process starts.
    func waitForNextPass(timeout: Duration = .seconds(5)) async {
        let target = passesStarted + 1
        wakeForChange()
        let deadline = ContinuousClock.now + timeout
        while passesFinished < target, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(5))
        }
    }

    /// Runs the reconciler: now, on every wake-up and every interval, until cancelled.
    public func runReconciler() async {
        await watchLocalStore()
        if configuration.embeddedDNS { Self.removeOrphanResolvConfs() }
        await reconcileOnce()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [configuration, self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: configuration.reconcileInterval)
                    wake() // the periodic resync is a full pass
                }
            }
            // Health probes ride a change's pass, on a timer of their own:
            // the full resync can then be rare (its cost grows with the
            // workloads) without slowing the probes down.
            group.addTask { [configuration, self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: configuration.healthInterval)
                    if await hasHealthChecks() { wakeForChange() }
                }
            }
            for await _ in wakeups {
                if Task.isCancelled { break }
                passesStarted += 1
                await reconcileOnce(full: passRequest.takeFull())
                passesFinished = passesStarted
            }
            group.cancelAll()
        }
    }

    /// One pass: every network with local endpoints gets its sandbox, its
    /// endpoints' veths and exactly the peers it should have; sandboxes no
    /// network needs (left by a crash, or a removed network) are removed;
    /// endpoints whose workload namespace has gone are forgotten. A
    /// change's pass (`full` false) leaves the overlay to the request that
    /// made the change and reconciles only the balancers and DNS tables
    /// whose desired state moved.
    @discardableResult
    public func reconcileOnce(full: Bool = true) async -> ReconcileReport {
        // The safety net under the per-event gossip path: the whole view again.
        if full { refreshFromGossip() }
        let local = state.endpoints.values.filter { $0.node == nodeID }
        var plan: [(OverlayNetwork, [EndpointRecord], [Peer])] = []
        for record in state.networks.values {
            let endpoints = local.filter { $0.networkID == record.id }
            guard !endpoints.isEmpty, let network = try? overlayNetwork(record) else { continue }
            plan.append((network, endpoints, peers(of: record.id)))
        }
        let wanted = Set(plan.map(\.0.vni))
        let wantedSandboxes = Set(plan.compactMap { try? driver.sandbox(for: $0.0).name })
        // Unwatch first: a watched namespace would outlive its removal.
        watcher.retain(only: wantedSandboxes)
        defer { watcher.watch(wantedSandboxes) }
        var outcome = ReconcileReport()
        if full {
            // Each network in a turn of the kernel worker of its own: a
            // request (an attach) waits for one network's repair, not for
            // the whole pass's (the balancers take turns the same way).
            do {
                outcome = try await worker.run { [driver] in try Self.removeUnwantedSandboxes(keeping: wanted, driver: driver) }
                let planned = Set(local.map(\.id))
                for (network, endpoints, peers) in plan {
                    let part = try await worker.run { [driver, localEndpointIDs] in
                        Self.reconcileOverlay(network, endpoints: endpoints, peers: peers, planned: planned, live: localEndpointIDs.current(),
                                              driver: driver)
                    }
                    outcome.add(part)
                }
            } catch {
                logger.error("reconcile failed", metadata: ["error": "\(error)"])
                return ReconcileReport(errors: ["\(error)"])
            }
        }
        for foreign in outcome.foreignSandboxes where !foreignSandboxesLogged.contains(foreign.vni) {
            foreignSandboxesLogged.insert(foreign.vni)
            logger.warning("leaving a sandbox that is not proven to be this node's", metadata: [
                "sandbox": "\(configuration.namespacePrefix)ov-\(foreign.vni)",
                "owner": "\(foreign.owner ?? "none marked")", "node": "\(nodeID)"])
        }
        if !outcome.staleEndpoints.isEmpty {
            var next = state
            for id in outcome.staleEndpoints { next.endpoints[id] = nil }
            try? commit(next)
            for id in outcome.staleEndpoints {
                guard let gone = local.first(where: { $0.id == id }) else { continue }
                let last = !state.endpoints.values.contains { $0.networkID == gone.networkID && $0.node == nodeID }
                try? gossip?.withdraw(endpoint: gone, lastOnNetwork: last)
                await releaseAllocation(id)
            }
        }
        outcome.errors += await reconcileBalancing(full: full)
        if outcome.changed || !outcome.errors.isEmpty {
            logger.notice("reconciled", metadata: [
                "sandboxesRepaired": "\(outcome.sandboxesRepaired)", "sandboxesRemoved": "\(outcome.sandboxesRemoved)", "endpointsRepaired": "\(outcome.endpointsRepaired)", "endpointsRemoved": "\(outcome.endpointsRemoved)",
                "staleEndpoints": "\(outcome.staleEndpoints.count)", "peerEntriesAdded": "\(outcome.peerEntriesAdded)",
                "peerEntriesRemoved": "\(outcome.peerEntriesRemoved)", "errors": "\(outcome.errors)"])
        }
        return outcome
    }

    /// The first turn of a full pass's overlay part, on the kernel worker:
    /// sandboxes no network wants and that are this node's go.
    private static func removeUnwantedSandboxes(keeping wanted: Set<UInt32>, driver: OverlayDriver) throws -> ReconcileReport {
        var report = ReconcileReport()
        for vni in try driver.existingSandboxVNIs() where !wanted.contains(vni) {
            // Only what is proven to be this node's goes: a sandbox
            // of another identity (a fresh --state-dir with the same
            // prefix) still serves its workloads.
            let owner = try driver.sandboxOwner(vni: vni)
            guard owner == driver.owner else {
                report.foreignSandboxes.append(ForeignSandbox(vni: vni, owner: owner))
                continue
            }
            try driver.removeSandbox(vni: vni)
            report.sandboxesRemoved += 1
        }
        return report
    }

    /// One network's turn of a full pass, on the kernel worker: its
    /// sandbox, endpoint veths and peers are made to match the plan. The
    /// plan was made when the pass began, and requests ran between the
    /// turns since: `live` (this node's endpoints as they are now, against
    /// the `planned` ones) keeps the turn from removing the veth of an
    /// endpoint attached meanwhile, or putting back one detached meanwhile.
    private static func reconcileOverlay(_ network: OverlayNetwork, endpoints: [EndpointRecord], peers: [Peer], planned: Set<String>,
                                         live: Set<String>, driver: OverlayDriver) -> ReconcileReport {
        var report = ReconcileReport()
        // Every endpoint it had here left since (and the network may be
        // gone too): its sandbox is not made again; the next pass removes it.
        guard endpoints.contains(where: { live.contains($0.id) }) else { return report }
        do {
            if try driver.ensureSandbox(network) { report.sandboxesRepaired += 1 }
            let present = try driver.endpointInterfaces(on: network)
            for endpoint in endpoints where live.contains(endpoint.id) {
                let workload = NetworkNamespace.path(endpoint.namespacePath)
                guard workload.exists else {
                    try driver.detach(endpointID: endpoint.id, from: network)
                    report.staleEndpoints.append(endpoint.id)
                    continue
                }
                if !present.contains(OverlayDriver.hostInterfaceName(endpointID: endpoint.id)) {
                    try driver.attach(EndpointSpec(id: endpoint.id, workload: workload, address: endpoint.address,
                                                   mac: endpoint.mac, interfaceName: endpoint.workloadInterface,
                                                   defaultRoute: endpoint.isIngressGateway != true), to: network)
                    report.endpointsRepaired += 1
                }
            }
            let keeping = endpoints.map(\.id).filter(live.contains) + live.subtracting(planned)
            report.endpointsRemoved += try driver.removeStrayEndpoints(keeping: keeping, on: network, present: present)
            let sync = try driver.syncPeers(peers, on: network)
            report.peerEntriesAdded += sync.added
            report.peerEntriesRemoved += sync.removed
        } catch {
            report.errors.append("network \(network.id.prefix(12)): \(error)")
        }
        return report
    }

    public func shutdown() async {
        await stopAllDNS()
        watcher.stopAll()
        try? await worker.shutdown()
    }
}

/// What one reconciler pass repaired.
public struct ReconcileReport: Sendable, Equatable {
    /// Sandboxes made or repaired (a missing vxlan device, bridge, address...).
    public var sandboxesRepaired = 0
    public var sandboxesRemoved = 0
    public var endpointsRepaired = 0
    /// Endpoint veths that no endpoint record owns, removed.
    public var endpointsRemoved = 0
    public var staleEndpoints: [String] = []
    public var peerEntriesAdded = 0
    public var peerEntriesRemoved = 0
    /// Sandboxes with this daemon's prefix that no network wants but that
    /// are not this node's: left alone.
    public var foreignSandboxes: [ForeignSandbox] = []
    public var errors: [String] = []

    public var changed: Bool {
        sandboxesRepaired + sandboxesRemoved + endpointsRepaired + endpointsRemoved + staleEndpoints.count + peerEntriesAdded + peerEntriesRemoved > 0
    }

    /// Adds another turn's report to this one.
    mutating func add(_ other: ReconcileReport) {
        sandboxesRepaired += other.sandboxesRepaired
        sandboxesRemoved += other.sandboxesRemoved
        endpointsRepaired += other.endpointsRepaired
        endpointsRemoved += other.endpointsRemoved
        staleEndpoints += other.staleEndpoints
        peerEntriesAdded += other.peerEntriesAdded
        peerEntriesRemoved += other.peerEntriesRemoved
        foreignSandboxes += other.foreignSandboxes
        errors += other.errors
    }
}

/// The IDs of this node's endpoints, as the daemon's state has them after
/// each commit; read by full-pass turns on the kernel worker's thread.
final class LocalEndpointIDs: Sendable {
    private let ids = Mutex<Set<String>>([])
    /// After a commit: only the endpoints it names (the state file's own
    /// account of what changed), or all of them when it names none.
    func follow(_ state: ClusterState, node: String, touching records: [RecordReference]?) {
        guard let records else {
            let local = Set(state.endpoints.values.lazy.filter { $0.node == node }.map(\.id))
            ids.withLock { $0 = local }
            return
        }
        ids.withLock { ids in
            for case .endpoint(let id) in records {
                if state.endpoints[id]?.node == node { ids.insert(id) } else { ids.remove(id) }
            }
        }
    }
    func current() -> Set<String> { ids.withLock { $0 } }
}

/// Which pass the reconciler runs next: a full one once any caller asked
/// for it since the last pass, else a change's.
final class PassRequest: Sendable {
    private let full = Mutex(true)
    func requestFull() { full.withLock { $0 = true } }
    /// Whether a full pass was asked for; the request is consumed.
    func takeFull() -> Bool { full.withLock { value in defer { value = false }; return value } }
}

/// A sandbox another node identity marked (or none did).
public struct ForeignSandbox: Sendable, Equatable {
    public var vni: UInt32
    public var owner: String?
}

#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CLibNftables
import CNetlinkShim
import FoundationEssentials
import SystemBasics
import Namespaces
import Netlink

/// The nftables back end: one table (`ip NAME`) in one network namespace,
/// in one of two layouts (`NFTablesConfiguration.Layout`): kube-proxy's
/// nftables mode, a chain per service and per endpoint (`NFTablesRenderer`),
/// or the maps layout, where a service is set and map elements only
/// (`NFTMapNames`), which the daemon uses. `NFTablesConfiguration` also
/// sets hooks, masquerading and source preservation.
///
/// swarmnet owns this table and nothing else: it never flushes the ruleset
/// and never reads or writes another table.
///
/// A change holds only what differs (chains layout, a new backend: its
/// endpoint chain plus its service chain flushed and rewritten; maps
/// layout: its slot elements and the service's class element), and is one
/// kernel transaction: it applies whole or not at all. The services' part is sent as nf_tables netlink messages of
/// our own (`NFTNetlinkBatch`). When the table's structure differs too
/// (table, maps, hook and dispatch chains: at the first programming or a
/// repair), the structure goes first through libnftables, in a transaction
/// of its own: a repair is then two transactions, and between them the
/// hook chains can be live before the service chains are refilled.
///
/// Removing a backend: in the same transaction its service chain stops
/// jumping to it (so no new connection can reach it from that commit on)
/// and its endpoint chain is deleted. Connections already established
/// would go on: their NAT binding lives in conntrack, not in the table, and
/// every packet refreshes it (a UDP client that keeps sending, DNS or
/// statsd, would reach the removed backend forever; established TCP for
/// nf_conntrack_tcp_timeout_established, 5 days). So after a commit that
/// removed backends (from a service that stays, or with a whole service
/// deleted), the back end deletes, through ctnetlink in the same namespace
/// (`Conntrack`), every entry NATed to a removed backend for that service:
/// reply source the backend's address and port, original destination the
/// VIP and port (any local address for a published port), same protocol.
/// The next packet of such a flow makes a new entry and is balanced over
/// the backends that remain: a UDP stream moves over, a TCP connection is
/// answered with a reset. This is what kube-proxy does for removed
/// endpoints, and what IPVS does with expire_nodest_conn; it is the stale
/// backend of moby#33790. The count is `ReconcileChanges.connectionsDeleted`.
/// The deletion follows the commit (a packet in flight at the commit, whose
/// entry is not yet confirmed, can escape it). If it fails, the commit
/// stands, the error is in `connectionCleanupError`, and the next reconcile
/// that covers that service tries again while the backend is still out.
///
/// libnftables' netlink socket is opened by nft_ctx_new (1.0.6), so the
/// context is created on a thread inside the namespace and later commands,
/// from any thread, act there (the kernel tests check this). Its descriptor
/// is kept below 1024 (`NetfilterSockets`): libnftables puts it in an
/// fd_set.
///
/// Sockets: the libnftables context is opened only for what needs it (the
/// structure, a listing), the netlink sockets at the first change; with
/// `holdsSockets` false (the daemon's workload namespaces, one balancer per
/// workload) every call closes what it opened, so a balancer between calls
/// holds no descriptor and no buffer (issue 17: three sockets and 400 kB
/// per workload otherwise).
///
/// Cost of a change: about 0.5 ms at 100 services in either layout. In the
/// chains layout it grows with the table, in the kernel: every commit that
/// adds a rule validates the whole table from its hook chains (every
/// service and endpoint chain, through the dispatch map), and every commit
/// walks every chain of the namespace; at 10,000 services x 10 (110,000
/// chains) that is 110 to 140 ms of kernel time per commit, measured with
/// bare netlink batches and nothing of ours (`scripts/bench-nft-floor`).
/// In the maps layout the kernel's part stays about 0.02 ms at 10,000
/// services, and a per-service change about 0.3-0.5 ms in all; the
/// daemon's path (`reconcile(to:)` of every service) adds a walk over the
/// desired set, about 1 ms at 10,000 (see BENCHMARKS.md).
/// Reading the table (`services()`, and `reconcile(to:)` when the table
/// is not known to be the model) goes through libnftables' JSON listing:
/// about 47 s at 10,000 services x 10. While the ruleset generation is the
/// one swarmnet's last commit left, neither change reads it: a
/// `reconcile(service:to:)` renders and sends that one service, and a
/// `reconcile(to:)` (the daemon's path) compares the desired services
/// with those it programmed and renders and sends only those that differ.
/// See BENCHMARKS.md.
public final class NFTablesLoadBalancer: LoadBalancerBackend, @unchecked Sendable {
    /// The namespace the table lives in; nil for the caller's own.
    public let namespace: NetworkNamespace?
    public let configuration: NFTablesConfiguration
    /// Whether the sockets stay open between calls.
    public let holdsSockets: Bool
    private var openContext: NFTablesContext?
    private var openNetlink: (socket: NFTablesSocket, conntrack: Conntrack)?
    private let renderer: NFTablesRenderer
    private let transaction: NFTTransaction
    private let lock = Lock()
    /// What swarmnet last programmed (and the kernel then held); nil when
    /// unknown, so the next per-service reconcile reads the kernel first.
    private var model: NFTImage?
    /// The services `model` was rendered from, by key (nil when the model
    /// holds anything else: after a per-service change that had to read
    /// the kernel, whose other services swarmnet did not render).
    private var modelServices: [ServiceKey: VirtualService]?
    /// The ruleset generation swarmnet's last commit left.
    private var generation: UInt32?
    private var lastCommands: [NFTCommand] = []
    /// Removed backends whose entries could not be deleted yet (the
    /// deletion failed): retried by the next reconcile of their service.
    private var pendingCleanup: Set<RemovedBackend> = []
    /// Maps layout: when each class set that has no member now was found empty.
    private var emptySince: [String: ContinuousClock.Instant] = [:]

    /// A balancer of the table in `namespace` (the caller's own when nil).
    /// Nothing is opened or programmed until the first call.
    public init(namespace: NetworkNamespace? = nil, configuration: NFTablesConfiguration = NFTablesConfiguration(),
                holdsSockets: Bool = true) throws {
        try configuration.validate()
        try namespace?.checkExists()
        self.namespace = namespace
        self.configuration = configuration
        self.holdsSockets = holdsSockets
        renderer = NFTablesRenderer(configuration: configuration)
        transaction = NFTTransaction(family: "ip", table: configuration.tableName)
    }

    /// libnftables, opened in the namespace at first use.
    private var context: NFTablesContext {
        get throws {
            if let openContext { return openContext }
            let opened = try NFTablesContext(namespace: namespace)
            openContext = opened
            return opened
        }
    }

    /// Generations and the services' part of each transaction (see
    /// `NFTablesSocket`), and the conntrack entries of removed backends
    /// (ctnetlink): two sockets, opened in the namespace together at first use.
    private var netlink: (socket: NFTablesSocket, conntrack: Conntrack) {
        get throws {
            if let openNetlink { return openNetlink }
            let namespace = namespace
            let open = { () throws -> (MnlSocket, MnlSocket) in
                (try MnlSocket(namespace: nil, protocol: NETLINK_NETFILTER), try MnlSocket(namespace: nil, protocol: NETLINK_NETFILTER))
            }
            let (first, second) = try namespace.map { try $0.run(open) } ?? open()
            let opened = (NFTablesSocket(transport: first, namespace: namespace), Conntrack(transport: second, namespace: namespace))
            openNetlink = opened
            return opened
        }
    }

    private var socket: NFTablesSocket { get throws { try netlink.socket } }
    private var conntrack: Conntrack { get throws { try netlink.conntrack } }

    /// Runs one call under the lock; closes its sockets afterwards unless they are held.
    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        try lock.withLock {
            defer {
                if !holdsSockets {
                    openContext = nil
                    openNetlink = nil
                }
            }
            return try body()
        }
    }

    /// Whether libnftables can list the ruleset in `namespace`; the reason when not.
    public static func availability(in namespace: NetworkNamespace? = nil) -> (available: Bool, reason: String?) {
        do {
            try NFTablesContext(namespace: namespace).run("list tables")
            return (true, nil)
        } catch {
            return (false, "\(error)")
        }
    }

    // MARK: - LoadBalancerBackend

    /// What the table holds now, mapped back to services. Chains layout: a
    /// service per dispatch-map element, its scheduler from its chain, its
    /// backends and weights from its endpoint chains. Maps layout: a service
    /// per class element, its scheduler from that element's comment, its
    /// backends from its slots and the idle set. An absent table holds none.
    public func services() throws -> [VirtualService] {
        try locked { NFTablesKernelState.services(in: try readKernel(), layout: configuration.layout) }
    }

    /// Compares the table with `desired` and repairs every difference (one
    /// transaction, two when the structure needs repair): a deleted or flushed table, an edited or extra
    /// chain, a missing or extra map element, a wrong hook. The reported
    /// operations are the model-level difference (what `services()` held
    /// before against `desired`).
    ///
    /// The table is read from the kernel unless the ruleset generation is
    /// still the one swarmnet's own last commit left: every change to any
    /// table, `nft flush` included, makes a new generation, so an unchanged
    /// one means the table is exactly the model, and the periodic reconcile
    /// of a table nobody touched costs one NFT_MSG_GETGEN instead of a
    /// listing (about 47 s at 10,000 services x 10). `tableReads` counts
    /// the listings.
    @discardableResult
    public func reconcile(to desired: [VirtualService]) throws -> ReconcileChanges {
        try locked {
            // Kept only across a success: the next call compares with it.
            let previous = lastDesired
            lastDesired = nil
            let changes: ReconcileChanges
            do {
                changes = try reconcileAll(desired, previous: previous, trustModel: true)
            } catch is NFTablesError {
                // Someone committed between the read and the commit: once
                // more, from the kernel.
                changes = try reconcileAll(desired, previous: nil, trustModel: false)
            }
            lastDesired = desired
            return changes
        }
    }

    /// The desired set of the last full reconcile that succeeded, as given
    /// (nil after anything else changed the table: a per-service change).
    private var lastDesired: [VirtualService]?

    /// How many times the table has been listed from the kernel (a full
    /// reconcile that could trust its model, and a per-service change, do not).
    public var tableReads: Int { lock.withLock { reads } }
    private var reads = 0

    private func reconcileAll(_ desired: [VirtualService], previous: [VirtualService]?, trustModel: Bool) throws -> ReconcileChanges {
        var trusted: (image: NFTImage, generation: UInt32)?
        if trustModel, model != nil, let generation, try socket.currentGeneration() == generation {
            if let programmed = modelServices {
                let changed: [(key: ServiceKey, service: VirtualService?)]
                if let previous, let indices = Self.changedIndices(from: previous, to: desired) {
                    // The same services in the same order as last time (the
                    // daemon's case): only those that differ are validated
                    // and compared; the keys, checked unique then, still are.
                    let services = indices.map { desired[$0] }
                    try renderer.validate(services)
                    changed = services.map { ($0.key, renderer.effective($0)) }.filter { programmed[$0.key] != $0.1 }
                } else {
                    try renderer.validate(desired)
                    let wanted = Dictionary(uniqueKeysWithValues: desired.map { ($0.key, renderer.effective($0)) }) // keys validated unique
                    changed = wanted.filter { programmed[$0.key] != $0.value }.map { ($0.key, $0.value) }
                        + programmed.keys.filter { wanted[$0] == nil }.map { ($0, nil) }
                }
                // Both moved out, not copied: the change mutates them in place
                // (a second reference would copy 10,000 services per change).
                modelServices = nil
                var known = consume programmed
                let changes = try reconcileChanged(changed.sorted { $0.key < $1.key }, trusted: model.take()!, known: &known,
                                                   generation: generation)
                modelServices = known
                return changes
            }
            trusted = (model!, generation)
        }
        try renderer.validate(desired)
        let effective = desired.map(renderer.effective)
        let (kernel, before) = try trusted ?? readKernelAndGeneration()
        model = nil
        modelServices = nil
        let current = NFTablesKernelState.services(in: kernel, layout: configuration.layout)
        let operations = try ReconcilePlan.operations(from: current, to: effective)
        // Classes the kernel has stay until their members have moved out.
        var want = renderer.image(for: effective, keepingClasses: kernel.classSets)
        try commit(transaction.plan(from: kernel, to: want), types: want.maps.merging(kernel.maps) { wanted, _ in wanted }, after: before)
        try removeEmptyClasses(&want)
        model = want
        modelServices = Dictionary(uniqueKeysWithValues: effective.map { ($0.key, $0) })
        return deleteConnections(removedBetween: current, effective, coveringAll: effective, operations)
    }

    /// A full reconcile into a table that is exactly the model (`trusted`,
    /// taken out of `model`, which is nil until this puts it back), whose
    /// services are known: only the services that differ from what was
    /// programmed are rendered, compared and sent. The daemon reconciles
    /// its whole desired set on every change, and rendering and comparing
    /// every service for one changed backend cost ten times the change
    /// itself (144 ms against 13 ms at 1,000 services). The services'
    /// equality is the test: the model was rendered from `known` by this
    /// renderer.
    /// `changed`: the services (effective) that differ from `known`, by
    /// key in order, nil for one to remove; `known` is brought up to date.
    /// On a failure both `model` and `modelServices` stay nil, and the next
    /// call reads the kernel.
    private func reconcileChanged(_ changed: [(key: ServiceKey, service: VirtualService?)], trusted: consuming NFTImage,
                                  known: inout [ServiceKey: VirtualService], generation before: UInt32) throws -> ReconcileChanges
    {
        if changed.isEmpty, pendingCleanup.isEmpty {
            lastCommands = []
            var image = consume trusted
            try removeEmptyClasses(&image)
            model = image
            return ReconcileChanges(operations: [])
        }
        let was = changed.compactMap { known[$0.key] }
        let will = changed.compactMap(\.service)
        let operations = try ReconcilePlan.operations(from: was, to: will)
        var desired: [ServiceKey: VirtualService] = [:]
        for (key, service) in changed { desired[key] = service }
        var next = consume trusted
        try rewrite(changed.map(\.key), to: desired, in: &next, after: before, fromModel: true)
        model = next
        for (key, service) in changed { known[key] = service }
        // Every service is covered: pending cleanups are retried, or dropped
        // where their backend is back.
        let pending = pendingCleanup.filter { !$0.isPresent(in: known) }
        pendingCleanup = []
        return deleteConnections(of: Set(RemovedBackend.between(was, will)).union(pending), operations)
    }

    /// The positions where `desired` differs from `previous`, when both hold
    /// the same keys in the same order; nil when they do not.
    static func changedIndices(from previous: [VirtualService], to desired: [VirtualService]) -> [Int]? {
        guard previous.count == desired.count else { return nil }
        // Field by field through the buffers: comparing the elements
        // through the arrays' subscripts copied every service (a retain and
        // a release of each reference it holds), most of this walk's time.
        // Every stored property of VirtualService is compared (a unit test
        // fails when one is added).
        return previous.withUnsafeBufferPointer { old in
            desired.withUnsafeBufferPointer { new -> [Int]? in
                var changed: [Int] = []
                for index in 0..<new.count {
                    guard old[index].key == new[index].key else { return nil }
                    if old[index].realServers != new[index].realServers || old[index].scheduler != new[index].scheduler
                        || old[index].schedulerFlags != new[index].schedulerFlags || old[index].persistence != new[index].persistence {
                        changed.append(index)
                    }
                }
                return changed
            }
        }
    }

    /// Sends what makes the services `keys` of `image` (the model, or the
    /// kernel as read at generation `before`) hold `desired` (a key absent
    /// from it: the service is removed), with the table's structure
    /// repaired if it differs, and applies the same to `image`. Other
    /// services are not looked at, and chains that belong to no service
    /// and that the structure does not name are left (to a full reconcile
    /// from the kernel). An empty change from the model is checked against
    /// the generation instead, as no batch carries it.
    private func rewrite(_ keys: [ServiceKey], to desired: [ServiceKey: VirtualService], in image: inout NFTImage,
                         after before: UInt32, fromModel: Bool) throws
    {
        var current = NFTImage(exists: image.exists, maps: image.maps, chains: image.chains)
        var rendered: [(id: String, service: NFTServiceImage?)] = []
        // A class set the table has stays until a later transaction finds it empty.
        var classes = image.classSets
        for key in keys {
            let id = NFTNames.serviceID(key)
            current.setService(id, image.services[id])
            let service = desired[key].map(renderer.service)
            if let name = service?.classSet { classes.insert(name) }
            rendered.append((id, service))
        }
        var want = renderer.structure(classes: classes)
        for (id, service) in rendered { want.setService(id, service) }
        let plan = transaction.plan(from: current, to: want.keepingChains(of: image))
        if plan.isEmpty, fromModel, try socket.currentGeneration() != before {
            // Nothing to send, but someone committed since: read and repair.
            throw NFTablesError(command: "(none)", message: "the ruleset changed since swarmnet's last commit")
        }
        try commit(plan, types: want.maps.merging(current.maps) { wanted, _ in wanted }, after: before)
        image.exists = true
        image.adoptStructure(of: want)
        for (id, service) in rendered { image.setService(id, service) }
        try removeEmptyClasses(&image)
    }

    /// Maps layout: deletes the class sets that have had no member for
    /// `emptyClassLifetime`, with their rules, in a transaction of its own
    /// (inside the one that moved their last members out, the rule and the
    /// set were still needed by whatever had not moved yet). Nothing to do
    /// when the last commit's generation is not known: the next change
    /// reads the kernel and tries again.
    private func removeEmptyClasses(_ image: inout NFTImage) throws {
        let now = ContinuousClock.now
        let empty = image.classSets.filter { image.classMembers[$0, default: 0] == 0 }
        emptySince = emptySince.filter { empty.contains($0.key) }
        for name in empty where emptySince[name] == nil { emptySince[name] = now }
        let expired = empty.filter { now - emptySince[$0]! >= configuration.emptyClassLifetime }
        guard !expired.isEmpty, let before = generation else { return }
        for name in expired { emptySince[name] = nil }
        let want = renderer.structure(classes: image.classSets.subtracting(expired))
        let current = NFTImage(exists: image.exists, maps: image.maps, chains: image.chains)
        try commit(transaction.plan(from: current, to: want.keepingChains(of: image)), types: want.maps, after: before, appending: true)
        image.adoptStructure(of: want)
    }

    /// Makes one service hold `desired` (nil: remove it), touching nothing
    /// else. Trusts what swarmnet last programmed instead of listing the
    /// table (which is what keeps a change cheap) as long as the ruleset
    /// generation is the one swarmnet's own last commit left; when anyone
    /// committed anything in the namespace since (`nft flush table`, another
    /// table's owner), or on the first call, the table is read first and its
    /// structure and this service repaired. The transaction is a second
    /// check: it creates chains that must be new and flushes or deletes
    /// chains that must exist, so if it still fails it is retried once from
    /// a fresh read. Other services' drift is left to `reconcile(to:)`.
    @discardableResult
    public func reconcile(service key: ServiceKey, to desired: VirtualService?) throws -> ReconcileChanges {
        try renderer.validate(key: key)
        if let desired {
            guard desired.key == key else {
                throw LoadBalancerError.invalidArgument("service \(desired.key) given for key \(key)")
            }
            try renderer.validate([desired])
        }
        let effective = desired.map(renderer.effective)
        return try locked {
            // The table will no longer be the last full set's.
            lastDesired = nil
            do {
                return try reconcileOne(key, effective, trustModel: true)
            } catch is NFTablesError {
                // The kernel was not what the model said: read it and retry once.
                model = nil
                return try reconcileOne(key, effective, trustModel: false)
            }
        }
    }

    private func reconcileOne(_ key: ServiceKey, _ desired: VirtualService?, trustModel: Bool) throws -> ReconcileChanges {
        // The model is taken out while it is changed, so the change is made
        // in place (a copy of 10,000 services per change cost milliseconds),
        // and a failure leaves none: the next call reads the kernel.
        var next: NFTImage
        var before: UInt32
        let trusted = model
        var known = modelServices
        model = nil
        modelServices = nil
        if trustModel, let trusted, let generation {
            next = trusted
            // The batch checks that nothing was committed since (ERESTART if
            // something was); an empty plan is checked here instead.
            before = generation
        } else {
            (next, before) = try readKernelAndGeneration()
            known = nil // the others are what the kernel holds, not known renderings
        }
        // What the service was: as programmed when known, else as read back.
        let id = NFTNames.serviceID(key)
        let currentServices = known.map { $0[key].map { [$0] } ?? [] }
            ?? NFTablesKernelState.services(in: NFTImage(exists: next.exists, services: next.services[id].map { [id: $0] } ?? [:]),
                                            layout: configuration.layout)
        let desiredServices = desired.map { [$0] } ?? []
        let operations = try ReconcilePlan.operations(from: currentServices, to: desiredServices)
        try rewrite([key], to: desired.map { [key: $0] } ?? [:], in: &next, after: before, fromModel: trustModel)
        model = next
        known?[key] = desired
        modelServices = known
        // Only this service is covered: its pending cleanups are retried or dropped.
        let pending = pendingCleanup.filter { $0.service == key }
        pendingCleanup.subtract(pending)
        let removed = Set(RemovedBackend.between(currentServices, desiredServices))
            .union(pending.filter { !$0.isPresent(in: desiredServices) })
        return deleteConnections(of: removed, operations)
    }

    /// After a full reconcile, which covers every service: the backends
    /// removed between `was` and `will` are cut, and every pending cleanup
    /// is retried or, its backend being back in `all`, dropped.
    private func deleteConnections(removedBetween was: [VirtualService], _ will: [VirtualService], coveringAll all: [VirtualService],
                                   _ operations: [LoadBalancerOperation]) -> ReconcileChanges
    {
        let pending = pendingCleanup.filter { !$0.isPresent(in: all) }
        pendingCleanup = []
        return deleteConnections(of: Set(RemovedBackend.between(was, will)).union(pending), operations)
    }

    /// Deletes the conntrack entries NATed to `removed` backends, after the
    /// commit that removed them. A failure does not undo the commit (the
    /// table is right); it is reported and the backends kept for a retry.
    private func deleteConnections(of removed: Set<RemovedBackend>, _ operations: [LoadBalancerOperation]) -> ReconcileChanges {
        let matches = removed.sorted().compactMap(\.match)
        guard !matches.isEmpty else { return ReconcileChanges(operations: operations) }
        do {
            let deleted = try conntrack.deleteEntries(natedTo: matches)
            return ReconcileChanges(operations: operations, connectionsDeleted: deleted)
        } catch {
            pendingCleanup.formUnion(removed)
            return ReconcileChanges(operations: operations, connectionCleanupError:
                "deleting the conntrack entries of removed backends in \(namespace?.description ?? "this namespace"): \(error)")
        }
    }

    // MARK: - Table

    /// The nft commands that program `desired` into an empty namespace:
    /// what the first reconcile sends, as `nft -f` reads it.
    public static func ruleset(for desired: [VirtualService], configuration: NFTablesConfiguration = NFTablesConfiguration()) throws
        -> String
    {
        try configuration.validate()
        let renderer = NFTablesRenderer(configuration: configuration)
        try renderer.validate(desired)
        let image = renderer.image(for: desired.map(renderer.effective))
        return NFTTransaction(family: "ip", table: configuration.tableName)
            .commands(from: NFTImage(exists: false), to: image).joined(separator: "\n") + "\n"
    }

    /// Deletes swarmnet's table (at shutdown, or when switching back ends);
    /// an absent table is not an error.
    public func deleteTable() throws {
        try locked {
            model = nil
            lastDesired = nil
            generation = nil
            do { try context.run("delete table ip \(configuration.tableName)") } catch let error as NFTablesError
                where error.isNotFound {}
        }
    }

    /// nft's JSON listing of the table (`nft -j list table ip NAME`), for
    /// `swarmnet debug lb`; nil when the table does not exist.
    public func tableJSON() throws -> String? {
        try locked {
            do { return try context.run("list table ip \(configuration.tableName)", json: true) } catch let error as NFTablesError
                where error.isNotFound { return nil }
        }
    }

    /// The commands of the last transaction sent (empty when nothing differed).
    public var lastTransaction: [String] { lock.withLock { lastCommands.map { $0.text(prefix: transaction.prefix) } } }

    /// The table and the generation it was read at. libnftables' listing
    /// is itself consistent (it lists again if the generation moves while
    /// it reads), so the generation is read right after it, not before: a
    /// listing of 10,000 services takes most of a minute, and a commit by
    /// anyone during it (another table's owner in the host's namespace)
    /// would otherwise make every batch built from it fail.
    private func readKernelAndGeneration() throws -> (NFTImage, UInt32) {
        let image = try readKernel()
        return (image, try socket.currentGeneration())
    }

    private func readKernel() throws -> NFTImage {
        reads += 1
        let text: String
        do { text = try context.run("list table ip \(configuration.tableName)", json: true) } catch let error as NFTablesError
            where error.isNotFound { return NFTImage(exists: false) }
        return try NFTablesKernelState.image(fromJSON: text, table: configuration.tableName, layout: configuration.layout)
    }

    /// Sends one transaction. `before` is the generation the kernel was read
    /// at (or the model's); each commit makes it the next one.
    ///
    /// The table's structure, when anything of it differs (the first
    /// programming, a repair), goes first through libnftables as one
    /// transaction; the services' commands follow as one nf_tables batch
    /// of our own (`NFTNetlinkBatch`), which the kernel commits only if no
    /// one else committed since `before`: a stale model fails whole (and
    /// the caller reads the kernel and tries again) instead of being
    /// applied to a table it does not describe. A table this call created
    /// is deleted again if the services' batch fails, so a refused first
    /// programming leaves nothing behind.
    private func commit(_ commands: [NFTCommand], types: [String: String], after before: UInt32, appending: Bool = false) throws {
        lastCommands = appending ? lastCommands + commands : commands
        generation = nil
        var expected = before
        let structure = commands.filter(\.isStructure)
        let services = commands.filter { !$0.isStructure }
        // Encoded before anything is sent: a rule without an encoding changes nothing.
        let batch = services.isEmpty ? nil : try NFTNetlinkBatch(table: configuration.tableName, commands: services,
                                                                 prefix: transaction.prefix, types: types)
        if !structure.isEmpty {
            try context.run(structure.map { $0.text(prefix: transaction.prefix) }.joined(separator: "\n") + "\n")
            // A transaction the kernel found nothing to do in makes no new
            // generation; one by someone else in between makes two.
            let after = try socket.currentGeneration()
            guard after == before || after == NFTablesSocket.generation(after: before) else {
                throw NFTablesError(command: "(generation check)",
                                    message: "the ruleset changed while swarmnet repaired its table (generation \(before) to \(after))")
            }
            expected = after
        }
        if let batch {
            do {
                guard let made = try socket.commit(batch, expecting: expected) else { return } // generation unknown
                expected = made
            } catch {
                if structure.first == .structure("add table \(transaction.prefix)") {
                    _ = try? context.run("delete table \(transaction.prefix)")
                }
                throw error
            }
        }
        generation = expected
    }
}

/// A libnftables command failed; `message` is libnftables' error text.
public struct NFTablesError: Error, Sendable, CustomStringConvertible {
    public let command: String
    public let message: String

    /// ENOENT: the table, chain or element named does not exist.
    public var isNotFound: Bool { message.contains("No such file or directory") }

    public var description: String {
        let lines = command.split(separator: "\n")
        let shown = lines.count > 3 ? lines.prefix(3).joined(separator: "; ") + "; ... (\(lines.count) commands)" : lines.joined(separator: "; ")
        return "nftables: \(message.trimmed()) (transaction: \(shown))"
    }
}

/// One libnftables context, its netlink socket opened inside a namespace.
/// Not thread-safe: the owner serializes calls.
final class NFTablesContext: @unchecked Sendable {
    private let handle: OpaquePointer
    /// NFT_CTX_OUTPUT_JSON.
    private static let jsonOutput: UInt32 = 1 << 4

    init(namespace: NetworkNamespace?) throws {
        // nft_ctx_new opens the mnl socket: open it on a thread inside the
        // namespace, at a descriptor that select(2) can take.
        let make = { () -> UInt in UInt(bitPattern: nft_ctx_new(0)) }
        let address = try NetfilterSockets.openBelowSelectLimit({
            let address = try namespace.map { try $0.run(make) } ?? make()
            guard address != 0 else {
                throw LoadBalancerError.unavailable("nft_ctx_new failed in \(namespace?.description ?? "this namespace")")
            }
            return address
        }) { address in
            OpaquePointer(bitPattern: address).map { nft_ctx_free($0) }
        }
        handle = OpaquePointer(bitPattern: address)!
        nft_ctx_buffer_output(handle)
        nft_ctx_buffer_error(handle)
    }

    deinit { NetfilterSockets.closing { [handle] in nft_ctx_free(handle) } }

    /// Runs a buffer of commands as one transaction; returns nft's output.
    @discardableResult
    func run(_ commands: String, json: Bool = false) throws -> String {
        nft_ctx_output_set_flags(handle, json ? Self.jsonOutput : 0)
        let status = nft_run_cmd_from_buffer(handle, commands)
        let output = nft_ctx_get_output_buffer(handle).map { String(cString: $0) } ?? ""
        let error = nft_ctx_get_error_buffer(handle).map { String(cString: $0) } ?? ""
        guard status == 0 else { throw NFTablesError(command: commands, message: error.isEmpty ? "status \(status)" : error) }
        return output
    }
}

import Addressing
import FoundationEssentials
import SystemBasics
import Namespaces

/// How an `IPVSBalancer` works in its namespace.
public struct IPVSBalancerConfiguration: Sendable, Hashable {
    /// The nftables table (family ip) of its packet marks.
    public var markTable: String
    /// `.output` in a workload namespace (the workload's own connections);
    /// `.routingMesh` where published ports arrive from other interfaces.
    public var hooks: NFTablesConfiguration.Hooks
    /// Whether connections to published ports are masqueraded after IPVS
    /// forwards them (the routing mesh: replies must come back through this
    /// namespace), or keep the client's address (host-mode ports, whose
    /// backends route their replies through this host).
    public var masqueradePublishedPorts: Bool
    /// The marks this balancer allocates are `markBase | n`, n in 1...0xffff;
    /// firewall-mark services with other marks are not its own and are left
    /// alone. The low 16 bits must be zero.
    public var markBase: UInt32
    /// Whether every VIP:port service of the namespace is its own (a
    /// workload namespace swarmnet made), or none is (the host's namespace,
    /// where an operator or kube-proxy may keep IPVS services of theirs).
    public var ownsAddressServices: Bool
    /// Where `ownsAddressServices` is false, the VIP:port services whose
    /// address is inside one of these prefixes are its own all the same:
    /// in the host's namespace, the published services' VIPs on the
    /// ingress network, a subnet no one else routes there.
    public var ownedAddresses: [IPPrefix]

    public init(markTable: String, hooks: NFTablesConfiguration.Hooks, masqueradePublishedPorts: Bool, markBase: UInt32,
                ownsAddressServices: Bool, ownedAddresses: [IPPrefix] = []) {
        self.markTable = markTable
        self.hooks = hooks
        self.masqueradePublishedPorts = masqueradePublishedPorts
        self.markBase = markBase
        self.ownsAddressServices = ownsAddressServices
        self.ownedAddresses = ownedAddresses
    }

    /// Whether a VIP:port service of `address` is this balancer's.
    public func owns(_ address: IPAddress) -> Bool { ownsAddressServices || ownedAddresses.contains { $0.contains(address) } }
}

/// IPVS as swarmnetd uses it: the desired services of `LoadBalancerBackend`
/// (VIP:port, a VIP on every port as port 0, a published port as VIP
/// 0.0.0.0) turned into what IPVS can hold. A VIP:port stays an IPVS
/// service of that address; the other two become firewall-mark services
/// whose packets `IPVSMarkTable` marks. Read back, marked services are
/// reported under the keys they were asked for, so callers (and
/// `swarmnet debug lb`) compare like with like.
///
/// Order within a reconcile, so that no marked packet finds no service:
/// IPVS services are added and changed first, then the mark table is
/// rewritten (if it differs), and services no longer wanted are deleted last.
public final class IPVSBalancer: LoadBalancerBackend, @unchecked Sendable {
    public let namespace: NetworkNamespace?
    public let configuration: IPVSBalancerConfiguration
    private let ipvs: IPVS
    private let nft: NFTablesContext
    private let markTable: IPVSMarkTable
    private let lock = Lock()

    /// Opens IPVS and libnftables in `namespace`; nothing is written until
    /// the first reconcile. Throws `.unavailable` when the kernel has no IPVS.
    public init(namespace: NetworkNamespace?, configuration: IPVSBalancerConfiguration) throws {
        try NFTablesConfiguration.validate(tableName: configuration.markTable)
        guard configuration.markBase & 0xffff == 0, configuration.markBase != 0 else {
            throw LoadBalancerError.invalidArgument(
                "mark base 0x\(String(configuration.markBase, radix: 16)) must be non-zero with its low 16 bits clear")
        }
        self.namespace = namespace
        self.configuration = configuration
        ipvs = try IPVS(namespace: namespace)
        nft = try NFTablesContext(namespace: namespace)
        markTable = IPVSMarkTable(name: configuration.markTable, hooks: configuration.hooks,
                                  masqueradesPublishedPorts: configuration.masqueradePublishedPorts)
    }

    // MARK: - LoadBalancerBackend

    /// The services this balancer owns, under the keys they were asked for;
    /// a firewall-mark service of its range that no mark points to is
    /// shown by its mark (a leftover the next reconcile deletes).
    public func services() throws -> [VirtualService] {
        try lock.withLock { try ownedServicesByKey(marks: readMarks().contents.marks) }
    }

    @discardableResult
    public func reconcile(to desired: [VirtualService]) throws -> ReconcileChanges {
        try ReconcilePlan.validate(desired)
        return try lock.withLock { try reconcileLocked(to: desired) }
    }

    /// The per-change path: this balancer's services are few per namespace
    /// (one per VIP port or published port), so one service is changed by
    /// a full reconcile in which every other service stays as the kernel
    /// holds it. Refused while the kernel holds a marked service that no
    /// mark points to (a lost or edited mark table): what that service was
    /// for is unknown, so only a full `reconcile(to:)` can repair it.
    @discardableResult
    public func reconcile(service key: ServiceKey, to desired: VirtualService?) throws -> ReconcileChanges {
        if let desired {
            guard desired.key == key else { throw LoadBalancerError.invalidArgument("service \(desired.key) given for key \(key)") }
            try ReconcilePlan.validate([desired])
        }
        return try lock.withLock {
            let current = try ownedServicesByKey(marks: readMarks().contents.marks)
            if let leftover = current.first(where: { if case .firewallMark = $0.key { true } else { false } }) {
                throw LoadBalancerError.invalidArgument(
                    "\(leftover.key) has no mark in table ip \(configuration.markTable): a full reconcile must repair it first")
            }
            var all = current.filter { $0.key != key }
            if let desired { all.append(desired) }
            return try reconcileLocked(to: all)
        }
    }

    /// Removes everything this balancer owns: its mark table first (so no
    /// packet is marked for a missing service), then its IPVS services.
    public func removeAll() throws {
        try lock.withLock {
            do { try nft.run("delete table ip \(configuration.markTable)") } catch let error as NFTablesError where error.isNotFound {}
            try ipvs.apply(try ownedServices().map { .deleteService($0.key) })
        }
    }

    private func reconcileLocked(to desired: [VirtualService]) throws -> ReconcileChanges {
        // Written on every pass, not once: a reset conntrack=0 would
        // silently stop the mesh's masquerade.
        try ipvs.setSysctls(configuration.masqueradePublishedPorts ? .swarmIngress : .swarm)
        let read = try readMarks()
        let owned = try ownedServices()
        // A mark still carried by one of our services, or already given out
        // in this pass, is not handed to a new target: a leftover service
        // is deleted cleanly instead of being edited into someone else's.
        var taken = Set(read.contents.marks.values)
        for service in owned { if case .firewallMark(let mark, _) = service.key { taken.insert(mark) } }
        var contents = IPVSMarkTable.Contents()
        var translated: [VirtualService] = []
        for service in desired {
            guard let target = try IPVSMarkTable.Target(marking: service.key) else {
                guard case .address(let address, _, _) = service.key, configuration.owns(address) else {
                    throw LoadBalancerError.invalidArgument(
                        "service \(service.key): this balancer owns no VIP:port services in \(namespace?.description ?? "this namespace")")
                }
                translated.append(service)
                continue
            }
            let assigned = Set(contents.marks.values)
            let kept = read.contents.marks[target].flatMap { isMine($0) && !assigned.contains($0) ? $0 : nil }
            let mark = try kept ?? allocateMark(avoiding: taken.union(assigned), for: target)
            contents.marks[target] = mark
            if case .publishedPort = target, configuration.masqueradePublishedPorts { contents.masquerade.insert(mark) }
            var marked = service
            marked.key = .firewallMark(mark, family: .ipv4)
            translated.append(marked)
        }
        let operations = try ReconcilePlan.operations(from: owned, to: translated)
        let deletions = operations.filter { if case .deleteService = $0 { true } else { false } }
        let others = operations.filter { if case .deleteService = $0 { false } else { true } }
        try ipvs.apply(others)
        // An absent table needs writing only once there is a mark to hold.
        if (read.exists || !contents.marks.isEmpty) && (!read.intact || read.contents != contents) {
            try nft.run(markTable.commands(for: contents))
        }
        try ipvs.apply(deletions)
        return ReconcileChanges(operations: others + deletions) // in the order applied
    }

    // MARK: - Internals

    private func isMine(_ mark: UInt32) -> Bool { mark & 0xffff_0000 == configuration.markBase && mark & 0xffff != 0 }

    private func allocateMark(avoiding used: Set<UInt32>, for target: IPVSMarkTable.Target) throws -> UInt32 {
        for n in UInt32(1)...0xffff where !used.contains(configuration.markBase | n) { return configuration.markBase | n }
        throw LoadBalancerError.invalidArgument("no free firewall mark for \(target) (65,535 in use)")
    }

    /// IPVS's services that are this balancer's, with their real servers.
    private func ownedServices() throws -> [VirtualService] {
        try ipvs.services().filter { service in
            switch service.key {
            case .firewallMark(let mark, _): isMine(mark)
            case .address(let address, _, _): configuration.owns(address)
            }
        }
    }

    /// The owned services with marked ones under the keys their marks
    /// stand for (a mark with no entry keeps its `.firewallMark` key).
    private func ownedServicesByKey(marks: [IPVSMarkTable.Target: UInt32]) throws -> [VirtualService] {
        let byMark = Dictionary(marks.map { ($0.value, $0.key.serviceKey) }, uniquingKeysWith: { first, _ in first })
        return try ownedServices().map { service in
            var named = service
            if case .firewallMark(let mark, _) = service.key, let key = byMark[mark] { named.key = key }
            return named
        }.sorted { $0.key < $1.key }
    }

    /// The mark table as the kernel holds it; `intact` is false when its
    /// chains, hooks or rules are not the ones `IPVSMarkTable` makes
    /// (flushed, deleted, a rule added, removed or edited), so the next
    /// reconcile rewrites it.
    private func readMarks() throws -> (contents: IPVSMarkTable.Contents, exists: Bool, intact: Bool) {
        let text: String
        do { text = try nft.run("list table ip \(configuration.markTable)", json: true) } catch let error as NFTablesError
            where error.isNotFound { return (IPVSMarkTable.Contents(), false, false) }
        let parsed = try IPVSMarkTable.parse(json: text, table: configuration.markTable)
        return (parsed.contents, true, markTable.isIntact(chains: parsed.chains, hooks: parsed.hooks))
    }
}

#if canImport(Glibc)
import Glibc
#endif
import Addressing
import CIPVSShim
import Namespaces
import Netlink

/// The IPVS back end: the kernel's virtual servers in one network
/// namespace, driven over generic netlink (the "IPVS" family) through a
/// libmnl socket opened inside that namespace. Methods are named after
/// ipvsadm's verbs (-A add service, -E edit, -D delete, -a/-e/-d real
/// servers, -L list, -C clear, --set timeouts).
///
/// Forwarding is masquerading (NAT), as Swarm uses it; replies must come
/// back through the namespace that holds the service.
///
/// The kernel checks an IPv4 real server's address against the namespace's
/// routing tables: in a namespace with no local table (a fresh one whose
/// `lo` is still down) every IPv4 real server is refused with EINVAL.
///
/// Removing a real server: reconcile sets its weight to 0 (the scheduler
/// stops choosing it) and then deletes it. IPVS has no netlink command that
/// deletes connection entries; what the kernel offers instead is the
/// `expire_nodest_conn` sysctl (see `IPVSSysctls`): with it set to 1, Linux
/// 5.9 and later queue work on every real-server deletion that expires all
/// connection entries, TCP and UDP alike, whose real server is gone (and
/// before 5.9 expire each one on its next packet, dropping that packet).
/// Without it, entries of a deleted real server live until their timeout
/// (900 s for established TCP by default) and keep forwarding to it.
public final class IPVS: LoadBalancerBackend, @unchecked Sendable {
    /// The namespace the socket lives in; nil for the caller's own.
    public let namespace: NetworkNamespace?
    /// The generic netlink id of the "IPVS" family in this kernel.
    public let familyID: UInt16
    private let session: RouteNetlink

    /// Opens a generic netlink socket in `namespace` (the caller's own when
    /// nil) and resolves the IPVS family; throws `.unavailable` when the
    /// kernel has no IPVS.
    public convenience init(namespace: NetworkNamespace? = nil) throws {
        try namespace?.checkExists()
        let socket: MnlSocket
        do { socket = try MnlSocket(namespace: namespace, protocol: NETLINK_GENERIC) } catch let error as NetlinkError {
            throw LoadBalancerError.netlink(error)
        }
        try self.init(transport: socket, namespace: namespace)
    }

    /// A back end over any transport; tests pass one that replays replies.
    public init(transport: NetlinkTransport, namespace: NetworkNamespace? = nil) throws {
        session = RouteNetlink(transport: transport, namespace: namespace)
        self.namespace = namespace
        familyID = try Self.resolveFamily(session)
    }

    /// Whether IPVS can be used in `namespace`: the family resolves and
    /// answers IPVS_CMD_GET_INFO. The reason when it cannot.
    public static func availability(in namespace: NetworkNamespace? = nil) -> Availability {
        do {
            let ipvs = try IPVS(namespace: namespace)
            let info = try ipvs.info()
            return .available(version: info.version, connectionTableSize: info.connectionTableSize)
        } catch {
            return .unavailable(reason: "\(error)")
        }
    }

    /// Whether IPVS answered, with its version, or why not.
    public enum Availability: Sendable, Equatable {
        case available(version: String, connectionTableSize: UInt32)
        case unavailable(reason: String)

        public var isAvailable: Bool { if case .available = self { true } else { false } }
    }

    private static func resolveFamily(_ session: RouteNetlink) throws -> UInt16 {
        let name = String(cString: cipvs_genl_name())
        do {
            let reply = try session.query(GenericNetlink.familyRequest(name: name),
                                          operation: "resolve generic netlink family", object: "'\(name)'")
            return try GenericNetlink.familyID(from: reply)
        } catch NetlinkError.kernel(let error) where error.errno == ENOENT {
            throw LoadBalancerError.unavailable(
                "the kernel has no '\(name)' generic netlink family (IPVS not built or module ip_vs not loaded) in \(session.namespaceDescription)")
        } catch let error as NetlinkError {
            throw LoadBalancerError.netlink(error)
        }
    }

    // MARK: - Services (ipvsadm -A, -E, -D, -L, -C)

    /// `ipvsadm -A`: creates the service alone; its real servers are not added.
    public func addService(_ service: VirtualService) throws {
        try perform(.addService(service))
    }

    /// `ipvsadm -E`: changes scheduler, flags and persistence.
    public func editService(_ service: VirtualService) throws {
        try perform(.editService(service))
    }

    /// `ipvsadm -D`: deletes the service and its real servers.
    public func deleteService(_ key: ServiceKey) throws {
        try perform(.deleteService(key))
    }

    /// `ipvsadm -a`.
    public func addRealServer(_ server: RealServer, to service: ServiceKey) throws {
        try perform(.addRealServer(server, service: service))
    }

    /// `ipvsadm -e`.
    public func editRealServer(_ server: RealServer, of service: ServiceKey) throws {
        try perform(.editRealServer(server, service: service))
    }

    /// `ipvsadm -d`.
    public func deleteRealServer(_ server: RealServer.Key, of service: ServiceKey) throws {
        try perform(.deleteRealServer(server, service: service))
    }

    /// `ipvsadm -C`: deletes every service of the namespace.
    public func flush() throws {
        try run(IPVSMessage.request(family: familyID, command: Int32(IPVS_CMD_FLUSH)),
                operation: "flush services", object: "in \(session.namespaceDescription)")
    }

    /// `ipvsadm -Ln`: every service with its real servers, sorted.
    public func services() throws -> [VirtualService] {
        var result: [VirtualService] = []
        for var service in try serviceList() {
            service.realServers = try destinations(of: service.key).map(\.server)
            result.append(service.sorted)
        }
        return result.sorted { $0.key < $1.key }
    }

    /// The services without their real servers (one dump).
    public func serviceList() throws -> [VirtualService] {
        try dump(IPVSMessage.dumpServices(family: familyID), operation: "list services")
            .compactMap { try IPVSMessage.parseService($0) }
    }

    /// The real servers of one service with their connection counters.
    /// An unknown service has none (the kernel answers an empty dump).
    public func destinations(of service: ServiceKey) throws -> [IPVSDestination] {
        try dump(IPVSMessage.dumpDestinations(service: service, family: familyID),
                 operation: "list real servers of \(service)")
            .compactMap { try IPVSMessage.parseDestination($0, serviceFamily: service.family) }
            .sorted { $0.server.key < $1.server.key }
    }

    // MARK: - Configuration (ipvsadm --set, -L --timeout)

    /// `ipvsadm --set TCP TCPFIN UDP`; a 0 leaves that timeout unchanged.
    public func setTimeouts(_ timeouts: IPVSTimeouts) throws {
        try run(IPVSMessage.setTimeouts(timeouts, family: familyID),
                operation: "set timeouts", object: "in \(session.namespaceDescription)")
    }

    /// `ipvsadm -L --timeout`.
    public func timeouts() throws -> IPVSTimeouts {
        let object = "in \(session.namespaceDescription)"
        do {
            let reply = try session.query(IPVSMessage.request(family: familyID, command: Int32(IPVS_CMD_GET_CONFIG)),
                                          operation: "get timeouts", object: object)
            return try IPVSMessage.parseTimeouts(reply)
        } catch let error as NetlinkError { throw Self.wrap(error) }
    }

    /// IPVS's version ("1.2.1") and connection hash table size.
    public func info() throws -> (version: String, connectionTableSize: UInt32) {
        do {
            let reply = try session.query(IPVSMessage.request(family: familyID, command: Int32(IPVS_CMD_GET_INFO)),
                                          operation: "get info", object: "in \(session.namespaceDescription)")
            let attributes = try GenericNetlink.attributes(of: reply)
            guard let version = attributes.uint32(Int(IPVS_INFO_ATTR_VERSION)) else {
                throw LoadBalancerError.malformedReply("info reply without IPVS_INFO_ATTR_VERSION")
            }
            return ("\(version >> 16).\(version >> 8 & 0xff).\(version & 0xff)",
                    attributes.uint32(Int(IPVS_INFO_ATTR_CONN_TAB_SIZE)) ?? 0)
        } catch let error as NetlinkError { throw Self.wrap(error) }
    }

    // MARK: - Reconcile

    /// Reads the kernel, plans the difference (`ReconcilePlan`) and applies
    /// it. The plan is sent as a batch (few large datagrams, in order): a
    /// failed operation does not stop the ones after it, and every failure
    /// is reported in one `reconcileFailed`. A real server that leaves is
    /// set to weight 0 before it is deleted, in that order.
    @discardableResult
    public func reconcile(to desired: [VirtualService]) throws -> ReconcileChanges {
        let operations = try ReconcilePlan.operations(from: services(), to: desired)
        try apply(operations)
        return ReconcileChanges(operations: operations)
    }

    /// Reconciles one service: reads only it from the kernel (one
    /// IPVS_CMD_GET_SERVICE and one dump of its destinations), plans its
    /// difference with `ReconcilePlan` and applies it in one batch.
    @discardableResult
    public func reconcile(service key: ServiceKey, to desired: VirtualService?) throws -> ReconcileChanges {
        if let desired, desired.key != key {
            throw LoadBalancerError.invalidArgument("service \(desired.key) given for key \(key)")
        }
        var current: [VirtualService] = []
        if var service = try service(key) {
            service.realServers = try destinations(of: key).map(\.server)
            current = [service.sorted]
        }
        let operations = try ReconcilePlan.operations(from: current, to: desired.map { [$0] } ?? [])
        try apply(operations)
        return ReconcileChanges(operations: operations)
    }

    /// One service without its real servers (IPVS_CMD_GET_SERVICE); nil
    /// when the kernel has no such service (ESRCH).
    public func service(_ key: ServiceKey) throws -> VirtualService? {
        var request = IPVSMessage.request(family: familyID, command: Int32(IPVS_CMD_GET_SERVICE))
        request.addNested(Int(IPVS_CMD_ATTR_SERVICE)) { IPVSMessage.addServiceIdentity(key, to: &$0) }
        do {
            let reply = try session.query(request, operation: "get service", object: "\(key) in \(session.namespaceDescription)")
            return try IPVSMessage.parseService(reply)
        } catch NetlinkError.kernel(let error) where error.errno == ESRCH || error.errno == ENOENT {
            return nil
        } catch let error as NetlinkError {
            throw Self.wrap(error)
        }
    }

    /// Applies operations in order, batched; see `reconcile(to:)`.
    public func apply(_ operations: [LoadBalancerOperation]) throws {
        guard !operations.isEmpty else { return }
        let requests = operations.map { request(for: $0) }
        do {
            try session.apply(requests) { (operations[$0].verb, self.objectDescription(operations[$0])) }
        } catch NetlinkError.batchFailed(let failures, let total) {
            throw LoadBalancerError.reconcileFailed(
                failures: failures.map { ReconcileFailure(operation: operations[$0.index], error: $0.error) },
                total: total)
        } catch let error as NetlinkError {
            throw LoadBalancerError.netlink(error)
        }
    }

    // MARK: - Requests

    /// Sends one operation and waits for its ack.
    public func perform(_ operation: LoadBalancerOperation) throws {
        if case .addService(let service) = operation { try ReconcilePlan.validate([service]) }
        try run(request(for: operation), operation: operation.verb, object: objectDescription(operation))
    }

    func request(for operation: LoadBalancerOperation) -> NetlinkRequest {
        switch operation {
        case .addService(let service): IPVSMessage.service(Int32(IPVS_CMD_NEW_SERVICE), service, family: familyID)
        case .editService(let service): IPVSMessage.service(Int32(IPVS_CMD_SET_SERVICE), service, family: familyID)
        case .deleteService(let key): IPVSMessage.deleteService(key, family: familyID)
        case .addRealServer(let server, let service):
            IPVSMessage.destination(Int32(IPVS_CMD_NEW_DEST), server, service: service, family: familyID)
        case .editRealServer(let server, let service), .quiesceRealServer(let server, let service):
            IPVSMessage.destination(Int32(IPVS_CMD_SET_DEST), server, service: service, family: familyID)
        case .deleteRealServer(let server, let service):
            IPVSMessage.deleteDestination(server, service: service, family: familyID)
        }
    }

    /// "TCP 10.0.0.5:80 in namespace 'lb'", "10.0.1.2:8080 of TCP 10.0.0.5:80 in namespace 'lb'".
    func objectDescription(_ operation: LoadBalancerOperation) -> String {
        let place = namespace.map { " in namespace \($0)" } ?? ""
        switch operation {
        case .addService(let service), .editService(let service): return "\(service.key)\(place)"
        case .deleteService(let key): return "\(key)\(place)"
        case .addRealServer(let server, let key), .editRealServer(let server, let key),
             .quiesceRealServer(let server, let key):
            return "\(server.endpoint) of \(key)\(place)"
        case .deleteRealServer(let server, let key):
            return "\(RealServer.endpoint(server.address, server.port)) of \(key)\(place)"
        }
    }

    private func run(_ request: NetlinkRequest, operation: String, object: String) throws {
        do { try session.execute(request, operation: operation, object: object) } catch let error as NetlinkError {
            throw Self.wrap(error)
        }
    }

    private func dump(_ request: NetlinkRequest, operation: String) throws -> [NetlinkMessage] {
        do { return try session.dump(request, operation: operation) } catch let error as NetlinkError {
            throw Self.wrap(error)
        }
    }

    private static func wrap(_ error: NetlinkError) -> LoadBalancerError {
        if case .kernel(let kernel) = error { return .kernel(kernel) }
        return .netlink(error)
    }
}

extension LoadBalancerOperation {
    /// The verb an error message starts with.
    var verb: String {
        switch self {
        case .addService: "add service"
        case .editService: "edit service"
        case .deleteService: "delete service"
        case .addRealServer: "add real server"
        case .editRealServer: "edit real server"
        case .quiesceRealServer: "quiesce real server"
        case .deleteRealServer: "delete real server"
        }
    }
}

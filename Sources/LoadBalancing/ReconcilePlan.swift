/// The difference between what a balancer holds and what is desired, as
/// the shortest list of operations that turns one into the other. Pure: no
/// I/O, so both back ends share it and tests check it without a kernel.
///
/// Order, chosen so that a service is never without a backend it keeps:
/// 1. services no longer desired are deleted (their real servers with them);
/// 2. per remaining service, in key order: the service is added or edited,
///    new real servers are added, changed ones edited, and only then do
///    leaving ones get weight 0 (no new connections) and get deleted.
///
/// A leaving real server already at weight 0 is deleted without a second
/// quiesce. A service that is unchanged produces nothing.
public enum ReconcilePlan {
    public static func operations(from current: [VirtualService], to desired: [VirtualService]) throws
        -> [LoadBalancerOperation]
    {
        try validate(desired)
        let currentByKey = Dictionary(current.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let desiredKeys = Set(desired.map(\.key))
        var operations: [LoadBalancerOperation] = []

        for service in current.map(\.key).sorted() where !desiredKeys.contains(service) {
            operations.append(.deleteService(service))
        }
        for want in desired.sorted(by: { $0.key < $1.key }) {
            guard let have = currentByKey[want.key] else {
                operations.append(.addService(want))
                for server in want.realServers.sorted(by: { $0.key < $1.key }) {
                    operations.append(.addRealServer(server, service: want.key))
                }
                continue
            }
            if !want.sameSettings(as: have) { operations.append(.editService(want)) }
            operations += realServerOperations(service: want.key, from: have.realServers, to: want.realServers)
        }
        return operations
    }

    static func realServerOperations(service: ServiceKey, from current: [RealServer], to desired: [RealServer])
        -> [LoadBalancerOperation]
    {
        let currentByKey = Dictionary(current.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
        let desiredKeys = Set(desired.map(\.key))
        var additions: [LoadBalancerOperation] = []
        var edits: [LoadBalancerOperation] = []
        var removals: [LoadBalancerOperation] = []
        for server in desired.sorted(by: { $0.key < $1.key }) {
            if let have = currentByKey[server.key] {
                if have != server { edits.append(.editRealServer(server, service: service)) }
            } else {
                additions.append(.addRealServer(server, service: service))
            }
        }
        for server in current.sorted(by: { $0.key < $1.key }) where !desiredKeys.contains(server.key) {
            if server.weight != 0 {
                var quiet = server
                quiet.weight = 0
                removals.append(.quiesceRealServer(quiet, service: service))
            }
            removals.append(.deleteRealServer(server.key, service: service))
        }
        return additions + edits + removals
    }

    /// Rejects a desired state the kernel could not hold: a service or a
    /// real server listed twice, a firewall mark of 0, a real server of
    /// another address family than its VIP under NAT.
    public static func validate(_ desired: [VirtualService]) throws {
        var seen = Set<ServiceKey>()
        for service in desired {
            guard seen.insert(service.key).inserted else {
                throw LoadBalancerError.invalidArgument("service \(service.key) is listed twice")
            }
            if case .firewallMark(0, _) = service.key {
                throw LoadBalancerError.invalidArgument("service \(service.key): firewall mark 0 matches no packet")
            }
            if service.scheduler.rawValue.isEmpty || service.scheduler.rawValue.utf8.count > 15 {
                throw LoadBalancerError.invalidArgument(
                    "service \(service.key): scheduler name '\(service.scheduler)' must be 1 to 15 bytes")
            }
            // Duplicates by a pairwise scan for the usual handful of servers: a
            // Set per service hashed every key of every service on each of the
            // daemon's reconciles.
            let many = service.realServers.count > 32
            var servers = Set<RealServer.Key>()
            for (index, server) in service.realServers.enumerated() {
                let repeated = many ? !servers.insert(server.key).inserted
                    : service.realServers[..<index].contains { $0.key == server.key }
                guard !repeated else {
                    throw LoadBalancerError.invalidArgument(
                        "service \(service.key): real server \(server.endpoint) is listed twice")
                }
                if server.weight > UInt32(Int32.max) {
                    throw LoadBalancerError.invalidArgument(
                        "service \(service.key): real server \(server.endpoint): weight \(server.weight) exceeds \(Int32.max)")
                }
                if server.forwarding == .masquerade, (server.address.isIPv4 ? AddressFamily.ipv4 : .ipv6) != service.key.family {
                    throw LoadBalancerError.invalidArgument(
                        "service \(service.key): real server \(server.endpoint) is of another address family (NAT cannot mix them)")
                }
            }
        }
    }
}

import Addressing
import Netlink

/// A backend that a change took out of a service, and which conntrack
/// entries still lead to it. Pure, so tests check it without a kernel.
struct RemovedBackend: Sendable, Hashable, Comparable {
    let service: ServiceKey
    let server: RealServer.Key

    /// The backends of `current` that `desired` no longer has: those
    /// dropped from a service that stays, and every backend of a service
    /// that goes.
    static func between(_ current: [VirtualService], _ desired: [VirtualService]) -> [RemovedBackend] {
        let wanted = Dictionary(desired.map { ($0.key, Set($0.realServers.map(\.key))) }, uniquingKeysWith: { first, _ in first })
        var removed: [RemovedBackend] = []
        for service in current {
            let keep = wanted[service.key] ?? []
            for server in service.realServers where !keep.contains(server.key) {
                removed.append(RemovedBackend(service: service.key, server: server.key))
            }
        }
        return removed.sorted()
    }

    /// Whether `desired` has this backend in this service again.
    func isPresent(in desired: [VirtualService]) -> Bool {
        desired.contains { $0.key == service && $0.realServers.contains { $0.key == server } }
    }

    /// The same, with the desired services by key.
    func isPresent(in desired: [ServiceKey: VirtualService]) -> Bool {
        desired[service]?.realServers.contains { $0.key == server } ?? false
    }

    /// The entries NATed to this backend for this service: reply source the
    /// backend (and its port), original destination the VIP and port, same
    /// protocol. A published port (VIP 0.0.0.0) answers on every local
    /// address, so there any original destination address matches, on the
    /// published port. Port 0 (a VIP balancing every port) keeps the
    /// connection's port, so no port is matched. Nil for a firewall-mark
    /// service (the nftables back end has none).
    var match: ConntrackNATMatch? {
        guard case .address(let vip, let proto, let port) = service else { return nil }
        let published = NFTablesRenderer.isPublishedPort(service)
        return ConntrackNATMatch(
            backend: server.address,
            backendPort: server.port == 0 ? nil : server.port,
            protocolNumber: UInt8(proto.number),
            originalDestination: published ? nil : vip,
            originalDestinationPort: port == 0 ? nil : port)
    }

    static func < (lhs: RemovedBackend, rhs: RemovedBackend) -> Bool {
        lhs.service != rhs.service ? lhs.service < rhs.service : lhs.server < rhs.server
    }
}

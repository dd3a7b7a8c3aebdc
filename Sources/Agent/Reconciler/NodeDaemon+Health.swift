#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Cluster
import FoundationEssentials
import Namespaces

/// Health checks of local backends: a service labelled
/// `com.swarmnet.health.tcp-port=PORT` has each backend probed on every
/// reconciler pass by the host it runs on (a TCP connection to the backend's
/// address, made inside its namespace). A failing backend is marked
/// unhealthy in its records, which gossip carries to every host, and leaves
/// every balancer and DNS answer in that same pass; it returns when a probe
/// succeeds again.
extension NodeDaemon {
    static let healthProbeTimeout: Int32 = 500 // milliseconds

    /// Whether any service asks for TCP health probes.
    func hasHealthChecks() -> Bool { state.services.values.contains { $0.healthPort != nil } }

    func probeLocalBackends() async {
        let local = state.endpoints.values.filter { $0.node == nodeID && $0.serviceID != nil && $0.isIngressGateway != true }
        let ingressID = state.ingressNetwork?.id
        // One probe per backend namespace and service, on its service network.
        var probes: [(path: String, serviceID: String, address: IPAddress, port: UInt16)] = []
        for endpoint in local where endpoint.networkID != ingressID {
            guard let service = state.services[endpoint.serviceID!], let port = service.healthPort,
                  !probes.contains(where: { $0.path == endpoint.namespacePath && $0.serviceID == service.id }) else { continue }
            probes.append((endpoint.namespacePath, service.id, endpoint.address.address, port))
        }
        guard !probes.isEmpty else { return }
        let results = await withTaskGroup(of: (String, String, Bool).self) { group in
            for probe in probes {
                group.addTask {
                    let healthy = (try? await Self.blocking {
                        Self.tcpProbe(namespace: .path(probe.path), address: probe.address, port: probe.port, timeout: Self.healthProbeTimeout)
                    }) ?? false
                    return (probe.path, probe.serviceID, healthy)
                }
            }
            var all: [(String, String, Bool)] = []
            for await result in group { all.append(result) }
            return all
        }
        let changed = recordBackendHealth(results.map { (path: $0.0, serviceID: $0.1, healthy: $0.2) })
        for endpoint in changed {
            logger.notice(endpoint.unhealthy == true ? "backend unhealthy: it leaves the balancers and DNS" : "backend healthy again",
                          metadata: ["backend": "\(endpoint.name)", "address": "\(endpoint.address.address)",
                                     "service": "\(state.services[endpoint.serviceID ?? ""]?.name ?? "-")"])
        }
    }

    /// Marks local backends healthy or not: those in namespace `path`, of
    /// `serviceID` (nil: of every service). The change is committed and
    /// gossiped, so every host's balancers and DNS follow it on their next
    /// pass. Returns the endpoints whose flag changed.
    func recordBackendHealth(_ results: [(path: String, serviceID: String?, healthy: Bool)]) -> [EndpointRecord] {
        var next = state
        var changed: [EndpointRecord] = []
        for (path, serviceID, healthy) in results {
            for endpoint in next.endpoints.values where endpoint.node == nodeID && endpoint.namespacePath == path && endpoint.serviceID != nil
                && (serviceID == nil || endpoint.serviceID == serviceID) {
                let flag: Bool? = healthy ? nil : true
                guard endpoint.unhealthy != flag else { continue }
                next.endpoints[endpoint.id]?.unhealthy = flag
                changed.append(next.endpoints[endpoint.id]!)
            }
        }
        guard !changed.isEmpty else { return [] }
        do {
            try commit(next, touching: changed.map { .endpoint($0.id) })
        } catch {
            logger.error("recording backend health", metadata: ["error": "\(error)"])
            return []
        }
        for endpoint in changed { publish(endpoint) }
        return changed
    }

    /// Whether a TCP connection to `address:port` made inside `namespace`
    /// is accepted within `timeout` milliseconds.
    static func tcpProbe(namespace: NetworkNamespace, address: IPAddress, port: UInt16, timeout: Int32) -> Bool {
        guard case .v4(let v4) = address, namespace.exists else { return false }
        let socketFD = try? namespace.run { Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        guard let fd = socketFD, fd >= 0 else { return false }
        defer { close(fd) }
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = in_port_t(port.bigEndian)
        target.sin_addr = in_addr(s_addr: v4.value.bigEndian)
        let started = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if started == 0 { return true }
        guard errno == EINPROGRESS else { return false }
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&poller, 1, timeout) == 1 else { return false }
        var failure: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length)
        return failure == 0
    }
}

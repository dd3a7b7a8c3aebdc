import Cluster
import DockerAPI
import TaskExecution
import Namespaces
import Netlink

/// The network side of tasks: a task's namespace joins its networks before
/// its container starts, through the same endpoint path as `docker network
/// connect`, so the endpoint is allocated, gossiped, in DNS and known to
/// the load balancers from the container's first packet.
extension NodeDaemon: TaskNetworking {
    public func attach(namespace: String, task: String, networks: [NetworkAttachmentSpec]) async throws -> [NetworkAttachment] {
        var attached: [NetworkAttachment] = []
        do {
            // Loopback is up in every container, as Docker has it (health
            // checks and a task's own clients use 127.0.0.1), whether or not
            // an embedded DNS server comes to listen on it.
            try await worker.run {
                let session = try RouteNetlink(namespace: .path(namespace))
                if !(try session.link(named: "lo").isUp) { try session.linkSet(name: "lo", up: true) }
            }
            for spec in networks {
                let record = try await knownNetwork(spec.network)
                let endpoint = try await attachWorkload(network: record.id, namespace: .path(namespace), name: task,
                                                        requestedAddress: spec.address, service: spec.service, aliases: spec.aliases,
                                                        serving: false)
                attached.append(NetworkAttachment(
                    network: record.name, networkID: record.id, endpointID: endpoint.id, address: "\(endpoint.address)",
                    gateway: "\(record.gateway)", mac: "\(endpoint.mac)"))
            }
        } catch {
            await detach(namespace: namespace)
            throw error
        }
        // The task's DNS server and balancers are in place before its
        // process starts: its first lookup must not fail.
        if !attached.isEmpty { await waitForNextPass() }
        return attached
    }

    /// A task's health decides whether its endpoints are service
    /// backends (Swarm's rule): an unhealthy (or not yet healthy) task
    /// leaves every balancer and DNS answer, on every host, in the next pass.
    public func setHealth(namespace: String, healthy: Bool) async {
        if !recordBackendHealth([(path: namespace, serviceID: nil, healthy: healthy)]).isEmpty { await waitForNextPass() }
    }

    public func detach(namespace: String) async {
        let endpoints = state.endpoints.values.filter { $0.node == nodeID && $0.namespacePath == namespace }
        for endpoint in endpoints { await detachEndpoint(endpoint) }
        if !endpoints.isEmpty { wakeForChange() }
    }
}

import Cluster
import DockerAPI
import TaskExecution
import Namespaces

/// The network side of tasks: a task's namespace joins its networks before
/// its container starts, through the same endpoint path as `docker network
/// connect`, so the endpoint is allocated, gossiped, in DNS and known to
/// the load balancers from the container's first packet.
extension NodeDaemon: TaskNetworking {
    public func attach(namespace: String, task: String, networks: [NetworkAttachmentSpec]) async throws -> [NetworkAttachment] {
        var attached: [NetworkAttachment] = []
        do {
            for spec in networks {
                let record = try Self.mapping { try state.network(spec.network) }
                if record.isIngress {
                    throw APIError(.forbidden, "network \(record.name) is the routing mesh's ingress network: a container cannot join it directly")
                }
                let endpoint = try await attachEndpoint(
                    network: record, namespace: .path(namespace), name: task, requestedAddress: spec.address, serviceID: nil)
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

    public func detach(namespace: String) async {
        let endpoints = state.endpoints.values.filter { $0.node == nodeID && $0.namespacePath == namespace }
        for endpoint in endpoints { await detachEndpoint(endpoint) }
        if !endpoints.isEmpty { wakeForChange() }
    }
}

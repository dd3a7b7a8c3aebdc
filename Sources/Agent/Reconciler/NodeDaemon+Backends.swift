import Cluster
import FoundationEssentials
import Logging

/// Which endpoints are a service's backends, on every host, for the
/// balancers and DNS: this node's own and those gossip reports, less the
/// nodes the swarm's managers marked down.
extension NodeDaemon {
    /// The swarm's managers marked these nodes (engine IDs) down: their
    /// endpoints leave the balancers and DNS answers in the next pass,
    /// without waiting for gossip's failure detector.
    public func setDownNodes(_ nodes: Set<String>) {
        guard nodes != downNodes else { return }
        downNodes = nodes
        logger.info("nodes marked down by the swarm", metadata: ["nodes": "\(nodes.sorted())"])
        wakeForChange()
    }

    /// Every endpoint this node knows: its own, and those gossip reports
    /// from other hosts.
    func allEndpoints() -> [EndpointRecord] {
        var all = remoteEndpoints
        for (id, endpoint) in state.endpoints where endpoint.node == nodeID { all[id] = endpoint }
        // Nodes the swarm's managers marked down serve nothing any more.
        return all.values.filter { $0.node == nodeID || !downNodes.contains($0.node) }
    }

    /// The backends of a service, on every host: the endpoints attached
    /// with its ID, on its networks and on the ingress network.
    func backends(of service: ServiceRecord, among endpoints: [EndpointRecord]) -> [EndpointRecord] {
        endpoints.filter { $0.serviceID == service.id && $0.isIngressGateway != true }
            .sorted {
                $0.networkID != $1.networkID ? $0.networkID < $1.networkID
                    : $0.address.address.bytes.lexicographicallyPrecedes($1.address.address.bytes)
            }
    }
}

extension NodeDaemon {
    /// The routing mesh forwards connections from the underlay to backends
    /// through the ingress endpoint: the daemon's namespace must route.
    static func enableForwarding(logger: Logger) {
        do {
            try "1\n".write(toFile: "/proc/sys/net/ipv4/ip_forward", atomically: false, encoding: .utf8)
        } catch {
            logger.error("could not enable IPv4 forwarding; the routing mesh will not forward", metadata: ["error": "\(error)"])
        }
    }
}

import Addressing
import Cluster
import LoadBalancing

/// What one host must balance and resolve, computed from the cluster's
/// records alone: a pure function, so it is tested without a kernel and the
/// reconciler can compare it with what the kernel holds.
///
/// Where balancing happens (documented in README): a service's VIP is
/// balanced inside each workload namespace that can reach it, on the path of
/// the connections the workload itself makes (nftables `output` hook, or
/// IPVS in that namespace), as libnetwork first did and as kube-proxy does
/// per node. The client's address is kept, replies return through the same
/// conntrack entry, and no VIP needs to answer ARP on the overlay. The
/// routing mesh balances in the host's own namespace (the ingress gateway,
/// Docker's ingress-sbox), over the backends' addresses on the ingress
/// network. A published service's VIP on ingress is balanced the same way
/// in the host's namespace and in the workloads on ingress (its tasks), so
/// the address `docker service inspect` shows answers; ingress has no
/// names in DNS, as in Docker.
public struct BalancingPlan: Sendable, Equatable {
    /// A name a workload can resolve, on one network it shares with the service.
    public struct Name: Sendable, Hashable {
        public var networkName: String
        public var endpointMode: EndpointMode
        public var virtualIPs: [IPAddress]
        public var backends: [IPAddress]
    }

    /// A published port on this host.
    public struct PublishedPort: Sendable, Hashable {
        public var service: String
        public var `protocol`: TransportProtocol
        public var port: UInt16
        public var mode: PublishMode
        /// Backends on the ingress network, with the target port.
        public var realServers: [RealServer]
    }

    /// Per local workload namespace (by path): the VIP services it reaches.
    public var workloads: [String: [VirtualService]] = [:]
    /// Per local workload namespace (by path): the names it resolves
    /// (lower-case service names).
    public var names: [String: [String: [Name]]] = [:]
    /// The routing mesh's ports on this host.
    public var published: [PublishedPort] = []
    /// The published services' VIPs on the ingress network, for the host's
    /// own namespace (the mesh's table).
    public var ingressVIPs: [VirtualService] = []

    /// A VIP service on port 0 stands for every port: connections keep their
    /// destination port.
    public static let everyPort: UInt16 = 0

    public init() {}

    public static func make(services: [ServiceRecord], networks: [String: NetworkRecord], endpoints: [EndpointRecord],
                            localNode: String) -> BalancingPlan {
        var plan = BalancingPlan()
        let ingressID = networks.values.first(where: \.isIngress)?.id
        // An unhealthy backend leaves the balancers and DNS until it recovers.
        let backends = Dictionary(grouping: endpoints.filter { $0.serviceID != nil && $0.isIngressGateway != true && $0.unhealthy != true },
                                  by: { $0.serviceID! })
        let local = endpoints.filter { $0.node == localNode && $0.isIngressGateway != true }
        let workloadNetworks = Dictionary(grouping: local, by: \.namespacePath).mapValues { Set($0.map(\.networkID)) }
        // Containers by name, per network, made once: every workload on a
        // network resolves the same names there, and walking every
        // endpoint for every workload made a full pass quadratic (1,000
        // workloads: a million name checks per pass).
        var containersByNetwork: [String: [String: [IPAddress]]] = [:]
        for endpoint in endpoints where endpoint.isIngressGateway != true {
            for name in Set(([endpoint.name] + (endpoint.aliases ?? [])).map { $0.lowercased() }) where Self.isHostName(name) {
                containersByNetwork[endpoint.networkID, default: [:]][name, default: []].append(endpoint.address.address)
            }
        }

        // Each published service's VIP on ingress, over its backends there:
        // the same for the host's mesh and for every workload on ingress,
        // so made once.
        var ingressVIPServices: [String: [VirtualService]] = [:]
        if let ingressID {
            for service in services {
                guard let vip = service.vip(on: ingressID) else { continue }
                let addresses = (backends[service.id] ?? []).filter { $0.networkID == ingressID }.map(\.address.address).sorted(by: Self.order)
                ingressVIPServices[service.id] = Self.virtualServices(vip: vip, ports: service.ports, backends: addresses)
            }
        }

        for (path, networkIDs) in workloadNetworks {
            var virtualServices: [VirtualService] = []
            var names: [String: [Name]] = [:]
            for service in services.sorted(by: { $0.name < $1.name }) {
                let serviceBackends = backends[service.id] ?? []
                for networkID in service.networks where networkIDs.contains(networkID) {
                    let addresses = serviceBackends.filter { $0.networkID == networkID }.map(\.address.address).sorted(by: Self.order)
                    let vip = service.endpointMode == .vip ? service.vip(on: networkID) : nil
                    names[service.name.lowercased(), default: []].append(Name(
                        networkName: networks[networkID]?.name ?? networkID, endpointMode: service.endpointMode,
                        virtualIPs: vip.map { [$0] } ?? [], backends: addresses))
                    guard let vip else { continue }
                    virtualServices += Self.virtualServices(vip: vip, ports: service.ports, backends: addresses)
                }
                if let ingressID, networkIDs.contains(ingressID), let onIngress = ingressVIPServices[service.id] {
                    virtualServices += onIngress
                }
            }
            // Containers by name, on the networks this workload shares with
            // them, as Docker's user-defined networks resolve them (a
            // service's name wins over a container's).
            var containers: [String: [String: [IPAddress]]] = [:]
            for networkID in networkIDs where networkID != ingressID {
                for (name, addresses) in containersByNetwork[networkID] ?? [:] where names[name] == nil {
                    containers[name, default: [:]][networkID] = addresses
                }
            }
            for (name, byNetwork) in containers {
                names[name] = byNetwork.sorted { $0.key < $1.key }.map { networkID, addresses in
                    Name(networkName: networks[networkID]?.name ?? networkID, endpointMode: .dnsrr, virtualIPs: [],
                         backends: addresses.sorted(by: Self.order))
                }
            }
            // A workload only on ingress (a task that only publishes a
            // port) resolves no names (ingress has none), and needs a
            // balancer only for its service's VIP there.
            let onlyOnIngress = !networkIDs.contains { $0 != ingressID }
            if onlyOnIngress && virtualServices.isEmpty { continue }
            plan.workloads[path] = virtualServices.sorted { $0.key < $1.key }
            if !onlyOnIngress { plan.names[path] = names }
        }

        if let ingressID {
            for service in services.sorted(by: { $0.name < $1.name }) {
                let onIngress = (backends[service.id] ?? []).filter { $0.networkID == ingressID }
                for port in service.ports {
                    guard let published = port.publishedPort else { continue }
                    let chosen = port.publishMode == .host ? onIngress.filter { $0.node == localNode } : onIngress
                    // A host-mode port answers only where a backend runs.
                    if port.publishMode == .host && chosen.isEmpty { continue }
                    plan.published.append(PublishedPort(
                        service: service.name, protocol: port.protocol.transport, port: published, mode: port.publishMode,
                        realServers: chosen.map(\.address.address).sorted(by: Self.order).map { RealServer(address: $0, port: port.targetPort) }))
                }
            }
            plan.ingressVIPs = ingressVIPServices.values.flatMap { $0 }.sorted { $0.key < $1.key }
        }
        return plan
    }

    /// Whether a container's name can be looked up by DNS (a namespace
    /// named by path, say, cannot).
    static func isHostName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 63 && name.first != "-"
            && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }
    }

    /// A VIP balances the service's target ports (one virtual service per
    /// protocol and port); a service that names no ports is balanced on
    /// every port, as Docker's VIPs are (an IPVS firewall-mark service over
    /// the whole VIP): one virtual service per protocol on `everyPort`,
    /// whose backends keep the connection's destination port.
    static func virtualServices(vip: IPAddress, ports: [ServicePort], backends: [IPAddress]) -> [VirtualService] {
        var keys: [(TransportProtocol, UInt16)] = []
        if ports.isEmpty {
            keys = [(.tcp, everyPort), (.udp, everyPort)]
        } else {
            for port in ports where !keys.contains(where: { $0 == (port.protocol.transport, port.targetPort) }) {
                keys.append((port.protocol.transport, port.targetPort))
            }
        }
        return keys.map { proto, port in
            VirtualService(key: .address(vip, proto, port: port), scheduler: .roundRobin,
                           realServers: backends.map { RealServer(address: $0, port: port) })
        }
    }

    static func order(_ a: IPAddress, _ b: IPAddress) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

extension PortProtocol {
    var transport: TransportProtocol { self == .tcp ? .tcp : .udp }
}

import Addressing
import FoundationEssentials

/// Services: validation and allocation (VIPs, published ports), as pure
/// functions of the state and the request like the network operations.
extension ClusterState {
    /// The name of the routing mesh's network, as in Docker.
    public static let ingressNetworkName = "ingress"

    public var ingressNetwork: NetworkRecord? { networks.values.first(where: \.isIngress) }

    /// Validates a service request and records the service with its
    /// allocations. Nothing is recorded when anything is wrong.
    ///
    /// A service that publishes a port needs the ingress network; the caller
    /// creates it first (`ensureIngressNetwork`). One that publishes in
    /// ingress mode with a VIP gets a VIP on ingress too, listed first as
    /// Docker lists it (an update passes the one it had as
    /// `keepingIngressVIP`, so it stays while the service stays published).
    public mutating func createService(_ request: ServiceRequest, id: String, now: Date) throws -> ServiceRecord {
        try createService(request, id: id, now: now, keepingIngressVIP: nil)
    }

    mutating func createService(_ request: ServiceRequest, id: String, now: Date, keepingIngressVIP: IPAddress?) throws -> ServiceRecord {
        try Self.validate(serviceName: request.name)
        if let clash = services.values.first(where: { $0.name == request.name }) {
            throw ClusterError.conflict("service name \(request.name) is already in use by service \(clash.id.prefix(12))")
        }
        let mode: EndpointMode
        switch request.endpointMode ?? "vip" {
        case "", "vip": mode = .vip
        case "dnsrr": mode = .dnsrr
        case let other: throw ClusterError.invalidRequest("invalid endpoint mode \(other): use vip or dnsrr")
        }
        if let text = request.labels[ServiceRecord.healthPortLabel], UInt16(text).map({ $0 == 0 }) ?? true {
            throw ClusterError.invalidRequest("invalid \(ServiceRecord.healthPortLabel) \(text): use a TCP port 1-65535")
        }
        let ports = try checkedPorts(request.ports, mode: mode, service: request.name)
        var networkIDs: [String] = []
        var requestedVIPs: [String: IPAddress] = [:]
        for attachment in request.networks {
            let network = try network(attachment.target)
            guard !networkIDs.contains(network.id) else {
                throw ClusterError.invalidRequest("network \(network.name) is attached to service \(request.name) more than once")
            }
            if network.isIngress {
                throw ClusterError.invalidRequest("service \(request.name) cannot be attached to the ingress network \(network.name) directly: publish a port instead")
            }
            networkIDs.append(network.id)
            if let text = attachment.requestedVIP {
                guard mode == .vip else {
                    throw ClusterError.invalidRequest("a VIP was requested on network \(network.name), but service \(request.name) uses dnsrr mode, which has none")
                }
                guard let address = try? IPAddress(parsing: text) else {
                    throw ClusterError.invalidRequest("invalid VIP \(text) for network \(network.name): not an IPv4 address")
                }
                requestedVIPs[network.id] = address
            }
        }
        if ports.contains(where: { $0.publishedPort != nil }) && ingressNetwork == nil {
            throw ClusterError.invalidRequest("service \(request.name) publishes a port, but there is no ingress network")
        }
        var virtualIPs: [ServiceVIP] = []
        if mode == .vip {
            for networkID in networkIDs {
                let network = networks[networkID]!
                let taken = addressesInUse(on: networkID)
                let vip: IPPrefix
                if let requested = requestedVIPs[networkID] {
                    do {
                        vip = try AddressAllocator.check(requested, in: network.subnet, gateway: network.gateway, taken: taken)
                    } catch let error as ClusterError {
                        throw ClusterError.invalidRequest("VIP for network \(network.name): \(error)")
                    }
                } else {
                    vip = try AddressAllocator.allocate(in: network.subnet, gateway: network.gateway, taken: taken)
                }
                virtualIPs.append(ServiceVIP(networkID: networkID, address: vip))
            }
            if ports.contains(where: { $0.publishedPort != nil && $0.publishMode == .ingress }), let ingress = ingressNetwork {
                let taken = addressesInUse(on: ingress.id)
                let kept = keepingIngressVIP.flatMap { try? AddressAllocator.check($0, in: ingress.subnet, gateway: ingress.gateway, taken: taken) }
                let vip: IPPrefix
                do {
                    vip = try kept ?? AddressAllocator.allocate(in: ingress.subnet, gateway: ingress.gateway, taken: taken)
                } catch {
                    throw ClusterError.exhausted("no address left on the ingress network \(ingress.name) (\(ingress.subnet)) for the VIP of service \(request.name)")
                }
                virtualIPs.insert(ServiceVIP(networkID: ingress.id, address: vip), at: 0)
            }
        }
        let record = ServiceRecord(
            id: id, name: request.name, created: now, labels: request.labels, image: request.image, replicas: request.replicas,
            endpointMode: mode, networks: networkIDs, virtualIPs: virtualIPs, ports: ports)
        services[id] = record
        return record
    }

    /// Changes a service's networks, endpoint mode or published ports
    /// (`docker service update --network-add/rm --publish-add/rm`): checked
    /// as a new service would be, against the others. A network it keeps
    /// keeps its VIP; a new one gets one; a port asked without a number
    /// gets one from the dynamic range. Nothing changes when anything is
    /// wrong.
    public mutating func updateService(_ reference: String, _ request: ServiceRequest, now: Date) throws -> ServiceRecord {
        let current = try service(reference)
        var others = self
        others.services[current.id] = nil
        var pinned = request
        if (request.endpointMode ?? "vip").isEmpty || (request.endpointMode ?? "vip") == "vip" {
            pinned.networks = request.networks.map { attachment in
                var kept = attachment
                if kept.requestedVIP == nil, let network = try? network(attachment.target), let vip = current.vip(on: network.id) {
                    kept.requestedVIP = vip.description
                }
                return kept
            }
        }
        let ingressVIP = ingressNetwork.flatMap { current.vip(on: $0.id) }
        var record = try others.createService(pinned, id: current.id, now: current.created, keepingIngressVIP: ingressVIP)
        record.version = current.version + 1
        record.updated = now
        others.services[current.id] = record
        self = others
        return record
    }

    /// Finds a service as Docker does: full ID, then name, then a unique ID prefix.
    public func service(_ reference: String) throws -> ServiceRecord {
        switch Self.lookup(reference, in: services, name: \.name, id: \.id) {
        case .found(let record): return record
        case .ambiguous(let count): throw ClusterError.invalidRequest("service \(reference) is ambiguous (\(count) services found)")
        case .missing: throw ClusterError.notFound("service \(reference) not found")
        }
    }

    /// Removes a service; its endpoints stay attached to their networks but
    /// are no longer anyone's backends.
    public mutating func removeService(_ reference: String) throws -> ServiceRecord {
        let record = try service(reference)
        services[record.id] = nil
        for (id, endpoint) in endpoints where endpoint.serviceID == record.id {
            endpoints[id]?.serviceID = nil
        }
        return record
    }

    /// Creates the ingress network when it does not exist yet.
    public mutating func ensureIngressNetwork(id: String, now: Date, hostRoutes: [IPPrefix]) throws -> NetworkRecord {
        if let existing = ingressNetwork { return existing }
        return try createNetwork(
            NetworkRequest(name: Self.ingressNetworkName, labels: ["com.docker.swarm.internal": "true"], ingress: true),
            id: id, now: now, hostRoutes: hostRoutes)
    }

    /// Checks the ports of a request and allocates published ports that are
    /// asked for without a number (`-p 80` in the routing mesh).
    func checkedPorts(_ requested: [ServiceRequest.Port], mode: EndpointMode, service name: String) throws -> [ServicePort] {
        var taken: [String: String] = [:] // "8080/tcp" → the service using it
        for other in services.values {
            for port in other.ports {
                if let published = port.publishedPort { taken[PublishedPortAllocator.key(published, port.protocol)] = other.name }
            }
        }
        var ports: [ServicePort] = []
        var automatic: [Int] = []
        for (index, port) in requested.enumerated() {
            let protocolName = (port.protocol ?? "tcp").lowercased()
            guard let proto = PortProtocol(rawValue: protocolName.isEmpty ? "tcp" : protocolName) else {
                throw ClusterError.invalidRequest("invalid protocol \(port.protocol ?? "") for port \(port.targetPort): use tcp or udp")
            }
            guard (1...65535).contains(port.targetPort) else {
                throw ClusterError.invalidRequest("invalid target port \(port.targetPort): use 1-65535")
            }
            let publishMode: PublishMode
            switch (port.publishMode ?? "ingress").lowercased() {
            case "", "ingress": publishMode = .ingress
            case "host": publishMode = .host
            case let other: throw ClusterError.invalidRequest("invalid publish mode \(other) for port \(port.targetPort): use ingress or host")
            }
            if mode == .dnsrr && publishMode == .ingress {
                throw ClusterError.invalidRequest("port \(port.targetPort)/\(proto.rawValue) is published in ingress mode, which dnsrr mode cannot use: publish it in host mode")
            }
            var published: UInt16?
            if let number = port.publishedPort, number != 0 {
                guard (1...65535).contains(number) else {
                    throw ClusterError.invalidRequest("invalid published port \(number): use 1-65535")
                }
                let key = PublishedPortAllocator.key(UInt16(number), proto)
                if let user = taken[key] {
                    throw ClusterError.conflict("port \(key) is already in use by service \(user)")
                }
                taken[key] = name
                published = UInt16(number)
            } else {
                // Every port of Docker's EndpointSpec is published; one
                // without a number gets a port from the dynamic range.
                automatic.append(index)
            }
            ports.append(ServicePort(name: port.name, protocol: proto, targetPort: UInt16(port.targetPort),
                                     publishedPort: published, publishMode: publishMode))
        }
        for index in automatic {
            let port = try PublishedPortAllocator.allocate(ports[index].protocol, taken: Set(taken.keys))
            taken[PublishedPortAllocator.key(port, ports[index].protocol)] = name
            ports[index].publishedPort = port
        }
        return ports
    }

    /// Docker's rule for service names: a DNS label (letters, digits and
    /// dashes, at most 63 characters), since the name is resolved by DNS.
    static func validate(serviceName name: String) throws {
        let scalars = Array(name.unicodeScalars)
        let isAlphanumeric = { (c: Unicode.Scalar) in c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c)) }
        guard !scalars.isEmpty, scalars.count <= 63, isAlphanumeric(scalars.first!), isAlphanumeric(scalars.last!),
              scalars.allSatisfy({ isAlphanumeric($0) || $0 == "-" || $0 == "_" })
        else {
            throw ClusterError.invalidRequest("invalid service name \"\(name)\": use at most 63 letters, digits, '-' or '_', starting and ending with a letter or digit")
        }
    }
}

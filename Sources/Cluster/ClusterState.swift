import Addressing
import FoundationEssentials

/// The networks and endpoints a node knows, with the rules that keep them
/// consistent: unique names, non-overlapping subnets, unique VNIs, unique
/// addresses. A value: every change is a function of the old state and the
/// request, so it is tested without a kernel and persisted whole.
public struct ClusterState: Codable, Sendable, Equatable {
    public var networks: [String: NetworkRecord] = [:]
    public var endpoints: [String: EndpointRecord] = [:]
    public var services: [String: ServiceRecord] = [:]

    public init() {}

    enum CodingKeys: String, CodingKey { case networks, endpoints, services }

    /// Reads state files of every version: those written before services
    /// existed have no `services`.
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        networks = try container.decode([String: NetworkRecord].self, forKey: .networks)
        endpoints = try container.decode([String: EndpointRecord].self, forKey: .endpoints)
        services = try container.decodeIfPresent([String: ServiceRecord].self, forKey: .services) ?? [:]
    }

    /// What `docker network create` asks for.
    public struct NetworkRequest: Sendable {
        public var name: String
        public var driver: String
        public var subnet: String?
        public var gateway: String?
        public var vni: UInt32?
        public var attachable: Bool
        public var isInternal: Bool
        public var labels: [String: String]
        public var options: [String: String]
        /// The routing mesh's network; there is at most one.
        public var ingress: Bool

        public init(name: String, driver: String = "overlay", subnet: String? = nil, gateway: String? = nil, vni: UInt32? = nil,
                    attachable: Bool = false, isInternal: Bool = false, labels: [String: String] = [:], options: [String: String] = [:],
                    ingress: Bool = false) {
            self.ingress = ingress
            self.name = name
            self.driver = driver
            self.subnet = subnet
            self.gateway = gateway
            self.vni = vni
            self.attachable = attachable
            self.isInternal = isInternal
            self.labels = labels
            self.options = options
        }
    }

    /// Docker's option naming the VNI of an overlay network.
    public static let vniOption = "com.docker.network.driver.overlay.vxlanid_list"

    /// Validates and allocates a network. `hostRoutes` are the host's own
    /// routes, which a subnet may not overlap.
    public mutating func createNetwork(
        _ request: NetworkRequest, id: String, now: Date, hostRoutes: [IPPrefix], pool: SubnetAllocator = SubnetAllocator()
    ) throws -> NetworkRecord {
        try Self.validate(name: request.name)
        guard request.driver == "overlay" else {
            throw ClusterError.invalidRequest("driver \(request.driver) is not supported: swarmnet networks are overlay networks")
        }
        if networks.values.contains(where: { $0.name == request.name }) {
            throw ClusterError.nameInUse(request.name)
        }
        if request.ingress, let existing = networks.values.first(where: \.isIngress) {
            throw ClusterError.forbidden("only one ingress network is allowed: \(existing.name) is the ingress network")
        }
        let others = networks.values.map { (name: $0.name, subnet: $0.subnet) }
        let subnet: IPPrefix
        if let text = request.subnet {
            do { subnet = try IPPrefix(parsing: text) } catch {
                throw ClusterError.invalidRequest("invalid subnet \(text): not an IPv4 CIDR prefix like 10.1.0.0/24")
            }
            try SubnetAllocator.check(subnet, networks: others, hostRoutes: hostRoutes, pool: pool.pool)
        } else {
            if request.gateway != nil {
                throw ClusterError.invalidRequest("a gateway needs a subnet: give --subnet with --gateway")
            }
            subnet = try pool.allocate(avoiding: others.map(\.subnet) + hostRoutes.filter { $0.length > 0 })
        }
        let requestedGateway: IPAddress?
        if let text = request.gateway {
            do { requestedGateway = try IPAddress(parsing: text) } catch {
                throw ClusterError.invalidRequest("invalid gateway \(text): not an IP address")
            }
        } else {
            requestedGateway = nil
        }
        let gateway = try SubnetAllocator.gateway(for: subnet, requested: requestedGateway)
        let taken = Set(networks.values.map(\.vni))
        var vni: UInt32
        if let requested = request.vni ?? request.options[Self.vniOption].flatMap({ UInt32($0) }) {
            try VNIAllocator.check(requested, taken: taken)
            vni = requested
        } else {
            vni = try VNIAllocator.allocate(avoiding: taken)
        }
        var options = request.options
        options[Self.vniOption] = "\(vni)"
        var record = NetworkRecord(
            id: id, name: request.name, driver: request.driver, created: now, subnet: subnet, gateway: gateway, vni: vni,
            attachable: request.attachable, isInternal: request.isInternal, labels: request.labels, options: options)
        if request.ingress { record.ingress = true }
        networks[id] = record
        return record
    }

    /// Finds a network the way Docker does: full ID, then name, then a
    /// unique ID prefix.
    public func network(_ reference: String) throws -> NetworkRecord {
        switch Self.lookup(reference, in: networks, name: \.name, id: \.id) {
        case .found(let record): return record
        case .ambiguous(let count):
            throw ClusterError.invalidRequest("network \(reference) is ambiguous (\(count) matches found based on ID prefix)")
        case .missing: throw ClusterError.notFound("network \(reference) not found")
        }
    }

    enum Lookup<Record> {
        case found(Record)
        case ambiguous(Int)
        case missing
    }

    /// Docker's way of finding an object by reference: full ID, then name,
    /// then a unique ID prefix.
    static func lookup<Record>(_ reference: String, in records: [String: Record], name: KeyPath<Record, String>,
                               id: KeyPath<Record, String>) -> Lookup<Record> {
        if let byID = records[reference] { return .found(byID) }
        if let byName = records.values.first(where: { $0[keyPath: name] == reference }) { return .found(byName) }
        let byPrefix = records.values.filter { !reference.isEmpty && $0[keyPath: id].hasPrefix(reference) }
        if byPrefix.count == 1 { return .found(byPrefix[0]) }
        return byPrefix.isEmpty ? .missing : .ambiguous(byPrefix.count)
    }

    /// Removes a network that has no endpoints left.
    public mutating func removeNetwork(_ reference: String) throws -> NetworkRecord {
        let record = try network(reference)
        let attached = endpoints.values.filter { $0.networkID == record.id }
        if let user = services.values.first(where: { $0.networks.contains(record.id) }) {
            throw ClusterError.forbidden("error while removing network: network \(record.name) id \(record.id) is in use by service \(user.name)")
        }
        guard attached.isEmpty else {
            throw ClusterError.forbidden("error while removing network: network \(record.name) id \(record.id) has active endpoints (\(attached.map(\.name).sorted().joined(separator: ", ")))")
        }
        networks[record.id] = nil
        return record
    }

    /// Allocates an endpoint's address (the requested one, checked, or the
    /// first free) and records it.
    public mutating func addEndpoint(
        id: String, network reference: String, node: String, namespacePath: String, name: String,
        requestedAddress: String?, vtep: IPAddress, nodeName: String? = nil, serviceID: String? = nil,
        isIngressGateway: Bool = false
    ) throws -> EndpointRecord {
        if let serviceID, services[serviceID] == nil {
            throw ClusterError.notFound("service \(serviceID) not found")
        }
        let record = try network(reference)
        if endpoints.values.contains(where: { $0.networkID == record.id && $0.node == node && $0.namespacePath == namespacePath }) {
            throw ClusterError.forbidden("endpoint \(name) is already attached to network \(record.name)")
        }
        let taken = addressesInUse(on: record.id)
        let address: IPPrefix
        if let requestedAddress {
            guard let parsed = try? IPAddress(parsing: requestedAddress) else {
                throw ClusterError.invalidRequest("invalid IPv4 address \(requestedAddress)")
            }
            address = try AddressAllocator.check(parsed, in: record.subnet, gateway: record.gateway, taken: taken)
        } else {
            address = try AddressAllocator.allocate(in: record.subnet, gateway: record.gateway, taken: taken)
        }
        guard case .v4(let v4) = address.address else { throw ClusterError.invalidRequest("IPv6 endpoints are not supported") }
        var endpoint = EndpointRecord(id: id, networkID: record.id, node: node, namespacePath: namespacePath, name: name,
                                      address: address, mac: MACAddress(derivedFrom: v4), vtep: vtep)
        endpoint.nodeName = nodeName
        endpoint.serviceID = serviceID
        endpoint.isIngressGateway = isIngressGateway ? true : nil
        endpoints[id] = endpoint
        return endpoint
    }

    /// Addresses taken on a network: its endpoints' and its services' VIPs.
    public func addressesInUse(on networkID: String) -> Set<IPAddress> {
        Set(endpoints.values.filter { $0.networkID == networkID }.map(\.address.address))
            .union(services.values.flatMap(\.virtualIPs).filter { $0.networkID == networkID }.map(\.address.address))
    }

    /// The endpoint of `name` (or namespace path) on a network.
    public func endpoint(network reference: String, container: String) throws -> EndpointRecord {
        let record = try network(reference)
        guard let endpoint = endpoints.values.first(where: {
            $0.networkID == record.id && ($0.name == container || $0.namespacePath == container || $0.id == container)
        }) else {
            throw ClusterError.notFound("endpoint \(container) not found on network \(record.name)")
        }
        return endpoint
    }

    /// Docker's rule for network names.
    static func validate(name: String) throws {
        guard let first = name.unicodeScalars.first, name.unicodeScalars.count <= 128,
              first.properties.isAlphabetic || ("0"..."9").contains(first),
              name.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_.-".unicodeScalars.contains($0)) })
        else {
            throw ClusterError.invalidRequest("invalid network name \"\(name)\": use letters, digits, '_', '.', '-', starting with a letter or digit")
        }
    }
}

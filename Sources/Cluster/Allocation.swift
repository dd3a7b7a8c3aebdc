import Addressing

/// Why a request on the cluster's networks or endpoints failed; each case
/// maps to one Docker API status (see the API module).
public enum ClusterError: Error, Sendable, Equatable, CustomStringConvertible {
    /// 409: a network with that name exists.
    case nameInUse(String)
    /// 400: the subnet, gateway or address is malformed or does not fit.
    case invalidRequest(String)
    /// 400: the subnet overlaps another network or a route of the host.
    case overlap(String)
    /// 503: no subnet, VNI or address is left.
    case exhausted(String)
    /// 404: no such network or endpoint.
    case notFound(String)
    /// 403: the request is understood but not allowed now (a network with
    /// endpoints cannot be removed; a worker cannot allocate).
    case forbidden(String)
    /// 409: the name or published port is taken by another object.
    case conflict(String)

    public var description: String {
        switch self {
        case .nameInUse(let name): "network with name \(name) already exists"
        case .invalidRequest(let text), .overlap(let text), .exhausted(let text): text
        case .notFound(let text), .forbidden(let text), .conflict(let text): text
        }
    }
}

/// Hands out subnets for networks that do not name one: the default pool
/// (10.0.0.0/8) cut into /24s, as Docker's default address pool is; a subnet
/// is free when it overlaps no other network and no route of the host.
public struct SubnetAllocator: Sendable {
    public var pool: IPPrefix
    public var size: Int

    public init(pool: IPPrefix = try! IPPrefix(parsing: "10.0.0.0/8"), size: Int = 24) {
        self.pool = pool
        self.size = size
    }

    /// The first free subnet of the pool.
    public func allocate(avoiding taken: [IPPrefix]) throws -> IPPrefix {
        guard case .v4(let base) = pool.network.address, size >= pool.length, size <= 30 else {
            throw ClusterError.invalidRequest("default address pool \(pool) cannot be cut into /\(size)s")
        }
        let step = UInt64(1) << UInt64(32 - size)
        let end = UInt64(base.value) + (UInt64(1) << UInt64(32 - pool.length))
        // One walk over the taken ranges in address order, jumping past
        // each one the candidate meets: comparing every candidate with
        // every network made the k-th create cost k² checks (130 ms at
        // 300 networks, issue 17).
        let ranges = taken.compactMap { prefix -> (first: UInt64, last: UInt64)? in
            guard case .v4(let network) = prefix.network.address else { return nil }
            let first = UInt64(network.value)
            return (first, first + (UInt64(1) << UInt64(32 - prefix.length)) - 1)
        }.sorted { $0.first < $1.first }
        var candidate = UInt64(base.value)
        var index = 0
        while candidate + step <= end {
            while index < ranges.count && ranges[index].last < candidate { index += 1 }
            guard index < ranges.count, ranges[index].first <= candidate + step - 1 else {
                return try IPPrefix(address: .v4(IPv4Address(UInt32(candidate))), length: size)
            }
            // The first aligned subnet after the range met.
            candidate = (ranges[index].last + 1 + step - 1) / step * step
        }
        throw ClusterError.exhausted("no free /\(size) subnet left in the default address pool \(pool)")
    }

    /// Ranges a network can never use: its workloads would get a gateway
    /// the kernel refuses ("Nexthop has invalid gateway") or a default route
    /// through loopback.
    static let unusable: [(prefix: IPPrefix, what: String)] = [
        (try! IPPrefix(parsing: "0.0.0.0/8"), "0.0.0.0/8 (\"this network\")"),
        (try! IPPrefix(parsing: "127.0.0.0/8"), "127.0.0.0/8 (loopback)"),
        (try! IPPrefix(parsing: "224.0.0.0/4"), "224.0.0.0/4 (multicast)"),
        (try! IPPrefix(parsing: "240.0.0.0/4"), "240.0.0.0/4 (reserved)"),
    ]

    /// Checks a user's subnet against the others and the host's routes.
    public static func check(_ subnet: IPPrefix, networks: [(name: String, subnet: IPPrefix)], hostRoutes: [IPPrefix],
                             pool: IPPrefix = SubnetAllocator().pool) throws {
        guard subnet.isNetwork else {
            throw ClusterError.invalidRequest("invalid subnet \(subnet): host bits are set (did you mean \(subnet.network)?)")
        }
        guard subnet.address.isIPv4, subnet.length <= 30 else {
            throw ClusterError.invalidRequest("invalid subnet \(subnet): swarmnet overlay networks are IPv4 /30 or larger")
        }
        if let range = unusable.first(where: { $0.prefix.overlaps(subnet) }) {
            throw ClusterError.invalidRequest("invalid subnet \(subnet): it overlaps \(range.what), which no network can use")
        }
        if subnet.length <= pool.length && subnet.overlaps(pool) {
            throw ClusterError.invalidRequest(
                "invalid subnet \(subnet): it would take the whole default address pool \(pool), leaving no subnet for networks created without one")
        }
        if let clash = networks.first(where: { $0.subnet.overlaps(subnet) }) {
            throw ClusterError.overlap("subnet \(subnet) overlaps network \(clash.name) (\(clash.subnet))")
        }
        if let route = hostRoutes.first(where: { $0.length > 0 && $0.overlaps(subnet) }) {
            throw ClusterError.overlap("subnet \(subnet) overlaps the host route to \(route)")
        }
    }

    /// The gateway of a subnet: the user's (checked) or the first host address.
    public static func gateway(for subnet: IPPrefix, requested: IPAddress?) throws -> IPAddress {
        guard case .v4(let network) = subnet.network.address else {
            throw ClusterError.invalidRequest("invalid subnet \(subnet)")
        }
        let broadcast = IPv4Address(network.value | (UInt32.max >> UInt32(subnet.length)))
        if let requested {
            guard subnet.contains(requested), case .v4(let v4) = requested, v4 != network, v4 != broadcast else {
                throw ClusterError.invalidRequest("invalid gateway \(requested): not a host address of subnet \(subnet)")
            }
            return requested
        }
        return .v4(IPv4Address(network.value + 1))
    }
}

/// Hands out VXLAN network identifiers. Docker starts overlay VNIs at 4096;
/// the top is 2^24 - 1.
public struct VNIAllocator: Sendable {
    public static let range: ClosedRange<UInt32> = 4096...(1 << 24 - 1)

    public static func allocate(avoiding taken: Set<UInt32>) throws -> UInt32 {
        for vni in range where !taken.contains(vni) { return vni }
        throw ClusterError.exhausted("no free VNI left in \(range)")
    }

    public static func check(_ vni: UInt32, taken: Set<UInt32>) throws {
        guard range.contains(vni) else {
            throw ClusterError.invalidRequest("VNI \(vni) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        guard !taken.contains(vni) else { throw ClusterError.invalidRequest("VNI \(vni) is already in use") }
    }
}

/// Hands out endpoint addresses inside a network's subnet: never the
/// network address, the broadcast address or the gateway.
public enum AddressAllocator {
    /// The first free host address above the highest one in use, else
    /// the first free one: as Docker's serial IPAM, an address just
    /// released is not handed out again at once, while other hosts may
    /// still hold its neighbour and forwarding entries (a rolling update
    /// releases and allocates in quick succession).
    public static func allocate(in subnet: IPPrefix, gateway: IPAddress, taken: Set<IPAddress>) throws -> IPPrefix {
        guard case .v4(let network) = subnet.network.address else {
            throw ClusterError.invalidRequest("invalid subnet \(subnet)")
        }
        let hosts = (UInt32.max >> UInt32(subnet.length))
        guard hosts >= 2 else { throw ClusterError.exhausted("subnet \(subnet) has no host addresses") }
        let highest = taken.compactMap { address -> UInt32? in
            guard case .v4(let v4) = address, subnet.contains(address) else { return nil }
            return v4.value - network.value
        }.max() ?? 0
        let next = min(highest + 1, hosts)
        for offset in Array(next..<hosts) + Array(1..<next) {
            let address = IPAddress.v4(IPv4Address(network.value + offset))
            if address != gateway && !taken.contains(address) {
                return try IPPrefix(address: address, length: subnet.length)
            }
        }
        throw ClusterError.exhausted("no free address left in subnet \(subnet)")
    }

    public static func check(_ address: IPAddress, in subnet: IPPrefix, gateway: IPAddress, taken: Set<IPAddress>) throws -> IPPrefix {
        guard subnet.contains(address), case .v4(let v4) = address, case .v4(let network) = subnet.network.address else {
            throw ClusterError.invalidRequest("address \(address) is outside subnet \(subnet)")
        }
        let broadcast = network.value | (UInt32.max >> UInt32(subnet.length))
        guard v4.value != network.value, v4.value != broadcast, address != gateway else {
            throw ClusterError.invalidRequest("address \(address) is the network, broadcast or gateway address of \(subnet)")
        }
        guard !taken.contains(address) else { throw ClusterError.invalidRequest("address \(address) is already in use") }
        return try IPPrefix(address: address, length: subnet.length)
    }
}

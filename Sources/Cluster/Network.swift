import Addressing
import FoundationEssentials

/// An overlay network, as the cluster records it: Docker's network object
/// with swarmnet's allocations (subnet, gateway, VNI).
public struct NetworkRecord: Codable, Sendable, Hashable {
    /// 64 hexadecimal characters, like Docker's IDs.
    public var id: String
    public var name: String
    public var driver: String
    public var created: Date
    public var subnet: IPPrefix
    public var gateway: IPAddress
    public var vni: UInt32
    public var attachable: Bool
    public var isInternal: Bool
    public var labels: [String: String]
    public var options: [String: String]
    /// The routing mesh's network (Docker's `ingress`); nil in records
    /// written before it existed, which are not.
    public var ingress: Bool?

    public var isIngress: Bool { ingress == true }

    public init(id: String, name: String, driver: String = "overlay", created: Date, subnet: IPPrefix,
                gateway: IPAddress, vni: UInt32, attachable: Bool = false, isInternal: Bool = false,
                labels: [String: String] = [:], options: [String: String] = [:]) {
        self.id = id
        self.name = name
        self.driver = driver
        self.created = created
        self.subnet = subnet
        self.gateway = gateway
        self.vni = vni
        self.attachable = attachable
        self.isInternal = isInternal
        self.labels = labels
        self.options = options
    }
}

/// A workload namespace attached to a network on one node.
public struct EndpointRecord: Codable, Sendable, Hashable {
    public var id: String
    public var networkID: String
    /// The node (host) the endpoint lives on: its ID.
    public var node: String
    /// The node's name, for people.
    public var nodeName: String?
    /// The workload's namespace: a path to its nsfs file.
    public var namespacePath: String
    /// The name the user gave (the Docker "container" reference).
    public var name: String
    public var address: IPPrefix
    public var mac: MACAddress
    /// The host's data-path address (the VTEP that reaches the endpoint).
    public var vtep: IPAddress
    public var hostInterface: String?
    public var workloadInterface: String?
    /// The service this endpoint is a backend of, if any.
    public var serviceID: String?
    /// The host's own endpoint on the ingress network (Docker's
    /// ingress-sbox): the routing mesh's source address towards backends.
    public var isIngressGateway: Bool?
    /// Set while the service's health check fails for this backend: it
    /// leaves every balancer and DNS answer until the check passes again.
    public var unhealthy: Bool?
    /// More names the endpoint answers to in DNS on its network
    /// (`docker run --network-alias`), beside `name`.
    public var aliases: [String]?

    public init(id: String, networkID: String, node: String, namespacePath: String, name: String,
                address: IPPrefix, mac: MACAddress, vtep: IPAddress, hostInterface: String? = nil, workloadInterface: String? = nil) {
        self.id = id
        self.networkID = networkID
        self.node = node
        self.namespacePath = namespacePath
        self.name = name
        self.address = address
        self.mac = mac
        self.vtep = vtep
        self.hostInterface = hostInterface
        self.workloadInterface = workloadInterface
    }
}

/// Random identifiers in Docker's form.
public enum Identifier {
    public static func make<G: RandomNumberGenerator>(using generator: inout G) -> String {
        (0..<32).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    public static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        return make(using: &generator)
    }

    /// A swarm object ID as Docker makes them (nodes, the swarm, services'
    /// tasks): 25 characters of base 36.
    public static func swarm() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        return String((0..<25).map { _ in digits[Int.random(in: 0..<36, using: &generator)] })
    }
}

import Addressing
import FoundationEssentials

/// Everything that distinguishes one swarmnetd from another on the same
/// machine: its name, state directory, API socket, data-path address and the
/// prefix of the namespaces it makes.
public struct NodeConfiguration: Sendable {
    public var nodeName: String
    public var stateDirectory: String
    public var socketPath: String
    /// The address VXLAN packets leave from (the VTEP), on `underlayDevice`.
    public var dataPathAddress: IPAddress
    public var underlayDevice: String
    /// Prefixed to every namespace this daemon makes (sandboxes).
    public var namespacePrefix: String
    public var vxlanPort: UInt16
    /// The MTU of the underlay; overlays get 50 bytes less.
    public var underlayMTU: UInt32
    /// How often the reconciler compares all desired state with the
    /// kernel (a full pass); changes and netlink delete events are applied
    /// as they come, in between.
    public var reconcileInterval: Duration
    /// How often local backends with a TCP health port are probed.
    public var healthInterval: Duration
    /// Whether workload namespaces get the embedded DNS server at 127.0.0.11.
    public var embeddedDNS: Bool
    /// Resolvers for names that are not services ("ADDRESS[:PORT]"); nil
    /// takes the host's /etc/resolv.conf.
    public var dnsUpstreams: [String]?
    /// Which kernel balancer programs VIPs and published ports.
    public var loadBalancer: LoadBalancerChoice
    /// The OCI runtime tasks run with (`runc`, or a path).
    public var runtime: String = "runc"
    /// The runtime's state directory (`runc --root`), this daemon's own.
    public var runtimeRoot: String = "/run/swarmnet/runc"

    public init(nodeName: String, stateDirectory: String, socketPath: String, dataPathAddress: IPAddress,
                underlayDevice: String, namespacePrefix: String, vxlanPort: UInt16 = 4789, underlayMTU: UInt32 = 1500,
                reconcileInterval: Duration = .seconds(5),
                embeddedDNS: Bool = true, dnsUpstreams: [String]? = nil, loadBalancer: LoadBalancerChoice = .auto,
                healthInterval: Duration = .seconds(5)) {
        self.healthInterval = healthInterval
        self.loadBalancer = loadBalancer
        self.embeddedDNS = embeddedDNS
        self.dnsUpstreams = dnsUpstreams
        self.nodeName = nodeName
        self.stateDirectory = stateDirectory
        self.socketPath = socketPath
        self.dataPathAddress = dataPathAddress
        self.underlayDevice = underlayDevice
        self.namespacePrefix = namespacePrefix
        self.vxlanPort = vxlanPort
        self.underlayMTU = underlayMTU
        self.reconcileInterval = reconcileInterval
    }
}

/// `swarmnetd --lb-backend`: IPVS where the kernel has it, as Swarm uses it,
/// and nftables otherwise; or one of them by name.
public enum LoadBalancerChoice: String, Sendable, CaseIterable {
    case auto
    case ipvs
    case nftables
}

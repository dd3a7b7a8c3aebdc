#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Agent
import ArgumentParser
import DockerAPI
import FoundationEssentials
import SystemBasics
import Gossip
import GossipRuntime
import Logging
import Netlink
import ServiceLifecycle
import Swarm
import Synchronization

/// swarmnetd: the root daemon on each host. Thin: the work is in Agent.
@main
struct Swarmnetd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swarmnetd",
        abstract: "The swarmnet daemon: overlay networks on this host, served on a Docker-API unix socket.",
        discussion: """
        Drive it with `swarmnet` or the stock docker CLI:
          DOCKER_HOST=unix:///run/swarmnet/swarmnetd.sock docker network create -d overlay web
        Several daemons can share one machine (the test bed runs one per host namespace):
        give each its own --state-dir, --socket and --namespace-prefix.
        """)

    @Option(help: "This node's name (default: the host name).")
    var nodeName: String?

    @Option(help: "Directory for the node's state (networks, endpoints, node ID).")
    var stateDir = "/var/lib/swarmnet"

    @Option(help: "Path of the API's unix socket (root only).")
    var socket = "/run/swarmnet/swarmnetd.sock"

    @Option(help: "Data-path address: the source of VXLAN packets (default: the address of --underlay-dev).",
            transform: { try IPAddress(parsing: $0) })
    var dataPathAddr: IPAddress?

    @Option(help: "Underlay device VXLAN packets leave by (default: the device holding --data-path-addr, or of the default route).")
    var underlayDev: String?

    @Option(help: "Prefix of the namespaces this daemon makes (network sandboxes).")
    var namespacePrefix = "swn-"

    @Option(help: "UDP destination port of VXLAN.")
    var vxlanPort: UInt16 = 4789

    @Option(help: "Seconds between full resyncs, which compare every sandbox, endpoint and balancer with the kernel (changes and netlink delete events are applied as they come).")
    var reconcileInterval: Double = 30

    @Option(help: "Seconds between TCP health probes of local backends (services created with a health TCP port).")
    var healthInterval: Double = 5

    @Option(help: "Address the gossip layer binds (default: the data-path address).")
    var gossipAddr: String?

    @Option(help: "UDP and TCP port of the gossip layer.")
    var gossipPort = 7946

    @Option(help: "Seconds between rotations of a swarm's gossip key, on the leader (Swarm rotates its network keys every 12 hours).")
    var gossipKeyRotation: Double = 12 * 3600

    @Option(help: "Gossip timings: lan (memberlist's defaults) or fast (ten times faster, for tests).")
    var gossipProfile = "lan"

    @Flag(help: "Run without the gossip layer, even in a swarm (its nodes then learn no endpoint of another host).")
    var noGossip = false

    @Option(help: "TCP port of the manager endpoint (mutual TLS) when `swarm init` or `join` names no port in --listen-addr.")
    var clusterPort = 2377

    @Option(help: "Resolver the embedded DNS forwards other names to, ADDRESS[:PORT] (repeatable; default: the nameservers of /etc/resolv.conf).")
    var dnsUpstream: [String] = []

    @Flag(help: "Run no embedded DNS server in workload namespaces.")
    var noEmbeddedDNS = false

    @Option(help: "Kernel balancer for VIPs and published ports: auto (IPVS where the kernel has it, else nftables), ipvs or nftables.")
    var lbBackend: String = "auto"

    @Option(help: "Seconds an API connection may wait for the whole head of its next request before it is closed (on the socket and the cluster port).")
    var apiIdleTimeout: Double = 60

    @Option(help: "Largest request body the API takes, in bytes (larger ones get 413).")
    var apiMaxBody = 16 << 20

    @Option(help: "OCI runtime that runs tasks' containers (a name on PATH or a path); it takes runc's command line.")
    var runtime = "runc"

    @Option(help: "The runtime's state directory (runc --root; default: runc/ beside the API socket).")
    var runtimeRoot: String?

    @Option(help: "The task shim's executable (default: swarmnet-shim beside swarmnetd).")
    var shim: String?

    @Option(help: "Largest image tarball `docker load` and `docker import` take, in bytes (spooled to the state directory, not memory).")
    var apiMaxImage: Int64 = 16 << 30

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown log level \(logLevel)") }
        guard reconcileInterval > 0 else { throw ValidationError("--reconcile-interval must be positive") }
        guard healthInterval > 0 else { throw ValidationError("--health-interval must be positive") }
        guard gossipKeyRotation >= 1 else { throw ValidationError("--gossip-key-rotation must be at least 1 second") }
        guard apiIdleTimeout > 0 else { throw ValidationError("--api-idle-timeout must be positive") }
        guard apiMaxBody > 0 else { throw ValidationError("--api-max-body must be positive") }
        guard ["lan", "fast"].contains(gossipProfile) else { throw ValidationError("--gossip-profile is lan or fast") }
        guard LoadBalancerChoice(rawValue: lbBackend) != nil else {
            throw ValidationError("--lb-backend is auto, ipvs or nftables, not '\(lbBackend)'")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "swarmnetd")
        guard getuid() == 0 else { throw ValidationError("swarmnetd must run as root (it programs the kernel's network)") }
        // Workloads and API clients each hold descriptors; and libnftables
        // needs a few below 1024, kept while they are free (NetfilterSockets).
        let descriptorLimit = NetfilterSockets.raiseDescriptorLimit()
        NetfilterSockets.prepare()

        let (address, device, mtu) = try Self.underlay(address: dataPathAddr, device: underlayDev)
        let name = nodeName ?? ProcessInfo.processInfo.hostName
        logger[metadataKey: "node"] = "\(name)"
        var configuration = NodeConfiguration(
            nodeName: name, stateDirectory: stateDir, socketPath: socket, dataPathAddress: address,
            underlayDevice: device, namespacePrefix: namespacePrefix, vxlanPort: vxlanPort, underlayMTU: mtu,
            reconcileInterval: .milliseconds(Int(reconcileInterval * 1000)),
            embeddedDNS: !noEmbeddedDNS, dnsUpstreams: dnsUpstream.isEmpty ? nil : dnsUpstream,
            loadBalancer: LoadBalancerChoice(rawValue: lbBackend)!, healthInterval: .milliseconds(Int(healthInterval * 1000)))
        configuration.runtime = runtime
        configuration.runtimeRoot = runtimeRoot ?? (directoryName(socket) + "/runc")
        try FileManager.default.createDirectory(
            atPath: directoryName(socket), withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])

        if Self.netnsMountIsSlave() {
            logger.warning("/run/netns is a slave mount here (as `ip netns exec` makes it): the sandboxes this daemon creates will not be visible to `ip netns` or other processes. Start swarmnetd with `nsenter --net=...` instead.")
        }
        let daemon = try NodeDaemon(configuration: configuration, logger: logger)
        // The state directory is this daemon's now; a live socket at the
        // path is another daemon's all the same (another state directory),
        // and binding would delete it.
        if UnixHTTPClient.isServing(socketPath: socket) {
            throw ValidationError("another daemon is serving \(socket); stop it first, or give this one its own --socket")
        }
        logger.info("starting", metadata: ["socket": "\(socket)", "dataPath": "\(address)", "underlay": "\(device)",
                                           "stateDir": "\(stateDir)", "descriptorLimit": "\(descriptorLimit)",
                                           "loadBalancer": "\(daemon.balancerKind)"])
        let limits = HTTPServerLimits(maxBodyBytes: apiMaxBody, idleTimeout: .milliseconds(Int64(apiIdleTimeout * 1000)))
        let containers = try ContainerService.open(
            configuration: configuration, networking: daemon, shimPath: shim ?? Self.besideExecutable("swarmnet-shim"), logger: logger)
        // Tasks a previous run left: adopted (or reported ended) before the
        // API answers, so no client ever sees a stale state.
        await containers.start()
        let taskRunner = SwarmTaskRunner(executor: containers.executor, logger: logger)
        var swarmConfiguration = SwarmRuntime.Configuration(
            directory: stateDir + "/swarm", hostname: name, defaultAddress: address.description, engineVersion: SwarmnetVersion.current,
            engineID: daemon.engineID)
        swarmConfiguration.defaultPort = clusterPort
        swarmConfiguration.gossipKeyRotation = .milliseconds(Int64(gossipKeyRotation * 1000))
        swarmConfiguration.onClusterDefinitions = { update in await daemon.applyDefinitions(update) }
        swarmConfiguration.localClusterState = { await daemon.clusterStateForSeeding() }
        swarmConfiguration.hostRoutes = { try await daemon.hostRoutesForAllocation() }
        swarmConfiguration.interfaceAddress = { name in Self.interfaceAddress(name) }
        swarmConfiguration.taskAgent = taskRunner
        swarmConfiguration.networkSide = daemon
        swarmConfiguration.onDownNodes = { nodes in await daemon.setDownNodes(nodes) }
        let swarmBox = SwarmBox()
        swarmConfiguration.onNetworking = { [gossipPort] networking in
            if let networking {
                if let swarm = swarmBox.runtime, await !daemon.isInSwarm {
                    await daemon.setClusterStore(SwarmClusterStore(runtime: swarm))
                }
                await daemon.enterSwarmGossip(keys: networking.gossipKeys, managerHosts: networking.managerHosts, port: gossipPort)
            } else {
                await daemon.leaveSwarmGossip()
                await daemon.setClusterStore(nil)
                await daemon.setDownNodes([])
            }
        }
        let swarm = SwarmRuntime(configuration: swarmConfiguration, logger: logger)
        swarmBox.runtime = swarm
        await taskRunner.start(wake: { Task { await swarm.requestHeartbeat() } })
        try await swarm.start()
        var socketLimits = limits
        socketLimits.spool = BodySpool(directory: configuration.stateDirectory + "/images/tmp", maxBytes: apiMaxImage,
                                       accepts: DockerRouter.spoolsBody)
        let api = APIService(
            server: UnixHTTPServer(path: socket, logger: logger, limits: socketLimits, handler: { request in
                await DockerRouter(backend: daemon, debug: daemon, containers: containers, swarm: SwarmAPI(runtime: swarm),
                             services: SwarmServicesAPI(runtime: swarm)).handle(request)
            }),
            logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: ReconcilerService(daemon: daemon))]
        if !noGossip {
            services.append(.init(service: GossipService(
                daemon: daemon, name: name, configuration: gossipProfile == "fast" ? .fast : .lan,
                bind: gossipAddr ?? address.description, port: gossipPort, logger: logger)))
        }
        services.append(.init(service: api))
        let group = ServiceGroup(
            configuration: .init(
                services: services,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        // The group ends by throwing when a signal cancels it: clean up
        // (DNS servers and the resolv.conf files they wrote, watchers, the
        // kernel worker) whatever way it ends.
        var failure: Error?
        do { try await group.run() } catch is CancellationError {} catch { failure = error }
        await swarm.shutdown()
        await daemon.shutdown()
        unlink(socket)
        if let failure { throw failure }
        logger.info("stopped")
    }

    /// A file in swarmnetd's own directory (the shim is built beside it).
    static func besideExecutable(_ name: String) -> String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return directoryName(executable) + "/" + name
    }

    /// True when /run/netns is mounted as a slave of another mount namespace,
    /// so that namespace files bind-mounted here do not propagate out.
    static func netnsMountIsSlave() -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 6, fields[4] == "/run/netns" else { continue }
            let optional = fields[6...].prefix { $0 != "-" }
            return optional.contains { $0.hasPrefix("master:") } && !optional.contains { $0.hasPrefix("shared:") }
        }
        return false
    }

    /// The first global IPv4 address of interface `name`, in this
    /// daemon's namespace (`--advertise-addr eth0`).
    static func interfaceAddress(_ name: String) -> String? {
        guard let session = try? RouteNetlink(), let link = try? session.links().first(where: { $0.name == name }),
              let addresses = try? session.addresses(family: AF_INET)
        else { return nil }
        return addresses.first { $0.linkIndex == link.index && $0.scope == 0 }?.prefix.address.description
    }

    /// The data-path address, its device and MTU, from what was given.
    static func underlay(address: IPAddress?, device: String?) throws -> (IPAddress, String, UInt32) {
        let session = try RouteNetlink()
        let links = try session.links()
        let addresses = try session.addresses(family: AF_INET)
        var deviceName = device
        if deviceName == nil, let address {
            let index = addresses.first { $0.prefix.address == address }?.linkIndex
            deviceName = links.first { $0.index == index }?.name
            if deviceName == nil { throw ValidationError("no device holds data-path address \(address)") }
        }
        if deviceName == nil {
            let route = try session.routes(family: AF_INET).first { $0.destination == nil && $0.outputIndex != nil }
            deviceName = links.first { $0.index == route?.outputIndex }?.name
        }
        guard let deviceName, let link = links.first(where: { $0.name == deviceName }) else {
            throw ValidationError("no underlay device: give --underlay-dev or --data-path-addr")
        }
        guard let chosen = address ?? addresses.first(where: { $0.linkIndex == link.index && $0.scope == 0 })?.prefix.address else {
            throw ValidationError("device \(deviceName) has no IPv4 address: give --data-path-addr")
        }
        return (chosen, deviceName, link.mtu)
    }
}

/// The swarm runtime, for the closures it is configured with (they exist
/// before it does).
final class SwarmBox: Sendable {
    private let value = Mutex<SwarmRuntime?>(nil)
    var runtime: SwarmRuntime? {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
    }
}

/// Serves the API until graceful shutdown.
struct APIService: Service {
    let server: UnixHTTPServer
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await server.run(ready: { [logger, server] in logger.info("API listening", metadata: ["socket": "\(server.path)"]) })
        }
    }
}

/// Runs the gossip layer while the node is in a swarm: a session starts
/// when the swarm hands over its keys (at start-up in a swarm, at init or
/// join), encrypted with them from its first packet, and ends when the node
/// leaves the swarm (`NodeDaemon.leaveSwarmGossip`) or shuts down. A node
/// in no swarm binds no gossip socket.
struct GossipService: Service {
    let daemon: NodeDaemon
    let name: String
    let configuration: GossipConfiguration
    let bind: String
    let port: Int
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            for await _ in daemon.gossipSessionRequests {
                guard let keyring = await daemon.swarmGossipKeyring() else { continue }
                let gossip = ClusterGossip(name: name, configuration: configuration, keyring: keyring, logger: logger)
                do {
                    try await gossip.start(bind: bind, port: port)
                } catch {
                    logger.error("gossip could not start; trying again", metadata: ["error": "\(error)"])
                    await gossip.stop()
                    try? await Task.sleep(for: .seconds(1))
                    await daemon.requestGossipSession()
                    continue
                }
                await daemon.runGossip(gossip)
                await gossip.stop()
            }
        }
    }
}

/// Runs the reconciler until graceful shutdown.
struct ReconcilerService: Service {
    let daemon: NodeDaemon

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await daemon.runReconciler()
        }
    }
}

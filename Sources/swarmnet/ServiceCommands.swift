import ArgumentParser
import DockerAPI
import Foundation
import Inspect

/// `swarmnet service ...`: Docker's services in the fields a network needs.
/// swarmnet starts no containers: a service's backends are namespaces
/// attached with `swarmnet network connect --service NAME NETWORK NS`.
struct Service: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage services: VIPs, published ports and their backends (as `docker service`).",
        subcommands: [ServiceCreate.self, ServiceList.self, ServiceInspect.self, ServiceRemove.self])
}

/// `--publish published=8080,target=80,protocol=udp,mode=host` or the
/// short `8080:80/udp`, as `docker service create --publish` takes them.
func publishedPort(_ text: String) throws -> PortConfig {
    if text.contains("=") {
        var fields: [String: String] = [:]
        for part in text.split(separator: ",") {
            let (key, value) = try keyValue(String(part))
            fields[key] = value
        }
        for key in fields.keys where !["published", "target", "protocol", "mode", "name"].contains(key) {
            throw ValidationError("unknown field '\(key)' in --publish \(text): use published, target, protocol, mode")
        }
        guard let target = fields["target"].flatMap(Int.init) else { throw ValidationError("--publish \(text): target=PORT is required") }
        let published = try fields["published"].map { value -> Int in
            guard let number = Int(value) else { throw ValidationError("--publish \(text): published port '\(value)' is not a number") }
            return number
        }
        return PortConfig(name: fields["name"], protocol: fields["protocol"] ?? "tcp", targetPort: target, publishedPort: published,
                          publishMode: fields["mode"] ?? "ingress")
    }
    let (ports, proto) = { () -> (Substring, String) in
        let parts = text.split(separator: "/", maxSplits: 1)
        return (parts.first ?? "", parts.count == 2 ? String(parts[1]) : "tcp")
    }()
    let numbers = ports.split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
    switch numbers.count {
    case 1 where numbers[0] != nil:
        return PortConfig(protocol: proto, targetPort: numbers[0]!, publishedPort: nil)
    case 2 where numbers[0] != nil && numbers[1] != nil:
        return PortConfig(protocol: proto, targetPort: numbers[1]!, publishedPort: numbers[0]!)
    default:
        throw ValidationError("invalid --publish \(text): use PUBLISHED:TARGET[/PROTOCOL] or published=P,target=T[,protocol=udp][,mode=host]")
    }
}

struct ServiceCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a service.",
        discussion: """
            The service gets a VIP on each network (in vip mode); a published port answers on every host \
            (ingress mode) or only where a backend runs, keeping the client's address (host mode). \
            Attach backends with `swarmnet network connect --service NAME NETWORK NAMESPACE`.
            """)

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Network to attach (repeatable).") var network: [String] = []
    @Option(help: "A particular VIP on a network: NETWORK=ADDRESS (repeatable).", transform: keyValue) var vip: [(String, String)] = []
    @Option(name: [.short, .long], help: "Publish a port: PUBLISHED:TARGET[/udp] or published=P,target=T,protocol=udp,mode=host (repeatable).",
            transform: publishedPort) var publish: [PortConfig] = []
    @Option(help: "Endpoint mode: vip or dnsrr.") var endpointMode: String = "vip"
    @Option(help: "Label KEY=VALUE (repeatable).", transform: keyValue) var label: [(String, String)] = []
    @Option(help: "Image name, kept for `inspect` only (swarmnet starts no containers).") var image: String = "none"
    @Option(help: "Probe every backend with a TCP connection to this port on each reconciler pass; a failing backend leaves the balancers and DNS until it answers again (label com.swarmnet.health.tcp-port).")
    var healthTCPPort: UInt16?
    @Argument(help: "Service name.") var name: String

    func run() throws {
        try reportingErrors {
            let vips = Dictionary(vip, uniquingKeysWith: { _, b in b })
            for key in vips.keys where !network.contains(key) {
                throw ValidationError("--vip \(key)=...: network \(key) is not one of the service's --network")
            }
            let spec = ServiceSpec(
                name: name, labels: Dictionary(label + (healthTCPPort.map { [("com.swarmnet.health.tcp-port", "\($0)")] } ?? []), uniquingKeysWith: { _, b in b }),
                taskTemplate: TaskSpec(
                    containerSpec: ContainerSpec(image: image),
                    networks: network.map {
                        NetworkAttachmentConfig(target: $0, driverOpts: vips[$0].map { [NetworkAttachmentConfig.vipOption: $0] })
                    }),
                mode: ServiceMode(replicated: .init(replicas: 1)),
                endpointSpec: EndpointSpec(mode: endpointMode, ports: publish))
            let reply = try JSONDecoder().decode(ServiceCreateResponse.self, from: daemon.call("POST", "/services/create", body: spec))
            print(reply.id)
        }
    }
}

struct ServiceList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List services.", aliases: ["list"])

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table

    func run() throws {
        try reportingErrors {
            let services = try JSONDecoder().decode([ServiceResource].self, from: daemon.call("GET", "/services"))
            try Output.print(services, format: format) { services in
                TextTable(headers: ["ID", "NAME", "MODE", "VIPS", "BACKENDS", "PORTS"], rows: services.map { service in
                    [String(service.id.prefix(12)), service.spec.name, service.endpoint.spec.mode ?? "vip",
                     service.endpoint.virtualIPs.map(\.addr).joined(separator: ",").ifEmpty("-"),
                     "\(service.backends?.count ?? 0)",
                     service.endpoint.ports.map { "*:\($0.publishedPort ?? 0)->\($0.targetPort)/\($0.protocol ?? "tcp")\($0.publishMode == "host" ? " (host)" : "")" }
                        .joined(separator: ", ").ifEmpty("-")]
                })
            }
        }
    }
}

struct ServiceInspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Show services in detail (JSON).")

    @OptionGroup var daemon: DaemonOptions
    @Argument(help: "Service names or IDs.") var services: [String]

    func run() throws {
        try reportingErrors {
            try daemon.printInspected(ServiceResource.self, collection: "services", references: services)
        }
    }
}

struct ServiceRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove services.", aliases: ["remove"])

    @OptionGroup var daemon: DaemonOptions
    @Argument(help: "Service names or IDs.") var services: [String]

    func run() throws {
        try reportingErrors {
            try daemon.remove(collection: "services", references: services)
        }
    }
}

extension String {
    func ifEmpty(_ replacement: String) -> String { isEmpty ? replacement : self }
}

import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import Addressing
import Inspect
import Lab
import Namespaces
import Overlay

/// `swarmnet demo`: a small overlay across simulated hosts on this machine,
/// built through swarmnet's libraries (no daemon yet): hosts are namespaces
/// on an underlay bridge; each gets the network's sandbox and one workload.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build or remove a demonstration overlay across simulated hosts (network namespaces).",
        subcommands: [DemoUp.self, DemoDown.self])
}

struct DemoOptions: ParsableArguments {
    @Option(help: "Prefix of every namespace the demonstration makes.")
    var prefix = "swn-demo-"
}

/// The demonstration's single network.
enum DemoNetwork {
    static func make() throws -> OverlayNetwork {
        try OverlayNetwork(id: "demo", vni: 4097, subnet: try IPPrefix(parsing: "10.0.0.0/24"),
                           gateway: try IPAddress(parsing: "10.0.0.1"))
    }

    static func endpointAddress(host index: Int) throws -> IPPrefix {
        try IPPrefix(parsing: "10.0.0.\(index + 1)/24")
    }
}

struct DemoUp: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Create hosts, an overlay network (VNI 4097, 10.0.0.0/24) and one workload per host.")

    @OptionGroup var options: DemoOptions

    @Option(help: "Number of simulated hosts (2...200).")
    var hosts = 2

    @Option(help: "Output format: table or json.")
    var format: OutputFormat = .table

    func validate() throws {
        guard (2...200).contains(hosts) else { throw ValidationError("--hosts must be 2...200") }
    }

    struct Row: Encodable {
        var host: String
        var underlay: String
        var sandbox: String
        var workload: String
        var address: String
        var mac: String
    }

    func run() throws {
        try reportingErrors {
            let lab = Lab(prefix: options.prefix)
            if try NetworkNamespace.list().contains(where: { $0.hasPrefix(options.prefix) }) {
                throw ValidationFailure(message: "namespaces named \(options.prefix)* exist already; run `swarmnet demo down --prefix \(options.prefix)` first")
            }
            let network = try DemoNetwork.make()
            var rows: [Row] = []
            var peers: [(driver: OverlayDriver, peer: Peer)] = []
            do {
                for host in try lab.up(hosts: hosts) {
                    progress("host \(host.name): underlay \(host.address) on \(host.namespace.name!)")
                    let driver = OverlayDriver(
                        underlay: Underlay(namespace: host.namespace, device: host.device, address: host.address),
                        namePrefix: "\(options.prefix)\(host.name)-")
                    try driver.ensureSandbox(network)
                    let workload = try NetworkNamespace.create(named: "\(options.prefix)\(host.name)-w")
                    let index = Int(host.name.dropFirst())!
                    let endpoint = EndpointSpec(id: "\(host.name)w", workload: workload,
                                                address: try DemoNetwork.endpointAddress(host: index))
                    try driver.attach(endpoint, to: network)
                    peers.append((driver, Peer(address: endpoint.address.address, mac: endpoint.mac, vtep: host.address)))
                    rows.append(Row(host: host.name, underlay: "\(host.address)", sandbox: try driver.sandbox(for: network).name!,
                                    workload: workload.name!, address: "\(endpoint.address)", mac: "\(endpoint.mac)"))
                }
                // Every host learns every other host's endpoint (what gossip will carry).
                for (driver, own) in peers {
                    try driver.addPeers(peers.map(\.peer).filter { $0 != own }, to: network)
                }
            } catch {
                lab.down()
                throw error
            }
            try Output.print(rows, format: format) { rows in
                TextTable(headers: ["HOST", "UNDERLAY", "SANDBOX", "WORKLOAD", "ADDRESS", "MAC"],
                          rows: rows.map { [$0.host, $0.underlay, $0.sandbox, $0.workload, $0.address, $0.mac] })
            }
        }
    }

    private func progress(_ text: String) {
        var standardError = StandardError()
        print(text, to: &standardError)
    }
}

struct DemoDown: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down", abstract: "Remove every namespace the demonstration made.")

    @OptionGroup var options: DemoOptions

    func run() throws {
        Lab(prefix: options.prefix).down()
    }
}

/// Standard error, for progress lines kept apart from listings.
struct StandardError: TextOutputStream {
    mutating func write(_ string: String) {
        var text = string
        text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

import ArgumentParser
import Inspect
import Lab

/// `swarmnet lab`: simulated hosts for the test bed: namespaces NAME-h1...
/// wired by a bridge in NAME-ul, each with eth0 at 192.0.2.(10+i)/24.
struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Create or remove simulated hosts (network namespaces on an underlay bridge).",
        subcommands: [LabUp.self, LabDown.self])
}

struct LabUp: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Create the underlay switch and N hosts.")

    @Option(help: "Prefix of every namespace of the lab.") var prefix: String
    @Option(help: "Number of hosts (1...200).") var hosts = 3
    @Option(help: "Underlay MTU.") var mtu: UInt32 = 1500
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table

    struct Row: Encodable {
        var host: String
        var namespace: String
        var device: String
        var address: String
    }

    func run() throws {
        try reportingErrors {
            guard (1...200).contains(hosts) else { throw ValidationFailure(message: "--hosts must be 1...200") }
            let made = try Lab(prefix: prefix).up(hosts: hosts, mtu: mtu)
            try Output.print(made.map { Row(host: $0.name, namespace: $0.namespace.name!, device: $0.device, address: "\($0.address)") },
                             format: format) { rows in
                TextTable(headers: ["HOST", "NAMESPACE", "DEVICE", "ADDRESS"], rows: rows.map { [$0.host, $0.namespace, $0.device, $0.address] })
            }
        }
    }
}

struct LabDown: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "down", abstract: "Remove every namespace whose name starts with the prefix.")

    @Option(help: "Prefix of every namespace of the lab.") var prefix: String

    func run() throws {
        guard prefix.count >= 2 else { throw ValidationError("refusing a prefix shorter than 2 characters") }
        Lab(prefix: prefix).down()
    }
}

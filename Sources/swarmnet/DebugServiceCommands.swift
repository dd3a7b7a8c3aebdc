import ArgumentParser
import DockerAPI
import Foundation
import Inspect

/// `swarmnet debug lb [SERVICE]`: what each balancer on this host should
/// hold beside what the kernel holds (read back from nftables), with the
/// differences marked, as `swarmnet debug overlay` does for peers.
struct DebugLB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lb",
        abstract: "Show this host's load balancers: desired backends beside the kernel's, differences marked.",
        discussion: """
            One table per workload namespace balances the VIPs it reaches (`nft list table ip swarmnet` inside it); \
            the daemon's namespace holds the routing mesh (tables swarmnet-mesh and swarmnet-hostports). \
            A VIP entry on port 0 balances every port. Exits with status 3 when anything differs.
            """)

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table
    @Argument(help: "Only this service (name or ID).") var service: String?

    func run() throws {
        try reportingErrors {
            var path = "/swarmnet/debug/lb"
            if let service { path += "?service=" + (service.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? service) }
            let tables = try JSONDecoder().decode([BalancerTableReport].self, from: daemon.call("GET", path))
            switch format {
            case .json:
                try Output.print(tables, format: .json) { _ in TextTable(headers: [], rows: []) }
            case .table:
                for table in tables {
                    print("\(table.node) \(table.backend) in \(table.namespace)\(table.error.map { "  error: \($0)" } ?? "")")
                    let rows = table.entries.flatMap { entry -> [[String]] in
                        let desired = entry.desired ?? []
                        let kernel = entry.kernel ?? []
                        let count = max(desired.count, kernel.count, 1)
                        return (0..<count).map { index in
                            [index == 0 ? entry.service : "", index < desired.count ? desired[index] : (index == 0 ? "-" : ""),
                             index < kernel.count ? kernel[index] : (index == 0 ? "-" : ""), index == 0 ? entry.status : ""]
                        }
                    }
                    print(TextTable(headers: ["SERVICE", "DESIRED", "KERNEL", "STATUS"], rows: rows).render(), terminator: "")
                }
            }
            if tables.contains(where: { $0.error != nil || $0.entries.contains { $0.status != "ok" } }) {
                throw ExitCode(3)
            }
        }
    }
}

/// `swarmnet debug dns NAME`: the answers this host's embedded DNS servers
/// give for a name (a service, `tasks.SERVICE`), per workload and network.
struct DebugDNS: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dns",
        abstract: "Show what the embedded DNS (127.0.0.11 in each workload) answers for a name on this host.",
        discussion: "Names that are no service's are forwarded to the upstreams listed; query one workload's server with `ip netns exec NS dig NAME`.")

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Only this workload namespace (an `ip netns` name or a path).") var container: String?
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table
    @Argument(help: "The name: SERVICE or tasks.SERVICE.") var name: String

    func run() throws {
        try reportingErrors {
            var path = "/swarmnet/debug/dns/\(NetworkInspect.escape(name))"
            if let container { path += "?container=" + (container.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? container) }
            let report = try JSONDecoder().decode(DNSDebugReport.self, from: daemon.call("GET", path))
            switch format {
            case .json:
                try Output.print([report], format: .json) { _ in TextTable(headers: [], rows: []) }
            case .table:
                print(TextTable(headers: ["WORKLOAD", "NETWORK", "MODE", "ANSWER", "SERVER"], rows: report.answers.map {
                    [$0.workload, $0.network, $0.mode, $0.addresses.joined(separator: ",").ifEmpty("(no address)"), $0.serving ? "running" : "not running"]
                }).render(), terminator: "")
                if report.answers.isEmpty { print("\(report.name): not a service name here; forwarded to \(report.upstreams.joined(separator: ", ").ifEmpty("(no upstream: SERVFAIL)"))") }
            }
        }
    }
}

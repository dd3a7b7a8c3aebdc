import ArgumentParser
import DockerAPI
import Foundation
import Inspect
import Netlink

struct DebugNetns: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "netns", abstract: "List named network namespaces (as `ip netns list`).")

    @Option(name: .long, help: "Output format: table or json.")
    var format: OutputFormat = .table

    func run() throws {
        try reportingErrors {
            try Output.print(try Views.namespaces(), format: format, table: Views.table)
        }
    }
}

struct DebugLinks: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "links", abstract: "List links with their kind, state, master and vxlan settings (as `ip -d link`).")

    @OptionGroup var options: NamespaceOptions

    func run() throws {
        try reportingErrors {
            try Output.print(try Views.links(options.session()), format: options.format, table: Views.table)
        }
    }
}

struct DebugAddrs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "addrs", abstract: "List interface addresses (as `ip addr`).")

    @OptionGroup var options: NamespaceOptions

    func run() throws {
        try reportingErrors {
            try Output.print(try Views.addresses(options.session()), format: options.format, table: Views.table)
        }
    }
}

struct DebugRoutes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routes", abstract: "List routes of the main table, or of all tables (as `ip route`).")

    @OptionGroup var options: NamespaceOptions

    @Flag(name: .long, help: "Show every routing table, not just main.")
    var allTables = false

    func run() throws {
        try reportingErrors {
            try Output.print(try Views.routes(options.session(), allTables: allTables), format: options.format, table: Views.table)
        }
    }
}

struct DebugNeigh: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "neigh", abstract: "List ARP/NDP neighbour entries (as `ip neigh`).")

    @OptionGroup var options: NamespaceOptions

    func run() throws {
        try reportingErrors {
            try Output.print(try Views.neighbours(options.session()), format: options.format, table: Views.table)
        }
    }
}

struct DebugFDB: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fdb", abstract: "List bridge forwarding-database entries, with vxlan destinations (as `bridge fdb`).")

    @OptionGroup var options: NamespaceOptions

    @Option(name: .long, help: "Only the entries of this device.")
    var dev: String?

    func run() throws {
        try reportingErrors {
            try Output.print(try Views.fdb(options.session(), device: dev), format: options.format, table: Views.table)
        }
    }
}

struct DebugOverlay: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overlay",
        abstract: "Show a network's desired peers on this host beside the kernel's FDB and neighbour entries, marking each difference.")

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table
    @Argument(help: "Network name or ID.") var network: String

    func run() throws {
        try reportingErrors {
            let report = try JSONDecoder().decode(
                OverlayDebugReport.self, from: daemon.call("GET", "/swarmnet/debug/overlay/\(NetworkInspect.escape(network))"))
            if format == .json {
                try Output.print([report], format: .json) { _ in TextTable(headers: []) }
                return
            }
            print("host \(report.node) (data path \(report.dataPathAddress)), network \(report.network) (\(report.networkID.prefix(12))), VNI \(report.vni)")
            print("sandbox \(report.sandbox): \(report.sandboxExists ? "present" : "absent")")
            print("local endpoints: \(report.localEndpoints.isEmpty ? "none" : report.localEndpoints.joined(separator: ", "))")
            let differences = report.peers.filter { $0.status != "ok" }.count
            print(TextTable(headers: ["ADDRESS", "MAC", "DESIRED VTEP", "FDB VTEP", "NEIGH MAC", "STATUS"], rows: report.peers.map {
                [$0.address ?? "-", $0.mac, $0.desiredVTEP ?? "-", $0.fdbVTEP ?? "-", $0.neighbourMAC ?? "-",
                 $0.status == "ok" ? "ok" : "** \($0.status.uppercased()) **"]
            }).render(), terminator: "")
            print("\(report.peers.count - differences) in sync, \(differences) differing")
        }
    }
}

struct DebugPeers: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "peers", abstract: "Show the cluster's nodes as this node's gossip layer sees them.")

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table

    func run() throws {
        try reportingErrors {
            let peers = try JSONDecoder().decode([PeerNode].self, from: daemon.call("GET", "/swarmnet/debug/peers"))
            try Output.print(peers, format: format) { peers in
                TextTable(headers: ["NODE", "ADDRESS", "STATE", "INCARNATION", "NETWORKS"], rows: peers.map {
                    [$0.name, $0.address, $0.state, $0.incarnation.map(String.init) ?? "-",
                     $0.networks.isEmpty ? "-" : $0.networks.map { String($0.prefix(12)) }.joined(separator: ",")]
                })
            }
        }
    }
}

struct DebugTable: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "table",
        abstract: "Show a gossip table as this node holds it (tombstones and entries of failed nodes included).",
        discussion: "NETWORK is a network's name or ID. Gossip runs only in a swarm, and its one table per network is endpoints.")

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table
    @Argument(help: "Network name or ID.") var network: String
    @Argument(help: "Table name.") var table: String

    func run() throws {
        try reportingErrors {
            let entries = try JSONDecoder().decode([TableEntryView].self, from: daemon.call(
                "GET", "/swarmnet/debug/table/\(NetworkInspect.escape(network))/\(NetworkInspect.escape(table))"))
            try Output.print(entries, format: format) { entries in
                TextTable(headers: ["KEY", "OWNER", "TIME", "STATE"], rows: entries.map {
                    [String($0.key.prefix(12)), $0.owner, "\($0.lamportTime)",
                     $0.deleting ? "deleted (tombstone)" : ($0.visible ? "visible" : "suspended (owner failed)")]
                })
            }
        }
    }
}

import ArgumentParser
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

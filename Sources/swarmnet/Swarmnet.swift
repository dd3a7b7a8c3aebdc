import ArgumentParser

@main
struct Swarmnet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swarmnet",
        abstract: "Overlay networks, service VIPs and a routing mesh for clusters of Linux hosts.",
        subcommands: [Network.self, Service.self, TaskCommand.self, Gossip.self, Debug.self, Demo.self, LabCommand.self])
}

/// `swarmnet debug ...`: read what the kernel holds, through swarmnet's own
/// netlink layer, laid out for operators who know `ip` and `bridge`.
struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what the kernel holds: namespaces, links, addresses, routes, neighbours, FDB.",
        subcommands: [DebugNetns.self, DebugLinks.self, DebugAddrs.self, DebugRoutes.self, DebugNeigh.self, DebugFDB.self, DebugOverlay.self, DebugPeers.self, DebugTable.self, DebugRaft.self, DebugLB.self, DebugDNS.self])
}

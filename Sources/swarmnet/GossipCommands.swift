import ArgumentParser
import DockerAPI
import Foundation
import Inspect

/// `swarmnet gossip keys`: the gossip encryption keyring of one daemon.
struct Gossip: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look at the gossip layer's encryption keys.",
        subcommands: [GossipKeys.self])
}

struct GossipKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "List this node's gossip keys (AES-256-GCM) by fingerprint.",
        discussion: """
            Gossip runs only in a swarm. The managers make its keys, hand them to
            every node over its mutual-TLS session and rotate them on the leader's
            schedule (swarmnetd --gossip-key-rotation): the new key is installed
            everywhere, then used, then the old one removed.
            """)

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table

    func run() throws {
        try reportingErrors {
            let keys = try JSONDecoder().decode([GossipKeyView].self, from: try daemon.call("GET", "/swarmnet/gossip/keys"))
            try Output.print(keys, format: format) { keys in
                TextTable(headers: ["FINGERPRINT", "USE"], rows: keys.map { [$0.fingerprint, $0.primary ? "encrypt + decrypt" : "decrypt"] })
            }
        }
    }
}

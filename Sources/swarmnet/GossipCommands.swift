import ArgumentParser
import DockerAPI
import Foundation
import Inspect

/// `swarmnet gossip keys ...`: the gossip encryption keyring of one daemon.
struct Gossip: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the gossip layer's encryption keys.",
        subcommands: [GossipKeys.self])
}

struct GossipKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "List or rotate this node's gossip keys (AES-256-GCM, base64).",
        discussion: """
            Rotate without a gap by running each step on every node before the next:
              swarmnet gossip keys --install NEW     (every node now decrypts with NEW)
              swarmnet gossip keys --use NEW         (every node now encrypts with NEW)
              swarmnet gossip keys --remove OLD      (OLD no longer opens anything)
            A new key: head -c 32 /dev/urandom | base64
            """)

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Install a key for decryption.") var install: String?
    @Option(name: .customLong("use"), help: "Encrypt with this (installed) key from now on.") var primary: String?
    @Option(help: "Stop accepting a key (not the primary).") var remove: String?
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table

    func run() throws {
        try reportingErrors {
            let data: Data
            if install == nil && primary == nil && remove == nil {
                data = try daemon.call("GET", "/swarmnet/gossip/keys")
            } else {
                data = try daemon.call("POST", "/swarmnet/gossip/keys", body: GossipKeyRequest(install: install, use: primary, remove: remove))
            }
            let keys = try JSONDecoder().decode([GossipKeyView].self, from: data)
            try Output.print(keys, format: format) { keys in
                TextTable(headers: ["FINGERPRINT", "USE"], rows: keys.map { [$0.fingerprint, $0.primary ? "encrypt + decrypt" : "decrypt"] })
            }
        }
    }
}

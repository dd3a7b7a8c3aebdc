import ArgumentParser
import DockerAPI
import Foundation
import Inspect

/// `swarmnet network ...`: the same operations as `docker network ...`,
/// through the daemon's API.
struct Network: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage overlay networks through swarmnetd (as `docker network`).",
        subcommands: [NetworkCreate.self, NetworkList.self, NetworkInspect.self, NetworkRemove.self,
                      NetworkConnect.self, NetworkDisconnect.self])
}

/// Where the daemon listens.
struct DaemonOptions: ParsableArguments {
    @Option(name: .long, help: "The daemon's API socket (default: $SWARMNET_SOCKET or /run/swarmnet/swarmnetd.sock).")
    var socket: String = ProcessInfo.processInfo.environment["SWARMNET_SOCKET"] ?? "/run/swarmnet/swarmnetd.sock"

    var client: UnixHTTPClient { UnixHTTPClient(socketPath: socket) }

    /// Calls the API; a Docker error body becomes the command's error.
    func call(_ method: String, _ path: String, body: Encodable? = nil) throws -> Data {
        let data = try body.map { try JSONEncoder().encode($0) }
        let response = try client.request(method, "/v\(DockerRouter.apiVersion)\(path)", body: data)
        guard (200..<300).contains(response.status) else {
            let message = (try? JSONDecoder().decode(ErrorResponse.self, from: response.body))?.message
                ?? String(decoding: response.body, as: UTF8.self)
            throw ValidationFailure(message: "Error response from daemon: \(message)")
        }
        return response.body
    }
}

extension DaemonOptions {
    /// `docker inspect`'s output: each object by reference, as one JSON array.
    func printInspected<Resource: Codable>(_ type: Resource.Type, collection: String, references: [String]) throws {
        let found = try references.map {
            try JSONDecoder().decode(Resource.self, from: call("GET", "/\(collection)/\(NetworkInspect.escape($0))"))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(found), as: UTF8.self))
    }

    /// Removes each object and prints its reference, as `docker ... rm` does.
    func remove(collection: String, references: [String]) throws {
        for reference in references {
            _ = try call("DELETE", "/\(collection)/\(NetworkInspect.escape(reference))")
            print(reference)
        }
    }
}

/// Parses `KEY=VALUE`.
func keyValue(_ text: String) throws -> (String, String) {
    let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
    guard parts.count == 2, !parts[0].isEmpty else { throw ValidationError("'\(text)' is not KEY=VALUE") }
    return (parts[0], parts[1])
}

struct NetworkCreate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create an overlay network.")

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Subnet in CIDR form (default: the next free /24 of 10.0.0.0/8).") var subnet: String?
    @Option(help: "Gateway address inside the subnet (default: its first address).") var gateway: String?
    @Option(help: "Label KEY=VALUE (repeatable).", transform: keyValue) var label: [(String, String)] = []
    @Option(help: "Driver option KEY=VALUE (repeatable).", transform: keyValue) var opt: [(String, String)] = []
    @Flag(help: "Allow standalone workloads to attach.") var attachable = false
    @Argument(help: "Network name.") var name: String

    func run() throws {
        try reportingErrors {
            let request = NetworkCreateRequest(
                name: name, driver: "overlay",
                ipam: (subnet != nil || gateway != nil) ? IPAM(config: [IPAMConfig(subnet: subnet, gateway: gateway)]) : nil,
                attachable: attachable,
                options: Dictionary(opt, uniquingKeysWith: { _, b in b }), labels: Dictionary(label, uniquingKeysWith: { _, b in b }))
            let reply = try JSONDecoder().decode(NetworkCreateResponse.self, from: daemon.call("POST", "/networks/create", body: request))
            print(reply.id)
        }
    }
}

struct NetworkList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List networks.", aliases: ["list"])

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Filter KEY=VALUE: name, id, driver, label (repeatable).", transform: keyValue) var filter: [(String, String)] = []
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table

    func run() throws {
        try reportingErrors {
            var path = "/networks"
            if !filter.isEmpty {
                var filters: [String: [String: Bool]] = [:]
                for (key, value) in filter { filters[key, default: [:]][value] = true }
                let json = String(decoding: try JSONEncoder().encode(filters), as: UTF8.self)
                path += "?filters=" + (json.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? json)
            }
            let networks = try JSONDecoder().decode([NetworkResource].self, from: daemon.call("GET", path))
            try Output.print(networks, format: format) { networks in
                TextTable(headers: ["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET", "VNI", "ENDPOINTS"], rows: networks.map {
                    [String($0.id.prefix(12)), $0.name, $0.driver, $0.scope, $0.ipam.config?.first?.subnet ?? "-",
                     $0.options["com.docker.network.driver.overlay.vxlanid_list"] ?? "-", "\($0.containers.count)"]
                })
            }
        }
    }
}

struct NetworkInspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Show networks in detail (JSON).")

    @OptionGroup var daemon: DaemonOptions
    @Argument(help: "Network names or IDs.") var networks: [String]

    func run() throws {
        try reportingErrors {
            try daemon.printInspected(NetworkResource.self, collection: "networks", references: networks)
        }
    }

    static func escape(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? text }
}

struct NetworkRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove networks.", aliases: ["remove"])

    @OptionGroup var daemon: DaemonOptions
    @Argument(help: "Network names or IDs.") var networks: [String]

    func run() throws {
        try reportingErrors {
            try daemon.remove(collection: "networks", references: networks)
        }
    }
}

struct NetworkConnect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Attach a network namespace to a network.",
        discussion: "NAMESPACE is an `ip netns` name, a path to a namespace file (/proc/PID/ns/net), or pid:PID.")

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "IPv4 address for the endpoint (default: the next free one).") var ip: String?
    @Option(help: "Make the endpoint a backend of this service (its VIP, published ports and DNS name).") var service: String?
    @Argument(help: "Network name or ID.") var network: String
    @Argument(help: "The workload's network namespace.") var namespace: String

    func run() throws {
        try reportingErrors {
            _ = try daemon.call("POST", "/networks/\(NetworkInspect.escape(network))/connect",
                                body: NetworkConnectRequest(container: namespace, ipv4Address: ip, service: service))
        }
    }
}

struct NetworkDisconnect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "disconnect", abstract: "Detach a network namespace from a network.")

    @OptionGroup var daemon: DaemonOptions
    @Argument(help: "Network name or ID.") var network: String
    @Argument(help: "The workload's network namespace.") var namespace: String

    func run() throws {
        try reportingErrors {
            _ = try daemon.call("POST", "/networks/\(NetworkInspect.escape(network))/disconnect",
                                body: NetworkDisconnectRequest(container: namespace))
        }
    }
}

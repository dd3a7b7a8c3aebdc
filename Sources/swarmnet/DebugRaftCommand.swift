import ArgumentParser
import DockerAPI
import Foundation
import Inspect
import RaftTransport

/// `swarmnet debug raft`: one Raft member's view of its group: a swarm
/// manager's (through the daemon's socket), or a standalone `raft-node`'s
/// (`GET /debug/raft`).
struct DebugRaft: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft",
        abstract: "Show a Raft member's term, leader, commit and applied index, and its members' progress (a swarm manager's, or a raft-node's with --endpoint).")

    @OptionGroup var daemon: DaemonOptions

    @Option(name: .long, help: "A raft-node's client API to ask instead, host:port.")
    var endpoint: String?

    @Option(name: .long, help: "Output format: table or json.")
    var format: OutputFormat = .table

    @Option(name: .long, help: "Seconds to wait for the member to answer.")
    var timeout = 3

    func run() throws {
        guard let endpoint else {
            let report: RaftStatusReport = try reportingErrors {
                try JSONDecoder().decode(RaftStatusReport.self, from: try daemon.call("GET", "/swarmnet/debug/raft"))
            }
            try show(report)
            return
        }
        let address: PeerAddress
        do {
            address = try PeerAddress(parsing: Substring(endpoint))
        } catch {
            throw ValidationError("--endpoint must be host:port, got '\(endpoint)'")
        }
        let report: RaftStatusReport = try reportingErrors {
            let client = UnixHTTPClient(host: address.host, port: UInt16(address.port), timeoutSeconds: timeout)
            let response: UnixHTTPClient.Response
            do {
                response = try client.request("GET", "/debug/raft")
            } catch UnixHTTPClient.ClientError.connect(_, let errno) {
                throw ValidationFailure(message: "cannot connect to the raft-node at \(endpoint): \(String(cString: strerror(errno)))")
            }
            guard response.status == 200 else {
                throw ValidationFailure(message: "\(endpoint) answered HTTP \(response.status): \(String(decoding: response.body, as: UTF8.self))")
            }
            do {
                return try JSONDecoder().decode(RaftStatusReport.self, from: response.body)
            } catch {
                throw ValidationFailure(message: "\(endpoint) did not answer with a Raft status: \(error)")
            }
        }
        try show(report)
    }

    private func show(_ report: RaftStatusReport) throws {
        switch format {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        case .table:
            print(Self.render(report), terminator: "")
        }
    }

    static func render(_ r: RaftStatusReport) -> String {
        let summary = TextTable(
            headers: ["MEMBER", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "FIRST", "LAST", "SNAPSHOT"],
            rows: [[String(r.id), r.role, String(r.term), r.leader == 0 ? "none" : String(r.leader), String(r.commit),
                    String(r.applied), String(r.firstIndex), String(r.lastIndex), String(r.snapshotIndex)]])
        let members = TextTable(
            headers: ["ID", "ADDRESS", "SUFFRAGE", "MATCH", "NEXT", "STATE", "ACTIVE"],
            rows: r.members.map { m in
                [String(m.id) + (m.id == r.id ? "*" : ""), m.address ?? "-", m.suffrage, m.match.map(String.init) ?? "-",
                 m.next.map(String.init) ?? "-", m.state ?? "-", m.recentActive.map { $0 ? "yes" : "no" } ?? "-"]
            })
        var out = summary.render() + "\n" + members.render()
        if r.role != "leader" { out += "(progress is known only on the leader)\n" }
        return out
    }
}

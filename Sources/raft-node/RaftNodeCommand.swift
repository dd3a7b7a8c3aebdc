import ArgumentParser
import DockerAPI
import Foundation
import Logging
import Raft
import RaftRuntime
import RaftTransport

/// One Raft member with the replicated store, serving an etcd-shaped HTTP API for clients and
/// benchmarks. A fresh data directory bootstraps a group whose voters are `--peers`, or, with
/// `--initial-cluster-state existing`, waits to be sent the log of a group it was added to
/// (`POST /v3/cluster/member/add` on a member of that group).
@main
struct RaftNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "raft-node",
        abstract: "Run one member of a swarmnet Raft group with an etcd-style HTTP API (/v3/kv/put, /v3/kv/range, /v3/cluster/member/*, /debug/raft).")

    enum ClusterState: String, ExpressibleByArgument, CaseIterable {
        case new
        case existing
    }

    @Option(help: "This member's id (a positive integer listed in --peers).")
    var id: UInt64

    @Option(help: "Every member's Raft address, this one included: id=host:port,... (to join a group: its current members and this one).",
            transform: { try PeerAddress.parsePeers($0) })
    var peers: [UInt64: PeerAddress]

    @Option(help: "Directory for the write-ahead log and snapshots.")
    var dataDir: String

    @Option(help: "Port of the HTTP client API.")
    var clientPort: Int

    @Option(help: "Address the client API binds (default: all).")
    var clientHost = "0.0.0.0"

    @Option(help: "Address the Raft listener binds (default: the host given for this member in --peers).")
    var listenHost: String?

    @Option(help: "new: a fresh data directory bootstraps a group whose voters are --peers. existing: it starts empty and waits for the leader of the group this member was added to.")
    var initialClusterState: ClusterState = .new

    @Option(help: "Applied entries between snapshots (the log is compacted into a snapshot every n entries).")
    var snapshotCount: UInt64 = 10_000

    @Option(help: "Milliseconds per Raft tick.")
    var tickMs = 50

    @Option(help: "Election timeout in ticks (randomized in [n, 2n)).")
    var electionTicks = 10

    @Flag(help: "Send every message only after the fsync of its Ready, the leader's appends included (slower; see RaftServer.Options.leaderAppendsBeforeFsync).")
    var strictPersistOrder = false

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        guard id != 0, peers[id] != nil else { throw ValidationError("--id \(id) is not one of --peers \(peers.keys.sorted())") }
        guard (1...65535).contains(clientPort) else { throw ValidationError("--client-port must be 1...65535") }
        guard tickMs > 0, electionTicks > 1 else { throw ValidationError("--tick-ms must be > 0 and --election-ticks > 1") }
        guard snapshotCount > 0 else { throw ValidationError("--snapshot-count must be > 0") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "raft-node.\(id)")
        var options = RaftServer.Options()
        options.tick = .milliseconds(tickMs)
        options.electionTick = electionTicks
        options.leaderAppendsBeforeFsync = !strictPersistOrder
        options.compactEvery = snapshotCount
        options.joinExisting = initialClusterState == .existing
        let server = try RaftServer(id: id, peers: peers, dataDirectory: dataDir, options: options, logger: logger)
        let me = peers[id]!
        try await server.start(listenHost: listenHost ?? me.host, listenPort: me.port)
        logger.info("raft-node \(id): raft on \(listenHost ?? me.host):\(me.port), clients on \(clientHost):\(clientPort), data in \(dataDir)")

        let terminate = DispatchSource.makeSignalSource(signal: SIGTERM)
        let interrupt = DispatchSource.makeSignalSource(signal: SIGINT)
        signal(SIGTERM, SIG_IGN)
        signal(SIGINT, SIG_IGN)
        for source in [terminate, interrupt] {
            source.setEventHandler {
                Task {
                    await server.stop()
                    Foundation.exit(0)
                }
            }
            source.resume()
        }
        let api = KVAPI(server: server)
        let http = UnixHTTPServer(listen: .tcp(host: clientHost, port: clientPort), logger: logger) { await api.handle($0) }
        try await http.run {
            // One line on stdout when the member serves, for scripts and tests to wait on.
            FileHandle.standardOutput.write(Data("{\"event\":\"ready\",\"id\":\(id),\"client_port\":\(clientPort)}\n".utf8))
        }
    }
}

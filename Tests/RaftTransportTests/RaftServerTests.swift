import Foundation
import Logging
import Raft
import RaftRuntime
import RaftTransport
import ReplicatedStore
import Testing

/// Three `RaftServer`s over real TCP on loopback, each with its own WAL: writes through any member,
/// linearizable reads, a leader stopped and restarted from its directory, and the definite failure
/// of a proposal that no leader can take.
@Suite("RaftServer on loopback", .serialized)
struct RaftServerTests {
    static func options() -> RaftServer.Options {
        var o = RaftServer.Options()
        o.tick = .milliseconds(20)
        return o
    }

    struct Group {
        let root: String
        let peers: [NodeID: PeerAddress]
        var servers: [NodeID: RaftServer] = [:]

        init(size: Int) {
            root = NSTemporaryDirectory() + "raft-server-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let base = Int.random(in: 26_000..<31_000)  // below the ephemeral range (32768-)
            peers = Dictionary(uniqueKeysWithValues: (1...NodeID(size)).map { ($0, PeerAddress(host: "127.0.0.1", port: base + Int($0))) })
        }

        mutating func start(_ id: NodeID) async throws {
            let logger = Logger(label: "raft-\(id)") { _ in SwiftLogNoOpLogHandler() }
            let s = try RaftServer(id: id, peers: peers, dataDirectory: "\(root)/n\(id)", options: RaftServerTests.options(), logger: logger)
            try await s.start(listenHost: "127.0.0.1", listenPort: peers[id]!.port)
            servers[id] = s
        }

        mutating func stop(_ id: NodeID) async {
            await servers.removeValue(forKey: id)?.stop()
        }

        func leader() async -> NodeID? {
            var votes: [NodeID: Int] = [:]
            for s in servers.values {
                let l = await s.statusReport().leader
                if l != 0 { votes[l, default: 0] += 1 }
            }
            return votes.first { $0.value > peers.count / 2 && servers[$0.key] != nil }?.key
        }

        func waitForLeader() async throws -> NodeID {
            for _ in 0..<250 {
                if let l = await leader() { return l }
                try await Task.sleep(for: .milliseconds(20))
            }
            throw RaftServer.Failure.timeout
        }

        mutating func shutdown() async {
            for id in Array(servers.keys) { await stop(id) }
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// Retries a write the way a client would while leadership settles.
    func put(_ s: RaftServer, _ key: String, _ value: String) async throws {
        for _ in 0..<50 {
            do {
                let r = try await s.put(collection: "kv", key: key, value: Array(value.utf8))
                if case .success = r.result { return }
            } catch let f as RaftServer.Failure where f != .stopped {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        throw RaftServer.Failure.timeout
    }

    func read(_ s: RaftServer, _ key: String) async throws -> String? {
        try await s.get(collection: "kv", key: key).map { String(decoding: $0.value, as: UTF8.self) }
    }

    @Test func writesReadsAndALeaderRestart() async throws {
        var g = Group(size: 3)
        do {
            for id in g.peers.keys.sorted() { try await g.start(id) }
            let leader = try await g.waitForLeader()
            let followers = g.peers.keys.filter { $0 != leader }.sorted()
            try await put(g.servers[followers[0]]!, "a", "1")
            #expect(try await read(g.servers[followers[1]]!, "a") == "1")
            #expect(try await read(g.servers[leader]!, "a") == "1")

            // The leader goes away; the other two elect one and keep taking writes.
            await g.stop(leader)
            let next = try await g.waitForLeader()
            #expect(next != leader)
            try await put(g.servers[next]!, "a", "2")
            // Back from its directory alone, the old leader catches up and reads the new value.
            try await g.start(leader)
            var seen: String?
            for _ in 0..<100 {
                seen = try? await read(g.servers[leader]!, "a")
                if seen == "2" { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(seen == "2")
            let report = await g.servers[next]!.statusReport()
            #expect(report.role == "leader" && report.members.count == 3 && report.members.allSatisfy { $0.match != nil })
        } catch {
            await g.shutdown()
            throw error
        }
        await g.shutdown()
    }

    /// The membership API's refusals, on a group of one (so nothing else can move): each leaves the
    /// configuration as it was; an added learner and its address reach the transport, and go again
    /// when it is removed.
    @Test func membershipChangesAndRefusals() async throws {
        var g = Group(size: 1)
        do {
            try await g.start(1)
            _ = try await g.waitForLeader()
            let s = g.servers[1]!
            func refusal(_ body: () async throws -> Void) async -> MembershipError? {
                do { try await body() } catch let e as MembershipError { return e } catch { return nil }
                return nil
            }
            #expect(await refusal { try await s.removeMember(1) } == .lastVoter(1))
            #expect(await refusal { try await s.promoteMember(1) } == .notLearner(1))
            #expect(await refusal { try await s.removeMember(9) } == .unknownMember(9))
            #expect(await s.members() == [RaftMember(id: 1, address: g.peers[1], isLearner: false)])

            let address = PeerAddress(host: "127.0.0.1", port: 9)
            let added = try await s.addMember(id: nil, address: address, asLearner: true)
            #expect(added == RaftMember(id: 2, address: address, isLearner: true))
            #expect(await s.members().map(\.id) == [1, 2] && s.transport.peers[2] == address)
            #expect(await refusal { _ = try await s.addMember(id: 2, address: address, asLearner: false) } == .alreadyMember(2))
            // Nothing runs at member 2's address, so it holds none of the log.
            if case .learnerNotReady(2, match: 0, leaderMatch: _)? = await refusal({ try await s.promoteMember(2) }) {} else {
                Issue.record("promoting a learner that holds nothing was not refused as not ready")
            }
            #expect(await s.members().first { $0.id == 2 }?.isLearner == true)

            try await s.removeMember(2)
            #expect(await s.members().map(\.id) == [1])
            #expect(s.transport.peers[2] == nil)
        } catch {
            await g.shutdown()
            throw error
        }
        await g.shutdown()
    }

    /// A change that cannot commit (the voter it needs never runs) stays pending, and every later
    /// change is refused until it is applied, whether this member still leads or not.
    @Test func aChangeWhileAnotherIsPendingIsRefused() async throws {
        var g = Group(size: 1)
        do {
            try await g.start(1)
            _ = try await g.waitForLeader()
            let s = g.servers[1]!
            // Voter 2 never starts: from here on nothing commits.
            _ = try await s.addMember(id: 2, address: PeerAddress(host: "127.0.0.1", port: 9), asLearner: false)
            try await s.proposeConfChange(.addLearner(3))
            for change in [{ _ = try await s.addMember(id: 4, address: PeerAddress(host: "127.0.0.1", port: 9), asLearner: true) },
                           { try await s.removeMember(2) }] as [@Sendable () async throws -> Void] {
                do {
                    try await change()
                    Issue.record("a change was accepted while another was pending")
                } catch let e as MembershipError {
                    #expect(e == .changePending)
                }
            }
            #expect(await s.members().map(\.id) == [1, 2])
        } catch {
            await g.shutdown()
            throw error
        }
        await g.shutdown()
    }

    @Test func aProposalWithoutALeaderFailsDefinitely() async throws {
        var g = Group(size: 3)
        do {
            try await g.start(1)
            // Alone of three, member 1 never learns of a leader: the proposal never enters a log.
            do {
                _ = try await g.servers[1]!.propose(.create(collection: "kv", key: "x", value: [1]))
                Issue.record("a proposal without a leader succeeded")
            } catch let f as RaftServer.Failure {
                #expect(f == .dropped && f.isDefinite)
            }
            do {
                try await g.servers[1]!.linearizableBarrier()
                Issue.record("a read without a leader succeeded")
            } catch let f as RaftServer.Failure {
                #expect(f == .dropped)
            }
        } catch {
            await g.shutdown()
            throw error
        }
        await g.shutdown()
    }
}

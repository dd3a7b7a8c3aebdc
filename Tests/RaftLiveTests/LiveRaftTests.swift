import Foundation
import TestKit
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Five raft-node processes on five test hosts; clients on a sixth host write and read through all
/// of them while the test partitions hosts (symmetric, asymmetric, majority/minority) with
/// nftables and kills members with SIGKILL and restarts them. The client history must be
/// linearizable, and after healing every key must read back at a value the history allows (so no
/// acknowledged write was lost).
@Suite("raft-node processes between network namespaces", .serialized)
struct LiveRaftTests {
    static let clientPort = 2379
    static let raftPort = 2380
    static let keys = (0..<12).map { "key\($0)" }

    final class Recorder: Sendable {
        let history = Mutex(KVHistory())
        func record(_ op: KVHistory.Operation) { history.withLock { $0.operations.append(op) } }
    }

    struct Cluster: @unchecked Sendable {
        let testbed: RaftTestbed
        let nodes: [RaftNodeProcess]

        func status(_ n: Int) -> [String: Any]? {
            let host = testbed.address(n)
            let r = inNamespace(testbed.namespace(testbed.clientHost)) {
                httpRequest(host: host, port: LiveRaftTests.clientPort, method: "GET", path: "/debug/raft", timeout: 1)
            }
            guard let r, r.status == 200 else { return nil }
            return (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) as? [String: Any]
        }

        /// The member that a majority of running members name as leader, if any.
        func leader() -> Int? {
            var votes: [Int: Int] = [:]
            for n in 1...nodes.count where nodes[n - 1].isRunning {
                if let l = status(n)?["leader"] as? Int, l != 0 { votes[l, default: 0] += 1 }
            }
            return votes.first { $0.value > nodes.count / 2 }?.key
        }
    }

    @Test("linearizable under partitions and kill -9, no acknowledged write lost", .timeLimit(.minutes(3)))
    func chaos() async throws {
        try requireRoot()
        let count = 5
        let testbed = try RaftTestbed(nodes: count)
        let dataRoot = "/tmp/srt\(getpid())"
        var nodes: [RaftNodeProcess] = []
        var passed = false
        // Client threads stop on this, also when the test throws half way.
        let stop = Atomic<Bool>(false)
        defer {
            stop.store(true, ordering: .relaxed)
            for n in nodes { n.kill9() }
            testbed.destroy()
            // The members' logs and data stay for a post-mortem when the test failed (or with
            // RAFT_LIVE_KEEP=1).
            if passed && ProcessInfo.processInfo.environment["RAFT_LIVE_KEEP"] == nil {
                try? FileManager.default.removeItem(atPath: dataRoot)
            } else {
                print("live raft: members' logs and data kept in \(dataRoot)")
            }
        }
        try FileManager.default.createDirectory(atPath: dataRoot, withIntermediateDirectories: true)
        let peers = (1...count).map { "\($0)=\(testbed.address($0)):\(Self.raftPort)" }.joined(separator: ",")
        for n in 1...count {
            let node = RaftNodeProcess(
                id: n, namespace: testbed.namespace(n),
                arguments: ["--id", "\(n)", "--peers", peers, "--data-dir", "\(dataRoot)/n\(n)",
                            "--client-port", "\(Self.clientPort)", "--listen-host", testbed.address(n)],
                logPath: "\(dataRoot)/n\(n).log")
            try node.start()
            nodes.append(node)
        }
        let cluster = Cluster(testbed: testbed, nodes: nodes)
        let first = try await waitForLeader(cluster, within: 15)
        print("live raft: leader \(first) elected")

        // Clients: each a thread in the client host's namespace, one request per connection.
        let recorder = Recorder()
        let clientNS = testbed.namespace(testbed.clientHost)
        let addresses = (1...count).map { testbed.address($0) }
        var threads: [Thread] = []
        let finished = Atomic<Int>(0)
        let clients = 8
        for c in 0..<clients {
            threads.append(onThread(inNamespace: clientNS) {
                var rng = SystemRandomNumberGenerator()
                var seq = 0
                while !stop.load(ordering: .relaxed) {
                    seq += 1
                    let key = Self.keys.randomElement(using: &rng)!
                    let host = addresses.randomElement(using: &rng)!
                    if Bool.random(using: &rng) {
                        Self.put(key: key, value: "c\(c)-\(seq)", host: host, client: c, recorder: recorder)
                    } else {
                        Self.get(key: key, host: host, client: c, recorder: recorder)
                    }
                    usleep(UInt32.random(in: 0..<5_000, using: &rng))
                }
                finished.add(1, ordering: .relaxed)
            })
        }

        // The faults, one after another, each healed before the next.
        func pause(_ s: Double) async throws { try await Task.sleep(for: .milliseconds(Int(s * 1000))) }
        func others(_ n: Int) -> [Int] { (1...count).filter { $0 != n } }
        try await pause(2)
        var l = cluster.leader() ?? 1
        print("live raft: isolating leader \(l)")
        try testbed.partition([l], others(l))
        try await pause(4)
        testbed.heal()
        try await pause(2)

        let follower = others(cluster.leader() ?? 1).randomElement()!
        print("live raft: kill -9 follower \(follower)")
        nodes[follower - 1].kill9()
        try await pause(2)
        try nodes[follower - 1].start()
        try await pause(2)

        l = cluster.leader() ?? 1
        print("live raft: kill -9 leader \(l)")
        nodes[l - 1].kill9()
        try await pause(3)
        try nodes[l - 1].start()
        try await pause(2)

        l = cluster.leader() ?? 1
        let cutOff = Array(others(l).shuffled().prefix(3))
        print("live raft: asymmetric: leader \(l) cannot send to \(cutOff), they still reach it")
        try testbed.block(host: l, inbound: [], outbound: cutOff)
        try await pause(4)
        testbed.heal()
        try await pause(2)

        print("live raft: split [1, 2] | [3, 4, 5]")
        try testbed.partition([1, 2], [3, 4, 5])
        try await pause(4)
        testbed.heal()
        try await pause(2)

        let pair = Array((1...count).shuffled().prefix(2))
        print("live raft: kill -9 \(pair) together, while \(pair[1]) hears nobody (asymmetric)")
        try testbed.block(host: pair[1], inbound: others(pair[1]), outbound: [])
        for n in pair { nodes[n - 1].kill9() }
        try await pause(2)
        for n in pair { try nodes[n - 1].start() }
        try await pause(1)
        testbed.heal()
        try await pause(3)

        stop.store(true, ordering: .relaxed)
        try await eventuallyTrue("the clients to stop", within: 10) { finished.load(ordering: .relaxed) == clients }
        _ = threads

        // Healed and all running: every key must read back, linearizably, through any member.
        let leader = try await waitForLeader(cluster, within: 15)
        print("live raft: healed; leader \(leader)")
        for key in Self.keys {
            var done = false
            for attempt in 0..<50 where !done {
                let host = addresses[attempt % count]
                done = inNamespace(clientNS) { Self.get(key: key, host: host, client: 99, recorder: recorder) }
                if !done { try await pause(0.2) }
            }
            #expect(done, "no final read of \(key) succeeded")
        }

        let history = recorder.history.withLock { $0 }
        let ops = history.operations
        let puts = ops.filter { if case .put = $0.kind { true } else { false } }
        let gets = ops.filter { if case .get = $0.kind { true } else { false } }
        func n(_ xs: [KVHistory.Operation], _ o: KVHistory.Outcome) -> Int { xs.filter { $0.outcome == o }.count }
        print("live raft: puts ok \(n(puts, .ok)), failed \(n(puts, .failed)), unknown \(n(puts, .unknown)); gets ok \(n(gets, .ok)), failed \(gets.count - n(gets, .ok))")
        #expect(n(puts, .ok) > 200, "too few acknowledged writes to mean anything")
        let clock = ContinuousClock()
        let start = clock.now
        let result = LinearizabilityChecker.check(history)
        print("live raft: linearizability check of \(ops.count) operations: \(result == .linearizable ? "linearizable" : "NOT linearizable") in \(clock.now - start)")
        if case let .violation(key, kops) = result {
            let lines = kops.map(\.description).joined(separator: "\n")
            Issue.record("history of \(key) is not linearizable:\n\(lines)")
        } else if case let .inconclusive(key) = result {
            Issue.record("linearizability search for \(key) gave up")
        }
        // Lost acknowledged writes, checked directly too: the final value must come from a write
        // that was not failed and did not end before some acknowledged write began (that one
        // would have overwritten it).
        var lost = 0
        for key in Self.keys {
            let keyOps = ops.filter { $0.key == key && $0.client != 99 }
            guard let final = ops.last(where: { $0.key == key && $0.client == 99 }), case let .get(value) = final.kind else { continue }
            let puts = keyOps.filter { if case .put = $0.kind { $0.outcome != .failed } else { false } }
            let acked = puts.filter { $0.outcome == .ok }
            guard !acked.isEmpty else { continue }
            let allowed = puts.filter { p in
                let end = p.outcome == .unknown ? UInt64.max : p.returned
                return !acked.contains { $0.invoked > end }
            }.compactMap { p -> String? in if case let .put(v) = p.kind { v } else { nil } }
            if value.map({ allowed.contains($0) }) != true {
                lost += 1
                Issue.record("\(key) reads \(value ?? "nil"): an acknowledged write was lost")
            }
        }
        for node in nodes where !node.isRunning { Issue.record("member \(node.id) died; see \(node.logPath)") }
        print("live raft: acknowledged writes lost: \(lost)")
        passed = result == .linearizable && lost == 0 && nodes.allSatisfy(\.isRunning)
    }

    func waitForLeader(_ cluster: Cluster, within seconds: Double) async throws -> Int {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let l = cluster.leader() { return l }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CommandFailed(command: ["wait for a leader"], status: -1, stderr: "no leader within \(seconds) s")
    }

    func eventuallyTrue(_ what: String, within seconds: Double, _ condition: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() {
            guard Date() < deadline else { throw CommandFailed(command: [what], status: -1, stderr: "timed out") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    static func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }

    /// One put through `host`; the outcome follows the server's word: 200 ok, 503 with
    /// outcome "failed" or a refused connection certainly not applied, anything else unknown.
    static func put(key: String, value: String, host: String, client: Int, recorder: Recorder) {
        let invoked = monotonicNow()
        let r = httpRequest(host: host, port: clientPort, method: "POST", path: "/v3/kv/put",
                            body: "{\"key\":\"\(b64(key))\",\"value\":\"\(b64(value))\"}", timeout: 2)
        let returned = monotonicNow()
        let outcome: KVHistory.Outcome
        if let r, r.notSent || (r.status == 503 && r.body.contains("\"outcome\":\"failed\"")) {
            outcome = .failed
        } else if let r, r.status == 200 {
            outcome = .ok
        } else {
            outcome = .unknown
        }
        recorder.record(.init(client: client, key: key, kind: .put(value), invoked: invoked, returned: returned, outcome: outcome))
    }

    /// One linearizable read through `host`; only successful reads enter the history.
    @discardableResult
    static func get(key: String, host: String, client: Int, recorder: Recorder) -> Bool {
        let invoked = monotonicNow()
        let r = httpRequest(host: host, port: clientPort, method: "POST", path: "/v3/kv/range",
                            body: "{\"key\":\"\(b64(key))\"}", timeout: 2)
        let returned = monotonicNow()
        guard let r, r.status == 200,
              let json = (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) as? [String: Any] else {
            // A read that failed has no effect; it is kept for the counts and ignored by the checker.
            recorder.record(.init(client: client, key: key, kind: .get(nil), invoked: invoked, returned: returned, outcome: .unknown))
            return false
        }
        var value: String?
        if let kvs = json["kvs"] as? [[String: Any]], let v = kvs.first?["value"] as? String, let d = Data(base64Encoded: v) {
            value = String(decoding: d, as: UTF8.self)
        }
        recorder.record(.init(client: client, key: key, kind: .get(value), invoked: invoked, returned: returned, outcome: .ok))
        return true
    }
}

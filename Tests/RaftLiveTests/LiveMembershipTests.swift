import Foundation
import TestKit
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Runtime membership of raft-node processes through the etcd-shaped HTTP API: three members write
/// enough that the leader compacts its log, a fourth joins as a learner (so it can only catch up
/// through a snapshot taken after it was added), is promoted, and an original voter is removed,
/// while writes and linearizable reads go on.
@Suite("raft-node membership changes between network namespaces", .serialized)
struct LiveMembershipTests {
    static let clientPort = 2379
    static let raftPort = 2380
    /// Small, so the leader compacts several times during the test.
    static let snapshotCount = 40

    struct Bed: @unchecked Sendable {
        let testbed: RaftTestbed

        /// One JSON request to member `n`'s client API from the client host.
        func call(_ n: Int, _ method: String, _ path: String, _ body: String = "") -> (status: Int, json: [String: Any])? {
            let host = testbed.address(n)
            let r = inNamespace(testbed.namespace(testbed.clientHost)) {
                httpRequest(host: host, port: LiveMembershipTests.clientPort, method: method, path: path, body: body, timeout: 3)
            }
            guard let r, !r.notSent, let json = (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) as? [String: Any] else { return nil }
            return (r.status, json)
        }

        func debug(_ n: Int) -> [String: Any]? {
            guard let r = call(n, "GET", "/debug/raft"), r.status == 200 else { return nil }
            return r.json
        }

        /// The member a majority of `members` name as leader.
        func leader(among members: [Int]) -> Int? {
            var votes: [Int: Int] = [:]
            for n in members {
                if let l = debug(n)?["leader"] as? Int, l != 0 { votes[l, default: 0] += 1 }
            }
            return votes.first { $0.value > members.count / 2 }?.key
        }

        /// The leader's view of member `id` (suffrage, match) and the leader's commit index.
        func progress(of id: Int, leader: Int) -> (suffrage: String, match: Int?, commit: Int)? {
            guard let d = debug(leader), let commit = d["commit"] as? Int,
                  let members = d["members"] as? [[String: Any]],
                  let m = members.first(where: { $0["id"] as? Int == id }),
                  let suffrage = m["suffrage"] as? String else { return nil }
            return (suffrage, m["match"] as? Int, commit)
        }

        /// Member ids in `/v3/cluster/member/list` as `n` answers it, with their learner flag.
        func memberList(_ n: Int) -> [String: Bool]? {
            guard let r = call(n, "POST", "/v3/cluster/member/list", "{}"), r.status == 200,
                  let members = r.json["members"] as? [[String: Any]] else { return nil }
            var out: [String: Bool] = [:]
            for m in members { if let id = m["ID"] as? String { out[id] = m["isLearner"] as? Bool ?? false } }
            return out
        }

        /// A put through `n`, retried while leadership settles; true once acknowledged.
        func put(_ key: String, _ value: String, via n: Int) async throws -> Bool {
            for _ in 0..<50 {
                let body = "{\"key\":\"\(b64(key))\",\"value\":\"\(b64(value))\"}"
                if let r = call(n, "POST", "/v3/kv/put", body), r.status == 200 { return true }
                try await Task.sleep(for: .milliseconds(100))
            }
            return false
        }

        /// A linearizable read through `n`; nil if it failed or the key is absent.
        func get(_ key: String, via n: Int) -> String? {
            guard let r = call(n, "POST", "/v3/kv/range", "{\"key\":\"\(b64(key))\"}"), r.status == 200,
                  let kvs = r.json["kvs"] as? [[String: Any]], let v = kvs.first?["value"] as? String,
                  let d = Data(base64Encoded: v) else { return nil }
            return String(decoding: d, as: UTF8.self)
        }

        func b64(_ s: String) -> String { Data(s.utf8).base64EncodedString() }
    }

    @Test("a learner added after compaction catches up, is promoted; a voter is removed", .timeLimit(.minutes(2)))
    func addPromoteRemove() async throws {
        try requireRoot()
        let testbed = try RaftTestbed(nodes: 4, tag: "m")
        let dataRoot = "/tmp/srt\(getpid())m"
        var nodes: [Int: RaftNodeProcess] = [:]
        var passed = false
        defer {
            for n in nodes.values { n.kill9() }
            testbed.destroy()
            if passed && ProcessInfo.processInfo.environment["RAFT_LIVE_KEEP"] == nil {
                try? FileManager.default.removeItem(atPath: dataRoot)
            } else {
                print("live membership: members' logs and data kept in \(dataRoot)")
            }
        }
        try FileManager.default.createDirectory(atPath: dataRoot, withIntermediateDirectories: true)
        func peers(_ ids: ClosedRange<Int>) -> String {
            ids.map { "\($0)=\(testbed.address($0)):\(Self.raftPort)" }.joined(separator: ",")
        }
        func start(_ n: Int, peers: String, extra: [String] = []) throws {
            let node = RaftNodeProcess(
                id: n, namespace: testbed.namespace(n),
                arguments: ["--id", "\(n)", "--peers", peers, "--data-dir", "\(dataRoot)/n\(n)",
                            "--client-port", "\(Self.clientPort)", "--listen-host", testbed.address(n),
                            "--snapshot-count", "\(Self.snapshotCount)"] + extra,
                logPath: "\(dataRoot)/n\(n).log")
            nodes[n] = node
            try node.start()
        }
        let bed = Bed(testbed: testbed)
        let clock = ContinuousClock()
        let began = clock.now

        for n in 1...3 { try start(n, peers: peers(1...3)) }
        var leader = try await eventually("a leader among 1-3", within: 15) { bed.leader(among: [1, 2, 3]) }
        print("live membership: leader \(leader)")

        // Enough writes that the leader compacts more than once.
        var written: [String: String] = [:]
        for i in 0..<100 {
            let key = "k\(i)"
            #expect(try await bed.put(key, "v\(i)", via: 1 + i % 3), "put \(key)")
            written[key] = "v\(i)"
        }
        let leaderSnapshot = bed.debug(leader)?["snapshotIndex"] as? Int ?? 0
        #expect(leaderSnapshot >= 2 * Self.snapshotCount, "the leader should have compacted (snapshot at \(leaderSnapshot))")

        // Add member 4 as a learner through a follower; the leader's snapshot predates it.
        let follower = [1, 2, 3].first { $0 != leader }!
        let add = bed.call(follower, "POST", "/v3/cluster/member/add",
                           "{\"ID\":\"4\",\"peerURLs\":[\"http://\(testbed.address(4)):\(Self.raftPort)\"],\"isLearner\":true}")
        #expect(add?.status == 200, "member add: \(add.map { "\($0.status) \($0.json)" } ?? "no answer")")
        let added = add?.json["member"] as? [String: Any]
        #expect(added?["ID"] as? String == "4" && added?["isLearner"] as? Bool == true)
        #expect(bed.memberList(follower) == ["1": false, "2": false, "3": false, "4": true])

        // Refusals leave the group as it is.
        let again = bed.call(leader, "POST", "/v3/cluster/member/add", "{\"ID\":4,\"peerURLs\":[\"http://\(testbed.address(4)):2380\"]}")
        #expect(again?.status == 409, "adding member 4 twice: \(again.map { "\($0.status) \($0.json)" } ?? "no answer")")
        let promoteVoter = bed.call(leader, "POST", "/v3/cluster/member/promote", "{\"ID\":\"\(follower)\"}")
        #expect(promoteVoter?.status == 400 && (promoteVoter?.json["error"] as? String)?.contains("only a learner") == true)
        let removeUnknown = bed.call(leader, "POST", "/v3/cluster/member/remove", "{\"ID\":\"7\"}")
        #expect(removeUnknown?.status == 404 && (removeUnknown?.json["error"] as? String)?.contains("not in the group") == true)
        #expect(bed.memberList(leader) == ["1": false, "2": false, "3": false, "4": true])

        // Member 4 starts empty and joins; it can only catch up through a snapshot listing it.
        try start(4, peers: peers(1...4), extra: ["--initial-cluster-state", "existing"])
        _ = try await eventually("member 4 to read the last write", within: 15) { bed.get("k99", via: 4) == "v99" ? true : nil }
        for (key, value) in written.sorted(by: { $0.key < $1.key }) {
            #expect(bed.get(key, via: 4) == value, "\(key) read through learner 4")
        }
        let learnerSnapshot = bed.debug(4)?["snapshotIndex"] as? Int ?? 0
        #expect(learnerSnapshot > leaderSnapshot, "member 4 should have loaded a snapshot newer than its addition (got \(learnerSnapshot))")
        leader = try await eventually("a leader among 1-3", within: 10) { bed.leader(among: [1, 2, 3]) }
        let caughtUp = try await eventually("learner 4 to match the leader's commit", within: 10) { () -> (String, Int)? in
            guard let p = bed.progress(of: 4, leader: leader), p.match == p.commit else { return nil }
            return (p.suffrage, p.commit)
        }
        #expect(caughtUp.0 == "learner")
        print("live membership: learner 4 caught up at \(caughtUp.1) from a snapshot at \(learnerSnapshot) (leader's before the add: \(leaderSnapshot))")

        // A follower cannot tell whether 4 has caught up: it refuses and points at the leader.
        let notLeader = [1, 2, 3].first { $0 != leader }!
        let viaFollower = bed.call(notLeader, "POST", "/v3/cluster/member/promote", "{\"ID\":4}")
        #expect(viaFollower?.status == 400 && (viaFollower?.json["error"] as? String)?.contains("send the promotion to the leader") == true,
                "promote via a follower: \(viaFollower.map { "\($0.status) \($0.json)" } ?? "no answer")")
        // Promote 4 through the leader (which checks it is in sync), then remove an original voter through 4.
        let promote = bed.call(leader, "POST", "/v3/cluster/member/promote", "{\"ID\":4}")
        #expect(promote?.status == 200, "promote: \(promote.map { "\($0.status) \($0.json)" } ?? "no answer")")
        #expect(bed.memberList(leader) == ["1": false, "2": false, "3": false, "4": false])
        let removed = [1, 2, 3].first { $0 != leader }!
        let remove = bed.call(4, "POST", "/v3/cluster/member/remove", "{\"ID\":\"\(removed)\"}")
        #expect(remove?.status == 200, "remove: \(remove.map { "\($0.status) \($0.json)" } ?? "no answer")")
        nodes[removed]?.kill9()
        let remaining = [1, 2, 3, 4].filter { $0 != removed }
        let expectedMembers = Dictionary(uniqueKeysWithValues: remaining.map { (String($0), false) })
        #expect(bed.memberList(4) == expectedMembers)
        leader = try await eventually("a leader among \(remaining)", within: 10) { bed.leader(among: remaining) }
        #expect(bed.progress(of: removed, leader: leader) == nil, "the leader still tracks removed member \(removed)")

        // The new group of three (one of them the new member) goes on writing and reading.
        for i in 100..<130 {
            let key = "k\(i)"
            #expect(try await bed.put(key, "v\(i)", via: remaining[i % remaining.count]), "put \(key) after the changes")
            written[key] = "v\(i)"
        }
        for (i, (key, value)) in written.sorted(by: { $0.key < $1.key }).enumerated() {
            let via = remaining[i % remaining.count]
            #expect(bed.get(key, via: via) == value, "\(key) read through \(via)")
        }
        for n in remaining where nodes[n]?.isRunning != true { Issue.record("member \(n) died; see \(dataRoot)/n\(n).log") }
        print("live membership: done in \(clock.now - began)")
        passed = remaining.allSatisfy { nodes[$0]?.isRunning == true }
    }

    /// Polls `value` every 100 ms until it is non-nil.
    func eventually<T>(_ what: String, within seconds: Double, _ value: () -> T?) async throws -> T {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let v = value() { return v }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CommandFailed(command: ["wait for \(what)"], status: -1, stderr: "timed out after \(seconds) s")
    }
}

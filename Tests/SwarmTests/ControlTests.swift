import Cluster
import Control
import Foundation
import Testing

@Suite struct NodeLivenessTests {
    @Test func aNodeIsDownAfterMissingItsHeartbeats() {
        var liveness = NodeLiveness(period: .seconds(1), missed: 3)
        liveness.heartbeat(from: "a", at: .seconds(10))
        liveness.heartbeat(from: "b", at: .seconds(11))
        #expect(liveness.isLive("a", at: .milliseconds(12_999)))
        #expect(liveness.expired(at: .milliseconds(12_999)).isEmpty)
        #expect(liveness.expired(at: .seconds(13)) == ["a"])
        #expect(liveness.expired(at: .seconds(14)) == ["a", "b"])
        // A late heartbeat brings it back.
        liveness.heartbeat(from: "a", at: .seconds(14))
        #expect(liveness.expired(at: .seconds(14)) == ["b"])
        #expect(liveness.nextDeadline == .seconds(14))
    }

    @Test func aNewLeaderGivesEveryNodeAFullGracePeriod() {
        var liveness = NodeLiveness(period: .milliseconds(500), missed: 3)
        liveness.track(["a", "b"], at: .seconds(100))
        // Tracking again does not move a deadline already set.
        liveness.track(["a"], at: .seconds(101))
        #expect(liveness.expired(at: .milliseconds(101_499)).isEmpty)
        #expect(liveness.expired(at: .milliseconds(101_500)) == ["a", "b"])
        liveness.forget("a")
        #expect(liveness.expired(at: .seconds(200)) == ["b"])
        liveness.forgetAll()
        #expect(liveness.expired(at: .seconds(200)).isEmpty && liveness.nextDeadline == nil)
        #expect(!liveness.isLive("b", at: .zero))
    }
}

@Suite struct NodeRulesTests {
    func node(_ id: String, _ hostname: String, role: SwarmRole = .worker, state: NodeState = .ready) -> SwarmNode {
        var node = SwarmNode(
            id: id, createdAt: Date(timeIntervalSince1970: 0), role: role,
            description: .init(hostname: hostname, os: "linux", architecture: "x86_64", nanoCPUs: 1, memoryBytes: 1, engineVersion: "0"),
            address: "192.0.2.1", manager: nil)
        node.state = state
        return node
    }

    @Test func nodesResolveByIDHostnameOrUniquePrefix() throws {
        let nodes = [node("abc123", "h1"), node("abd456", "h2"), node("xyz789", "h2b")]
        #expect(try NodeRules.resolve("abc123", in: nodes).id == "abc123")
        #expect(try NodeRules.resolve("h2", in: nodes).id == "abd456")
        #expect(try NodeRules.resolve("xy", in: nodes).id == "xyz789")
        #expect(throws: ControlError(.invalidArgument, "node ab is ambiguous (2 matches found)")) { try NodeRules.resolve("ab", in: nodes) }
        #expect(throws: ControlError(.notFound, "node nope not found")) { try NodeRules.resolve("nope", in: nodes) }
        #expect(throws: ControlError(.notFound, "node  not found")) { try NodeRules.resolve("", in: nodes) }
    }

    @Test func theLastManagerCannotBeDemoted() throws {
        let only = node("m1", "h1", role: .manager)
        #expect(throws: ControlError.rpc(.failedPrecondition, "FailedPrecondition", "attempting to demote the last manager of the swarm")) {
            try NodeRules.update(only, role: .worker, availability: .active, labels: [:], name: nil, among: [only])
        }
        // Drain and labels are recorded.
        let updated = try NodeRules.update(only, role: .manager, availability: .drain, labels: ["zone": "a"], name: "", among: [only])
        #expect(updated.availability == .drain && updated.labels == ["zone": "a"] && updated.name == nil)
    }

    @Test func demotingAManagerMustLeaveAQuorumUp() {
        let managers = [node("m1", "h1", role: .manager), node("m2", "h2", role: .manager, state: .down), node("m3", "h3", role: .manager)]
        // Of m1 and m2 left, only m1 is up: no quorum of 2.
        #expect(throws: ControlError.self) {
            try NodeRules.update(managers[2], role: .worker, availability: .active, labels: [:], name: nil, among: managers)
        }
        let allUp = managers.map { var n = $0; n.state = .ready; return n }
        #expect(throws: Never.self) {
            try NodeRules.update(allUp[2], role: .worker, availability: .active, labels: [:], name: nil, among: allUp)
        }
    }

    @Test func removalNeedsADownWorkerOrForce() throws {
        let worker = node("w1", "h4")
        #expect(throws: ControlError.rpc(.failedPrecondition, "FailedPrecondition", "node w1 is not down and can't be removed")) {
            try NodeRules.checkRemoval(worker, force: false)
        }
        try NodeRules.checkRemoval(worker, force: true)
        try NodeRules.checkRemoval(node("w2", "h5", state: .down), force: false)
        #expect(throws: ControlError.self) { try NodeRules.checkRemoval(node("m1", "h1", role: .manager, state: .down), force: true) }
    }

    @Test func theLastManagerLeavesOnlyWithForce() throws {
        let one = [node("m1", "h1", role: .manager)]
        #expect(throws: ControlError.self) { try NodeRules.checkLeave(managers: one, leaving: "m1", force: false) }
        try NodeRules.checkLeave(managers: one, leaving: "m1", force: true)
        let three = [node("m1", "h1", role: .manager), node("m2", "h2", role: .manager), node("m3", "h3", role: .manager, state: .down)]
        // m1 leaving leaves m2 alone up: below a quorum of 2.
        #expect(throws: ControlError.self) { try NodeRules.checkLeave(managers: three, leaving: "m1", force: false) }
        let allUp = three.map { var n = $0; n.state = .ready; return n }
        try NodeRules.checkLeave(managers: allUp, leaving: "m1", force: false)
    }
}

@Suite struct GossipKeyScheduleTests {
    let start = Date(timeIntervalSince1970: 1_000_000)

    @Test func aRotationInstallsThenUsesThenRemoves() throws {
        var keys = ["K1"]
        var rotation = GossipKeyRotation(step: .stable, since: start)
        var made = 0
        func step(at seconds: TimeInterval) -> Bool {
            guard let next = GossipKeySchedule.next(keys: keys, rotation: rotation, now: start + seconds, interval: .seconds(100),
                                                    settle: .seconds(5), newKey: { made += 1; return "K\(made + 1)" })
            else { return false }
            (keys, rotation) = next
            return true
        }
        #expect(!step(at: 99))
        #expect(step(at: 100))
        #expect(keys == ["K1", "K2"] && rotation.step == .installed)
        // Each step waits for the heartbeats to carry the last one.
        #expect(!step(at: 104))
        #expect(step(at: 105))
        #expect(keys == ["K2", "K1"] && rotation.step == .using)
        #expect(!step(at: 109))
        #expect(step(at: 110))
        #expect(keys == ["K2"] && rotation.step == .stable)
        #expect(!step(at: 209))
        #expect(step(at: 210))
        #expect(keys == ["K2", "K3"] && made == 2)
    }
}

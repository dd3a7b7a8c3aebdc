import Foundation
import Namespaces
import Synchronization
import Testing

/// Swarm mode with the stock docker CLI on the test bed: init, join with
/// tokens, nodes, the control plane's mutual TLS, leader failure and
/// restarts. Every daemon is a real process in its own host namespace.
@Suite(.serialized) struct SwarmTests {
    /// What the CLI prints for an error from the daemon.
    private func failure(_ body: () throws -> Any) -> String {
        do {
            _ = try body()
            return "(no error)"
        } catch let error as CommandFailure {
            return error.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            return "\(error)"
        }
    }

    @Test func formingASwarmWithTheStockCLIAndRefusedJoins() throws {
        try withTestbed(hosts: 6) { testbed in
            #expect(try testbed.docker("h1", ["info", "--format", "{{.Swarm.LocalNodeState}}"]).contains("inactive"))
            #expect(failure { try testbed.docker("h1", ["node", "ls"]) }.contains(
                "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."))

            let initOutput = try testbed.formSwarm(managers: ["h1", "h2", "h3"], workers: ["h4"])
            let nodeID = try testbed.docker("h1", ["info", "--format", "{{.Swarm.NodeID}}"]).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(initOutput.contains("Swarm initialized: current node (\(nodeID)) is now a manager."))
            let workerToken = try testbed.token("h1", "worker")
            #expect(initOutput.contains("docker swarm join --token \(workerToken) \(testbed.endpoint("h1"))"))
            #expect(workerToken.wholeMatch(of: /SWMTKN-1-[0-9a-z]{50}-[0-9a-z]{25}/) != nil)

            // Every manager lists the same nodes; a worker cannot.
            let expected = ["h1 Ready Active Leader", "h2 Ready Active Reachable", "h3 Ready Active Reachable", "h4 Ready Active"]
            for host in ["h1", "h2", "h3"] {
                #expect(eventually(5) { (try? testbed.nodes(host)) == expected }, "node ls on \(host): \((try? testbed.nodes(host)) ?? [])")
            }
            #expect(failure { try testbed.docker("h4", ["node", "ls"]) }.contains("Worker nodes can't be used to view or modify cluster state"))
            #expect(try testbed.docker("h4", ["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"]).contains("active false"))
            #expect(try testbed.docker("h2", ["info", "--format", "{{.Swarm.ControlAvailable}} {{.Swarm.Managers}} {{.Swarm.Nodes}}"])
                .contains("true 3 4"))

            // Refused joins: each with Docker's message, and h5 stays out.
            let managerToken = try testbed.token("h1", "manager")
            let wrongSecret = String(workerToken.dropLast(25)) + String(repeating: "a", count: 25)
            #expect(failure { try testbed.docker("h5", ["swarm", "join", "--token", wrongSecret, testbed.endpoint("h1")]) }
                .contains("A valid join token is necessary to join this cluster"))
            #expect(failure { try testbed.docker("h5", ["swarm", "join", "--token", "SWMTKN-1-nope", testbed.endpoint("h1")]) }
                .contains("invalid join token: it has 3 parts separated by '-', not 4"))
            try testbed.docker("h6", ["swarm", "init"])
            let foreign = try testbed.token("h6", "worker")
            #expect(failure { try testbed.docker("h5", ["swarm", "join", "--token", foreign, testbed.endpoint("h1")]) }
                .contains("remote CA does not match fingerprint. Expected: "))
            try testbed.docker("h1", ["swarm", "join-token", "--rotate", "worker"])
            #expect(failure { try testbed.docker("h5", ["swarm", "join", "--token", workerToken, testbed.endpoint("h1")]) }
                .contains("A valid join token is necessary to join this cluster"))
            #expect(try testbed.docker("h5", ["info", "--format", "{{.Swarm.LocalNodeState}}"]).contains("inactive"))
            #expect(!FileManager.default.fileExists(atPath: testbed.swarmDirectory("h5")))
            #expect(try testbed.nodes("h1").count == 4)
            #expect(managerToken == (try testbed.token("h1", "manager")), "rotating the worker token leaves the manager token")

            // The new token works; addresses may name an interface.
            #expect(failure { try testbed.docker("h5", ["swarm", "join", "--advertise-addr", "nosuch0", "--token", try testbed.token("h2", "worker"),
                                                        testbed.endpoint("h2")]) }.contains("advertise address must be"))
            try testbed.docker("h5", ["swarm", "join", "--advertise-addr", "eth0", "--listen-addr", "eth0:2377",
                                      "--token", try testbed.token("h2", "worker"), testbed.endpoint("h2")])
            #expect(try testbed.docker("h1", ["node", "inspect", "h5", "--format", "{{.Status.Addr}}"])
                .contains(testbed.hosts[4].address.description))
            #expect(eventually(5) { (try? testbed.nodes("h3"))?.contains("h5 Ready Active") == true })

            // Cluster writes answer on every manager (each allocates in
            // Raft), and every manager reads them at once.
            try testbed.docker("h2", ["network", "create", "-d", "overlay", "--subnet", "10.61.0.0/24", "anywhere"])
            #expect(try testbed.docker("h1", ["network", "ls", "--format", "{{.Name}}"]).contains("anywhere"))
            #expect(failure { try testbed.docker("h3", ["network", "create", "-d", "overlay", "--subnet", "10.61.0.0/24", "clash"]) }
                .contains("overlaps network anywhere"))
            #expect(failure { try testbed.docker("h4", ["network", "create", "-d", "overlay", "nope"]) }
                .contains("Worker nodes can't be used to view or modify cluster state"))
            try testbed.docker("h3", ["network", "rm", "anywhere"])
            #expect(try !testbed.docker("h1", ["network", "ls", "--format", "{{.Name}}"]).contains("anywhere"))

            // Drain is recorded, seen from another manager.
            try testbed.docker("h1", ["node", "update", "--availability", "drain", "h5"])
            #expect(try testbed.docker("h3", ["node", "inspect", "h5", "--format", "{{.Spec.Availability}}"]).contains("drain"))
            let pretty = try testbed.docker("h2", ["node", "inspect", "--pretty", "self"])
            #expect(pretty.contains("Hostname:") && pretty.contains("h2") && pretty.contains("Manager Status:"))

            // Filters, and settings through `docker swarm update`.
            let managers = try testbed.docker("h1", ["node", "ls", "--filter", "role=manager", "--format", "{{.Hostname}}"])
            #expect(managers.split(separator: "\n").sorted() == ["h1", "h2", "h3"])
            try testbed.docker("h1", ["swarm", "update", "--dispatcher-heartbeat", "2s", "--task-history-limit", "7"])
            let settings = try testbed.docker("h2", ["info", "--format", "{{.Swarm.Cluster.Spec.Dispatcher.HeartbeatPeriod}} {{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}}"])
            #expect(settings.contains("2s 7"), "\(settings)")
            try testbed.docker("h1", ["swarm", "update", "--dispatcher-heartbeat", "750ms"])

            // Bad input: clear errors, nothing changed.
            #expect(failure { try testbed.docker("h1", ["swarm", "init"]) }.contains("This node is already part of a swarm."))
            #expect(failure { try testbed.docker("h4", ["swarm", "join", "--token", managerToken, testbed.endpoint("h1")]) }
                .contains("This node is already part of a swarm."))
            #expect(failure { try testbed.docker("h6", ["swarm", "leave"]) }.contains("Removing the last manager erases all current state of the swarm"))
            try testbed.docker("h6", ["swarm", "leave", "--force"])
            #expect(failure { try testbed.docker("h6", ["swarm", "init", "--advertise-addr", "300.1.2.3"]) }
                .contains("advertise address must be a non-zero IPv4 address"))
            #expect(try testbed.docker("h6", ["info", "--format", "{{.Swarm.LocalNodeState}}"]).contains("inactive"))
            #expect(failure { try testbed.docker("h1", ["node", "rm", "h4"]) }.contains("node \(try testbed.docker("h1", ["node", "inspect", "h4", "--format", "{{.ID}}"]).trimmingCharacters(in: .whitespacesAndNewlines)) is not down and can't be removed"))
            #expect(failure { try testbed.docker("h1", ["node", "rm", "--force", "h2"]) }.contains("It must be demoted to worker before removal"))
            #expect(failure { try testbed.docker("h1", ["node", "update", "--availability", "sleepy", "h4"]) }.contains("invalid"))
            #expect(try testbed.nodes("h1").count == 5)

            // A worker that leaves is shown down until it is removed.
            try testbed.docker("h5", ["swarm", "leave"])
            #expect(try testbed.docker("h5", ["info", "--format", "{{.Swarm.LocalNodeState}}"]).contains("inactive"))
            #expect(eventually(10) { (try? testbed.nodes("h1"))?.contains("h5 Down Drain") == true })
            try testbed.docker("h1", ["node", "rm", "h5"])
            #expect(try testbed.nodes("h1").count == 4)
        }
    }

    @Test func theControlPlaneRefusesPeersWithoutTheRightCertificate() throws {
        try withTestbed(hosts: 4) { testbed in
            try testbed.formSwarm(managers: ["h1"], workers: ["h2"])
            try testbed.docker("h3", ["swarm", "init"]) // another swarm, whose manager certificate is valid, but not here

            // h4 is a rogue on the underlay, with no certificate.
            let anonymous = try testbed.curlEndpoint(from: "h4", to: "h1", "POST", "/swarmnet/heartbeat", body: "{\"address\":\"192.0.2.14\"}",
                                                     certificateOf: nil)
            #expect(anonymous.status == 403 && anonymous.body.contains("a node certificate of this swarm is required"))
            #expect(try testbed.curlEndpoint(from: "h4", to: "h1", "GET", "/swarmnet/raft", certificateOf: nil).status == 403)
            // The pre-swarm cluster API is gone from the port: plain HTTP gets no answer.
            let plain = try? TestHost.run(["ip", "netns", "exec", "\(testbed.lab.prefix)h4", "curl", "-s", "-m", "3", "-X", "POST",
                                           "http://\(testbed.endpoint("h1"))/swarmnet/cluster/endpoints", "-d", "{}"])
            #expect(plain == nil)
            // Raft's port demands a certificate before anything else.
            let raftAddress = testbed.endpoint("h1").replacingOccurrences(of: ":2377", with: ":2378")
            let noCertificate = try? TestHost.run(["ip", "netns", "exec", "\(testbed.lab.prefix)h4", "sh", "-c",
                                                   "printf x | timeout 5 openssl s_client -connect \(raftAddress) -quiet 2>&1"])
            #expect(noCertificate.map { $0.contains("certificate required") } ?? true)

            // A worker's certificate: heartbeats yes, manager calls no, Raft no.
            let heartbeat = try testbed.curlEndpoint(from: "h4", to: "h1", "POST", "/swarmnet/heartbeat", body: "{\"address\":\"192.0.2.12\"}",
                                                     certificateOf: "h2")
            #expect(heartbeat.status == 200)
            let raftStatus = try testbed.curlEndpoint(from: "h4", to: "h1", "GET", "/swarmnet/raft", certificateOf: "h2")
            #expect(raftStatus.status == 403 && raftStatus.body.contains("is not a manager"))
            let certificates = testbed.swarmDirectory("h2") + "/certificates"
            _ = try? TestHost.run(["ip", "netns", "exec", "\(testbed.lab.prefix)h4", "sh", "-c",
                                   "printf x | timeout 5 openssl s_client -connect \(raftAddress) -cert \(certificates)/swarm-node.crt -key \(certificates)/swarm-node.key -quiet 2>&1"])
            #expect(eventually(5) { testbed.log("h1").contains("(worker) is not a manager") })
            // Another swarm's certificates: neither side verifies the other
            // (curl, trusting h3's CA, refuses h1's certificate).
            let other = try? testbed.curlEndpoint(from: "h4", to: "h1", "GET", "/swarmnet/raft", certificateOf: "h3")
            #expect(other == nil)

            // A worker allocates addresses only in its own name.
            let managerEngine = try String(contentsOfFile: testbed.stateDirectory("h1") + "/node-id", encoding: .utf8)
            let forged = try testbed.curlEndpoint(
                from: "h4", to: "h1", "POST", "/swarmnet/cluster/endpoints",
                body: "{\"endpointID\":\"e1\",\"network\":\"x\",\"node\":\"\(managerEngine)\",\"nodeName\":\"h1\",\"namespacePath\":\"/run/netns/x\",\"name\":\"x\",\"vtep\":\"192.0.2.11\"}",
                certificateOf: "h2")
            #expect(forged.status == 403 && forged.body.contains("may allocate only for itself"), "\(forged)")

            // A daemon in no swarm binds no gossip socket (h4's); one in a
            // swarm does (h2's), with the swarm's keys.
            let strayGossip = try testbed.gossipSockets("h4")
            #expect(strayGossip.isEmpty, "\(strayGossip)")
            #expect(try testbed.gossipSockets("h2").count == 1)
            // Gossip is encrypted in a swarm: a keyless gossip node on the
            // underlay hears nobody.
            let control = testbed.root + "/rogue-gossip.sock"
            let rogue = Process()
            rogue.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            rogue.arguments = ["--net=/run/netns/\(testbed.lab.prefix)h4", testbed.binDirectory + "/gossip-node", "--name", "rogue",
                               "--bind", "\(testbed.hosts[3].address):7947", "--join", "\(testbed.hosts[0].address):7946",
                               "--profile", "fast", "--control", control]
            rogue.standardOutput = FileHandle.nullDevice
            rogue.standardError = FileHandle.nullDevice
            try rogue.run()
            defer {
                rogue.terminate()
                rogue.waitUntilExit()
            }
            sleep(3)
            // The swarm's nodes never hear the rogue.
            for host in ["h1", "h2"] {
                let peers = try testbed.swarmnet(host, ["debug", "peers", "--format", "json"])
                #expect(!peers.contains("rogue"), "\(host) hears the rogue: \(peers)")
            }
            #expect(try testbed.nodes("h1") == ["h1 Ready Active Leader", "h2 Ready Active"])
        }
    }

    @Test func leaderFailureRestartsAndDeadNodes() throws {
        try withTestbed(hosts: 4) { testbed in
            try testbed.formSwarm(managers: ["h1", "h2", "h3"], workers: ["h4"])
            #expect(eventually(5) { (try? testbed.nodes("h3"))?.count == 4 })

            // Kill the leader: another is elected and every write that was
            // acknowledged survives.
            testbed.kill9("h1")
            var acknowledged: [String] = []
            let deadline = Date().addingTimeInterval(20)
            while acknowledged.count < 5 && Date() < deadline {
                let label = "w\(acknowledged.count)=\(acknowledged.count)"
                if (try? testbed.docker(acknowledged.count % 2 == 0 ? "h2" : "h3", ["node", "update", "--label-add", label, "h4"])) != nil {
                    acknowledged.append(label)
                }
            }
            #expect(acknowledged.count == 5, "writes after the leader died: \(acknowledged)")
            #expect(eventually(10) { (try? testbed.nodes("h2"))?.contains("h1 Down Active Unreachable") == true })
            let leaders = try testbed.nodes("h2").filter { $0.hasSuffix("Leader") }
            #expect(leaders.count == 1 && !leaders[0].hasPrefix("h1"))

            // The old leader comes back as a follower and catches up.
            try testbed.start("h1")
            #expect(eventually(10) { (try? testbed.nodes("h1"))?.contains("h1 Ready Active Reachable") == true })
            #expect(eventually(5) {
                let labels = (try? testbed.docker("h1", ["node", "inspect", "h4", "--format", "{{json .Spec.Labels}}"])) ?? ""
                return acknowledged.allSatisfy { labels.contains("\"\($0.split(separator: "=")[0])\":\"\($0.split(separator: "=")[1])\"") }
            })

            // Every daemon restarts: the swarm is intact.
            let before = try testbed.docker("h2", ["node", "ls", "--format", "{{.ID}} {{.Hostname}}"])
            for host in ["h1", "h2", "h3", "h4"] { testbed.stop(host) }
            for host in ["h1", "h2", "h3", "h4"] { try testbed.start(host) }
            #expect(eventually(15) { (try? testbed.nodes("h3")).map { $0.count == 4 && $0.allSatisfy { $0.contains("Ready") } } == true })
            #expect(try testbed.docker("h1", ["node", "ls", "--format", "{{.ID}} {{.Hostname}}"]) == before)

            // A dead worker is marked down; once removed, it is refused and
            // leaves the swarm when it comes back, and the addresses it held
            // are released (they no longer block `network rm`).
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.78.0.0/24", "held"])
            #expect(eventually(5) { (try? testbed.docker("h4", ["network", "ls", "--format", "{{.Name}}"]))?.contains("held") == true })
            let workload = try testbed.workload("w4")
            try testbed.docker("h4", ["network", "connect", "held", workload.name!])
            testbed.kill9("h4")
            let killed = Date()
            #expect(eventually(10) { (try? testbed.nodes("h2"))?.contains("h4 Down Active") == true })
            let down = Date().timeIntervalSince(killed)
            #expect(down < 6, "a dead worker took \(down) s to be marked down")
            #expect(failure { try testbed.docker("h1", ["network", "rm", "held"]) }.contains("endpoint"))
            try testbed.docker("h2", ["node", "rm", "h4"])
            #expect(eventually(5) { (try? testbed.docker("h1", ["network", "rm", "held"])) != nil })
            try testbed.start("h4")
            #expect(eventually(10) {
                (try? testbed.docker("h4", ["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.Error}}"]))?.contains("inactive node") == true
            })
            #expect(try testbed.nodes("h1").count == 3)
        }
    }

    /// The cluster's networks and addresses live in Raft: with the node
    /// that created them dead, the other managers create networks and hand
    /// out addresses; managers allocating at once never hand out the same
    /// address; workers learn the definitions from the leader's heartbeat
    /// answers. `ip -j` reads the addresses the workloads got.
    @Test func allocationsLiveInRaftAndOutliveTheNodeThatMadeThem() throws {
        try withTestbed(hosts: 4) { testbed in
            try testbed.formSwarm(managers: ["h1", "h2", "h3"], workers: ["h4"])
            #expect(eventually(10) { (try? testbed.nodes("h3"))?.count == 4 })
            /// The workload's IPv4 addresses inside `subnet` (a "10.79." prefix).
            func addresses(_ workload: NetworkNamespace, in subnet: String) throws -> [String] {
                let json = try TestHost.run(["ip", "-n", workload.name!, "-j", "-4", "addr", "show"])
                let links = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] ?? []
                return links.flatMap { ($0["addr_info"] as? [[String: Any]] ?? []).compactMap { $0["local"] as? String } }
                    .filter { $0.hasPrefix(subnet) }
            }
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--attachable", "--subnet", "10.79.0.0/24", "blue"])
            let a = try testbed.workload("a")
            try testbed.docker("h4", ["network", "connect", "blue", a.name!])
            let first = try addresses(a, in: "10.79.")
            #expect(first.count == 1, "\(first)")

            // h1 made the network and led the swarm: it dies.
            testbed.kill9("h1")
            var created = false
            let deadline = Date().addingTimeInterval(20)
            while !created && Date() < deadline {
                created = (try? testbed.docker("h2", ["network", "create", "-d", "overlay", "--attachable", "--subnet", "10.79.1.0/24", "green"])) != nil
                if !created { usleep(200_000) }
            }
            #expect(created, "no network could be created after the first leader died")
            #expect(eventually(5) { (try? testbed.docker("h4", ["network", "ls", "--format", "{{.Name}}"]))?.contains("green") == true })

            // Addresses on the dead node's network, and on the new one, from
            // two managers and the worker at once: all different.
            let names = ["b", "c", "d", "e", "f", "g"]
            let hosts = ["h2", "h3", "h4", "h2", "h3", "h4"]
            let workloads = try names.map { try testbed.workload($0) }
            let outcomes = Mutex<[String]>([])
            DispatchQueue.concurrentPerform(iterations: workloads.count) { index in
                let network = index % 2 == 0 ? "blue" : "green"
                do { try testbed.docker(hosts[index], ["network", "connect", network, workloads[index].name!]) } catch {
                    outcomes.withLock { $0.append("\(hosts[index]) \(network): \(error)") }
                }
            }
            #expect(outcomes.withLock { $0 }.isEmpty, "\(outcomes.withLock { $0 })")
            let all = try ([a] + workloads).flatMap { try addresses($0, in: "10.79.") }
            #expect(all.count == 7 && Set(all).count == 7, "addresses handed out: \(all.sorted())")
            // The overlay works between a worker and a manager that never
            // heard of the network's creator.
            let onH3 = try addresses(workloads[1], in: "10.79.1.")
            #expect(eventually(5) { (try? TestHost.run(["ip", "netns", "exec", workloads[5].name!, "ping", "-c", "1", "-W", "1", onH3[0]])) != nil })

            // The network in use is refused removal; once empty, it goes,
            // on the worker too.
            #expect(failure { try testbed.docker("h3", ["network", "rm", "blue"]) }.contains("active endpoints"))
            for (index, workload) in ([a] + workloads).enumerated() where index == 0 || (index - 1) % 2 == 0 {
                try testbed.docker(index == 0 ? "h4" : hosts[index - 1], ["network", "disconnect", "blue", workload.name!])
            }
            try testbed.docker("h3", ["network", "rm", "blue"])
            #expect(eventually(5) { (try? testbed.docker("h4", ["network", "ls", "--format", "{{.Name}}"]))?.contains("blue") == false })

            // The first leader comes back as a follower with the swarm's
            // definitions, and allocates past every address in use.
            try testbed.start("h1")
            #expect(eventually(10) { (try? testbed.docker("h1", ["network", "ls", "--format", "{{.Name}}"])).map { $0.contains("green") && !$0.contains("blue") } == true })
            let h = try testbed.workload("h")
            try testbed.docker("h1", ["network", "connect", "green", h.name!])
            let greens = try ([h] + workloads).flatMap { try addresses($0, in: "10.79.1.") }
            #expect(greens.count == 4 && Set(greens).count == 4, "\(greens.sorted())")
        }
    }

    /// A node in no swarm keeps its networks in its own store; `swarm
    /// init` carries them, with their allocations, into the swarm's store,
    /// and the local store is emptied; a node that leaves the swarm loses
    /// the swarm's networks (as Docker's swarm-scoped ones go) and has a
    /// store of its own again.
    @Test func aLoneNodesStoreGoesIntoTheSwarmAtInitAndANodeThatLeavesHasItsOwnAgain() throws {
        try withTestbed(hosts: 2) { testbed in
            func names(_ host: String) -> [String] {
                ((try? testbed.docker(host, ["network", "ls", "--format", "{{.Name}}"])) ?? "").split(separator: "\n").map(String.init).sorted()
            }
            func address(_ host: String, _ workload: NetworkNamespace) throws -> String {
                try ServiceTests.address(of: workload.name!, in: "10.95.0.")
            }
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.95.0.0/24", "early"])
            let w1 = try testbed.workload("w1"), w2 = try testbed.workload("w2")
            try testbed.docker("h1", ["network", "connect", "early", w1.name!])
            #expect(try address("h1", w1) == "10.95.0.2")
            #expect(names("h2").isEmpty, "another lone node knows nothing of it")

            try testbed.formSwarm(managers: ["h1"], workers: ["h2"])
            // The swarm took the network and its allocation: the worker's
            // endpoint gets the next address, and the two reach each other.
            #expect(eventually(10) { (try? testbed.docker("h2", ["network", "connect", "early", w2.name!])) != nil })
            #expect(try address("h2", w2) == "10.95.0.3")
            #expect(eventually(10) {
                (try? TestHost.run(["ip", "netns", "exec", w2.name!, "ping", "-c", "1", "-W", "1", "10.95.0.2"])) != nil
            })
            #expect(try testbed.docker("h1", ["network", "inspect", "early", "--format", "{{.Scope}}"]).contains("swarm"))

            // h2 leaves: the swarm's network goes from it once its endpoint
            // is gone, and its own store takes a network of that name.
            try testbed.docker("h2", ["network", "disconnect", "early", w2.name!])
            try testbed.docker("h2", ["swarm", "leave"])
            #expect(eventually(10) { names("h2").isEmpty }, "\(names("h2"))")
            try testbed.docker("h2", ["network", "create", "-d", "overlay", "--subnet", "10.96.0.0/24", "early"])
            #expect(names("h2") == ["early"])
            #expect(try testbed.docker("h1", ["network", "inspect", "early", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}"])
                .contains("10.95.0.0/24"), "the swarm's network is unchanged")
        }
    }

    @Test func overlayNetworksWorkInASwarmWithEncryptedGossip() throws {
        try withTestbed(hosts: 2) { testbed in
            try testbed.formSwarm(managers: ["h1"], workers: ["h2"])
            // Both hold the swarm's gossip key, handed over TLS.
            let keys = try ["h1", "h2"].map { try testbed.swarmnet($0, ["gossip", "keys", "--format", "json"]) }
            #expect(keys[0] == keys[1] && keys[0].contains("\"primary\" : true"), "\(keys)")
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.77.0.0/24", "red"])
            #expect(eventually(5) { (try? testbed.docker("h2", ["network", "ls", "--format", "{{.Name}}"]))?.contains("red") == true })
            let a = try testbed.workload("a"), b = try testbed.workload("b")
            try testbed.docker("h1", ["network", "connect", "red", a.name!])
            // The worker's address comes from the manager over TLS.
            try testbed.docker("h2", ["network", "connect", "red", b.name!])
            let address = try TestHost.run(["ip", "-n", b.name!, "-4", "-br", "addr", "show", "dev", "eth0"])
                .split(separator: " ").first { $0.hasPrefix("10.77.") }.map { String($0.split(separator: "/")[0]) }
            let target = try #require(address)
            #expect(eventually(5) { (try? TestHost.run(["ip", "netns", "exec", a.name!, "ping", "-c", "1", "-W", "1", target])) != nil })

            // Heartbeats ride one session per node, and the work watch
            // another: over several periods the manager holds the same four
            // connections (h1's own two and h2's).
            func sessions() throws -> Set<String> {
                let lines = try TestHost.run(["ip", "netns", "exec", "\(testbed.lab.prefix)h1", "ss", "-Htn", "state", "established",
                                              "( sport = :2377 )"])
                return Set(lines.split(separator: "\n").compactMap { $0.split(separator: " ", omittingEmptySubsequences: true).last.map(String.init) })
            }
            let before = try sessions()
            sleep(3)
            let after = try sessions()
            #expect(before.count == 4 && after == before, "\(before) then \(after)")
        }
    }

    @Test func promoteDemoteAndLosingTheQuorum() throws {
        try withTestbed(hosts: 3) { testbed in
            try testbed.formSwarm(managers: ["h1"], workers: ["h2", "h3"])
            let promoted = try testbed.docker("h1", ["node", "promote", "h2", "h3"])
            #expect(promoted.contains("Node h2 promoted to a manager in the swarm.") && promoted.contains("Node h3 promoted to a manager in the swarm."))
            #expect(eventually(15) { (try? testbed.nodes("h1")) == ["h1 Ready Active Leader", "h2 Ready Active Reachable", "h3 Ready Active Reachable"] })
            // h3 now holds a manager's certificate and answers manager calls.
            let subject = try TestHost.run(["openssl", "x509", "-noout", "-subject", "-in",
                                            testbed.swarmDirectory("h3") + "/certificates/swarm-node.crt"])
            #expect(subject.contains("OU = swarm-manager"))
            #expect(eventually(10) { (try? testbed.nodes("h3"))?.count == 3 })
            // Raft's own view: three voters, read from the leader.
            #expect(eventually(10) {
                let raft = (try? testbed.swarmnet("h1", ["debug", "raft", "--format", "json"])) ?? ""
                return raft.components(separatedBy: "\"suffrage\" : \"voter\"").count == 4
            })

            // The three are voters: with h1 dead, h2 and h3 still commit.
            testbed.kill9("h1")
            #expect(eventually(10) { (try? testbed.docker("h2", ["node", "update", "--label-add", "after=kill", "h3"])) != nil })
            try testbed.start("h1")
            #expect(eventually(10) { (try? testbed.nodes("h2"))?.contains("h1 Ready Active Reachable") == true })

            // Demotion: the node leaves Raft and takes a worker's certificate.
            let demoted = try testbed.docker("h1", ["node", "demote", "h3"])
            #expect(demoted.contains("Manager h3 demoted in the swarm."))
            #expect(eventually(15) { (try? testbed.nodes("h1"))?.contains("h3 Ready Active") == true })
            #expect(eventually(10) {
                (try? TestHost.run(["openssl", "x509", "-noout", "-subject", "-in", testbed.swarmDirectory("h3") + "/certificates/swarm-node.crt"]))?
                    .contains("OU = swarm-worker") == true
            })
            #expect(eventually(5) { failure { try testbed.docker("h3", ["node", "ls"]) }.contains("Worker nodes can't be used") })

            // Two managers, one dies: no quorum. Writes get Docker's message;
            // reads still answer, and the data plane keeps carrying traffic.
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.62.0.0/24", "steady"])
            #expect(eventually(5) { (try? testbed.docker("h3", ["network", "ls", "--format", "{{.Name}}"]))?.contains("steady") == true })
            let a = try testbed.workload("a"), b = try testbed.workload("b")
            try testbed.docker("h1", ["network", "connect", "steady", a.name!])
            try testbed.docker("h3", ["network", "connect", "steady", b.name!])
            let target = try #require(try TestHost.run(["ip", "-n", b.name!, "-4", "-br", "addr", "show", "dev", "eth0"])
                .split(separator: " ").first { $0.hasPrefix("10.62.") }.map { String($0.split(separator: "/")[0]) })
            testbed.kill9("h2")
            #expect(eventually(15) {
                failure { try testbed.docker("h1", ["node", "update", "--label-add", "lost=quorum", "h3"]) }
                    .contains("The swarm does not have a leader. It's possible that too few managers are online.")
            })
            #expect(try testbed.nodes("h1").count == 3)
            #expect(eventually(5) { (try? TestHost.run(["ip", "netns", "exec", a.name!, "ping", "-c", "1", "-W", "1", target])) != nil },
                    "the overlay works without a quorum")
            try testbed.start("h2")
            #expect(eventually(15) { (try? testbed.docker("h1", ["node", "update", "--label-add", "back=again", "h3"])) != nil })
            try testbed.docker("h1", ["node", "demote", "h2"])
            #expect(failure { try testbed.docker("h1", ["node", "demote", "h1"]) }.contains("attempting to demote the last manager of the swarm"))
        }
    }

    @Test func aPartitionedMinorityRefusesWritesAndEverythingConvergesAfterTheHeal() throws {
        try withTestbed(hosts: 3) { testbed in
            try testbed.formSwarm(managers: ["h1", "h2", "h3"], workers: [])
            #expect(eventually(10) { (try? testbed.nodes("h3")) == ["h1 Ready Active Leader", "h2 Ready Active Reachable", "h3 Ready Active Reachable"] })
            // Cut h1 (the leader) off from the other two with nftables in its
            // namespace, both ways.
            try testbed.partition("h1", from: ["h2", "h3"])
            defer { testbed.heal("h1") }

            // The majority elects a leader and takes writes.
            #expect(eventually(15) { (try? testbed.docker("h2", ["node", "update", "--label-add", "side=majority", "h3"])) != nil })
            #expect(eventually(10) { (try? testbed.nodes("h2"))?.contains("h1 Down Active Unreachable") == true })
            // The minority refuses them, with Docker's message once it knows it
            // has lost the quorum.
            #expect(eventually(15) {
                failure { try testbed.docker("h1", ["node", "update", "--label-add", "side=minority", "h2"]) }
                    .contains("The swarm does not have a leader")
            })

            // Healed: everything converges on the majority's history.
            testbed.heal("h1")
            #expect(eventually(15) { (try? testbed.nodes("h1"))?.allSatisfy { $0.contains("Ready") } == true })
            for host in ["h1", "h2", "h3"] {
                #expect(eventually(10) {
                    let labels = (try? testbed.docker(host, ["node", "inspect", "h3", "--format", "{{json .Spec.Labels}}"])) ?? ""
                    return labels.contains("\"side\":\"majority\"")
                }, "h3's labels on \(host)")
                let h2Labels = try testbed.docker(host, ["node", "inspect", "h2", "--format", "{{json .Spec.Labels}}"])
                #expect(!h2Labels.contains("minority"), "the minority's write was never applied")
            }
            #expect(Set(try ["h1", "h2", "h3"].map { try testbed.nodes($0).joined(separator: ",") }).count == 1, "node ls is the same on every manager")
        }
    }

    @Test func theLeaderRotatesTheGossipKeyWithoutAGap() throws {
        try withTestbed(hosts: 2, daemonArguments: ["--gossip-key-rotation", "3"]) { testbed in
            try testbed.formSwarm(managers: ["h1"], workers: ["h2"])
            func keys(_ host: String) -> String {
                (try? testbed.swarmnet(host, ["gossip", "keys", "--format", "json"])) ?? ""
            }
            let first = keys("h1")
            // A full rotation (install, use, remove) every few seconds: both
            // nodes follow it and keep hearing each other.
            #expect(eventually(20) { let now = keys("h1"); return now != first && now.components(separatedBy: "fingerprint").count == 2 && now == keys("h2") },
                    "h1 \(keys("h1")), h2 \(keys("h2"))")
            #expect(testbed.log("h1").contains("gossip key rotation"))
            for host in ["h1", "h2"] {
                let peers = try testbed.swarmnet(host, ["debug", "peers", "--format", "json"])
                #expect(!peers.contains("\"dead\"") && !peers.contains("suspect"), "\(host): \(peers)")
            }
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.79.0.0/24", "rotating"])
            #expect(eventually(10) { (try? testbed.docker("h2", ["network", "ls", "--format", "{{.Name}}"]))?.contains("rotating") == true })
        }
    }

    @Test func forceNewClusterRecoversAManagerWhoseQuorumIsGone() throws {
        try withTestbed(hosts: 4) { testbed in
            try testbed.formSwarm(managers: ["h1", "h2", "h3"], workers: ["h4"])
            try testbed.docker("h1", ["node", "update", "--label-add", "kept=yes", "h4"])
            #expect(eventually(10) { (try? testbed.nodes("h1"))?.filter { $0.contains("Reachable") || $0.contains("Leader") }.count == 3 })
            // Two of three managers are gone for good.
            testbed.kill9("h2")
            testbed.kill9("h3")
            #expect(eventually(15) {
                failure { try testbed.docker("h1", ["node", "update", "--label-add", "x=y", "h4"]) }.contains("does not have a leader")
            })
            let output = try testbed.docker("h1", ["swarm", "init", "--force-new-cluster"])
            #expect(output.contains("Swarm initialized"))
            // The swarm goes on: its state is kept and writes commit.
            try testbed.docker("h1", ["node", "update", "--label-add", "after=recovery", "h4"])
            let labels = try testbed.docker("h1", ["node", "inspect", "h4", "--format", "{{json .Spec.Labels}}"])
            #expect(labels.contains("\"kept\":\"yes\"") && labels.contains("\"after\":\"recovery\""))
            #expect(eventually(10) { (try? testbed.nodes("h1"))?.contains("h4 Ready Active") == true })
            // The dead managers are demoted and removed like any dead node.
            #expect(eventually(10) { (try? testbed.nodes("h1"))?.contains("h2 Down Active") == true })
            try testbed.docker("h1", ["node", "demote", "h2", "h3"])
            try testbed.docker("h1", ["node", "rm", "h2", "h3"])
            #expect(try testbed.nodes("h1") == ["h1 Ready Active Leader", "h4 Ready Active"])
        }
    }
}

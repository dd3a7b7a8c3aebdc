import Foundation
import Synchronization
import Testing
import TestKit

/// Swarm services with the stock docker CLI on the test bed: tasks run as
/// real containers on every host, are spread, scaled, drained, replaced
/// when their node dies and stopped when it comes back; the routing mesh
/// answers on every host. Second readers: `runc list/state` on each host,
/// `nft -j` for the mesh, curl through the mesh.
@Suite(.serialized) struct OrchestrationTests {
    /// A swarm of one manager (h1) and `workers` workers, with the test
    /// images loaded on every host.
    func withSwarm(workers: Int = 2, _ body: (Testbed) throws -> Void) throws {
        try KernelIntegrationTests.withSwarm(hosts: 1 + workers, images: ["busybox", "whoami"], body)
    }

    /// `docker service ps` as "NAME NODE DESIRED CURRENT-STATE-WORD" lines.
    func tasks(_ testbed: Testbed, _ service: String, running: Bool = true) throws -> [String] {
        var arguments = ["service", "ps", service, "--no-trunc", "--format", "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}"]
        if running { arguments += ["--filter", "desired-state=running"] }
        return try testbed.docker("h1", arguments).split(separator: "\n").map {
            $0.split(separator: " ").prefix(4).joined(separator: " ")
        }
    }

    /// The containers runc runs on `host` (the executor's second reader).
    func runningContainers(_ testbed: Testbed, _ host: String) throws -> [String] {
        let list = try TestHost.run(["runc", "--root", testbed.runtimeRoot(host), "list", "--format", "json"])
        // `null` when there are none.
        let entries = (try JSONSerialization.jsonObject(with: Data(list.utf8), options: .fragmentsAllowed) as? [[String: Any]]) ?? []
        return entries.filter { $0["status"] as? String == "running" }.compactMap { $0["id"] as? String }
    }

    /// What runs where, for a failure's message.
    func placement(_ testbed: Testbed) -> String {
        let containers = ["h1", "h2", "h3"].map { "\($0): \((try? runningContainers(testbed, $0)) ?? [])" }.joined(separator: "; ")
        return containers + " | " + ((try? tasks(testbed, "web", running: false)) ?? []).joined(separator: ", ")
    }

    /// The hostname that answers `curl http://ADDRESS:PORT/` from `host`'s namespace.
    func answer(_ testbed: Testbed, from host: String, to address: String, port: Int) -> String? {
        guard let body = try? TestHost.run(["ip", "netns", "exec", "\(testbed.lab.prefix)\(host)", "curl", "-s", "-m", "2",
                                            "http://\(address):\(port)/"]) else { return nil }
        return body.split(separator: "\n").first { $0.hasPrefix("Hostname: ") }.map { String($0.dropFirst("Hostname: ".count)) }
    }

    /// The routing mesh's nftables maps on `host`: the published ports'
    /// backend addresses, and the VIPs (the published services' VIPs on
    /// ingress) that the table balances.
    func meshTable(_ testbed: Testbed, _ host: String) -> (backends: Set<String>, vips: Set<String>) {
        guard let text = try? TestHost.run(["ip", "netns", "exec", "\(testbed.lab.prefix)\(host)", "nft", "-j", "list", "table", "ip", "swarmnet-mesh"]),
              let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let items = object["nftables"] as? [[String: Any]] else { return ([], []) }
        let parts = { (value: Any) -> [String] in ((value as? [String: Any])?["concat"] as? [Any] ?? [value]).compactMap { $0 as? String } }
        var backends: Set<String> = []
        var vips: Set<String> = []
        for case let map as [String: Any] in items.compactMap({ $0["map"] }) {
            let name = map["name"] as? String ?? ""
            for case let element as [Any] in map["elem"] as? [Any] ?? [] where element.count == 2 {
                if name.hasPrefix("ports-") { backends.formUnion(parts(element[1])) }
                if name.hasPrefix("vip") { vips.formUnion(parts(element[0]).prefix(1)) }
            }
        }
        return (backends, vips)
    }

    /// The backend addresses of the routing mesh's published ports on `host`.
    func meshBackends(_ testbed: Testbed, _ host: String) throws -> Set<String> { meshTable(testbed, host).backends }

    @Test func aReplicatedServiceRunsScalesDrainsAndFailsOverWithTheStockCLI() throws {
        try withSwarm { testbed in
            // Without -d the CLI follows the tasks to convergence.
            let created = try testbed.docker("h1", ["service", "create", "--name", "web", "--replicas", "3", "-p", "8080:80",
                                                    "--stop-grace-period", "1s", "whoami"])
            #expect(created.contains("overall progress: 3 out of 3 tasks"), "\(created)")
            #expect(created.contains("verify: Service ") && created.contains(" converged"), "\(created)")
            #expect(try testbed.docker("h1", ["service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}} {{.Ports}}"])
                .contains("web replicated 3/3 *:8080->80/tcp"))
            let placed = try tasks(testbed, "web")
            #expect(placed.count == 3 && Set(placed.map { $0.split(separator: " ")[1] }) == ["h1", "h2", "h3"], "spread: \(placed)")
            for host in ["h1", "h2", "h3"] {
                #expect(try runningContainers(testbed, host).count == 1, "runc on \(host)")
            }
            let pretty = try testbed.docker("h1", ["service", "inspect", "--pretty", "web"])
            #expect(pretty.contains("Replicated") && pretty.contains("Replicas:\t3") && pretty.contains("Image:\t\twhoami"), "\(pretty)")

            // The routing mesh: every host answers, from every task.
            var seen: Set<String> = []
            for _ in 0..<4 {
                for source in ["h1", "h2", "h3"] {
                    for target in testbed.hosts { if let name = answer(testbed, from: source, to: "\(target.address)", port: 8080) { seen.insert(name) } }
                }
            }
            #expect(seen.count == 3, "answers came from \(seen)")
            var taskAddresses: Set<String> = []
            for id in try testbed.docker("h1", ["service", "ps", "-q", "--filter", "desired-state=running", "web"]).split(separator: "\n") {
                let text = try testbed.docker("h1", ["inspect", "--type", "task", "--format",
                                                     "{{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}", String(id)])
                for address in text.split(whereSeparator: \.isWhitespace) { taskAddresses.insert(String(address.split(separator: "/")[0])) }
            }
            #expect(taskAddresses.count == 3, "\(taskAddresses)")
            for host in ["h1", "h2", "h3"] {
                #expect(eventually(5) { (try? meshBackends(testbed, host)) == taskAddresses }, "nft mesh on \(host): \((try? meshBackends(testbed, host)) ?? [])")
            }

            // Scale up and down.
            try testbed.docker("h1", ["service", "scale", "web=5"])
            #expect(try tasks(testbed, "web").filter { $0.hasSuffix("Running") }.count == 5)
            try testbed.docker("h1", ["service", "scale", "web=2"])
            #expect(eventually(10) {
                (try? ["h1", "h2", "h3"].map { try runningContainers(testbed, $0).count }.reduce(0, +)) == 2
            }, "two containers left after scaling down: \(placement(testbed))")

            // Drain h3: nothing runs there, and the service is whole again.
            try testbed.docker("h1", ["service", "scale", "web=3"])
            try testbed.docker("h1", ["node", "update", "--availability", "drain", "h3"])
            #expect(eventually(10) { (try? runningContainers(testbed, "h3").isEmpty) == true }, "drained h3 still runs tasks")
            #expect(eventually(10) { (try? tasks(testbed, "web").filter { $0.hasSuffix("Running") && !$0.contains(" h3 ") }.count) == 3 })
            try testbed.docker("h1", ["node", "update", "--availability", "active", "h3"])

            // kill -9 a worker: its tasks come back elsewhere, within seconds.
            let onH2 = try tasks(testbed, "web").filter { $0.contains(" h2 ") }.count
            #expect(onH2 > 0)
            testbed.kill9("h2")
            let start = Date()
            #expect(eventually(15) {
                (try? tasks(testbed, "web").filter { $0.hasSuffix("Running") && !$0.contains(" h2 ") }.count) == 3
            }, "replacements for the dead worker's tasks")
            #expect(Date().timeIntervalSince(start) < 10, "failover took \(Date().timeIntervalSince(start)) s")
            #expect(try testbed.nodes("h1").contains("h2 Down Active"))
            #expect(eventually(10) { (try? meshBackends(testbed, "h1").count) == 3 }, "the mesh on h1 dropped h2's backends")

            // It comes back: its stale copies stop, nothing runs twice.
            try testbed.start("h2")
            #expect(eventually(20) { (try? testbed.nodes("h1").contains("h2 Ready Active")) == true })
            #expect(eventually(15) { (try? runningContainers(testbed, "h2").count) == 0 }, "h2 still runs the tasks it lost: \(placement(testbed))")
            #expect(try tasks(testbed, "web").filter { $0.hasSuffix("Running") }.count == 3)

            // Remove: every container, and the mesh's port, go.
            try testbed.docker("h1", ["service", "rm", "web"])
            #expect(eventually(15) {
                (try? ["h1", "h2", "h3"].allSatisfy { try runningContainers(testbed, $0).isEmpty }) == true
            }, "containers left after service rm: \(placement(testbed))")
            #expect(eventually(5) { (try? meshBackends(testbed, "h1").isEmpty) == true })
            #expect(try testbed.docker("h1", ["service", "ls", "-q"]).isEmpty)
        }
    }

    /// With heartbeats a minute apart, workers still get their tasks, and
    /// their stops, at once: the work watch hands a node its new work as
    /// soon as the leader's store has it, not with its next heartbeat.
    @Test func theWorkWatchHandsWorkersTheirTasksBetweenHeartbeats() throws {
        try withSwarm { testbed in
            try testbed.docker("h1", ["swarm", "update", "--dispatcher-heartbeat", "60s"])
            // Every node's heartbeat in flight (750 ms apart) learns the new period.
            Thread.sleep(forTimeInterval: 2)
            try testbed.docker("h1", ["service", "create", "-d", "--name", "watched", "--replicas", "4", "--constraint", "node.role==worker",
                                      "--stop-grace-period", "1s", "busybox", "sleep", "3600"])
            #expect(eventually(20) {
                (try? ["h2", "h3"].map { try runningContainers(testbed, $0).count }) == [2, 2]
            }, "runc on the workers: \(placement(testbed))")
            #expect(eventually(10) {
                (try? tasks(testbed, "watched").filter { $0.hasSuffix("Running") }.count) == 4
            }, "the workers' reports: \((try? tasks(testbed, "watched")) ?? [])")
            try testbed.docker("h1", ["service", "scale", "-d", "watched=2"])
            #expect(eventually(20) {
                (try? ["h2", "h3"].map { try runningContainers(testbed, $0).count }.reduce(0, +)) == 2
            }, "two containers left after scaling down: \(placement(testbed))")
        }
    }

    @Test func placementConstraintsPendingReasonsAndGlobalServices() throws {
        try withSwarm { testbed in
            // Nowhere to go: pending with Docker's reason, then it runs as
            // soon as a node fits.
            try testbed.docker("h1", ["service", "create", "-d", "--name", "east", "--constraint", "node.labels.zone==east", "busybox",
                                      "sleep", "1000"])
            #expect(eventually(5) {
                (try? testbed.docker("h1", ["service", "ps", "east", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}"]))?
                    .contains("no suitable node (scheduling constraints not satisfied on 3 nodes)") == true
            })
            try testbed.docker("h1", ["node", "update", "--label-add", "zone=east", "h2"])
            #expect(eventually(10) { (try? tasks(testbed, "east")) == ["east.1 h2 Running Running"] }, "\((try? tasks(testbed, "east")) ?? [])")

            // A global service: one task per node, following drains.
            try testbed.docker("h1", ["service", "create", "-d", "--name", "everywhere", "--mode", "global", "--stop-grace-period", "1s",
                                      "busybox", "sleep", "1000"])
            #expect(eventually(10) { (try? tasks(testbed, "everywhere").filter { $0.hasSuffix("Running") }.count) == 3 })
            try testbed.docker("h1", ["node", "update", "--availability", "drain", "h3"])
            #expect(eventually(10) { (try? tasks(testbed, "everywhere").filter { $0.hasSuffix("Running") }.count) == 2 })
            try testbed.docker("h1", ["node", "update", "--availability", "active", "h3"])
            #expect(eventually(10) { (try? tasks(testbed, "everywhere").filter { $0.hasSuffix("Running") }.count) == 3 })
            // A node that leaves (and is removed) takes its task with it; one
            // that joins gets one.
            try testbed.docker("h3", ["swarm", "leave"])
            #expect(eventually(15) { (try? testbed.nodes("h1"))?.contains { $0.hasPrefix("h3 Down") } == true })
            try testbed.docker("h1", ["node", "rm", "h3"])
            #expect(eventually(10) { (try? tasks(testbed, "everywhere").filter { $0.hasSuffix("Running") }.count) == 2 })
            #expect(eventually(10) { (try? runningContainers(testbed, "h3").isEmpty) == true }, "h3 left: \(placement(testbed))")
            // Its gossip session ended with the swarm: no socket, and the
            // others saw it leave.
            #expect(eventually(5) { (try? testbed.gossipSockets("h3").isEmpty) == true })
            #expect(eventually(10) { (try? testbed.aliveGossipPeers("h1").contains("h3")) == false })
            try testbed.docker("h3", ["swarm", "join", "--token", testbed.token("h1", "worker"), testbed.endpoint("h1")])
            #expect(eventually(20) {
                let running = (try? tasks(testbed, "everywhere").filter { $0.hasSuffix("Running") }) ?? []
                return running.count == 3 && running.contains { $0.contains(" h3 ") }
            }, "\((try? tasks(testbed, "everywhere", running: false)) ?? [])")
            // Back in the swarm, a new session: the others hear it again.
            #expect(eventually(10) { (try? testbed.aliveGossipPeers("h1").contains("h3")) == true },
                    "h1's peers: \((try? testbed.swarmnet("h1", ["debug", "peers"])) ?? "")")

            // Logs from tasks on several nodes, as the CLI prints them.
            try testbed.docker("h1", ["service", "create", "-d", "--name", "talker", "--replicas", "2", "--constraint", "node.role==worker",
                                      "--placement-pref", "spread=node.id", "busybox", "sh", "-c", "echo hello from $(hostname); sleep 1000"])
            #expect(eventually(10) { (try? tasks(testbed, "talker").filter { $0.hasSuffix("Running") }.count) == 2 })
            var logs = ""
            #expect(eventually(10) {
                logs = (try? testbed.docker("h1", ["service", "logs", "talker"])) ?? ""
                return logs.split(separator: "\n").count == 2
            }, "\(logs)")
            for host in ["h2", "h3"] {
                #expect(logs.contains("@\(host)") && logs.contains("| hello from "), "\(logs)")
            }
            #expect(logs.contains("talker.1.") && logs.contains("talker.2."), "\(logs)")

            // `--follow` streams on: a task started afterwards (a scale)
            // joins the running stream, and no line comes twice.
            let follower = Process()
            follower.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            follower.arguments = ["docker", "service", "logs", "--follow", "talker"]
            follower.environment = ProcessInfo.processInfo.environment.merging(["DOCKER_HOST": "unix://\(testbed.socket("h1"))"]) { $1 }
            let pipe = Pipe()
            follower.standardOutput = pipe
            follower.standardError = pipe
            let followed = Mutex("")
            pipe.fileHandleForReading.readabilityHandler = { handle in
                let data = handle.availableData
                followed.withLock { $0 += String(decoding: data, as: UTF8.self) }
            }
            try follower.run()
            defer {
                if follower.isRunning { follower.terminate() }
                follower.waitUntilExit()
                pipe.fileHandleForReading.readabilityHandler = nil
            }
            #expect(eventually(10) { followed.withLock { $0 }.split(separator: "\n").count == 2 }, "\(followed.withLock { $0 })")
            try testbed.docker("h1", ["service", "scale", "-d", "talker=3"])
            #expect(eventually(15) { followed.withLock { $0 }.contains("talker.3.") }, "\(followed.withLock { $0 })")
            sleep(3) // three more rounds of the follower
            #expect(followed.withLock { $0 }.split(separator: "\n").count == 3, "\(followed.withLock { $0 })")
            #expect(follower.isRunning, "the follower streams until the client leaves")
            try testbed.docker("h1", ["service", "rm", "talker"])

            // Ended tasks keep their logs while the history keeps them: a
            // task that fails, and its two restarts, all show their lines.
            try testbed.docker("h1", ["service", "create", "-d", "--name", "crasher", "--restart-delay", "1s", "--restart-max-attempts", "2",
                                      "--constraint", "node.role==worker", "busybox", "sh", "-c", "echo crashing on $(hostname); exit 3"])
            var crashed = ""
            #expect(eventually(25) {
                crashed = (try? testbed.docker("h1", ["service", "logs", "crasher"])) ?? ""
                return crashed.components(separatedBy: "| crashing on").count - 1 == 3
            }, "\(crashed)")
            #expect(eventually(10) { (try? tasks(testbed, "crasher", running: false).filter { $0.hasSuffix("Failed") }.count) == 3 })
            try testbed.docker("h1", ["service", "rm", "crasher"])

            // Bad input: a clear error, and nothing made.
            func failure(_ arguments: [String]) -> String {
                do {
                    _ = try testbed.docker("h1", arguments)
                    return "(no error)"
                } catch let error as CommandFailure {
                    return error.stderr
                } catch {
                    return "\(error)"
                }
            }
            #expect(failure(["service", "create", "-d", "--name", "lost", "--network", "nope", "busybox"]).contains("nope"))
            // A worker answers no service call, as Docker's.
            do {
                _ = try testbed.docker("h2", ["service", "ls"])
                Issue.record("service ls answered on a worker")
            } catch let error as CommandFailure {
                #expect(error.stderr.contains("Worker nodes can't be used to view or modify cluster state"), "\(error.stderr)")
            }
            #expect(failure(["service", "create", "-d", "--name", "bad", "--constraint", "node.zone=east", "busybox"])
                .contains("invalid constraint"))
            #expect(failure(["service", "create", "-d", "--name", "east", "busybox"]).contains("already"))
            #expect(try testbed.docker("h1", ["service", "ls", "--format", "{{.Name}}"]).split(separator: "\n").sorted() == ["east", "everywhere"])

            // An image no node has: rejected with the reason, not stuck.
            try testbed.docker("h1", ["service", "create", "-d", "--name", "ghost", "--restart-delay", "1s", "ghost:latest"])
            #expect(eventually(10) {
                (try? testbed.docker("h1", ["service", "ps", "ghost", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}"]))?
                    .contains("Rejected") == true
            })
            #expect(try testbed.docker("h1", ["service", "ps", "ghost", "--no-trunc", "--format", "{{.Error}}"]).contains("ghost"))
        }
    }

    @Test func aRollingUpdateLosesNoRequestAndAFailingUpdateRollsBack() throws {
        try withSwarm { testbed in
            try testbed.docker("h1", ["service", "create", "--name", "web", "--replicas", "6", "-p", "8080:80", "--stop-grace-period", "2s",
                                      "--update-parallelism", "2", "--update-order", "start-first", "whoami"])
            // A client loops on the routing mesh while the update rolls.
            let address = "\(testbed.hosts[1].address)"
            let counts = Counts()
            let client = Thread {
                while !counts.stopped {
                    counts.add(answered: answer(testbed, from: "h3", to: address, port: 8080) != nil)
                }
            }
            client.start()
            let updated = try testbed.docker("h1", ["service", "update", "--env-add", "VERSION=2", "web"])
            counts.stop()
            while !counts.finished { Thread.sleep(forTimeInterval: 0.05) }
            #expect(updated.contains("web"), "\(updated)")
            // None lost: a new task is no backend until it is healthy (its
            // endpoints are recorded out of the balancers from the start),
            // and an old one leaves them everywhere before its stop signal.
            // Before the first rule was kept from attach on, about 1 in
            // 2,000 requests hit a task whose process was not there yet.
            #expect(counts.answered > 5 && counts.failed == 0, "answered \(counts.answered), failed \(counts.failed)")
            let versions = try testbed.docker("h1", ["service", "ps", "web", "--filter", "desired-state=running", "-q"])
                .split(separator: "\n").map { try testbed.docker("h1", ["inspect", "--type", "task", "--format", "{{.Spec.ContainerSpec.Env}}", String($0)]) }
            #expect(versions.count == 6 && versions.allSatisfy { $0.contains("VERSION=2") }, "\(versions)")

            // An image that cannot run: the update fails and rolls back.
            let failed = failureText {
                try testbed.docker("h1", ["service", "update", "--image", "ghost:latest", "--update-failure-action", "rollback",
                                          "--update-max-failure-ratio", "0", "web"])
            }
            #expect(failed.contains("rolled back") || failed.contains("rollback"), "\(failed)")
            #expect(eventually(20) {
                (try? testbed.docker("h1", ["service", "inspect", "--format", "{{.UpdateStatus.State}} {{.Spec.TaskTemplate.ContainerSpec.Image}}", "web"]))?
                    .contains("rollback_completed whoami") == true
            })
            #expect(eventually(20) { (try? tasks(testbed, "web").filter { $0.hasSuffix("Running") }.count) == 6 })
        }
    }

    /// `service update --publish-add/rm --network-add` and `rollback`:
    /// the routing mesh follows the ports, new tasks join the new network
    /// with the service's VIP there, and a rollback leaves it again.
    @Test func anUpdateChangesPublishedPortsAndNetworks() throws {
        try withSwarm { testbed in
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.81.0.0/24", "front"])
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--subnet", "10.82.0.0/24", "back"])
            try testbed.docker("h1", ["service", "create", "--name", "web", "--replicas", "2", "--network", "front", "-p", "8080:80",
                                      "--update-parallelism", "2", "whoami"])
            let address = "\(testbed.hosts[1].address)"
            #expect(eventually(15) { answer(testbed, from: "h3", to: address, port: 8080) != nil })

            // Ports: 8080 moves to 8081 (the CLI removes by target port,
            // then adds), in the mesh of every host.
            try testbed.docker("h1", ["service", "update", "-d", "--publish-rm", "80", "--publish-add", "8081:80", "web"])
            #expect(eventually(15) { answer(testbed, from: "h3", to: address, port: 8081) != nil })
            #expect(eventually(10) { answer(testbed, from: "h3", to: address, port: 8080) == nil })
            let ports = try testbed.docker("h1", ["service", "inspect", "--format", "{{range .Endpoint.Ports}}{{.PublishedPort}} {{end}}", "web"])
            #expect(ports.trimmingCharacters(in: .whitespacesAndNewlines) == "8081", "\(ports)")

            // A network added: a VIP there, and the new tasks' addresses.
            try testbed.docker("h1", ["service", "update", "--network-add", "back", "web"])
            let vips = try testbed.docker("h1", ["service", "inspect", "--format", "{{json .Endpoint.VirtualIPs}}", "web"])
            #expect(vips.contains("10.81.0.") && vips.contains("10.82.0."), "\(vips)")
            func taskAddresses() throws -> [String] {
                try testbed.docker("h1", ["service", "ps", "web", "--filter", "desired-state=running", "-q"]).split(separator: "\n").map {
                    try testbed.docker("h1", ["inspect", "--type", "task", "--format", "{{json .NetworksAttachments}}", String($0)])
                }
            }
            #expect(eventually(20) { (try? taskAddresses()).map { $0.count == 2 && $0.allSatisfy { $0.contains("10.82.0.") } } == true },
                    "\((try? taskAddresses()) ?? [])")
            #expect(eventually(15) { answer(testbed, from: "h3", to: address, port: 8081) != nil })
            // Docker's spec holds the networks the user named. Ingress,
            // joined by publishing a port, is not one of them.
            let networkID = { (name: String) in
                try testbed.docker("h1", ["network", "inspect", "--format", "{{.ID}}", name]).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let named = { (service: String) in
                Set(try testbed.docker("h1", ["service", "inspect", "--format", "{{range .Spec.TaskTemplate.Networks}}{{.Target}} {{end}}", service])
                    .split(whereSeparator: \.isWhitespace).map(String.init))
            }
            #expect(try named("web") == [try networkID("front"), try networkID("back")])

            // A port another service publishes: refused, nothing changed.
            try testbed.docker("h1", ["service", "create", "-d", "--name", "other", "-p", "9090:80", "whoami"])
            #expect(try named("other").isEmpty)
            let pretty = try testbed.docker("h1", ["service", "inspect", "--pretty", "other"])
            #expect(!pretty.contains("Networks:"), "a service that only publishes a port names no network: \(pretty)")
            let otherTask = try testbed.docker("h1", ["service", "ps", "-q", "other"]).split(separator: "\n").first.map(String.init) ?? ""
            #expect(try testbed.docker("h1", ["inspect", "--type", "task", "--format", "{{json .Spec.Networks}}", otherTask])
                .trimmingCharacters(in: .whitespacesAndNewlines) == "null")
            #expect(eventually(15) { answer(testbed, from: "h3", to: address, port: 9090) != nil })
            #expect(failureText { try testbed.docker("h1", ["service", "update", "--publish-add", "9090:80", "web"]) }.contains("already in use"))
            #expect(try testbed.docker("h1", ["service", "inspect", "--format", "{{range .Endpoint.Ports}}{{.PublishedPort}} {{end}}", "web"])
                .trimmingCharacters(in: .whitespacesAndNewlines) == "8081")

            // Rollback: the tasks leave the added network, and so does the VIP.
            try testbed.docker("h1", ["service", "rollback", "-d", "web"])
            #expect(eventually(20) {
                let vips = (try? testbed.docker("h1", ["service", "inspect", "--format", "{{json .Endpoint.VirtualIPs}}", "web"])) ?? ""
                return vips.contains("10.81.0.") && !vips.contains("10.82.0.")
            })
            #expect(eventually(20) { (try? taskAddresses()).map { $0.count == 2 && $0.allSatisfy { !$0.contains("10.82.0.") } } == true },
                    "\((try? taskAddresses()) ?? [])")
            // A rollback of a port change publishes the ports from before.
            try testbed.docker("h1", ["service", "update", "-d", "--publish-add", "8082:80", "web"])
            #expect(eventually(15) { answer(testbed, from: "h3", to: address, port: 8082) != nil })
            try testbed.docker("h1", ["service", "rollback", "-d", "web"])
            #expect(try testbed.docker("h1", ["service", "inspect", "--format", "{{range .Endpoint.Ports}}{{.PublishedPort}} {{end}}", "web"])
                .trimmingCharacters(in: .whitespacesAndNewlines) == "8081")
            #expect(eventually(10) { answer(testbed, from: "h3", to: address, port: 8082) == nil })

            // The CLI sends back a spec without ingress: a network added to
            // a service that only published a port keeps the port too.
            try testbed.docker("h1", ["service", "update", "--network-add", "back", "other"])
            #expect(try named("other") == [try networkID("back")])
            #expect(eventually(15) { answer(testbed, from: "h3", to: address, port: 9090) != nil })
        }
    }

    /// A service published through the mesh has a VIP on ingress, as in
    /// Docker's inspect; it answers from every host's namespace and from
    /// the service's own tasks, and goes when the port does. Second
    /// readers: `nft -j` in a host and in a task's namespace, curl.
    @Test func aPublishedServicesIngressVIPAnswersFromTheHostsAndItsTasks() throws {
        try withSwarm { testbed in
            try testbed.docker("h1", ["service", "create", "--name", "web", "--replicas", "2", "-p", "8080:80", "--stop-grace-period", "1s", "whoami"])
            let ingressID = try testbed.docker("h1", ["network", "inspect", "--format", "{{.ID}}", "ingress"]).trimmingCharacters(in: .whitespacesAndNewlines)
            let subnet = try testbed.docker("h1", ["network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "ingress"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let listed = try testbed.docker("h1", ["service", "inspect", "--format", "{{range .Endpoint.VirtualIPs}}{{.NetworkID}} {{.Addr}}{{end}}", "web"])
                .split(whereSeparator: \.isWhitespace).map(String.init)
            #expect(listed.count == 2 && listed.first == ingressID, "\(listed)")
            let vipPrefix = try #require(listed.last)
            #expect(vipPrefix.hasSuffix("/" + (subnet.split(separator: "/").last.map(String.init) ?? "?")), "\(vipPrefix) in \(subnet)")
            let vip = String(vipPrefix.prefix { $0 != "/" })
            let names = Set(try testbed.docker("h1", ["service", "ps", "web", "--filter", "desired-state=running", "-q"]).split(separator: "\n").map {
                try testbed.docker("h1", ["inspect", "--type", "task", "--format", "{{.Status.ContainerStatus.ContainerID}}", String($0)])
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            })
            #expect(names.count == 2)

            // From a host with no task and from the others: both tasks answer.
            var seen: Set<String> = []
            #expect(eventually(15) {
                for host in ["h1", "h2", "h3"] { if let name = answer(testbed, from: host, to: vip, port: 80) { seen.insert(name) } }
                return seen.count == 2
            }, "answers from the ingress VIP \(vip): \(seen), placement \(placement(testbed))")
            #expect(seen == Set(names.map { String($0.prefix(12)) }), "\(seen) against \(names)")
            #expect(meshTable(testbed, "h3").vips == [vip], "h3's mesh table: \(meshTable(testbed, "h3"))")

            // From a task's own namespace (its workload table, on ingress).
            let task = try #require(try testbed.docker("h1", ["service", "ps", "web", "--filter", "desired-state=running", "-q"]).split(separator: "\n").first)
            let host = try testbed.docker("h1", ["inspect", "--type", "task", "--format", "{{.NodeID}}", String(task)]).trimmingCharacters(in: .whitespacesAndNewlines)
            let hostName = try testbed.docker("h1", ["node", "inspect", "--format", "{{.Description.Hostname}}", host]).trimmingCharacters(in: .whitespacesAndNewlines)
            let container = try testbed.docker("h1", ["inspect", "--type", "task", "--format", "{{.Status.ContainerStatus.ContainerID}}", String(task)])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let namespace = "\(testbed.lab.prefix)\(hostName)-t-\(container.prefix(12))"
            let table = (try? TestHost.run(["ip", "netns", "exec", namespace, "nft", "-j", "list", "table", "ip", "swarmnet"])) ?? ""
            #expect(table.contains("\"\(vip)\""), "the task's table on \(hostName) holds the VIP: \(table.prefix(400))")
            let fromTask = try? TestHost.run(["ip", "netns", "exec", namespace, "curl", "-s", "-m", "2", "http://\(vip):80/"])
            #expect(fromTask?.contains("Hostname: ") == true, "\(fromTask ?? "no answer")")

            // Unpublished: the VIP goes from the spec's endpoint and the kernel.
            try testbed.docker("h1", ["service", "update", "-d", "--publish-rm", "80", "web"])
            let after = try testbed.docker("h1", ["service", "inspect", "--format", "{{json .Endpoint.VirtualIPs}}", "web"])
            #expect(!after.contains(ingressID), "\(after)")
            #expect(eventually(10) { meshTable(testbed, "h3").vips.isEmpty }, "\(meshTable(testbed, "h3"))")
            #expect(eventually(10) { answer(testbed, from: "h3", to: vip, port: 80) == nil })
        }
    }

    @Test func aRollingUpdateCompletesUnderANewLeaderAfterTheLeaderIsKilled() throws {
        try KernelIntegrationTests.withSwarm(hosts: 4, managers: 3, images: ["busybox"]) { testbed in
            // Created on a follower (h2): its network side and spec are one
            // Raft transaction, whichever manager takes the request.
            try testbed.docker("h2", ["service", "create", "-d", "--name", "slow", "--replicas", "6", "--stop-grace-period", "1s",
                                      "--update-parallelism", "1", "--update-delay", "1s", "busybox", "sleep", "100000"])
            let count = { (host: String, filter: String) in
                (try? testbed.docker(host, ["service", "ps", "slow", "--filter", "desired-state=running", "--format", "{{.CurrentState}}"])
                    .split(separator: "\n").filter { $0.hasPrefix(filter) }.count) ?? -1
            }
            #expect(eventually(20) { count("h1", "Running") == 6 })
            try testbed.docker("h1", ["service", "update", "-d", "--env-add", "VERSION=2", "slow"])
            let updated = { (host: String) -> Int in
                let ids = (try? testbed.docker(host, ["service", "ps", "-q", "--filter", "desired-state=running", "slow"]))?
                    .split(separator: "\n").map(String.init) ?? []
                return ids.filter { id in
                    (try? testbed.docker(host, ["inspect", "--type", "task", "--format", "{{.Spec.ContainerSpec.Env}} {{.Status.State}}", id]))
                        .map { $0.contains("VERSION=2") && $0.contains("running") } ?? false
                }.count
            }
            #expect(eventually(15) { updated("h1") >= 1 }, "the update started")
            #expect(updated("h1") < 6, "the update was still rolling when the leader died")
            testbed.kill9("h1")
            // A new leader carries on from the store: every task updated,
            // the update completed, the dead leader's tasks replaced.
            #expect(eventually(60) { updated("h2") == 6 }, "updated under the new leader: \(updated("h2"))")
            #expect(eventually(10) {
                (try? testbed.docker("h2", ["service", "inspect", "--format", "{{.UpdateStatus.State}}", "slow"]))?.contains("completed") == true
            })
            #expect(count("h2", "Running") == 6)
        }
    }

    /// The scheduler's two filters that depend on the nodes' state: a
    /// host-mode published port runs once per node (the task that fits
    /// nowhere is pending with Docker's reason), and a node that rejects a
    /// task for want of its image is passed over for one that has it.
    @Test func hostModePortsOncePerNodeAndARejectedTaskMovesToANodeWithItsImage() throws {
        try withSwarm { testbed in
            try testbed.docker("h1", ["service", "create", "-d", "--name", "pinned", "--replicas", "4", "--stop-grace-period", "1s",
                                      "--publish", "mode=host,target=80,published=8081", "whoami"])
            #expect(eventually(20) {
                let running = (try? tasks(testbed, "pinned").filter { $0.hasSuffix("Running") }) ?? []
                return running.count == 3 && Set(running.map { $0.split(separator: " ")[1] }) == ["h1", "h2", "h3"]
            }, "one per node: \((try? tasks(testbed, "pinned", running: false)) ?? [])")
            #expect(eventually(10) {
                (try? testbed.docker("h1", ["service", "ps", "pinned", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}"]))?
                    .contains("no suitable node (host-mode port already in use on 3 nodes)") == true
            })
            // Host mode: each host answers from its own task.
            for host in testbed.hosts {
                #expect(eventually(10) { answer(testbed, from: host.name, to: "\(host.address)", port: 8081) != nil }, "port 8081 on \(host.name)")
            }
            // Scaled to what fits: nothing is left pending.
            try testbed.docker("h1", ["service", "scale", "-d", "pinned=3"])
            #expect(eventually(10) {
                (try? testbed.docker("h1", ["service", "ps", "pinned", "--filter", "desired-state=running", "--format", "{{.CurrentState}}"]))?
                    .split(separator: "\n").allSatisfy { $0.hasPrefix("Running") } == true
            })
            try testbed.docker("h1", ["service", "rm", "pinned"])

            // nginx is loaded on one node only: the one the scheduler tries
            // last when nothing else differs (the highest node ID). The task
            // runs there, after one rejection on each other node.
            let ids = try testbed.docker("h1", ["node", "ls", "--format", "{{.ID}} {{.Hostname}}"]).split(separator: "\n")
                .map { $0.split(separator: " ").map(String.init) }
            let holder = try #require(ids.max { $0[0] < $1[0] })[1]
            _ = try testbed.docker(holder, ["load", "-i", TestImages.path("nginx")])
            try testbed.docker("h1", ["service", "create", "-d", "--name", "only-one", "--restart-delay", "1s", "--stop-grace-period", "1s",
                                      "nginx:latest"])
            #expect(eventually(20) { (try? tasks(testbed, "only-one")) == ["only-one.1 \(holder) Running Running"] },
                    "\((try? tasks(testbed, "only-one", running: false)) ?? [])")
            let history = try testbed.docker("h1", ["service", "ps", "only-one", "--no-trunc", "--format", "{{.Node}} {{.CurrentState}} {{.Error}}"])
                .split(separator: "\n")
            #expect(history.count == 3, "one try on each node without the image: \(history)")
            for line in history where !line.hasPrefix("\(holder) ") {
                #expect(line.contains("Rejected") && line.contains("nginx"), "\(line)")
            }
        }
    }

    /// Reservations: a task that no node has room for is pending with
    /// Docker's reason, and runs once another service's task frees the
    /// room. Replicas -1 is refused (by the CLI, and by the API when sent
    /// straight to it), and nothing is made.
    @Test func aTaskThatNoNodeHasRoomForRunsWhenCapacityFrees() throws {
        try withSwarm { testbed in
            // Each node reports this machine's memory: 60% of it fits once.
            let capacity = try #require(Int64(try testbed.docker("h1", ["node", "inspect", "h1", "--format", "{{.Description.Resources.MemoryBytes}}"])
                .trimmingCharacters(in: .whitespacesAndNewlines)))
            let reservation = "\(capacity * 6 / 10 / (1 << 20))M"
            try testbed.docker("h1", ["service", "create", "-d", "--name", "big", "--replicas", "3", "--reserve-memory", reservation,
                                      "--stop-grace-period", "1s", "busybox", "sleep", "100000"])
            #expect(eventually(20) { (try? tasks(testbed, "big").filter { $0.hasSuffix("Running") }.count) == 3 })
            try testbed.docker("h1", ["service", "create", "-d", "--name", "late", "--reserve-memory", reservation, "busybox", "sleep", "100000"])
            #expect(eventually(10) {
                (try? testbed.docker("h1", ["service", "ps", "late", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}"]))?
                    .contains("no suitable node (insufficient resources on 3 nodes)") == true
            }, "\((try? testbed.docker("h1", ["service", "ps", "late", "--no-trunc"])) ?? "")")
            try testbed.docker("h1", ["service", "scale", "-d", "big=2"])
            #expect(eventually(20) { (try? tasks(testbed, "late").filter { $0.hasSuffix("Running") }.count) == 1 },
                    "\((try? tasks(testbed, "late", running: false)) ?? [])")

            #expect(failureText { try testbed.docker("h1", ["service", "create", "-d", "--name", "negative", "--replicas", "-1", "busybox"]) }
                .contains("-1"))
            let body = #"{"Name":"negative","TaskTemplate":{"ContainerSpec":{"Image":"busybox"}},"Mode":{"Replicated":{"Replicas":-1}}}"#
            let answer = try TestHost.run(["curl", "-s", "-w", "\n%{http_code}", "--unix-socket", testbed.socket("h1"), "-X", "POST",
                                           "-H", "Content-Type: application/json", "-d", body, "http://localhost/v1.41/services/create"])
            #expect(answer.hasSuffix("\n400") && answer.contains("Replicas"), "\(answer)")
            #expect(try testbed.docker("h1", ["service", "ls", "--format", "{{.Name}}"]).split(separator: "\n").sorted() == ["big", "late"])
        }
    }

    /// A worker cut off from the others with nftables: the managers mark it
    /// down, replace its task and drop its backend from the mesh; it keeps
    /// its copy while it cannot hear them, and stops it once healed.
    @Test func aPartitionedWorkersTasksAreReplacedAndItsStaleCopyStopsAfterTheHeal() throws {
        try withSwarm { testbed in
            try testbed.docker("h1", ["service", "create", "-d", "--name", "web", "--replicas", "3", "-p", "8080:80", "--stop-grace-period", "1s",
                                      "whoami"])
            #expect(eventually(20) { (try? tasks(testbed, "web").filter { $0.hasSuffix("Running") }.count) == 3 })
            let onH3 = try testbed.docker("h1", ["service", "ps", "-q", "--filter", "desired-state=running", "--filter", "node=h3", "web"])
                .split(separator: "\n").map(String.init)
            #expect(onH3.count == 1, "spread: \(placement(testbed))")
            let lostAddress = try onH3.first.map {
                try testbed.docker("h1", ["inspect", "--type", "task", "--format",
                                          "{{range .NetworksAttachments}}{{range .Addresses}}{{.}} {{end}}{{end}}", $0])
                    .split(separator: "/").first.map(String.init) ?? ""
            } ?? ""

            try testbed.partition("h3", from: ["h1", "h2"])
            defer { testbed.heal("h3") }
            #expect(eventually(15) { (try? testbed.nodes("h1"))?.contains("h3 Down Active") == true })
            #expect(eventually(15) {
                (try? tasks(testbed, "web").filter { $0.hasSuffix("Running") && !$0.contains(" h3 ") }.count) == 3
            }, "replacements for the cut-off worker's task: \(placement(testbed))")
            #expect(eventually(10) {
                guard let backends = try? meshBackends(testbed, "h1") else { return false }
                return backends.count == 3 && !backends.contains(lostAddress)
            }, "the mesh on h1 dropped \(lostAddress): \((try? meshBackends(testbed, "h1")) ?? [])")
            #expect(try runningContainers(testbed, "h3").count == 1, "cut off, h3 keeps its task running (as Docker's worker does)")

            testbed.heal("h3")
            #expect(eventually(20) { (try? testbed.nodes("h1"))?.contains("h3 Ready Active") == true })
            #expect(eventually(15) { (try? runningContainers(testbed, "h3").isEmpty) == true }, "h3's stale copy: \(placement(testbed))")
            let running = try testbed.docker("h1", ["service", "ps", "web", "--filter", "desired-state=running", "--format", "{{.Name}}"])
                .split(separator: "\n")
            #expect(running.count == 3 && Set(running).count == 3, "one task per slot: \(running)")
            #expect(try ["h1", "h2"].map { try runningContainers(testbed, $0).count }.reduce(0, +) == 3)
        }
    }

    func failureText(_ body: () throws -> Any) -> String {
        do {
            return "(no error) \(try body())"
        } catch let error as CommandFailure {
            return error.stderr
        } catch {
            return "\(error)"
        }
    }
}

/// Requests a client thread made, and whether they were answered.
final class Counts: @unchecked Sendable {
    private let lock = NSLock()
    private var answeredCount = 0, failedCount = 0, stopping = false, done = false

    func add(answered: Bool) {
        lock.withLock { if answered { answeredCount += 1 } else { failedCount += 1 } }
        if stopped { lock.withLock { done = true } }
    }

    func stop() { lock.withLock { stopping = true } }
    var stopped: Bool { lock.withLock { stopping } }
    var finished: Bool { lock.withLock { done } }
    var answered: Int { lock.withLock { answeredCount } }
    var failed: Int { lock.withLock { failedCount } }
}

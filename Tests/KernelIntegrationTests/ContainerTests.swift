import Foundation
import Testing
import TestKit

/// Tasks as containers, driven with the stock docker CLI (`docker load`,
/// `docker run -d`, `logs`, `inspect`, `stop`, `rm`), checked with second
/// readers: `runc state`, /proc/PID (namespaces, environment, user), cgroup
/// files, `ip -j`, /proc/mounts.
@Suite(.serialized) struct ContainerTests {
    /// A test bed with the scripted images loaded on every host and one
    /// overlay network; several hosts form a swarm (h1 its manager), and
    /// the network is attachable, as `docker run --network` needs there.
    func withContainerTestbed(hosts: Int = 1, _ body: (Testbed) throws -> Void) throws {
        let run = { (testbed: Testbed) throws in
            for (_, loaded) in try testbed.load(images: ["busybox", "whoami"]) {
                #expect(loaded.contains("Loaded image: busybox:latest") && loaded.contains("Loaded image: whoami:latest"))
            }
            try testbed.docker("h1", ["network", "create", "-d", "overlay", "--attachable", "--subnet", "10.93.0.0/24", "web"])
            try body(testbed)
        }
        if hosts == 1 { try withTestbed(hosts: 1, run) } else { try withSwarm(hosts: hosts, run) }
    }

    func runtimeState(_ testbed: Testbed, _ host: String, _ id: String) throws -> [String: Any]? {
        guard let text = try? TestHost.run(["runc", "--root", testbed.runtimeRoot(host), "state", id]) else { return nil }
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    func inspect(_ testbed: Testbed, _ host: String, _ name: String) throws -> [String: Any] {
        let text = try testbed.docker(host, ["inspect", name])
        return try #require((try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])?.first)
    }

    func state(_ testbed: Testbed, _ host: String, _ name: String) throws -> [String: Any] {
        try #require(try inspect(testbed, host, name)["State"] as? [String: Any])
    }

    func identity(_ path: String) -> (UInt64, UInt64)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// What a task leaves while it exists: its runtime container, network
    /// namespace, overlay mount and directory.
    func traces(_ testbed: Testbed, _ host: String) throws -> [String] {
        var found: [String] = []
        found += try TestHost.run(["runc", "--root", testbed.runtimeRoot(host), "list", "-q"]).split(separator: "\n").map { "runc \($0)" }
        found += try TestHost.run(["ip", "netns", "list"]).split(separator: "\n")
            .filter { $0.hasPrefix("\(testbed.lab.prefix)\(host)-t-") }.map { "netns \($0)" }
        found += try String(contentsOfFile: "/proc/mounts", encoding: .utf8).split(separator: "\n")
            .filter { $0.contains(testbed.stateDirectory(host) + "/tasks/") }.map { "mount \($0)" }
        found += ((try? FileManager.default.contentsOfDirectory(atPath: testbed.stateDirectory(host) + "/tasks")) ?? []).map { "dir \($0)" }
        return found
    }

    @Test func aTaskRunsInItsOwnNamespacesWithItsNetworkAttachedFirst() throws {
        try withContainerTestbed { testbed in
            let id = try testbed.docker("h1", [
                "run", "-d", "--name", "one", "--network", "web", "--hostname", "web-one", "--env", "FOO=bar", "--user", "nobody",
                "-m", "64m", "busybox", "sleep", "1000",
            ]).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(id.count == 64)
            let runtime = try #require(try runtimeState(testbed, "h1", id))
            #expect(runtime["status"] as? String == "running")
            let pid = try #require(runtime["pid"] as? Int)
            // The container's network namespace is the task's, which holds
            // the overlay address the network allocated.
            let namespace = "\(testbed.lab.prefix)h1-t-\(id.prefix(12))"
            let taskNamespace = try #require(identity("/run/netns/\(namespace)"))
            let processNamespace = try #require(identity("/proc/\(pid)/ns/net"))
            #expect(taskNamespace == processNamespace)
            let addresses = try TestHost.json(["ip", "-j", "-n", namespace, "-4", "addr", "show", "dev", "eth0"])
            let address = try #require((addresses.first?["addr_info"] as? [[String: Any]])?.first?["local"] as? String)
            #expect(address.hasPrefix("10.93.0."))
            let networks = try #require(try inspect(testbed, "h1", "one")["NetworkSettings"] as? [String: Any])
            #expect(((networks["Networks"] as? [String: Any])?["web"] as? [String: Any])?["IPAddress"] as? String == address)
            // Its own uts, pid and mount namespaces.
            for kind in ["uts", "pid", "mnt"] {
                #expect(identity("/proc/\(pid)/ns/\(kind)").map { "\($0)" } != identity("/proc/self/ns/\(kind)").map { "\($0)" })
            }
            #expect(try TestHost.run(["nsenter", "-t", "\(pid)", "-u", "hostname"]) == "web-one\n")
            let resolv = try String(contentsOfFile: "/proc/\(pid)/root/etc/resolv.conf", encoding: .utf8)
            #expect(resolv.contains("nameserver 127.0.0.11"))
            let hosts = try String(contentsOfFile: "/proc/\(pid)/root/etc/hosts", encoding: .utf8)
            #expect(hosts.contains("\(address)\tweb-one"))
            let environment = try String(contentsOfFile: "/proc/\(pid)/environ", encoding: .utf8).split(separator: "\0")
            #expect(environment.contains("FOO=bar") && environment.contains("HOSTNAME=web-one"))
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            #expect(status.split(separator: "\n").contains { $0.hasPrefix("Uid:") && $0.contains("65534") })
            // The memory limit is the cgroup's.
            let limit = try String(contentsOfFile: "/sys/fs/cgroup/memory/swarmnet/\(id)/memory.limit_in_bytes", encoding: .utf8)
            #expect(limit.trimmingCharacters(in: .whitespacesAndNewlines) == "\(64 << 20)")
            #expect(try testbed.docker("h1", ["ps", "--format", "{{.Names}} {{.Status}}"]).hasPrefix("one Up"))

            // Removal takes everything with it.
            try testbed.docker("h1", ["rm", "-f", "one"])
            #expect(try runtimeState(testbed, "h1", id) == nil)
            #expect(try traces(testbed, "h1") == [])
            #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/swarmnet/\(id)"))
            let network = try testbed.docker("h1", ["network", "inspect", "web", "--format", "{{len .Containers}}"])
            #expect(network.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        }
    }

    /// Images go both ways with Docker's engine (Debian's docker.io, run
    /// by scripts/docker-peer in namespaces of its own): it loads and runs
    /// our scripted tarballs, and swarmnet loads what its `docker save`
    /// writes, with the same image IDs.
    @Test func imagesRoundTripThroughDockersEngine() throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/docker-peer").path
        let peer = TestHost.uniqueName("dk")
        let built = ["SWARMNET_BIN": URL(fileURLWithPath: TestHost.swarmnetExecutable).deletingLastPathComponent().path]
        defer { _ = try? TestHost.run([script, "down", peer], environment: built) }
        let socket = try TestHost.run([script, "up", peer, "1"], environment: built).trimmingCharacters(in: .whitespacesAndNewlines)
        let docker = ["DOCKER_HOST": "unix://\(socket)"]
        let saved = "/run/docker-peer/\(peer)/saved.tar"
        for image in ["busybox", "whoami"] {
            #expect(try TestHost.run(["docker", "load", "-i", try TestImages.path(image)], environment: docker).contains("Loaded image"))
        }
        #expect(try TestHost.run(["docker", "run", "--rm", "busybox", "echo", "ran in docker"], environment: docker) == "ran in docker\n")
        try TestHost.run(["docker", "save", "-o", saved, "busybox:latest", "whoami:latest"], environment: docker)
        let theirs = try TestHost.run(["docker", "image", "ls", "--no-trunc", "--format", "{{.Repository}} {{.ID}}"], environment: docker)
        try withTestbed(hosts: 1) { testbed in
            let loaded = try testbed.docker("h1", ["load", "-i", saved])
            #expect(loaded.contains("Loaded image: busybox:latest") && loaded.contains("Loaded image: whoami:latest"))
            let ours = try testbed.docker("h1", ["image", "ls", "--no-trunc", "--format", "{{.Repository}} {{.ID}}"])
            #expect(Set(ours.split(separator: "\n")) == Set(theirs.split(separator: "\n")))
            try testbed.docker("h1", ["run", "-d", "--name", "saved", "whoami"])
            #expect(try testbed.docker("h1", ["ps", "--format", "{{.Names}} {{.State}}"]).contains("saved running"))
        }
    }

    @Test func mountsReadOnlyRootsAndLimits() throws {
        try withContainerTestbed { testbed in
            let source = testbed.root + "/bind-source"
            try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
            try "from the host\n".write(toFile: source + "/file", atomically: true, encoding: .utf8)
            let id = try testbed.docker("h1", [
                "run", "-d", "--name", "mounts", "--read-only", "--tmpfs", "/scratch", "-v", "\(source):/host:ro", "-v", "vol1:/data",
                "--pids-limit", "50", "--cpus", "0.5", "busybox", "sh", "-c",
                "cat /host/file; touch /rootfs-write 2>&1 || echo root-readonly; touch /host/x 2>&1 || echo bind-readonly; "
                    + "echo kept > /data/kept && echo data-ok; touch /scratch/x && echo tmpfs-ok; sleep 1000",
            ]).trimmingCharacters(in: .whitespacesAndNewlines)
            var logs = ""
            #expect(eventually(10) {
                logs = (try? TestHost.run(["sh", "-c", "docker logs mounts 2>&1"], environment: ["DOCKER_HOST": "unix://\(testbed.socket("h1"))"])) ?? ""
                return logs.contains("tmpfs-ok")
            }, "\(logs)")
            #expect(logs.contains("from the host") && logs.contains("root-readonly") && logs.contains("bind-readonly") && logs.contains("data-ok"))
            // The named volume is a directory the daemon keeps.
            let volume = testbed.stateDirectory("h1") + "/volumes/vol1/_data/kept"
            #expect((try? String(contentsOfFile: volume, encoding: .utf8)) == "kept\n")
            // The cgroup holds the limits (runc writes them; the kernel reads them back).
            let pids = try String(contentsOfFile: "/sys/fs/cgroup/pids/swarmnet/\(id)/pids.max", encoding: .utf8)
            #expect(pids.trimmingCharacters(in: .whitespacesAndNewlines) == "50")
            let quota = try String(contentsOfFile: "/sys/fs/cgroup/cpu/swarmnet/\(id)/cpu.cfs_quota_us", encoding: .utf8)
            #expect(quota.trimmingCharacters(in: .whitespacesAndNewlines) == "50000")
            try testbed.docker("h1", ["rm", "-f", "mounts"])
            #expect(try traces(testbed, "h1") == [])
            #expect((try? String(contentsOfFile: volume, encoding: .utf8)) == "kept\n", "a volume outlives its container")
        }
    }

    @Test func containersReachEachOtherByNameAcrossHosts() throws {
        try withContainerTestbed(hosts: 2) { testbed in
            try testbed.docker("h1", ["run", "-d", "--name", "who", "--network", "web", "--network-alias", "whoami-alias", "whoami"])
            try testbed.docker("h2", ["run", "-d", "--name", "client", "--network", "web", "busybox", "sh", "-c",
                                      "for i in $(seq 40); do wget -q -O - http://who/ 2>/dev/null && break; sleep 0.5; done; "
                                        + "wget -q -O - http://whoami-alias/ | head -1 | sed 's/^/alias /'"])
            var logs = ""
            // (No `wget -T`: Debian's static busybox crashes with it.)
            #expect(try eventually(20) {
                logs = try TestHost.run(["sh", "-c", "docker logs client 2>&1"], environment: ["DOCKER_HOST": "unix://\(testbed.socket("h2"))"])
                return logs.contains("Hostname:")
            }, "logs: \(logs)\nh2: \(testbed.log("h2").suffix(3000))\nh1: \(testbed.log("h1").suffix(2000))")
            let whoHostname = try #require(try inspect(testbed, "h1", "who")["Config"] as? [String: Any])["Hostname"] as? String
            #expect(logs.contains("Hostname: \(whoHostname ?? "-")"))
            // Its --network-alias answers too, from the other host.
            #expect(try eventually(10) {
                try TestHost.run(["sh", "-c", "docker logs client 2>&1"], environment: ["DOCKER_HOST": "unix://\(testbed.socket("h2"))"])
                    .contains("alias Hostname: \(whoHostname ?? "-")")
            })
        }
    }

    /// The scripted nginx (Debian's, workers as nobody) serves its page to
    /// another container by name; stopping it uses its StopSignal (SIGQUIT).
    @Test func nginxServesItsPage() throws {
        let nginx = try TestImages.path("nginx")
        try withContainerTestbed { testbed in
            #expect(try testbed.docker("h1", ["load", "-i", nginx]).contains("Loaded image: nginx:latest"))
            try testbed.docker("h1", ["run", "-d", "--name", "web1", "--network", "web", "nginx"])
            try testbed.docker("h1", ["run", "-d", "--name", "fetch", "--network", "web", "busybox", "sh", "-c",
                                      "for i in $(seq 20); do wget -q -O - http://web1/ && break; sleep 0.3; done"])
            #expect(try eventually(15) { try testbed.docker("h1", ["logs", "fetch"]).contains("Welcome to nginx!") })
            #expect(try testbed.docker("h1", ["logs", "web1"]).contains("\"GET / HTTP/1.1\" 200"))
            try testbed.docker("h1", ["stop", "web1"])
            #expect(try state(testbed, "h1", "web1")["ExitCode"] as? Int == 0, "nginx quits on SIGQUIT, before the grace period")
        }
    }

    @Test func logsTailAndFollowUntilTheTaskEnds() throws {
        try withContainerTestbed { testbed in
            try testbed.docker("h1", ["run", "-d", "--name", "talker", "busybox", "sh", "-c",
                                      "for i in 1 2 3 4 5; do echo out $i; echo err $i >&2; sleep 0.3; done"])
            // Follow returns once the task ends, with every line.
            let followed = try TestHost.run(["sh", "-c", "timeout 20 docker logs -f talker 2>&1"],
                                            environment: ["DOCKER_HOST": "unix://\(testbed.socket("h1"))"])
            for index in 1...5 { #expect(followed.contains("out \(index)") && followed.contains("err \(index)")) }
            #expect(try TestHost.run(["sh", "-c", "docker logs talker 2>/dev/null"],
                                     environment: ["DOCKER_HOST": "unix://\(testbed.socket("h1"))"])
                    == (1...5).map { "out \($0)\n" }.joined())
            // swarmnet's own view of the node's tasks.
            #expect(try testbed.swarmnet("h1", ["task", "logs", "talker"]).contains("out 5"))
            let listed = try JSONSerialization.jsonObject(with: Data(try testbed.swarmnet("h1", ["task", "ps", "--format", "json"]).utf8))
            #expect(((listed as? [[String: Any]])?.first?["State"] as? String) == "exited")
            // --since: a time after every line leaves nothing.
            #expect(try testbed.docker("h1", ["logs", "--since", "\(Int(Date().timeIntervalSince1970) + 5)", "talker"]).isEmpty)
            let tail = try testbed.docker("h1", ["logs", "--tail", "2", "-t", "talker"])
            #expect(tail.split(separator: "\n").count <= 2)
            let ended = try state(testbed, "h1", "talker")
            #expect(ended["Status"] as? String == "exited")
            #expect(ended["ExitCode"] as? Int == 0)
            // Every state swarmkit's way, each with its time and message.
            let history = try #require(try inspect(testbed, "h1", "talker")["TaskHistory"] as? [[String: Any]])
            #expect(history.compactMap { $0["State"] as? String } == ["preparing", "ready", "starting", "running", "complete"])
            #expect(history.allSatisfy { ($0["Timestamp"] as? String)?.hasPrefix("20") == true && !($0["Message"] as? String ?? "").isEmpty })
        }
    }

    /// `--log-opt max-size/max-file`: the log rotates, the oldest lines go,
    /// and `docker logs` reads across the files that remain.
    @Test func logsRotateAtTheirCap() throws {
        try withContainerTestbed { testbed in
            let id = try testbed.docker("h1", ["run", "-d", "--name", "chatty", "--log-opt", "max-size=2k", "--log-opt", "max-file=2",
                                               "busybox", "sh", "-c", "for i in $(seq 1 200); do echo line-$i; done"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(try eventually(10) { try state(testbed, "h1", "chatty")["Status"] as? String == "exited" })
            let directory = testbed.stateDirectory("h1") + "/tasks/" + id
            let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("container.log") }.sorted()
            #expect(files == ["container.log", "container.log.1"])
            for file in files {
                let size = try FileManager.default.attributesOfItem(atPath: directory + "/" + file)[.size] as? Int ?? 0
                #expect(size <= 2048)
            }
            let logs = try testbed.docker("h1", ["logs", "chatty"]).split(separator: "\n")
            #expect(logs.last == "line-200")
            #expect(!logs.contains("line-1"), "the oldest lines were rotated away")
            #expect(logs.count > 20 && logs.count < 200)
            let numbers = logs.compactMap { Int($0.dropFirst(5)) }
            #expect(numbers == Array((numbers.first ?? 0)...200), "what remains is in order, with no gap")
            #expect(throws: (any Error).self) {
                try testbed.docker("h1", ["run", "-d", "--log-driver", "syslog", "busybox", "true"])
            }
        }
    }

    /// `docker run --rm`: gone, with everything it held, once it ends.
    @Test func anAutoRemovedContainerGoesWhenItEnds() throws {
        try withContainerTestbed { testbed in
            try testbed.docker("h1", ["run", "-d", "--rm", "--name", "brief", "--network", "web", "busybox", "sleep", "0.5"])
            #expect(try testbed.docker("h1", ["ps", "-a", "--format", "{{.Names}}"]).contains("brief"))
            #expect(try eventually(10) { try testbed.docker("h1", ["ps", "-aq"]).isEmpty })
            #expect(try eventually(5) { try traces(testbed, "h1").isEmpty })
            let network = try testbed.docker("h1", ["network", "inspect", "web", "--format", "{{len .Containers}}"])
            #expect(network.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        }
    }

    @Test func anOOMKillIsReported() throws {
        try withContainerTestbed { testbed in
            try testbed.docker("h1", ["run", "-d", "--name", "hog", "-m", "8m", "busybox", "sh", "-c",
                                      "x=$(head -c 200000000 /dev/zero | tr '\\0' x); echo $x"])
            #expect(try eventually(20) { try state(testbed, "h1", "hog")["Status"] as? String == "exited" })
            let ended = try state(testbed, "h1", "hog")
            #expect(ended["OOMKilled"] as? Bool == true)
            #expect(ended["ExitCode"] as? Int == 137)
            let last = try #require((try inspect(testbed, "h1", "hog")["TaskHistory"] as? [[String: Any]])?.last)
            #expect(last["State"] as? String == "failed")
            #expect(last["Err"] as? String == "task: non-zero exit (137): OOM killed")
        }
    }

    @Test func healthGoesFromStartingToHealthyToUnhealthy() throws {
        try withContainerTestbed { testbed in
            // Healthy for three runs, failing after.
            let check = "n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; [ $n -le 3 ]"
            try testbed.docker("h1", ["run", "-d", "--name", "sick", "--health-cmd", check, "--health-interval", "300ms",
                                      "--health-retries", "2", "busybox", "sleep", "1000"])
            #expect(try (state(testbed, "h1", "sick")["Health"] as? [String: Any])?["Status"] as? String == "starting")
            #expect(try eventually(10) { try (state(testbed, "h1", "sick")["Health"] as? [String: Any])?["Status"] as? String == "healthy" })
            #expect(try eventually(10) { try (state(testbed, "h1", "sick")["Health"] as? [String: Any])?["Status"] as? String == "unhealthy" })
            let health = try #require(try state(testbed, "h1", "sick")["Health"] as? [String: Any])
            #expect((health["FailingStreak"] as? Int ?? 0) >= 2)
            #expect(!((health["Log"] as? [[String: Any]]) ?? []).isEmpty)
            #expect(try testbed.docker("h1", ["ps", "--format", "{{.Status}}"]).contains("(unhealthy)"))
        }
    }

    /// Swarm's rule: a task with a health check is a service backend only
    /// while it is healthy; the balancer (nft's DNAT map, read with `nft
    /// -j`) and DNS (`tasks.NAME`, read with dig) follow its health.
    @Test func aTaskIsABackendOnlyWhileHealthy() throws {
        try withContainerTestbed { testbed in
            try testbed.swarmnet("h1", ["service", "create", "--network", "web", "hs"])
            let client = try testbed.workload("hsc")
            try testbed.swarmnet("h1", ["network", "connect", "web", client.name!])
            // Distinct backend addresses in the client's DNAT map (a VIP with
            // no ports maps TCP and UDP).
            func backends() -> Int { Set(ServiceTests.dnatTargets(client.name!, table: "swarmnet")).count }
            // Healthy from its second run for ever; the other for three runs.
            try testbed.docker("h1", ["run", "-d", "--name", "steady", "--label", "com.swarmnet.service=hs", "--network", "web",
                                      "--health-cmd", "test -f /tmp/seen || { touch /tmp/seen; exit 1; }", "--health-interval", "500ms",
                                      "--health-retries", "1", "busybox", "sleep", "1000"])
            let flakyCheck = "n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; [ $n -le 3 ]"
            try testbed.docker("h1", ["run", "-d", "--name", "flaky", "--label", "com.swarmnet.service=hs", "--network", "web",
                                      "--health-cmd", flakyCheck, "--health-interval", "500ms", "--health-retries", "1",
                                      "busybox", "sleep", "1000"])
            // Starting: no backend yet (steady's first check fails).
            #expect(backends() == 0)
            #expect(eventually(10) { backends() == 2 })
            #expect(eventually(5) { ServiceTests.dig(client.name!, "tasks.hs").count == 2 })
            // flaky turns unhealthy: it leaves both.
            #expect(eventually(10) { backends() == 1 },
                    "\(ServiceTests.dnatTargets(client.name!, table: "swarmnet"))")
            #expect(eventually(5) { ServiceTests.dig(client.name!, "tasks.hs").count == 1 })
            let steadyAddress = try #require(((try inspect(testbed, "h1", "steady")["NetworkSettings"] as? [String: Any])?["Networks"]
                as? [String: Any])?["web"] as? [String: Any])["IPAddress"] as? String
            #expect(ServiceTests.dig(client.name!, "tasks.hs") == [steadyAddress].compactMap { $0 })
            // A task that stops leaves too.
            try testbed.docker("h1", ["rm", "-f", "steady"])
            #expect(eventually(5) { backends() == 0 })
        }
    }

    @Test func aRestartedDaemonAdoptsLiveTasksAndReportsDeadOnes() throws {
        try withContainerTestbed { testbed in
            let keep = try testbed.docker("h1", ["run", "-d", "--name", "keep", "busybox", "sleep", "1000"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let doomed = try testbed.docker("h1", ["run", "-d", "--name", "doomed", "busybox", "sleep", "1000"])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let keepPid = try #require(try runtimeState(testbed, "h1", keep)?["pid"] as? Int)
            let doomedPid = try #require(try runtimeState(testbed, "h1", doomed)?["pid"] as? Int)
            testbed.kill9("h1")
            // Killed while no daemon watched it.
            kill(Int32(doomedPid), SIGKILL)
            #expect(eventually(5) { kill(Int32(doomedPid), 0) != 0 || (try? String(contentsOfFile: "/proc/\(doomedPid)/stat", encoding: .utf8))?.contains(" Z ") == true })
            try testbed.start("h1")
            let kept = try state(testbed, "h1", "keep")
            #expect(kept["Status"] as? String == "running")
            #expect(kept["Pid"] as? Int == keepPid)
            #expect(try runtimeState(testbed, "h1", keep)?["status"] as? String == "running")
            #expect(try eventually(5) { try state(testbed, "h1", "doomed")["Status"] as? String == "exited" })
            #expect(try state(testbed, "h1", "doomed")["ExitCode"] as? Int == 137)
            // The adopted task still stops and goes.
            try testbed.docker("h1", ["rm", "-f", "keep", "doomed"])
            #expect(try traces(testbed, "h1") == [])
        }
    }

    @Test func badRequestsAreRefusedAndLeaveNothing() throws {
        try withContainerTestbed { testbed in
            func refusal(_ arguments: [String]) -> String {
                do {
                    try testbed.docker("h1", arguments)
                    return "accepted"
                } catch {
                    return "\(error)"
                }
            }
            #expect(refusal(["run", "-d", "--name", "a", "--network", "web", "nosuch:1.99"]).contains("no registry is reachable"))
            #expect(refusal(["image", "inspect", "nosuch:1.99"]).contains("No such image: nosuch:1.99"))
            #expect(refusal(["run", "-d", "--name", "b", "--network", "web", "busybox", "/no/such/command"])
                .contains("no such file or directory"))
            #expect(refusal(["run", "-d", "--name", "c", "-v", "/no/such/dir:/data", "busybox", "true"])
                .contains("bind source path does not exist: /no/such/dir"))
            #expect(refusal(["run", "-d", "--name", "d", "-m", "4m", "busybox", "true"]).contains("Minimum memory limit"))
            #expect(refusal(["run", "-d", "--name", "e", "--network", "nosuchnet", "busybox", "true"]).contains("nosuchnet"))
            #expect(refusal(["run", "-d", "--name", "f", "--user", "ghost", "busybox", "true"]).contains("unable to find user ghost"))
            #expect(try traces(testbed, "h1") == [])
            let network = try testbed.docker("h1", ["network", "inspect", "web", "--format", "{{len .Containers}}"])
            #expect(network.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
            #expect(try testbed.docker("h1", ["ps", "-aq"]).isEmpty)
            // A name in use.
            try testbed.docker("h1", ["run", "-d", "--name", "taken", "busybox", "sleep", "100"])
            #expect(refusal(["run", "-d", "--name", "taken", "busybox", "true"]).contains("is already in use"))
            #expect(refusal(["rm", "taken"]).contains("Stop the container before attempting removal"))
            // An image in use.
            #expect(refusal(["rmi", "busybox"]).contains("conflict"))
        }
    }
}

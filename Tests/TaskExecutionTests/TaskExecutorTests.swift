import Cluster
import Foundation
import Logging
import Namespaces
import TaskExecution
import TestKit
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The executor alone, on the real kernel and runc, for what a service's
/// task needs beyond `docker run` (the orchestrator drives this API). Its
/// tasks have no networks: the network layer here attaches nothing (the
/// daemon's, with networks, is tested through the API in ContainerTests).
@Suite(.serialized) struct TaskExecutorTests {
    struct NoNetworks: TaskNetworking {
        func attach(namespace: String, task: String, networks: [NetworkAttachmentSpec]) async throws -> [NetworkAttachment] { [] }
        func detach(namespace: String) async {}
        func setHealth(namespace: String, healthy: Bool) async {}
    }

    /// An executor over a fresh store holding busybox, all under one
    /// directory that goes afterwards with whatever a failed test left.
    func withExecutor(_ body: (TaskExecutor) async throws -> Void) async throws {
        try requireRoot("TaskExecutorTests")
        let directory = "/tmp/swarmnet-executor-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let runtimeRoot = directory + "/runc"
        defer {
            removeTasks(runtimeRoot: runtimeRoot, mountsUnder: directory)
            _ = try? run(["rm", "-rf", "--one-file-system", directory])
        }
        let images = try ImageStore(root: directory + "/images")
        let busybox = try TestImages.path("busybox")
        let descriptor = open(busybox, O_RDONLY)
        var info = stat()
        fstat(descriptor, &info)
        _ = try images.load(FileRegion(descriptor: descriptor, length: Int64(info.st_size)))
        close(descriptor)
        let executor = try TaskExecutor(
            root: directory + "/tasks", images: images, runtime: OCIRuntime(root: runtimeRoot),
            shimPath: try builtExecutable("swarmnet-shim").path, networking: NoNetworks(),
            namespacePrefix: "snt\(String(getpid(), radix: 36))e-", logger: Logger(label: "TaskExecutorTests"))
        // The executor removes what its tasks hold (container, namespace,
        // mount), whatever the test did; the defer then takes what is left.
        var failure: Error?
        do { try await body(executor) } catch { failure = error }
        for task in await executor.list() { try? await executor.remove(task.id, force: true) }
        if let failure { throw failure }
    }

    /// Healthy for two runs, then failing, checked every 200 ms.
    func sickSpec(_ name: String) -> TaskSpec {
        var spec = TaskSpec(name: name, image: "busybox", command: ["sleep", "1000"])
        spec.healthcheck = HealthConfig(test: ["CMD-SHELL", "n=$(cat /tmp/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /tmp/n; [ $n -le 2 ]"],
                                        interval: 200_000_000, retries: 1)
        return spec
    }

    /// Generous: under load (suites run side by side on two cores) one
    /// `runc exec` of a health check has taken seconds.
    func waitFor(_ executor: TaskExecutor, _ id: String, seconds: Double = 60, _ condition: (TaskRecord) -> Bool) async throws -> TaskRecord {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let record = try await executor.task(id)
            if condition(record) { return record }
            try await Task.sleep(for: .milliseconds(50))
        }
        return try await executor.task(id)
    }

    @Test func anUnhealthyServiceTaskFailsAndIsStopped() async throws {
        try await withExecutor { executor in
            var spec = sickSpec("svc-task")
            spec.failWhenUnhealthy = true
            spec.stopTimeout = 1 // sleep as PID 1 ignores SIGTERM: SIGKILL after 1 s
            let created = try await executor.create(spec)
            _ = try await executor.start(created.id)
            let ended = try await waitFor(executor, created.id) { $0.state.isTerminal }
            #expect(ended.state == .failed)
            #expect(ended.error == "task: container unhealthy (exit 137)", "\(ended.error ?? "-")")
            #expect(ended.health?.status == "unhealthy")
            #expect(ended.history?.map(\.state) == [.preparing, .ready, .starting, .running, .failed])
            // Its process is gone: the runtime no longer runs it.
            let runtimeRoot = await executor.runtime.root
            let listed = try run(["runc", "--root", runtimeRoot, "list", "-q"])
            #expect(!listed.contains(created.id))
            #expect(!NetworkNamespace.path(created.namespace).exists)
            try await executor.remove(created.id, force: false)
            await #expect(throws: ExecutorError.self) { try await executor.task(created.id) }
        }
    }

    @Test func anUnhealthyContainerOnlyReportsIt() async throws {
        try await withExecutor { executor in
            let created = try await executor.create(sickSpec("plain"))
            _ = try await executor.start(created.id)
            let sick = try await waitFor(executor, created.id) { $0.health?.status == "unhealthy" }
            #expect(sick.health?.status == "unhealthy")
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await executor.task(created.id).state == .running)
            try await executor.remove(created.id, force: true)
        }
    }
}

import Cluster
import Control
import DockerAPI
import NIOHTTP1

/// The swarm behind Docker's `/swarm` and `/nodes` paths: the runtime's
/// answers; its control errors become HTTP statuses at the edge
/// (DockerRouter).
public struct SwarmAPI: SwarmBackend {
    public let runtime: SwarmRuntime

    public init(runtime: SwarmRuntime) {
        self.runtime = runtime
    }

    public func swarmInfo() async -> SwarmInfo { await runtime.swarmInfo() }

    public func initialize(_ request: SwarmInitRequest) async throws -> String {
        try await runtime.initialize(request)
    }

    public func join(_ request: SwarmJoinRequest) async throws {
        try await runtime.join(request)
    }

    public func leave(force: Bool) async throws {
        try await runtime.leave(force: force)
    }

    public func inspectSwarm() async throws -> SwarmResource {
        try await runtime.inspectSwarm()
    }

    public func updateSwarm(_ spec: SwarmSpec, _ flags: SwarmUpdateFlags) async throws {
        try await runtime.updateSwarm(spec, flags)
    }

    public func listNodes(filters: [String: [String]]) async throws -> [NodeResource] {
        try await runtime.listNodes(filters: filters)
    }

    public func inspectNode(_ reference: String) async throws -> NodeResource {
        try await runtime.inspectNode(reference)
    }

    public func updateNode(_ reference: String, version: UInt64, _ spec: NodeSpec) async throws {
        try await runtime.updateNode(reference, version: version, spec)
    }

    public func removeNode(_ reference: String, force: Bool) async throws {
        try await runtime.removeNode(reference, force: force)
    }

    public func debugRaft() async throws -> [UInt8] {
        try await runtime.debugRaft()
    }
}

/// Swarm services and tasks behind `/services` and `/tasks`; control
/// errors become HTTP statuses at the edge (DockerRouter).
public struct SwarmServicesAPI: ServiceOrchestration {
    public let runtime: SwarmRuntime

    public init(runtime: SwarmRuntime) {
        self.runtime = runtime
    }

    public func isActive() async -> Bool { await runtime.orchestrates }

    public func workerRefusal() async -> String? {
        let inSwarm = await runtime.isInSwarm, orchestrates = await runtime.orchestrates
        return inSwarm && !orchestrates ? ControlError.notManager.message : nil
    }

    public func createService(_ spec: ServiceSpec) async throws -> ServiceCreateResponse {
        try await runtime.createService(spec)
    }

    public func listServices(filters: [String: [String]], status: Bool) async throws -> [ServiceResource] {
        try await runtime.listServices(filters: filters, status: status)
    }

    public func inspectService(_ reference: String) async throws -> ServiceResource {
        try await runtime.inspectService(reference)
    }

    public func updateService(_ reference: String, version: UInt64, rollback: Bool, _ spec: ServiceSpec) async throws -> ServiceUpdateResponse {
        try await runtime.updateService(reference, version: version, rollback: rollback, spec)
    }

    public func removeService(_ reference: String) async throws {
        try await runtime.removeService(reference)
    }

    public func listTasks(filters: [String: [String]]) async throws -> [TaskResource] {
        try await runtime.listTasks(filters: filters)
    }

    public func inspectTask(_ reference: String) async throws -> TaskResource {
        try await runtime.inspectTask(reference)
    }

    public func logs(service: String?, task: String?, options: LogOptions) async throws -> [UInt8] {
        try await runtime.logs(service: service, task: task, options: options)
    }

    public func followLogs(service: String?, task: String?, options: LogOptions) async throws -> AsyncThrowingStream<[UInt8], Error> {
        try await runtime.followLogs(service: service, task: task, options: options)
    }
}

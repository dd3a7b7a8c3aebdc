import Cluster
import Control
import DockerAPI
import FoundationEssentials
import ReplicatedStore

/// Swarm services and tasks behind Docker's `/services` and `/tasks`. A
/// service has two halves under one ID, written in one transaction: its
/// network side (VIPs, published ports: the cluster's allocations) and its
/// orchestrated side (spec, and the tasks the orchestrator makes).
extension SwarmRuntime {
    public var orchestrates: Bool { membership?.raft != nil }

    public func createService(_ request: ServiceSpec) async throws -> ServiceCreateResponse {
        let store = try await currentStore()
        var request = request
        if request.name.isEmpty { request.name = "service-" + String(Identifier.swarm().prefix(8)) }
        // Checked before anything is made: a bad spec leaves nothing.
        _ = try ServiceSpecConversion.definition(request, networks: [])
        if let clash = store.services().first(where: { $0.object.spec.name == request.name }) {
            throw ControlError.rpc(.conflict, "AlreadyExists", "name conflicts with an existing object: service \(request.name) already exists (\(clash.object.id.prefix(12)))")
        }
        let allocation = ServiceRequest(request)
        // Only a published port may need the ingress network made, on
        // this host's routes.
        let hostRoutes = allocation.ports.isEmpty ? [] : try await configuration.hostRoutes()
        let spec = request
        let record = try await mutateCluster { state in
            if !allocation.ports.isEmpty { _ = try state.ensureIngressNetwork(id: Identifier.make(), now: Date(), hostRoutes: hostRoutes) }
            let record = try state.createService(allocation, id: Identifier.make(), now: Date())
            let definition = try ServiceSpecConversion.definition(spec, networks: Self.networkTargets(of: record, spec, in: state))
            return (record, [SwarmStore.create(SwarmService(id: record.id, createdAt: record.created, spec: definition))])
        }
        logger.info("service created", metadata: [
            "service": "\(record.name)", "id": "\(record.id.prefix(12))", "vips": "\(record.virtualIPs.map(\.address.description))",
            "ports": "\(record.ports.map { "\($0.publishedPort ?? 0):\($0.targetPort)/\($0.protocol.rawValue) \($0.publishMode.rawValue)" })"])
        return ServiceCreateResponse(id: record.id)
    }

    /// The networks a service's tasks join, as IDs with the spec's
    /// aliases: those of its spec, or the routing mesh's ingress network
    /// alone when it only publishes ports (Docker's `-p 80:80` without
    /// `--network`).
    static func networkTargets(of record: ServiceRecord, _ spec: ServiceSpec, in state: ClusterState) -> [NetworkTarget] {
        let requested = spec.taskTemplate?.networks ?? spec.networks ?? []
        var targets: [NetworkTarget] = []
        for (index, network) in record.networks.enumerated() {
            targets.append(NetworkTarget(network: network, aliases: index < requested.count ? requested[index].aliases ?? [] : []))
        }
        if targets.isEmpty, record.isPublished, let ingress = state.ingressNetwork {
            targets.append(NetworkTarget(network: ingress.id))
        }
        return targets
    }

    /// The ingress network, which specs shown to the CLI leave out (see
    /// `ServiceSpecConversion.taskSpec`).
    func ingressNetworkID(_ store: SwarmStore) -> String? { clusterState(store).0.ingressNetwork?.id }

    public func listServices(filters: [String: [String]], status: Bool) async throws -> [ServiceResource] {
        for key in filters.keys where !["name", "id", "label", "mode"].contains(key) {
            throw ControlError(.invalidArgument, "invalid filter '\(key)'")
        }
        let store = try await currentStore()
        let tasks = Dictionary(grouping: store.tasks().map(\.object), by: \.serviceID)
        let ingress = ingressNetworkID(store)
        var resources: [ServiceResource] = []
        for service in store.services().sorted(by: { $0.object.createdAt < $1.object.createdAt }) {
            let spec = service.object.spec
            let mode: String
            switch spec.mode {
            case .replicated: mode = "replicated"
            case .global: mode = "global"
            }
            guard filters["name"].map({ names in names.contains { spec.name.hasPrefix($0) } }) ?? true,
                  filters["id"].map({ ids in ids.contains { service.object.id.hasPrefix($0) } }) ?? true,
                  filters["mode"].map({ $0.contains(mode) }) ?? true,
                  (filters["label"] ?? []).allSatisfy({ Self.matches(label: $0, spec.labels) })
            else { continue }
            resources.append(await resource(service, tasks: tasks[service.object.id] ?? [], withStatus: status, ingressNetworkID: ingress))
        }
        return resources
    }

    public func inspectService(_ reference: String) async throws -> ServiceResource {
        let store = try await currentStore()
        let service = try Self.resolveService(reference, in: store.services())
        return await resource(service, tasks: store.tasks().map(\.object).filter { $0.serviceID == service.object.id }, withStatus: true,
                              ingressNetworkID: ingressNetworkID(store))
    }

    static func resolveService(_ reference: String, in services: [SwarmStore.Versioned<SwarmService>]) throws(ControlError) -> SwarmStore.Versioned<SwarmService> {
        if let exact = services.first(where: { $0.object.id == reference || $0.object.spec.name == reference }) { return exact }
        let prefixed = services.filter { $0.object.id.hasPrefix(reference) }
        guard prefixed.count == 1, !reference.isEmpty else {
            throw ControlError(prefixed.isEmpty ? .notFound : .invalidArgument,
                               prefixed.isEmpty ? "service \(reference) not found" : "service \(reference) is ambiguous (\(prefixed.count) matches found)")
        }
        return prefixed[0]
    }

    /// Docker's service JSON: the store's spec with the network side's
    /// endpoint (VIPs, ports), and the counts of its `tasks`.
    func resource(_ service: SwarmStore.Versioned<SwarmService>, tasks: [SwarmTask], withStatus: Bool,
                  ingressNetworkID: String?) async -> ServiceResource {
        let object = service.object
        let network = try? await configuration.networkSide?.inspectService(object.id)
        let endpointSpec = network?.spec.endpointSpec
        var resource = ServiceResource(
            id: object.id, version: service.version, createdAt: object.createdAt.rfc3339, updatedAt: object.updatedAt.rfc3339,
            spec: ServiceSpecConversion.spec(object.spec, endpoint: endpointSpec, ingressNetworkID: ingressNetworkID), ports: network?.endpoint.ports ?? [],
            virtualIPs: (network?.endpoint.virtualIPs ?? []).map { (networkID: $0.networkID, addr: $0.addr) }, backends: network?.backends)
        resource.previousSpec = object.previousSpec.map { ServiceSpecConversion.spec($0, endpoint: endpointSpec, ingressNetworkID: ingressNetworkID) }
        resource.updateStatus = ServiceSpecConversion.updateStatus(object.updateStatus)
        let running = UInt64(tasks.filter { $0.desiredState == .running && $0.status.state == .running }.count)
        let desired: UInt64
        switch object.spec.mode {
        case .replicated(let replicas): desired = replicas
        case .global: desired = UInt64(tasks.filter { $0.desiredState == .running && !$0.status.state.isTerminal }.count)
        }
        let completed = UInt64(tasks.filter { $0.status.state == .complete }.count)
        resource.serviceStatus = withStatus ? .init(runningTasks: running, desiredTasks: desired, completedTasks: completed) : nil
        return resource
    }

    /// `docker service update` and `rollback`. The spec and the network
    /// side (networks with their VIPs, published ports) change in one
    /// transaction; a changed task template rolls the tasks over, so new
    /// tasks join the new networks. A rollback restores the previous
    /// template's networks and the ports published before the update.
    public func updateService(_ reference: String, version: UInt64, rollback: Bool, _ request: ServiceSpec) async throws -> ServiceUpdateResponse {
        let store = try await currentStore()
        let current = try Self.resolveService(reference, in: store.services())
        guard current.version == version else { throw ControlError.outOfSequence }
        var service = current.object
        let now = Date()
        let allocation: ServiceRequest?
        if rollback {
            guard let previous = service.previousSpec else {
                throw ControlError(.failedPrecondition, "service \(service.spec.name) does not have a previous spec")
            }
            service.previousSpec = service.spec
            service.spec = previous
            if previous.task != service.previousSpec?.task {
                service.templateVersion += 1
                service.updateStatus = UpdateProgress(state: .rollbackStarted, startedAt: now, message: "manually requested rollback")
            }
            let (cluster, _) = clusterState(store)
            allocation = cluster.services[service.id].map {
                ServiceRequest($0, networks: previous.task.networks.map(\.network), ports: service.previousPorts ?? $0.ports)
            }
        } else {
            guard request.name == service.spec.name else {
                throw ControlError(.invalidArgument, "renaming services is not supported")
            }
            // Checked before anything is written: a bad spec changes nothing.
            _ = try ServiceSpecConversion.definition(request, networks: service.spec.task.networks)
            allocation = ServiceRequest(request)
        }
        let hostRoutes = (allocation?.ports.isEmpty ?? true) ? [] : try await configuration.hostRoutes()
        let before = current.object.spec.task
        let updated = service
        try await mutateCluster { state in
            // Another update got in first: the CLI's version is stale.
            guard store.service(updated.id)?.version == current.version else { throw ControlError.outOfSequence }
            var service = updated
            if var allocation, state.services[service.id] != nil {
                // The ingress network is joined through published ports, not
                // named: the spec the CLI sends back, and a rollback's
                // template, name it for a service that only publishes ports.
                allocation.networks.removeAll { (try? state.network($0.target))?.isIngress == true }
                if !allocation.ports.isEmpty { _ = try state.ensureIngressNetwork(id: Identifier.make(), now: now, hostRoutes: hostRoutes) }
                service.previousPorts = state.services[service.id]?.ports
                let record = try state.updateService(service.id, allocation, now: now)
                if !rollback {
                    let definition = try ServiceSpecConversion.definition(request, networks: Self.networkTargets(of: record, request, in: state))
                    service.previousSpec = service.spec
                    service.spec = definition
                }
            } else if !rollback {
                service.previousSpec = service.spec
                service.spec = try ServiceSpecConversion.definition(request, networks: service.spec.task.networks)
            }
            if !rollback && service.spec.task != before {
                service.templateVersion += 1
                service.updateStatus = UpdateProgress(state: .updating, startedAt: now, message: "update in progress")
            }
            service.updatedAt = now
            return ((), [SwarmStore.update(service, version: current.version)])
        }
        logger.info(rollback ? "service rolled back" : "service updated", metadata: ["service": "\(service.spec.name)"])
        return ServiceUpdateResponse()
    }

    public func removeService(_ reference: String) async throws {
        let store = try await currentStore()
        let current = try Self.resolveService(reference, in: store.services())
        // Both halves in one transaction; the orchestrator then stops the
        // tasks, whose endpoints are no longer anyone's backends.
        let id = current.object.id
        try await mutateCluster { state in
            if state.services[id] != nil { _ = try state.removeService(id) }
            return ((), [.delete(collection: SwarmService.collection, key: id, expectedVersion: nil)])
        }
        logger.info("service removed", metadata: ["service": "\(current.object.spec.name)"])
    }

    // MARK: - Tasks

    public func listTasks(filters: [String: [String]]) async throws -> [TaskResource] {
        for key in filters.keys where !["id", "name", "service", "node", "desired-state", "label", "_up-to-date"].contains(key) {
            throw ControlError(.invalidArgument, "invalid filter '\(key)'")
        }
        let store = try await currentStore()
        let services = store.services()
        let ingress = ingressNetworkID(store)
        var serviceIDs: Set<String>?
        if let references = filters["service"] {
            serviceIDs = Set(references.compactMap { try? Self.resolveService($0, in: services).object.id })
        }
        var nodeIDs: Set<String>?
        if let references = filters["node"] {
            let nodes = store.nodes().map(\.object)
            nodeIDs = Set(references.compactMap { try? NodeRules.resolve($0, in: nodes).id })
        }
        let templateVersions = Dictionary(services.map { ($0.object.id, $0.object.templateVersion) }, uniquingKeysWith: { first, _ in first })
        let upToDate = filters["_up-to-date"].map { !$0.isEmpty && $0.allSatisfy { $0 == "true" || $0 == "1" } } ?? false
        return store.tasks()
            .filter { versioned in
                let task = versioned.object
                return (filters["id"].map { ids in ids.contains { task.id.hasPrefix($0) } } ?? true)
                    && (filters["name"].map { names in names.contains { task.name.hasPrefix($0) } } ?? true)
                    && (serviceIDs.map { $0.contains(task.serviceID) } ?? true)
                    && (nodeIDs.map { task.nodeID.map($0.contains) ?? false } ?? true)
                    && (filters["desired-state"].map { $0.contains(task.desiredState.rawValue) } ?? true)
                    && (!upToDate || templateVersions[task.serviceID] == task.templateVersion)
            }
            .sorted { ($0.object.serviceName, $0.object.slot, $0.object.createdAt) < ($1.object.serviceName, $1.object.slot, $1.object.createdAt) }
            .map { ServiceSpecConversion.resource($0.object, version: $0.version, ingressNetworkID: ingress) }
    }

    public func inspectTask(_ reference: String) async throws -> TaskResource {
        let store = try await currentStore()
        let found = try Self.resolveTask(reference, in: store.tasks())
        return ServiceSpecConversion.resource(found.object, version: found.version, ingressNetworkID: ingressNetworkID(store))
    }

    /// A task by ID or unique ID prefix.
    static func resolveTask(_ reference: String, in tasks: [SwarmStore.Versioned<SwarmTask>]) throws(ControlError) -> SwarmStore.Versioned<SwarmTask> {
        let matches = tasks.filter { $0.object.id.hasPrefix(reference) }
        guard let found = matches.first(where: { $0.object.id == reference }) ?? (matches.count == 1 ? matches.first : nil) else {
            throw ControlError(.notFound, "task \(reference) not found")
        }
        return found
    }
}

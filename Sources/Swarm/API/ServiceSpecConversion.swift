import Cluster
import Control
import DockerAPI
import FoundationEssentials

/// Docker's `ServiceSpec` and `Task` JSON to and from the store's service
/// definitions and tasks. Checks what Docker's API checks, with its words
/// where the CLI users know them.
enum ServiceSpecConversion {
    /// The orchestrated part of a spec; `networks` are the network IDs the
    /// service's network side resolved, in the spec's order.
    static func definition(_ spec: ServiceSpec, networks: [NetworkTarget]) throws(ControlError) -> ServiceDefinition {
        let template = spec.taskTemplate ?? DockerAPI.TaskSpec()
        let container = template.containerSpec
        guard let image = container?.image, !image.isEmpty else {
            throw ControlError(.invalidArgument, "ContainerSpec: image reference must be provided")
        }
        let mode: Cluster.ServiceMode
        switch (spec.mode?.replicated, spec.mode?.global) {
        case (.some, .some):
            throw ControlError(.invalidArgument, "the service mode is both replicated and global; choose one")
        case (_, .some):
            mode = .global
        case (let replicated, nil):
            mode = .replicated(replicas: replicated?.replicas ?? 1)
        }
        let mounts = try (container?.mounts ?? []).map { mount throws(ControlError) -> MountTemplate in
            let type = mount.type ?? "volume"
            guard ["bind", "volume", "tmpfs"].contains(type) else {
                throw ControlError(.invalidArgument, "invalid mount type \(type) for target \(mount.target): use bind, volume or tmpfs")
            }
            guard mount.target.hasPrefix("/") else {
                throw ControlError(.invalidArgument, "invalid mount target \(mount.target): it must be an absolute path")
            }
            return MountTemplate(type: type, source: mount.source ?? "", target: mount.target, readOnly: mount.readOnly ?? false)
        }
        let placement = Placement(
            constraints: template.placement?.constraints ?? [],
            spreadOver: (template.placement?.preferences ?? []).compactMap { $0.spread?.spreadDescriptor })
        _ = try Constraint.parse(placement.constraints)
        return ServiceDefinition(
            name: spec.name, labels: spec.labels ?? [:],
            task: TaskTemplate(
                container: ContainerTemplate(
                    image: image, command: container?.command, args: container?.args, env: container?.env ?? [], dir: container?.dir,
                    user: container?.user, hostname: container?.hostname, labels: container?.labels ?? [:],
                    healthcheck: container?.healthcheck.map {
                        HealthConfig(test: $0.test, interval: $0.interval, timeout: $0.timeout, startPeriod: $0.startPeriod, retries: $0.retries)
                    },
                    stopSignal: container?.stopSignal, stopGracePeriod: container?.stopGracePeriod, mounts: mounts,
                    readOnly: container?.readOnly ?? false),
                reservations: amounts(template.resources?.reservations), limits: amounts(template.resources?.limits),
                restartPolicy: try restartPolicy(template.restartPolicy), placement: placement, networks: networks,
                forceUpdate: template.forceUpdate ?? 0),
            mode: mode, update: try updatePolicy(spec.updateConfig, what: "UpdateConfig"),
            rollback: try updatePolicy(spec.rollbackConfig, what: "RollbackConfig"))
    }

    static func amounts(_ amounts: ResourceRequirements.Amounts?) -> ResourceAmounts {
        ResourceAmounts(nanoCPUs: amounts?.nanoCPUs ?? 0, memoryBytes: amounts?.memoryBytes ?? 0)
    }

    static func restartPolicy(_ spec: RestartPolicySpec?) throws(ControlError) -> RestartPolicy {
        guard let spec else { return RestartPolicy() }
        let condition: RestartPolicy.Condition
        switch spec.condition ?? "any" {
        case "", "any": condition = .any
        case "on-failure": condition = .onFailure
        case "none": condition = .none
        case let other: throw ControlError(.invalidArgument, "invalid RestartCondition \"\(other)\": use none, on-failure or any")
        }
        if let delay = spec.delay, delay < 0 { throw ControlError(.invalidArgument, "TaskSpec: restart-delay cannot be negative") }
        if let window = spec.window, window < 0 { throw ControlError(.invalidArgument, "TaskSpec: restart-window cannot be negative") }
        return RestartPolicy(condition: condition, delay: spec.delay ?? RestartPolicy.defaultDelay, maxAttempts: spec.maxAttempts ?? 0,
                             window: spec.window ?? 0)
    }

    static func updatePolicy(_ spec: UpdateConfigSpec?, what: String) throws(ControlError) -> UpdatePolicy {
        guard let spec else { return UpdatePolicy() }
        let order: UpdatePolicy.Order
        switch spec.order ?? "stop-first" {
        case "", "stop-first": order = .stopFirst
        case "start-first": order = .startFirst
        case let other: throw ControlError(.invalidArgument, "invalid \(what) Order \"\(other)\": use stop-first or start-first")
        }
        let action: UpdatePolicy.FailureAction
        switch spec.failureAction ?? "pause" {
        case "", "pause": action = .pause
        case "continue": action = .continue
        case "rollback": action = .rollback
        case let other: throw ControlError(.invalidArgument, "invalid \(what) FailureAction \"\(other)\": use pause, continue or rollback")
        }
        if let ratio = spec.maxFailureRatio, !(0...1).contains(ratio) {
            throw ControlError(.invalidArgument, "\(what): MaxFailureRatio must be between 0 and 1")
        }
        if (spec.delay ?? 0) < 0 || (spec.monitor ?? 0) < 0 {
            throw ControlError(.invalidArgument, "\(what): Delay and Monitor cannot be negative")
        }
        return UpdatePolicy(parallelism: spec.parallelism ?? 1, delay: spec.delay ?? 0, order: order, failureAction: action,
                            monitor: spec.monitor ?? 5_000_000_000, maxFailureRatio: spec.maxFailureRatio ?? 0)
    }

    // MARK: - Back to Docker's JSON

    /// `ingressNetworkID`: see `taskSpec`.
    static func spec(_ definition: ServiceDefinition, endpoint: EndpointSpec?, ingressNetworkID: String?) -> ServiceSpec {
        var spec = ServiceSpec(name: definition.name, labels: definition.labels,
                               taskTemplate: taskSpec(definition.task, ingressNetworkID: ingressNetworkID), endpointSpec: endpoint)
        switch definition.mode {
        case .replicated(let replicas): spec.mode = DockerAPI.ServiceMode(replicated: .init(replicas: replicas))
        case .global: spec.mode = DockerAPI.ServiceMode(global: .init())
        }
        spec.updateConfig = updateConfig(definition.update)
        spec.rollbackConfig = updateConfig(definition.rollback)
        return spec
    }

    static func updateConfig(_ policy: UpdatePolicy) -> UpdateConfigSpec {
        UpdateConfigSpec(parallelism: policy.parallelism, delay: policy.delay, failureAction: policy.failureAction.rawValue,
                         monitor: policy.monitor, maxFailureRatio: policy.maxFailureRatio, order: policy.order.rawValue)
    }

    /// The template as Docker's TaskSpec. The ingress network
    /// (`ingressNetworkID`) is left out of its networks: a service joins it
    /// by publishing a port, and the template names it only so that tasks
    /// attach to it. Docker's spec holds the networks the user named, and
    /// naming ingress is refused, so `inspect --pretty` shows no "Networks:"
    /// line for a service that only publishes ports.
    static func taskSpec(_ template: TaskTemplate, ingressNetworkID: String?) -> DockerAPI.TaskSpec {
        let container = template.container
        var containerSpec = ContainerSpec(image: container.image)
        containerSpec.command = container.command
        containerSpec.args = container.args
        containerSpec.env = container.env.isEmpty ? nil : container.env
        containerSpec.dir = container.dir
        containerSpec.user = container.user
        containerSpec.hostname = container.hostname
        containerSpec.labels = container.labels.isEmpty ? nil : container.labels
        containerSpec.healthcheck = container.healthcheck.map {
            HealthcheckConfig(test: $0.test, interval: $0.interval, timeout: $0.timeout, startPeriod: $0.startPeriod, retries: $0.retries)
        }
        containerSpec.stopSignal = container.stopSignal
        containerSpec.stopGracePeriod = container.stopGracePeriod
        containerSpec.mounts = container.mounts.isEmpty ? nil : container.mounts.map {
            ServiceMount(type: $0.type, source: $0.source, target: $0.target, readOnly: $0.readOnly)
        }
        containerSpec.readOnly = container.readOnly ? true : nil
        let policy = template.restartPolicy
        let named = template.networks.filter { $0.network != ingressNetworkID }.map {
            NetworkAttachmentConfig(target: $0.network, aliases: $0.aliases.isEmpty ? nil : $0.aliases)
        }
        let resources = ResourceRequirements(
            limits: .init(nanoCPUs: template.limits.nanoCPUs, memoryBytes: template.limits.memoryBytes),
            reservations: .init(nanoCPUs: template.reservations.nanoCPUs, memoryBytes: template.reservations.memoryBytes))
        return DockerAPI.TaskSpec(
            containerSpec: containerSpec, resources: resources,
            restartPolicy: RestartPolicySpec(condition: policy.condition.rawValue, delay: policy.delay, maxAttempts: policy.maxAttempts,
                                             window: policy.window),
            placement: PlacementSpec(
                constraints: template.placement.constraints.isEmpty ? nil : template.placement.constraints,
                preferences: template.placement.spreadOver.isEmpty ? nil : template.placement.spreadOver.map {
                    .init(spread: .init(spreadDescriptor: $0))
                }),
            networks: named.isEmpty ? nil : named,
            forceUpdate: template.forceUpdate)
    }

    static func resource(_ task: SwarmTask, version: UInt64, ingressNetworkID: String?) -> TaskResource {
        let status = task.status
        return TaskResource(
            id: task.id, version: version, createdAt: task.createdAt.rfc3339, updatedAt: task.updatedAt.rfc3339, name: task.name,
            spec: taskSpec(task.template, ingressNetworkID: ingressNetworkID), serviceID: task.serviceID, slot: task.slot > 0 ? task.slot : nil, nodeID: task.nodeID,
            status: TaskResource.Status(
                timestamp: status.timestamp.rfc3339, state: status.state.rawValue, message: status.message, err: status.error,
                containerStatus: status.containerID.map { .init(containerID: $0, pid: status.pid, exitCode: status.exitCode) }),
            desiredState: task.desiredState.rawValue,
            networksAttachments: Dictionary(grouping: task.addresses, by: \.networkID).sorted { $0.key < $1.key }.map {
                TaskResource.NetworkAttachment(networkID: $0.key, addresses: $0.value.map(\.address))
            })
    }

    static func updateStatus(_ progress: UpdateProgress?) -> ServiceResource.UpdateStatus? {
        progress.map {
            ServiceResource.UpdateStatus(state: $0.state.rawValue, startedAt: $0.startedAt.rfc3339, completedAt: $0.completedAt?.rfc3339,
                                         message: $0.message)
        }
    }
}

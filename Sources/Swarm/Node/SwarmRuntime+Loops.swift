import Cluster
import Control
import FoundationEssentials
import Logging
import NIOCore
import RaftRuntime
import X509

/// The loops of a member: heartbeats (every node, which also carry the
/// role wanted and the gossip keys back), the work watch (every node),
/// and on managers the leader's duties (marking silent nodes down,
/// promoting caught-up learners, rotating the gossip key) and reporting
/// removed nodes.
extension SwarmRuntime {
    func startLoops() {
        guard var membership else { return }
        membership.tasks.append(Task { [weak self] in await self?.sendHeartbeats() })
        membership.tasks.append(Task { [weak self] in await self?.watchWork() })
        self.membership = membership
        if membership.raft != nil && leaderTask == nil {
            leaderTask = Task { [weak self] in await self?.leadWhileLeader() }
        }
    }

    /// Sends a heartbeat every period to the leader (found through any
    /// manager), over one mutual-TLS session kept open with it, rotating
    /// through the known managers when one fails.
    private func sendHeartbeats() async {
        var target: String?
        var client: ControlClient?
        var session: ControlSession?
        var clientCertificate: Certificate?
        var renewalFailures = 0
        var attempt = 0
        var period = SwarmSettings().heartbeatPeriod
        var failures = 0
        while !Task.isCancelled {
            guard let local = membership?.local, let identity = membership?.identity else { return }
            if client == nil || clientCertificate != identity.certificate {
                // Made again after a renewal: the new certificate from now on.
                client = try? ControlClient(context: ControlTLS.clientContext(identity: identity, root: identity.rootCA), timeout: .seconds(2))
                clientCertificate = identity.certificate
                await session?.close()
                session = nil
            }
            guard let client else { return }
            let managers = local.managers.isEmpty ? [local.endpoint] : local.managers
            let address = target ?? managers[attempt % managers.count]
            if session?.address != address {
                await session?.close()
                session = ControlSession(address: address, context: client.context, timeout: client.timeout)
            }
            do {
                let reports = await configuration.taskAgent?.unreportedChanges() ?? []
                heartbeatsSent += 1
                let sequence = heartbeatsSent
                let answer = try await session!.request(.POST, "/swarmnet/heartbeat",
                                                        body: SwarmStore.encode(Heartbeat(
                                                            address: local.advertiseAddress, reports: reports,
                                                            definitionsRevision: local.role == .worker
                                                                ? membership?.work.definitionsRevision ?? 0 : nil)))
                switch answer.status {
                case 200:
                    let response = try JSONDecoder().decode(HeartbeatResponse.self, from: Data(answer.body))
                    period = .nanoseconds(max(response.periodNanoseconds, 100_000_000))
                    target = address
                    failures = 0
                    self.membership?.dispatcher = address
                    if response.reportsRecorded != false { await configuration.taskAgent?.acknowledge(reports) }
                    await take(response.work)
                    heartbeatAnswered = sequence
                    if let agent = configuration.taskAgent {
                        for request in response.logRequests ?? [] {
                            let reply = LogReply(id: request.id, entries: await agent.logs(request))
                            _ = try? await session!.request(.POST, "/swarmnet/logs", body: SwarmStore.encode(reply))
                        }
                    }
                    if (!response.managers.isEmpty && response.managers != local.managers) || response.gossipKeys != local.gossipKeys {
                        await update(managers: response.managers.isEmpty ? local.managers : response.managers, gossipKeys: response.gossipKeys)
                    }
                    if response.desiredRole != local.role || identity.needsRenewal() {
                        do {
                            let renewing = ControlClient(context: client.context, timeout: .seconds(40))
                            try await renewCertificate(through: address, client: renewing)
                            renewalFailures = 0
                        } catch {
                            renewalFailures += 1
                            if renewalFailures == 1 || renewalFailures % 30 == 0 {
                                logger.error("could not renew this node's certificate", metadata: ["wanted": "\(response.desiredRole)", "error": "\(error)"])
                            }
                        }
                    }
                case 421:
                    let leader = try? JSONDecoder().decode(NotLeader.self, from: Data(answer.body)).leader
                    target = leader
                    if leader == nil { attempt += 1 }
                    // Soon, not at once: during an election two followers
                    // may point at each other.
                    try? await Task.sleep(for: .milliseconds(50))
                    continue
                case 410:
                    // `docker node rm`: this node is no longer in the swarm.
                    logger.error("this node was removed from the swarm; leaving it")
                    await leaveAfterRemoval()
                    return
                case 403:
                    let message = (try? JSONDecoder().decode(ErrorBody.self, from: Data(answer.body)))?.message ?? "refused"
                    logger.error("the managers refuse this node's heartbeats: \(message)")
                    target = nil
                    attempt += 1
                default:
                    target = nil
                    attempt += 1
                }
            } catch {
                failures += 1
                if failures == 1 || failures % 30 == 0 {
                    logger.warning("heartbeat failed", metadata: ["manager": "\(address)", "error": "\(error)"])
                }
                target = nil
                attempt += 1
            }
            await waitForHeartbeat(period)
        }
        await session?.close()
    }

    /// Sleeps one heartbeat period, or less when a task changed and its
    /// report should go at once.
    private func waitForHeartbeat(_ period: Duration) async {
        if heartbeatRequested {
            heartbeatRequested = false
            return
        }
        await withCheckedContinuation { continuation in
            heartbeatWait = continuation
            Task { [weak self] in
                try? await Task.sleep(for: period)
                await self?.resumeHeartbeat()
            }
        }
    }

    private func resumeHeartbeat() {
        heartbeatWait?.resume()
        heartbeatWait = nil
    }

    /// Sends the next heartbeat now (a task of this node changed).
    public func requestHeartbeat() {
        if heartbeatWait != nil {
            resumeHeartbeat()
        } else {
            heartbeatRequested = true
        }
    }

    /// One step of the gossip key's rotation, when it is due; each step
    /// waits four heartbeat periods, so that every live node holds it
    /// before the next.
    private func rotateGossipKeyWhenDue(_ store: SwarmStore, heartbeatPeriod: Duration) async {
        guard let current = store.swarm(),
              let next = GossipKeySchedule.next(
                keys: current.object.gossipKeys, rotation: current.object.gossipKeyRotation, now: Date(),
                interval: configuration.gossipKeyRotation, settle: heartbeatPeriod * 4, newKey: Self.newGossipKey)
        else { return }
        var swarm = current.object
        swarm.gossipKeys = next.keys
        swarm.gossipKeyRotation = next.rotation
        do {
            try await store.write(SwarmStore.update(swarm, version: current.version))
            logger.info("gossip key rotation", metadata: ["step": "\(next.rotation.step.rawValue)", "keys": "\(next.keys.count)"])
        } catch {
            logger.debug("gossip key rotation step not written", metadata: ["error": "\(error)"])
        }
    }

    /// Forgets the swarm this node was removed from, as Docker's node does.
    private func leaveAfterRemoval() async {
        guard let membership else { return }
        let identity = membership.identity
        await forgetSwarm()
        lastError = "node \(identity.peer.nodeID) was removed from the swarm"
    }

    private func update(managers: [String], gossipKeys: [String]) async {
        guard var membership else { return }
        membership.local.managers = managers
        membership.local.gossipKeys = gossipKeys
        self.membership = membership
        try? membership.local.save(directory: configuration.directory)
        await notifyNetworking()
    }

    /// On the leader: nodes whose heartbeats stopped are marked down, and
    /// learners that caught up become voters.
    func leadWhileLeader() async {
        while !Task.isCancelled {
            guard let membership, let raft = membership.raft, let store = membership.store else { return }
            // Every manager hands its daemon the definitions replicated
            // from the others.
            await publishDefinitionsIfChanged()
            if await raft.leader() == raft.id {
                let nodes = store.nodes()
                let period = store.swarm()?.object.settings.heartbeatPeriod ?? SwarmSettings().heartbeatPeriod
                if liveness.period != period { liveness.period = period }
                if !leading {
                    // Every node gets a full grace period from the new leader.
                    liveness.forgetAll()
                    leading = true
                    logger.info("this manager leads the swarm")
                }
                let known = Set(nodes.map(\.object.id))
                liveness.track(nodes.filter { $0.object.state != .down }.map(\.object.id), at: now)
                for id in liveness.expired(at: now) {
                    guard known.contains(id) else {
                        liveness.forget(id)
                        continue
                    }
                    guard let current = nodes.first(where: { $0.object.id == id }), current.object.state == .ready else { continue }
                    var node = current.object
                    node.state = .down
                    node.stateMessage = "heartbeat failure"
                    node.updatedAt = Date()
                    do {
                        try await store.write(SwarmStore.update(node, version: current.version))
                        logger.warning("node is down: no heartbeat", metadata: ["node": "\(id)", "hostname": "\(node.description.hostname)"])
                    } catch {
                        logger.debug("could not mark a node down", metadata: ["error": "\(error)"])
                    }
                }
                for member in await raft.members() where member.isLearner {
                    try? await raft.promoteMember(member.id)
                }
                await rotateGossipKeyWhenDue(store, heartbeatPeriod: period)
                await orchestrate(store)
            } else if leading {
                leading = false
                liveness.forgetAll()
            }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }
}

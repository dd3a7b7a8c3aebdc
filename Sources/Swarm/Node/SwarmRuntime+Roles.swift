import Cluster
import Control
import FoundationEssentials
import NIOCore
import NIOHTTP1
import SwarmIdentity
import X509

/// A node changing role or renewing its certificate while it runs: it asks
/// a manager for a certificate for the role the operators want, then starts
/// or stops its manager parts (Raft member, manager endpoint, the leader's
/// duties) to match.
extension SwarmRuntime {
    /// Renews this node's certificate through the manager at `address`,
    /// and applies the role the certificate carries.
    func renewCertificate(through address: String, client: ControlClient) async throws {
        guard let current = membership else { return }
        let local = current.local
        let (key, csrPEM) = try NodeIdentity.makeRequest()
        let request = RenewRequest(csrPEM: csrPEM, endpoint: local.endpoint, raftAddress: local.raftAddress)
        let answer = try await client.request(.POST, address, "/swarmnet/renew", body: SwarmStore.encode(request))
        guard answer.status == 200 else { throw Self.remoteError(answer, from: address) }
        let response = try JSONDecoder().decode(RenewResponse.self, from: Data(answer.body))
        let identity = try NodeIdentity(key: key, certificate: try Certificate(pemEncoded: response.certificatePEM),
                                        rootCA: current.identity.rootCA)
        guard identity.peer.nodeID == local.nodeID, identity.peer.clusterID == local.clusterID else {
            throw SwarmRuntimeError("manager \(address) issued a certificate for another node")
        }
        try identity.save(directory: identityDirectory)
        var next = local
        next.role = response.role
        if !response.managers.isEmpty { next.managers = response.managers }
        var raft = current.raft
        switch (local.role, response.role) {
        case (.worker, .manager):
            next.raftID = response.raftID
            next.raftPeers = response.raftPeers
            let server = try await startRaft(local: next, identity: identity, joinExisting: true)
            try await waitForSwarmState(server)
            try await startEndpoint(local: next, identity: identity)
            raft = server
            logger.info("this node is a manager now", metadata: ["raftID": "\(response.raftID ?? 0)"])
        case (.manager, .worker):
            leaderTask?.cancel()
            leaderTask = nil
            endpointTask?.cancel()
            endpointTask = nil
            await raft?.stop()
            raftAuthority.set(nil)
            raft = nil
            try? FileManager.default.removeItem(atPath: raftDirectory)
            next.raftID = nil
            next.raftPeers = nil
            leading = false
            liveness.forgetAll()
            logger.info("this node is a worker now")
        case (.manager, .manager):
            // The same role, a new certificate: Raft's TLS takes it for new
            // connections, and the endpoint is served with it from now on.
            try raftTLS.update(identity)
            endpointTask?.cancel()
            endpointTask = nil
            try await startEndpoint(local: next, identity: identity)
            logger.info("renewed this node's certificate", metadata: ["until": "\(identity.certificate.notValidAfter)"])
        case (.worker, .worker):
            logger.info("renewed this node's certificate", metadata: ["until": "\(identity.certificate.notValidAfter)"])
        }
        try next.save(directory: configuration.directory)
        guard var updated = membership else { return }
        updated.local = next
        updated.identity = identity
        updated.raft = raft
        membership = updated
        if raft != nil && leaderTask == nil { leaderTask = Task { [weak self] in await self?.leadWhileLeader() } }
        await notifyNetworking()
    }
}

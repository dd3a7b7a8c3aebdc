import DockerAPI
import Foundation
import NIOCore
import NIOHTTP1
import Raft
import RaftRuntime
import RaftTransport

/// etcd v3's cluster API through its JSON gateway: `POST /v3/cluster/member/add`
/// `{"peerURLs": ["http://host:port"], "isLearner": bool}`, `/v3/cluster/member/remove` `{"ID": id}`,
/// `/v3/cluster/member/promote` `{"ID": id}` and `/v3/cluster/member/list` `{}`.
///
/// Ids are raft-node's `--id` numbers. etcd picks a random id for a new member; here `add` takes
/// an optional `"ID"` (an extension) so the operator can start the new node with the same `--id`,
/// and otherwise picks one above every id the group has used. Ids are written as strings, as
/// etcd's gateway writes 64-bit integers, and read as either.
extension KVAPI {
    struct MemberAddRequest: Decodable {
        var peerURLs: [String]
        var isLearner: Bool?
        var ID: MemberID?
    }

    struct MemberIDRequest: Decodable {
        var ID: MemberID
    }

    /// A member id as JSON: `"4"` (etcd's gateway) or `4`.
    struct MemberID: Decodable {
        var value: NodeID

        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let n = try? c.decode(UInt64.self) {
                value = n
            } else if let n = NodeID(try c.decode(String.self)) {
                value = n
            } else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "a member ID is a positive integer")
            }
        }
    }

    struct MemberJSON: Encodable {
        var ID: String
        var peerURLs: [String]
        var isLearner: Bool

        init(_ m: RaftMember) {
            ID = String(m.id)
            peerURLs = m.address.map { ["http://\($0)"] } ?? []
            isLearner = m.isLearner
        }
    }

    func memberAdd(_ body: MemberAddRequest) async throws -> HTTPResponse {
        guard let url = body.peerURLs.first else { throw BadRequest(message: "peerURLs is empty") }
        let address = try Self.peerAddress(url)
        if let id = body.ID?.value, id == noNode { throw BadRequest(message: "ID must not be 0") }
        let added = try await server.addMember(id: body.ID?.value, address: address, asLearner: body.isLearner ?? false)
        return try await memberResponse(extra: ["member": try Self.encode(MemberJSON(added))])
    }

    func memberRemove(_ body: MemberIDRequest) async throws -> HTTPResponse {
        try await server.removeMember(body.ID.value)
        return try await memberResponse()
    }

    func memberPromote(_ body: MemberIDRequest) async throws -> HTTPResponse {
        try await server.promoteMember(body.ID.value)
        return try await memberResponse()
    }

    /// `{"header": …, <extra>, "members": [...]}`, the members as this node has applied them.
    func memberResponse(extra: [String: String] = [:]) async throws -> HTTPResponse {
        let members = await server.members().map(MemberJSON.init)
        var fields = ["\"header\":\(header(revision: server.store.appliedIndex))"]
        for (k, v) in extra.sorted(by: { $0.key < $1.key }) { fields.append("\"\(k)\":\(v)") }
        fields.append("\"members\":\(try Self.encode(members))")
        return json(.ok, Data("{\(fields.joined(separator: ","))}".utf8))
    }

    /// The HTTP status and gRPC code etcd's gateway gives the same refusal.
    func membershipFailure(_ e: MembershipError) -> HTTPResponse {
        switch e {
        case .unknownMember: failure(.notFound, code: 5, e.description, outcome: "failed")
        case .alreadyMember: failure(.conflict, code: 6, e.description, outcome: "failed")
        case .lastVoter, .notLearner, .learnerNotReady, .notLeader: failure(.badRequest, code: 9, e.description, outcome: "failed")
        case .changePending, .notAccepted: failure(.serviceUnavailable, code: 14, e.description, outcome: "failed")
        }
    }

    /// `http://host:port` (or https, or a bare `host:port`) as a Raft address.
    static func peerAddress(_ url: String) throws -> PeerAddress {
        var text = Substring(url)
        for scheme in ["http://", "https://"] where text.hasPrefix(scheme) { text = text.dropFirst(scheme.count) }
        if text.hasSuffix("/") { text = text.dropLast() }
        do {
            return try PeerAddress(parsing: text)
        } catch {
            throw BadRequest(message: "peer URL '\(url)' is not http://host:port")
        }
    }

    static func encode<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try JSONEncoder.sorted.encode(value), as: UTF8.self)
    }
}

import DockerAPI
import Foundation
import NIOCore
import NIOHTTP1
import Raft
import RaftRuntime
import RaftTransport
import ReplicatedStore

/// The client API, in the shape of etcd v3's JSON gateway so one load generator drives both:
/// `POST /v3/kv/put` `{"key": b64, "value": b64}`, `POST /v3/kv/range` `{"key": b64}` (always
/// linearizable), the cluster member API (see MemberAPI.swift), and `GET /debug/raft`.
///
/// Failures say whether the write certainly did not happen (`"outcome": "failed"`, HTTP 503) or
/// may have (`"outcome": "unknown"`, HTTP 504), which is what a linearizability checker needs.
struct KVAPI: Sendable {
    static let collection = "kv"

    let server: RaftServer

    struct PutRequest: Decodable { var key: String; var value: String? }
    struct RangeRequest: Decodable { var key: String }

    func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        do {
            switch (request.method, path) {
            case (.POST, "/v3/kv/put"):
                return try await put(try decode(PutRequest.self, request.body))
            case (.POST, "/v3/kv/range"):
                return try await range(try decode(RangeRequest.self, request.body))
            case (.POST, "/v3/cluster/member/add"):
                return try await memberAdd(try decode(MemberAddRequest.self, request.body))
            case (.POST, "/v3/cluster/member/remove"):
                return try await memberRemove(try decode(MemberIDRequest.self, request.body))
            case (.POST, "/v3/cluster/member/promote"):
                return try await memberPromote(try decode(MemberIDRequest.self, request.body))
            case (.POST, "/v3/cluster/member/list"):
                return try await memberResponse()
            case (.GET, "/debug/raft"):
                return json(.ok, try JSONEncoder.sorted.encode(await server.statusReport()))
            case (.GET, "/health"):
                return json(.ok, Data(#"{"health":"true"}"#.utf8))
            default:
                return failure(.notFound, code: 5, "no route for \(request.method) \(path)", outcome: "failed")
            }
        } catch let e as RaftServer.Failure {
            return failure(e.isDefinite ? .serviceUnavailable : .gatewayTimeout, code: 14, e.description,
                         outcome: e.isDefinite ? "failed" : "unknown")
        } catch let e as MembershipError {
            return membershipFailure(e)
        } catch let e as BadRequest {
            return failure(.badRequest, code: 3, e.message, outcome: "failed")
        } catch {
            return failure(.internalServerError, code: 13, "\(error)", outcome: "unknown")
        }
    }

    struct BadRequest: Error { var message: String }

    func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch {
            throw BadRequest(message: "invalid JSON body: \(error)")
        }
    }

    private func base64(_ text: String, _ field: String) throws -> [UInt8] {
        guard let d = Data(base64Encoded: text) else { throw BadRequest(message: "\(field) is not base64") }
        return Array(d)
    }

    private func put(_ body: PutRequest) async throws -> HTTPResponse {
        // The key stays in its base64 form: store keys are text, etcd keys are bytes.
        guard !(try base64(body.key, "key")).isEmpty else { throw BadRequest(message: "key is not provided") }
        let value = try base64(body.value ?? "", "value")
        let applied = try await server.put(collection: Self.collection, key: body.key, value: value)
        switch applied.result {
        case .success:
            return json(.ok, Data("{\"header\":\(header(revision: applied.index))}".utf8))
        case let .failure(e):
            return failure(.internalServerError, code: 2, "\(e)", outcome: "failed")
        }
    }

    private func range(_ body: RangeRequest) async throws -> HTTPResponse {
        _ = try base64(body.key, "key")
        try await server.linearizableBarrier()
        let revision = server.store.appliedIndex
        guard let o = server.store.get(Self.collection, body.key) else {
            return json(.ok, Data("{\"header\":\(header(revision: revision))}".utf8))
        }
        let kv = "{\"key\":\"\(body.key)\",\"create_revision\":\"\(o.createIndex)\",\"mod_revision\":\"\(o.modifyIndex)\","
            + "\"version\":\"\(o.version)\",\"value\":\"\(Data(o.value).base64EncodedString())\"}"
        return json(.ok, Data("{\"header\":\(header(revision: revision)),\"kvs\":[\(kv)],\"count\":\"1\"}".utf8))
    }

    func header(revision: Index) -> String {
        "{\"cluster_id\":\"1\",\"member_id\":\"\(server.id)\",\"revision\":\"\(revision)\"}"
    }

    func json(_ status: HTTPResponseStatus, _ body: Data) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        return HTTPResponse(status: status, headers: headers, body: ByteBuffer(bytes: body))
    }

    func failure(_ status: HTTPResponseStatus, code: Int, _ message: String, outcome: String) -> HTTPResponse {
        let m = message.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return json(status, Data("{\"error\":\"\(m)\",\"code\":\(code),\"message\":\"\(m)\",\"outcome\":\"\(outcome)\"}".utf8))
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }
}

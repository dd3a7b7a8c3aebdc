import FoundationEssentials
import SystemBasics
import NIOCore
import NIOHTTP1
import NIOSSL

/// One request to a manager endpoint over TLS, bounded in time and size:
/// a `ControlSession` used once and closed (joins, renewals, a worker's
/// address allocations; heartbeats keep their session open).
struct ControlClient: Sendable {
    let context: NIOSSLContext
    var timeout: TimeAmount = .seconds(5)

    struct Response: Sendable {
        var status: Int
        var body: [UInt8]
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    func request(_ method: HTTPMethod, _ address: String, _ path: String, body: [UInt8]? = nil) async throws -> Response {
        let session = ControlSession(address: address, context: context, timeout: timeout)
        do {
            let response = try await session.request(method, path, body: body)
            await session.close()
            return response
        } catch {
            await session.close()
            throw error
        }
    }

    static func split(_ address: String) throws -> (String, Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (1...65535).contains(port) else {
            throw Failure(description: "'\(address)' is not HOST:PORT")
        }
        return (String(address[..<colon]).trimming("[]"), port)
    }
}

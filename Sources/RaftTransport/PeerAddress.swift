import Raft

/// Where a member listens for Raft traffic.
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public enum ParseError: Swift.Error, Sendable, CustomStringConvertible {
        case malformed(String, why: String)

        public var description: String {
            switch self {
            case let .malformed(text, why): "bad peer '\(text)': \(why) (expected id=host:port)"
            }
        }
    }

    /// Parses `host:port` (or `[v6]:port`).
    public init(parsing text: Substring) throws(ParseError) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (1...65535).contains(port) else { throw .malformed(String(text), why: "no valid port") }
        var host = text[..<colon]
        if host.hasPrefix("["), host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty else { throw .malformed(String(text), why: "empty host") }
        self.init(host: String(host), port: port)
    }

    /// Parses `1=10.0.0.1:2380,2=10.0.0.2:2380`: member ids (non-zero, unique) and their addresses.
    public static func parsePeers(_ text: String) throws(ParseError) -> [NodeID: PeerAddress] {
        var peers: [NodeID: PeerAddress] = [:]
        for item in text.split(separator: ",") where !item.isEmpty {
            guard let eq = item.firstIndex(of: "="), let id = NodeID(item[..<eq]), id != noNode else {
                throw .malformed(String(item), why: "no member id (a positive integer)")
            }
            guard peers[id] == nil else { throw .malformed(String(item), why: "member \(id) is listed twice") }
            peers[id] = try PeerAddress(parsing: item[item.index(after: eq)...])
        }
        return peers
    }
}

import Gossip
import NIOCore

extension NodeAddress {
    /// Parses `HOST:PORT` or `[IPV6]:PORT` with an IP literal host, as flags and the API take them.
    public init(parsing text: String) throws {
        let host: Substring
        let port: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw LiveGossipNode.Error.invalidAddress(text) }
            port = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw LiveGossipNode.Error.invalidAddress(text) }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard let portNumber = UInt16(port), (try? SocketAddress(ipAddress: String(host), port: 0)) != nil else {
            throw LiveGossipNode.Error.invalidAddress(text)
        }
        self.init(host: String(host), port: portNumber)
    }
}

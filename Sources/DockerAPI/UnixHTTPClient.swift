#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import SystemBasics

/// A small blocking HTTP/1.1 client over a unix socket, for the command
/// line: one request per connection ("Connection: close"), the whole
/// response read to EOF.
public struct UnixHTTPClient: Sendable {
    public let socketPath: String
    /// Set for a TCP peer (a Raft node's debug API) instead of a unix socket.
    public let tcp: (host: String, port: UInt16)?
    /// Send and receive timeout, for TCP peers that may be gone.
    public let timeoutSeconds: Int

    public init(socketPath: String) {
        self.socketPath = socketPath
        tcp = nil
        timeoutSeconds = 0
    }

    public init(host: String, port: UInt16, timeoutSeconds: Int = 3) {
        socketPath = "\(host):\(port)"
        tcp = (host, port)
        self.timeoutSeconds = timeoutSeconds
    }

    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: Data
    }

    public enum ClientError: Error, CustomStringConvertible {
        case connect(path: String, errno: Int32)
        case io(String)
        case malformed(String)

        public var description: String {
            switch self {
            case .connect(let path, let errno):
                "cannot connect to the swarmnet daemon at \(path): \(String(cString: strerror(errno))). Is swarmnetd running?"
            case .io(let text): "talking to the daemon: \(text)"
            case .malformed(let text): "malformed response from the daemon: \(text)"
            }
        }
    }

    public func request(_ method: String, _ path: String, body: Data? = nil) throws -> Response {
        let fd = try connected()
        defer { close(fd) }
        return try exchange(fd, method, path, body: body)
    }

    private func connected() throws -> Int32 {
        guard let tcp else { return try Self.connectedSocket(path: socketPath) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError.io("socket: \(String(cString: strerror(errno)))") }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = tcp.port.bigEndian
        guard inet_pton(AF_INET, tcp.host, &address.sin_addr) == 1 else {
            close(fd)
            throw ClientError.io("not an IPv4 address: \(tcp.host)")
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let saved = errno
            close(fd)
            throw ClientError.connect(path: socketPath, errno: saved)
        }
        return fd
    }

    /// True when something accepts connections on the unix socket at
    /// `socketPath` (a daemon is serving it); false for no file, a stale
    /// file, or anything else.
    public static func isServing(socketPath: String) -> Bool {
        guard let fd = try? connectedSocket(path: socketPath) else { return false }
        close(fd)
        return true
    }

    /// A stream socket connected to the unix socket at `path`; the caller
    /// closes it (tests hold many, or speak HTTP through it by hand).
    public static func connectedSocket(path socketPath: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError.io("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw ClientError.io("socket path too long: \(socketPath)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else {
            let saved = errno
            close(fd)
            throw ClientError.connect(path: socketPath, errno: saved)
        }
        return fd
    }

    private func exchange(_ fd: Int32, _ method: String, _ path: String, body: Data?) throws -> Response {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: swarmnet\r\nUser-Agent: swarmnet-cli\r\nConnection: close\r\n"
        if let body {
            head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n"
        }
        head += "\r\n"
        var outgoing = Data(head.utf8)
        if let body { outgoing.append(body) }
        try outgoing.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let sent = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0 { if errno == EINTR { continue }; throw ClientError.io("send: \(String(cString: strerror(errno)))") }
                offset += sent
            }
        }
        var incoming = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count < 0 { if errno == EINTR { continue }; throw ClientError.io("recv: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            incoming.append(contentsOf: buffer[0..<count])
        }
        return try Self.parse(incoming)
    }

    static func parse(_ data: Data) throws -> Response {
        guard let separator = data.firstRange(of: Data("\r\n\r\n".utf8)) else { throw ClientError.malformed("no end of headers") }
        let headText = String(decoding: data[data.startIndex..<separator.lowerBound], as: UTF8.self)
        var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw ClientError.malformed("status line") }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimming(" \t")
        }
        var body = Data(data[separator.upperBound...])
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            body = try dechunk(body)
        } else if let length = headers["content-length"].flatMap(Int.init), body.count > length {
            body = body.prefix(length)
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// A chunked body (streamed answers: logs, wait) joined; a stream cut
    /// off before its last chunk keeps what arrived.
    static func dechunk(_ data: Data) throws -> Data {
        var result = Data()
        var index = data.startIndex
        let crlf = Data("\r\n".utf8)
        while index < data.endIndex {
            guard let lineEnd = data[index...].firstRange(of: crlf) else { break }
            let sizeText = String(decoding: data[index..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimming(" \t"), radix: 16) else {
                throw ClientError.malformed("chunk size '\(sizeText)'")
            }
            if size == 0 { break }
            let start = lineEnd.upperBound
            let end = min(start + size, data.endIndex)
            result.append(data[start..<end])
            index = min(end + 2, data.endIndex)
        }
        return result
    }
}

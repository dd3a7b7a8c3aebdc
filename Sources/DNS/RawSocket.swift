#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Sockets made by hand, in whatever namespace the calling thread is in,
/// for NIO to adopt (`withBoundSocket`, `withConnectedSocket`): NIO itself
/// always creates sockets in the event loop's namespace.
enum RawSocket {
    enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case system(operation: String, address: String, errno: Int32)
        case timedOut(address: String)

        var errno: Int32? {
            if case .system(_, _, let errno) = self { return errno }
            return nil
        }

        var description: String {
            switch self {
            case .system(let operation, let address, let errno):
                "\(operation) \(address): \(String(cString: strerror(errno)))"
            case .timedOut(let address): "connect \(address): timed out"
            }
        }
    }

    /// A non-blocking socket bound to `address` (SO_REUSEADDR for TCP, so
    /// a restarted server rebinds while old connections linger).
    static func bound(to address: SocketAddress, stream: Bool) throws -> CInt {
        let fd = try make(family: address.protocol.rawValue, stream: stream, address: address)
        do {
            if stream {
                var one: CInt = 1
                guard setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size)) == 0 else {
                    throw Error.system(operation: "set SO_REUSEADDR on socket for", address: "\(address)", errno: errno)
                }
            }
            let result = address.withSockAddr { pointer, length in bind(fd, pointer, socklen_t(length)) }
            guard result == 0 else { throw Error.system(operation: "bind", address: "\(address)", errno: errno) }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    /// A non-blocking socket connected to `address`: at once for UDP, and
    /// for TCP by the deadline.
    static func connected(to address: SocketAddress, stream: Bool, deadline: NIODeadline) throws -> CInt {
        let fd = try make(family: address.protocol.rawValue, stream: stream, address: address)
        do {
            let result = address.withSockAddr { pointer, length in connect(fd, pointer, socklen_t(length)) }
            if result != 0 {
                guard stream, errno == EINPROGRESS else { throw Error.system(operation: "connect", address: "\(address)", errno: errno) }
                try waitForConnection(fd, address: address, deadline: deadline)
            }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    private static func make(family: CInt, stream: Bool, address: SocketAddress) throws -> CInt {
        let type = (stream ? CInt(SOCK_STREAM.rawValue) : CInt(SOCK_DGRAM.rawValue)) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue)
        let fd = socket(family, type, 0)
        guard fd >= 0 else { throw Error.system(operation: "open socket for", address: "\(address)", errno: errno) }
        return fd
    }

    private static func waitForConnection(_ fd: CInt, address: SocketAddress, deadline: NIODeadline) throws {
        while true {
            let remaining = deadline - .now()
            guard remaining > .zero else { throw Error.timedOut(address: "\(address)") }
            var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let milliseconds = CInt(clamping: max(1, remaining.nanoseconds / 1_000_000))
            let ready = poll(&poller, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw Error.system(operation: "wait for connection to", address: "\(address)", errno: errno)
            }
            if ready == 0 { continue }
            var failure: CInt = 0
            var length = socklen_t(MemoryLayout<CInt>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length) == 0 else {
                throw Error.system(operation: "read connection state of", address: "\(address)", errno: errno)
            }
            guard failure == 0 else { throw Error.system(operation: "connect", address: "\(address)", errno: failure) }
            return
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import CLibMnl
import CNetlinkShim
import Namespaces

/// What a netlink session needs of a socket. A protocol so that request
/// building and reply handling are tested without root, against recorded
/// replies.
public protocol NetlinkTransport: AnyObject {
    /// The socket's netlink port id, which replies are addressed to.
    var portID: UInt32 { get }
    /// Sends one datagram holding one or more messages.
    func send(_ bytes: [UInt8]) throws
    /// Receives one datagram (one or more messages).
    func receive() throws -> [UInt8]
}

/// A netlink socket through libmnl (NETLINK_ROUTE unless asked otherwise),
/// opened inside a namespace.
///
/// The socket is created on a thread that has entered the namespace and
/// stays bound to that namespace afterwards, so it is then used from any
/// thread: no thread of the process ever changes namespace for its sake.
public final class MnlSocket: NetlinkTransport {
    private let socket: OpaquePointer
    public let portID: UInt32
    private var buffer: [UInt8]
    /// The largest datagram `reserveSendBuffer` has made room for.
    private var sendBufferReserved = 0

    /// Opens a socket of netlink `protocol` (NETLINK_GENERIC for IPVS) in
    /// `namespace` (the caller's own when nil), joined to the multicast
    /// `groups` (RTNLGRP_* values) for event subscriptions.
    public init(namespace: NetworkNamespace?, groups: [UInt32] = [], protocol: Int32 = NETLINK_ROUTE) throws {
        // Netfilter sockets are opened under NetfilterSockets' lock, which
        // tells them from libnftables' own.
        let open = {
            `protocol` == NETLINK_NETFILTER
                ? NetfilterSockets.opening { mnl_socket_open2(`protocol`, Int32(SOCK_CLOEXEC.rawValue)) }
                : mnl_socket_open2(`protocol`, Int32(SOCK_CLOEXEC.rawValue))
        }
        let opened = try namespace.map { try $0.run(open) } ?? open()
        guard let opened else { throw NetlinkError.socket(operation: "open", errno: errno) }
        socket = opened
        guard mnl_socket_bind(socket, 0, pid_t(MNL_SOCKET_AUTOPID)) == 0 else {
            let saved = errno
            mnl_socket_close(socket)
            throw NetlinkError.socket(operation: "bind", errno: saved)
        }
        portID = mnl_socket_get_portid(socket)
        // Large enough for one datagram of a dump (the kernel fills up to 32 KiB)
        // and never truncating: recvfrom would drop the rest of the datagram.
        buffer = [UInt8](repeating: 0, count: 1 << 17)
        // Extended acks carry the kernel's explanation of an error; capped
        // acks leave out the echoed request, which batches would pay for.
        try setOption(NETLINK_EXT_ACK, 1)
        try setOption(NETLINK_CAP_ACK, 1)
        // Batches queue one reply per failed request before we read: give
        // the receive queue room (SO_RCVBUFFORCE needs CAP_NET_ADMIN).
        var size: Int32 = 8 << 20
        let fd = mnl_socket_get_fd(socket)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        for group in groups {
            try setOption(NETLINK_ADD_MEMBERSHIP, Int32(group))
        }
    }

    deinit { mnl_socket_close(socket) }

    /// The descriptor, for poll(2).
    public var fileDescriptor: Int32 { mnl_socket_get_fd(socket) }

    public func send(_ bytes: [UInt8]) throws {
        let sent = bytes.withUnsafeBytes { mnl_socket_sendto(socket, $0.baseAddress, $0.count) }
        guard sent >= 0 else { throw NetlinkError.socket(operation: "send", errno: errno) }
    }

    public func receive() throws -> [UInt8] {
        while true {
            let count = buffer.withUnsafeMutableBytes { mnl_socket_recvfrom(socket, $0.baseAddress, $0.count) }
            if count >= 0 { return Array(buffer[0..<count]) }
            if errno == EINTR { continue }
            throw NetlinkError.socket(operation: "receive", errno: errno)
        }
    }

    /// Receives one datagram if one is queued, nil if none is. The kernel
    /// handles a netfilter batch inside sendmsg, so once send returns every
    /// reply to it is queued: draining without waiting reads them all, with
    /// no ack to ask for.
    public func receiveIfQueued() throws -> [UInt8]? {
        let fd = mnl_socket_get_fd(socket)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if count >= 0 { return Array(buffer[0..<count]) }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            throw NetlinkError.socket(operation: "receive", errno: errno)
        }
    }

    /// Lets one datagram of `bytes` be sent (SO_SNDBUFFORCE; a netfilter
    /// batch must be a single datagram, and the default limit is ~200 KiB).
    public func reserveSendBuffer(_ bytes: Int) {
        guard bytes > sendBufferReserved else { return }
        var size = Int32(clamping: bytes + 4096)
        let fd = mnl_socket_get_fd(socket)
        if setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        sendBufferReserved = bytes
    }

    private func setOption(_ option: Int32, _ value: Int32) throws {
        var value = value
        guard mnl_socket_setsockopt(socket, option, &value, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw NetlinkError.socket(operation: "setsockopt \(option)", errno: errno)
        }
    }
}

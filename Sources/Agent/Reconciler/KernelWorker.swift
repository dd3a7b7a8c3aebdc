import NIOPosix

/// Runs kernel work (netlink, namespaces) on one dedicated thread, in order.
///
/// Netlink calls block, so they stay off Swift's cooperative pool; and one
/// thread means two operations on the same VNI can never race (the cause of
/// moby's "vxlan: file exists").
public final class KernelWorker: Sendable {
    private let pool: NIOThreadPool

    public init() {
        pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
    }

    public func run<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(work)
    }

    public func shutdown() async throws {
        try await pool.shutdownGracefully()
    }
}

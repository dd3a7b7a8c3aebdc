// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "swarmnet",
    products: [
        .executable(name: "swarmnet", targets: ["swarmnet"]),
        .executable(name: "swarmnetd", targets: ["swarmnetd"]),
        .library(name: "Netlink", targets: ["Netlink"]),
        .library(name: "Namespaces", targets: ["Namespaces"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
    ],
    targets: [
        // C: system libraries and the one small shim (see CShims/*/).
        .systemLibrary(
            name: "CLibNL", path: "CShims/CLibNL", pkgConfig: "libnl-route-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]),
        .systemLibrary(
            name: "CLibMnl", path: "CShims/CLibMnl", pkgConfig: "libmnl",
            providers: [.apt(["libmnl-dev"])]),
        .target(name: "CNetlinkShim", path: "CShims/CNetlinkShim"),
        .target(name: "CExecutorShim", path: "CShims/CExecutorShim"),
        .systemLibrary(name: "CZlib", path: "CShims/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),

        // Libraries.
        // What the daemon took from Foundation beyond FoundationEssentials
        // (a lock, a thread, untyped JSON, trimming): it links
        // FoundationEssentials only.
        .target(name: "SystemBasics"),
        .testTarget(name: "SystemBasicsTests", dependencies: ["SystemBasics"]),
        .target(name: "Addressing"),
        .target(name: "Namespaces", dependencies: ["CNetlinkShim", "SystemBasics"]),
        .target(
            name: "Netlink",
            dependencies: ["CNetlinkShim", "CLibMnl", "CLibNL", "Addressing", "Namespaces", "SystemBasics"]),
        .target(name: "Overlay", dependencies: ["Netlink", "Namespaces", "Addressing", "SystemBasics"]),
        .target(name: "Cluster", dependencies: ["Addressing", "SystemBasics"]),

        // The swarm's control plane: identities (CA, certificates, join
        // tokens), the pure control rules, and the runtime that runs them
        // (Raft member, manager endpoint over TLS, heartbeats).
        .target(
            name: "SwarmIdentity",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(name: "Control", dependencies: ["Cluster", "SystemBasics"]),
        .target(
            name: "Swarm",
            dependencies: [
                "SwarmIdentity", "Control", "Cluster", "DockerAPI", "RaftRuntime", "RaftTransport", "ReplicatedStore", "Addressing",
                "GossipRuntime", "Raft", "SystemBasics",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "SwarmTests",
            dependencies: ["SwarmIdentity", "Control", "Cluster", "Swarm", "ReplicatedStore", "Addressing",
                           .product(name: "X509", package: "swift-certificates")]),
        .target(
            name: "DockerAPI",
            dependencies: [
                "Cluster", "SystemBasics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "Agent",
            dependencies: [
                "Cluster", "DockerAPI", "Overlay", "Netlink", "Namespaces", "Addressing", "GossipRuntime", "Gossip", "LoadBalancing", "DNS",
                "TaskExecution", "SystemBasics",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "TaskExecution",
            dependencies: [
                "CZlib", "CExecutorShim", "Namespaces", "Cluster", "SystemBasics",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(name: "swarmnet-shim", dependencies: ["CExecutorShim"]),
        .target(name: "Lab", dependencies: ["Netlink", "Namespaces", "Addressing"]),
        .target(name: "Gossip"),
        .target(
            name: "GossipRuntime",
            dependencies: [
                "Gossip",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(name: "Raft"),
        .target(name: "RaftSimulation", dependencies: ["Raft"]),
        .target(name: "RaftStorage", dependencies: ["Raft"]),
        .target(name: "ReplicatedStore", dependencies: ["Raft"]),
        .executableTarget(name: "raft-crash-writer", dependencies: ["Raft", "RaftStorage"]),
        .target(
            name: "Inspect",
            dependencies: ["Netlink", "Namespaces", "Addressing", "CLibNL"]),

        // Executables: thin, all logic lives in the libraries.
        .executableTarget(
            name: "swarmnet",
            dependencies: [
                "Inspect", "Netlink", "Namespaces", "Overlay", "Lab", "Addressing", "DockerAPI", "RaftTransport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .executableTarget(
            name: "swarmnetd",
            dependencies: [
                "Agent", "DockerAPI", "Netlink", "Addressing", "swarmnet-shim", "Swarm", "SystemBasics",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),
        .executableTarget(
            name: "gossip-node",
            dependencies: [
                "GossipRuntime", "Gossip",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "swarmnet-bench",
            dependencies: ["Netlink", "Namespaces", "Addressing"]),

        // Tests.
        .target(name: "CTestSupport", path: "Tests/CTestSupport"),
        .testTarget(name: "AddressingTests", dependencies: ["Addressing"]),
        .testTarget(name: "ClusterTests", dependencies: ["Cluster", "Addressing"]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "Cluster", "LoadBalancing", "Addressing", "DockerAPI"]),
        .testTarget(name: "GossipTests", dependencies: ["Gossip"]),
        .target(
            name: "TestKit", dependencies: ["Namespaces", .product(name: "Crypto", package: "swift-crypto")], path: "Tests/TestKit"),
        .testTarget(
            name: "TaskExecutionTests",
            dependencies: ["TaskExecution", "TestKit", "CExecutorShim", "Namespaces", "swarmnet-shim", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "GossipRuntimeTests", dependencies: ["GossipRuntime", "Gossip", "gossip-node", "TestKit"]),
        .testTarget(name: "RaftTests", dependencies: ["Raft", "RaftSimulation"], resources: [.copy("testdata")]),
        .testTarget(name: "RaftStorageTests", dependencies: ["Raft", "RaftStorage", "raft-crash-writer"]),
        .testTarget(name: "ReplicatedStoreTests", dependencies: ["Raft", "RaftStorage", "ReplicatedStore", "TestKit"]),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink", "Addressing"]),
        .testTarget(
            name: "KernelIntegrationTests",
            dependencies: ["Netlink", "Namespaces", "Addressing", "Inspect", "Overlay", "Lab", "CTestSupport", "TestKit", "DockerAPI", "swarmnet", "swarmnetd"]),

        // Load balancing: the IPVS back end over generic netlink and its tests
        // (IPVSKernelTests need IPVS: scripts/test-ipvs runs them in scripts/ipvs-vm).
        .target(name: "CIPVSShim", path: "CShims/CIPVSShim"),
        .target(
            name: "LoadBalancing",
            dependencies: ["Netlink", "Namespaces", "Addressing", "CNetlinkShim", "CLibMnl", "CIPVSShim", "CLibNftables", "SystemBasics"]),
        .testTarget(name: "LoadBalancingTests", dependencies: ["LoadBalancing", "Netlink", "Addressing", "CIPVSShim", "CNetlinkShim"]),
        .testTarget(name: "IPVSKernelTests", dependencies: ["LoadBalancing", "Netlink", "Namespaces", "Addressing", "TestKit"]),

        // [nftables targets]
        .systemLibrary(
            name: "CLibNftables", path: "CShims/CLibNftables", pkgConfig: "libnftables",
            providers: [.apt(["libnftables-dev"])]),
        .testTarget(name: "NFTablesKernelTests", dependencies: ["LoadBalancing", "Namespaces", "Addressing", "TestKit"]),
        .executableTarget(name: "lb-bench", dependencies: ["LoadBalancing", "Namespaces", "Addressing"]),

        // [dns targets]
        // The embedded DNS server (Sources/DNS); DNSKernelTests need root, dig and dnsmasq.
        .target(
            name: "DNS",
            dependencies: [
                "Addressing", "Namespaces",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "DNSTests",
            dependencies: [
                "DNS", "Addressing",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "DNSKernelTests",
            dependencies: [
                "DNS", "Namespaces", "Addressing",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),

        // [raft-live targets]
        .target(
            name: "RaftTransport",
            dependencies: [
                "Raft",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "RaftRuntime",
            dependencies: [
                "Raft", "RaftStorage", "ReplicatedStore", "RaftTransport", "SystemBasics",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(
            name: "raft-node",
            dependencies: [
                "RaftRuntime", "RaftTransport", "Raft", "DockerAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(name: "raft-sim", dependencies: ["Raft", "RaftSimulation"]),
        .testTarget(
            name: "RaftTransportTests",
            dependencies: [
                "RaftTransport", "RaftRuntime", "Raft",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "RaftLiveTests", dependencies: ["raft-node", "TestKit"]),
    ]
)

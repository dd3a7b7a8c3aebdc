// lb-bench: benchmarks of the nftables load-balancer back end, run by
// scripts/bench-nftables (root; makes and removes its own namespaces).
//
//   lb-bench bulk SERVICES BACKENDS [--verify] [--rounds N]
//       programs SERVICES x BACKENDS through NFTablesLoadBalancer in a fresh
//       namespace, and the same rule set as text with `nft -f` in another;
//       prints both times and the ratio (--verify: both tables list alike;
//       --rounds: the medians of N rounds, which side goes first alternating).
//   lb-bench change SERVICES CHANGES [PEER-CHANGES] [--interleave | --pause MS]
//       with SERVICES x 10 programmed, adds and removes one backend of one
//       service CHANGES times through reconcile(service:to:); p50/p99 per
//       change, beside `nft -f` of the same transaction text; then the same
//       changes through reconcile(to:) of all services (the daemon's path).
//       Ours run first, then the peer's. --interleave: each peer change right after
//       ours, which roughly doubles our figure (the caches go cold while
//       the peer runs, see BENCHMARKS.md); --pause MS: MS of idle before
//       each of ours, and no peer process in between.
//   --layout chains|maps (either mode): the table layout (default chains,
//       kube-proxy's; see NFTablesConfiguration.Layout).
import Addressing
import Foundation
import LoadBalancing
import Namespaces

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("lb-bench: \(message)\n".utf8))
    exit(1)
}

func desiredServices(_ count: Int, backends: Int) -> [VirtualService] {
    (0..<count).map { i in
        VirtualService(key: .address(.v4(IPv4Address(0x0a64_0000 + UInt32(i))), .tcp, port: 80),
                       realServers: (0..<backends).map { j in
                           RealServer(address: .v4(IPv4Address(0x0ac8_0000 + UInt32(i * backends + j))), port: 8080)
                       })
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

@discardableResult
func shell(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { fail("\(arguments.joined(separator: " ")) exited \(process.terminationStatus)") }
    return String(decoding: data, as: UTF8.self)
}

nonisolated(unsafe) var namespaceCounter = 0
func withNamespace<T>(_ body: (NetworkNamespace) throws -> T) throws -> T {
    namespaceCounter += 1  // one thread: the benchmark runs sequentially
    let namespace = try NetworkNamespace.create(named: "snt" + String(getpid(), radix: 36) + "x" + String(namespaceCounter, radix: 36))
    defer { try? namespace.delete() }
    return try body(namespace)
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
    return sorted[max(0, min(sorted.count - 1, rank))]
}

let clock = ContinuousClock()
var arguments = Array(CommandLine.arguments.dropFirst())
var configuration = NFTablesConfiguration()
if let flag = arguments.firstIndex(of: "--layout") {
    guard flag + 1 < arguments.count, let layout = NFTablesConfiguration.Layout(rawValue: arguments[flag + 1]) else {
        fail("--layout chains|maps")
    }
    configuration.layout = layout
    arguments.removeSubrange(flag...flag + 1)
}
guard let mode = arguments.first else {
    fail("usage: lb-bench bulk SERVICES BACKENDS [--verify] [--rounds N] | change SERVICES CHANGES [PEER-CHANGES] [--interleave | --pause MS]")
}

switch mode {
case "bulk":
    guard arguments.count >= 3, let services = Int(arguments[1]), let backends = Int(arguments[2]) else { fail("bulk SERVICES BACKENDS") }
    let verify = arguments.contains("--verify")
    // --rounds N: N rounds in fresh namespaces, the side that goes first
    // alternating; the medians are compared (single runs vary by +-15%).
    var rounds = 1
    if let flag = arguments.firstIndex(of: "--rounds") {
        guard flag + 1 < arguments.count, let n = Int(arguments[flag + 1]), n >= 1 else { fail("--rounds N") }
        rounds = n
    }
    let desired = desiredServices(services, backends: backends)
    let file = "/tmp/lb-bench-\(getpid()).nft"
    let text = try NFTablesLoadBalancer.ruleset(for: desired, configuration: configuration)
    try text.write(toFile: file, atomically: true, encoding: .utf8)
    defer { unlink(file) }
    print(String(format: "NFT-BENCH bulk services=%d backends=%d commands=%d", services, backends,
                 text.split(separator: "\n").count) + " layout=" + configuration.layout.rawValue)
    var oursTimes: [Double] = []
    var theirsTimes: [Double] = []
    for round in 0..<rounds {
        try withNamespace { ours in
            try withNamespace { theirs in
                let lb = try NFTablesLoadBalancer(namespace: ours, configuration: configuration)
                let programOurs = { oursTimes.append(seconds(try clock.measure { try lb.reconcile(to: desired) })) }
                let programTheirs = {
                    theirsTimes.append(seconds(try clock.measure { try shell(["ip", "netns", "exec", theirs.name!, "nft", "-f", file]) }))
                }
                if round % 2 == 0 {
                    try programOurs()
                    try programTheirs()
                } else {
                    try programTheirs()
                    try programOurs()
                }
                guard round == 0 else { return }
                // The periodic reconcile of a table nobody touched: no listing.
                let again = try clock.measure {
                    if try !lb.reconcile(to: desired).isEmpty || !lb.lastTransaction.isEmpty { fail("the second reconcile changed something") }
                }
                print(String(format: "NFT-BENCH full reconcile again, table untouched:            %.3f s", seconds(again)))
                if verify {
                    let a = try shell(["ip", "netns", "exec", ours.name!, "nft", "list", "table", "ip", "swarmnet"])
                    let b = try shell(["ip", "netns", "exec", theirs.name!, "nft", "list", "table", "ip", "swarmnet"])
                    print("NFT-BENCH tables identical (nft list table): \(a == b ? "yes" : "NO")")
                    if a != b { exit(1) }
                }
            }
        }
    }
    let median = { (values: [Double]) in percentile(values.sorted(), 0.5) }
    let runs = { (values: [Double]) in rounds > 1 ? " (runs " + values.map { String(format: "%.3f", $0) }.joined(separator: " ") + ")" : "" }
    print(String(format: "NFT-BENCH swarmnet reconcile(to:):                          %.3f s", median(oursTimes)) + runs(oursTimes))
    print(String(format: "NFT-BENCH nft -f of the same rule set:                      %.3f s", median(theirsTimes)) + runs(theirsTimes))
    print(String(format: "NFT-BENCH ratio swarmnet/nft:                               %.2f", median(oursTimes) / median(theirsTimes))
          + (rounds > 1 ? String(format: " (medians of %d rounds)", rounds) : ""))

case "change":
    // --interleave runs each peer change right after ours (the order before
    // session 5); the default runs all of ours, then the peer replays them.
    let interleave = arguments.contains("--interleave")
    // --pause MS: idle before each change, as a daemon whose changes are
    // rare sees the kernel (cold caches), with no peer process in between.
    var pause: UInt32 = 0
    var numbers = Array(arguments.dropFirst().filter { $0 != "--interleave" })
    if let flag = numbers.firstIndex(of: "--pause") {
        guard flag + 1 < numbers.count, let ms = UInt32(numbers[flag + 1]) else { fail("--pause MS") }
        pause = ms * 1000
        numbers.removeSubrange(flag...flag + 1)
    }
    guard numbers.count >= 2, let services = Int(numbers[0]),
          let changes = Int(numbers[1]) else {
        fail("change SERVICES CHANGES [PEER-CHANGES] [--interleave | --pause MS]")
    }
    let peerChanges = numbers.count >= 3 ? Int(numbers[2]) ?? changes : changes
    let desired = desiredServices(services, backends: 10)
    try withNamespace { namespace in
      try withNamespace { peer in
        let lb = try NFTablesLoadBalancer(namespace: namespace, configuration: configuration)
        let setup = try clock.measure { try lb.reconcile(to: desired) }
        // The peer works in a namespace of its own holding the same table,
        // so its commits never make swarmnet's model look stale.
        let ruleset = "/tmp/lb-bench-\(getpid())-ruleset.nft"
        try NFTablesLoadBalancer.ruleset(for: desired, configuration: configuration).write(toFile: ruleset, atomically: true, encoding: .utf8)
        defer { unlink(ruleset) }
        if peerChanges > 0 { try shell(["ip", "netns", "exec", peer.name!, "nft", "-f", ruleset]) }
        var add: [Double] = []
        var remove: [Double] = []
        var peerAdd: [Double] = []
        var peerRemove: [Double] = []
        let file = "/tmp/lb-bench-\(getpid()).nft"
        defer { unlink(file) }
        // The peer applies the same two transactions with nft -f.
        func peerApplies(_ add: [String], _ remove: [String]) throws {
            try (add.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
            peerAdd.append(seconds(try clock.measure { try shell(["ip", "netns", "exec", peer.name!, "nft", "-f", file]) }))
            try (remove.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
            peerRemove.append(seconds(try clock.measure { try shell(["ip", "netns", "exec", peer.name!, "nft", "-f", file]) }))
        }
        var transactions: [(add: [String], remove: [String])] = []
        for k in 0..<changes {
            let service = desired[(k * 7919) % services]
            var grown = service
            grown.realServers.append(RealServer(address: .v4(IPv4Address(0x0afa_0000 + UInt32(k))), port: 8080))
            if pause > 0 { usleep(pause) }
            add.append(seconds(try clock.measure { try lb.reconcile(service: service.key, to: grown) }))
            let addText = lb.lastTransaction
            if pause > 0 { usleep(pause) }
            remove.append(seconds(try clock.measure { try lb.reconcile(service: service.key, to: service) }))
            let removeText = lb.lastTransaction
            if addText.isEmpty || removeText.isEmpty { fail("a change sent nothing") }
            guard k < peerChanges else { continue }
            if interleave { try peerApplies(addText, removeText) } else { transactions.append((addText, removeText)) }
        }
        // The daemon's path: the whole desired set reconciled, one service
        // of it changed (the daemon calls reconcile(to:) on every change).
        var full: [Double] = []
        var current = desired
        for k in 0..<changes {
            let index = (k * 7919) % services
            current[index].realServers.append(RealServer(address: .v4(IPv4Address(0x0afb_0000 + UInt32(k))), port: 8080))
            for _ in 0..<2 {
                if pause > 0 { usleep(pause) }
                full.append(seconds(try clock.measure { try lb.reconcile(to: current) }))
                if lb.lastTransaction.isEmpty { fail("a full reconcile with one service changed sent nothing") }
                current[index] = desired[index]
            }
        }
        for transaction in transactions { try peerApplies(transaction.add, transaction.remove) }
        let ours = (add + remove).sorted()
        let theirs = (peerAdd + peerRemove).sorted()
        let ms = { (x: Double) in x * 1000 }
        print(String(format: "NFT-BENCH change services=%d backends=10 changes=%d layout=", services, ours.count)
              + configuration.layout.rawValue + String(format: " (setup %.2f s; ", seconds(setup))
              + (interleave ? "each peer change right after ours)" : "all of ours first, then the peer's)"))
        print(String(format: "NFT-BENCH swarmnet reconcile(service:) add p50 %.2f ms p99 %.2f ms; remove p50 %.2f ms p99 %.2f ms",
                     ms(percentile(add.sorted(), 0.5)), ms(percentile(add.sorted(), 0.99)),
                     ms(percentile(remove.sorted(), 0.5)), ms(percentile(remove.sorted(), 0.99))))
        print(String(format: "NFT-BENCH swarmnet per change (add+remove pooled): p50 %.2f ms p99 %.2f ms",
                     ms(percentile(ours, 0.5)), ms(percentile(ours, 0.99))))
        let daemon = full.sorted()
        print(String(format: "NFT-BENCH swarmnet reconcile(to:) of all services, one changed (the daemon's path): p50 %.2f ms p99 %.2f ms",
                     ms(percentile(daemon, 0.5)), ms(percentile(daemon, 0.99))))
        print(String(format: "NFT-BENCH nft -f of the same transactions (%d changes): p50 %.2f ms p99 %.2f ms",
                     theirs.count, ms(percentile(theirs, 0.5)), ms(percentile(theirs, 0.99))))
        print(String(format: "NFT-BENCH ratio swarmnet/nft: p50 %.2f p99 %.2f",
                     percentile(ours, 0.5) / percentile(theirs, 0.5), percentile(ours, 0.99) / percentile(theirs, 0.99)))
        // Nothing drifted: the full reconcile finds nothing to do.
        if services <= 1000 {
            let check = try lb.reconcile(to: desired)
            print("NFT-BENCH full reconcile afterwards: \(check.isEmpty && lb.lastTransaction.isEmpty ? "nothing to do" : "DIFFERS")")
        }
      }
    }

default:
    fail("unknown mode \(mode)")
}

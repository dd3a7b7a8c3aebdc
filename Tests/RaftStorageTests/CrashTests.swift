import Foundation
import Raft
@testable import RaftStorage
import Testing

/// Runs `raft-crash-writer` against one directory, SIGKILLs it at random times, and after every
/// kill recovers the directory and checks it against the writer's log of acknowledged saves.
struct CrashTests {
    static var writerExecutable: String? {
        let dirs = [Bundle.main.bundleURL.path, URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path,
                    URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path]
        return dirs.flatMap { [$0 + "/raft-crash-writer", URL(fileURLWithPath: $0).deletingLastPathComponent().path + "/raft-crash-writer"] }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Must match raft-crash-writer's `payload(index:term:)`.
    static func payload(index: Index, term: Term) -> [UInt8] {
        let head = Array("i=\(index) t=\(term);".utf8)
        let n = Int((index &* 2_654_435_761 ^ term) % 300)
        return head + (0..<n).map { UInt8(truncatingIfNeeded: Int(index) &+ $0 &* 7) }
    }

    struct Save {
        var first: Index, last: Index, term: Term, commit: Index
    }

    static func parse(_ line: Substring) -> (Character, Save)? {
        let f = line.split(separator: " ")
        guard f.count == 5, let k = f[0].first, let a = Index(f[1]), let b = Index(f[2]), let t = Term(f[3]), let c = Index(f[4])
        else { return nil }
        return (k, Save(first: a, last: b, term: t, commit: c))
    }

    @Test(.timeLimit(.minutes(1)))
    func killNineAtRandomTimes() throws {
        let exe = try #require(Self.writerExecutable, "raft-crash-writer not found next to the test bundle")
        let dir = TempDir("raft-crash")
        defer { dir.remove() }
        let store = dir.path + "/node"
        var rng = SplitMix64(seed: UInt64(ProcessInfo.processInfo.environment["RAFT_CRASH_SEED"] ?? "") ?? 7)
        // What must be on disk: the term of every index whose save was acknowledged (or that
        // recovery showed to be durable), and the commit index.
        var model: [Index: Term] = [:]
        var modelLast: Index = 0
        var commit: Index = 0
        var totalAcked = 0
        var tornRounds = 0
        let rounds = 8
        for round in 0..<rounds {
            let logPath = dir.path + "/log-\(round)"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = [store, logPath, String(rng.next() % 1_000_000), "4096"]
            try p.run()
            usleep(useconds_t(60_000 + rng.next() % 300_000))
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            #expect(p.terminationReason == .uncaughtSignal, "writer exited by itself in round \(round) (status \(p.terminationStatus))")

            var inflight: Save?
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") {
                // The last line may be cut by the kill; anything unparsable there is ignored.
                guard let (kind, s) = Self.parse(line) else { continue }
                if kind == "W" { inflight = s; continue }
                #expect(kind == "A")
                for i in s.first...s.last { model[i] = s.term }
                for i in (s.last + 1)...max(modelLast, s.last + 1) { model[i] = nil }
                modelLast = s.last
                commit = max(commit, s.commit)
                inflight = nil
                totalAcked += 1
            }

            let (storage, rec) = try DiskStorage.open(directory: store, options: .init(segmentSizeLimit: 4096))
            if storage.recovery.truncatedTail != nil { tornRounds += 1 }
            let snapIndex = rec.snapshot.metadata.index
            #expect(rec.hardState.commit >= commit, "round \(round): commit \(rec.hardState.commit) < acknowledged \(commit)")
            #expect(snapIndex <= rec.hardState.commit)
            if snapIndex > 0 { #expect(model[snapIndex] == rec.snapshot.metadata.term) }
            // Nothing invented: every recovered entry is one the writer made.
            for e in rec.entries {
                #expect(e.data == Self.payload(index: e.index, term: e.term), "round \(round): entry \(e.index) has foreign data")
            }
            // Every acknowledged entry after the snapshot is there with its term, unless an in-flight
            // save that replaced it reached the disk (then that save's prefix is what we see).
            let recTerms = Dictionary(uniqueKeysWithValues: rec.entries.map { ($0.index, $0.term) })
            var expected: [Index: Term] = model.filter { $0.key > snapIndex }
            if let w = inflight, rec.lastIndex >= w.first, recTerms[w.first] == w.term {
                for i in expected.keys where i >= w.first { expected[i] = nil }
                #expect(rec.lastIndex <= w.last, "round \(round): entries past the in-flight save")
                for i in w.first...rec.lastIndex where i > snapIndex { expected[i] = w.term }
            } else {
                #expect(rec.lastIndex == max(modelLast, snapIndex), "round \(round): last \(rec.lastIndex), acknowledged \(modelLast)")
            }
            #expect(recTerms == expected, "round \(round): recovered log differs from the acknowledged one")
            // What recovery returned is what the next run builds on.
            for (i, t) in recTerms { model[i] = t }
            for i in (rec.lastIndex + 1)...max(modelLast, rec.lastIndex + 1) { model[i] = nil }
            modelLast = rec.lastIndex
            commit = rec.hardState.commit
            _ = RaftNode(config: Config(id: 1, randomSeed: 1), persisted: rec)
        }
        #expect(totalAcked > rounds * 5, "the writer made too little progress to test anything (\(totalAcked) saves)")
        print("crash test: \(rounds) kills, \(totalAcked) acknowledged saves, \(tornRounds) torn tails repaired, last index \(modelLast)")
    }
}

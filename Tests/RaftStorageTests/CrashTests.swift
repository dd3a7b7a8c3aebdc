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

    /// The number of complete "A" lines in a writer's log.
    static func acknowledged(_ logPath: String) -> Int {
        guard let d = FileManager.default.contents(atPath: logPath) else { return 0 }
        var n = 0
        var atLineStart = true
        var sawA = false
        for b in d {
            if atLineStart { sawA = b == UInt8(ascii: "A") }
            atLineStart = b == UInt8(ascii: "\n")
            if atLineStart, sawA { n += 1 }
        }
        return n
    }

    @Test(.timeLimit(.minutes(2)))
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
            // The kill comes after a random number of acknowledged saves (sometimes none, so that
            // startup and recovery get killed too) plus a random delay, rather than after a fixed
            // time: on a loaded machine the writer may not even have opened the storage after a
            // few hundred milliseconds, and rounds without progress test nothing.
            let saves = rng.next() % 5 == 0 ? 0 : Int(1 + rng.next() % 48)
            let delay = useconds_t(rng.next() % 40_000)
            let deadline = Date().addingTimeInterval(20)
            while p.isRunning, Self.acknowledged(logPath) < saves, Date() < deadline { usleep(1000) }
            usleep(delay)
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
            // Every acknowledged entry after the snapshot is there with its term, unless the save in
            // flight at the kill reached the disk: whole, or (a torn write) a prefix of its entries,
            // which replaces the log from its first index. Which one happened cannot be told from
            // the terms alone: a rewrite in the same run has the same term as what it replaces, so
            // every outcome is checked, not guessed.
            let recTerms = Dictionary(uniqueKeysWithValues: rec.entries.map { ($0.index, $0.term) })
            var outcomes: [(last: Index, terms: [Index: Term])] = [(max(modelLast, snapIndex), model.filter { $0.key > snapIndex })]
            if let w = inflight {
                for k in w.first...w.last {
                    var terms = model.filter { $0.key > snapIndex && $0.key < w.first }
                    for i in w.first...k where i > snapIndex { terms[i] = w.term }
                    outcomes.append((max(k, snapIndex), terms))
                }
            }
            #expect(outcomes.contains { $0.last == rec.lastIndex && $0.terms == recTerms },
                    "round \(round): recovered log (last \(rec.lastIndex), snapshot \(snapIndex)) is neither the acknowledged one (last \(modelLast)) nor it with a prefix of the in-flight save \(inflight.map { "\($0.first)...\($0.last)" } ?? "none")")
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

// Appends entries to a DiskStorage as fast as it can and logs each acknowledged write, for the
// crash test in Tests/RaftStorageTests: the test SIGKILLs it at random times, recovers the
// directory and checks that every acknowledged write survived and nothing was invented.
//
// usage: raft-crash-writer <storage-dir> <log-file> <seed> [segment-size]
//
// Log lines (written with write(2) to an O_APPEND file, so they survive the kill):
//   W <first> <last> <term> <commit>   about to save entries first...last of <term>
//   A <first> <last> <term> <commit>   that save returned: the entries and hard state are durable
// Entry data is a function of its index and term (`payload(index:term:)`), so the test can tell
// an invented entry from a real one.
#if canImport(Glibc)
import Glibc
#endif
import Raft
import RaftStorage

func fail(_ s: String, status: Int32) -> Never {
    let b = Array((s + "\n").utf8)
    _ = b.withUnsafeBytes { write(2, $0.baseAddress!, $0.count) }
    exit(status)
}

func payload(index: Index, term: Term) -> [UInt8] {
    // Variable length, so records straddle segment boundaries and torn tails land anywhere.
    let head = Array("i=\(index) t=\(term);".utf8)
    let n = Int((index &* 2_654_435_761 ^ term) % 300)
    return head + (0..<n).map { UInt8(truncatingIfNeeded: Int(index) &+ $0 &* 7) }
}

let args = CommandLine.arguments
guard args.count >= 4, let seed = UInt64(args[3]) else {
    fail("usage: raft-crash-writer <storage-dir> <log-file> <seed> [segment-size]", status: 2)
}
let segmentSize = args.count > 4 ? Int(args[4]) ?? 16 << 10 : 16 << 10
let logFD = open(args[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
guard logFD >= 0 else { fail("cannot open \(args[2])", status: 1) }

func log(_ s: String) {
    let line = Array((s + "\n").utf8)
    _ = line.withUnsafeBytes { write(logFD, $0.baseAddress!, $0.count) }
}

do {
    let (storage, recovered) = try DiskStorage.open(directory: args[1],
                                                    options: .init(segmentSizeLimit: segmentSize))
    var state = recovered
    var rng = SplitMix64(seed: seed)
    // A new term per run, so rewriting the uncommitted suffix makes real conflicts.
    let term = max(state.hardState.term, state.entries.last?.term ?? state.snapshot.metadata.term) + 1
    while true {
        let last = state.lastIndex
        var commit = state.hardState.commit
        var first = last + 1
        if commit < last, rng.next() % 8 == 0 {
            // Replace part of the uncommitted suffix, as a follower does on a conflict.
            first = commit + 1 + rng.next() % (last - commit)
        }
        let count = 1 + rng.next() % 4
        let entries = (first..<(first + count)).map { Entry(term: term, index: $0, data: payload(index: $0, term: term)) }
        let lastNew = first + count - 1
        commit += rng.next() % (lastNew - commit + 1)
        let hs = HardState(term: term, vote: 0, commit: commit)
        log("W \(first) \(lastNew) \(term) \(commit)")
        try storage.save(hardState: hs, entries: entries, snapshot: nil)
        log("A \(first) \(lastNew) \(term) \(commit)")
        state.append(entries)
        state.hardState = hs
        if rng.next() % 16 == 0, commit > state.snapshot.metadata.index {
            let s = Snapshot(metadata: SnapshotMetadata(index: commit, term: state.term(at: commit)!,
                                                        confState: ConfState(voters: [1])),
                             data: Array("snapshot at \(commit)".utf8))
            try storage.compact(s)
            state.install(s)
        }
    }
} catch {
    fail("raft-crash-writer: \(error)", status: 1)
}

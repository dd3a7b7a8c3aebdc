import Foundation
import Raft
@testable import RaftStorage
import Testing

struct WALTests {
    @Test func emptyDirectoryOpensEmpty() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let (_, state) = try DiskStorage.open(directory: dir.path)
        #expect(state == PersistentState())
    }

    @Test func roundTripWithConflictsSnapshotsAndHardState() throws {
        let dir = TempDir()
        defer { dir.remove() }
        do {
            let (storage, state) = try DiskStorage.open(directory: dir.path)
            var m = Mirror(storage: storage, model: state)
            let boot = PersistentState.bootstrap(voters: [1, 2, 3])
            try m.save(hardState: boot.hardState, entries: boot.entries)
            try m.save(hardState: HardState(term: 2, vote: 1, commit: 3), entries: entries(4...10, term: 2))
            // A new leader replaces the uncommitted suffix 8...10.
            try m.save(hardState: HardState(term: 3, vote: 2, commit: 7), entries: entries(8...9, term: 3, size: 5))
            try m.save(entries: [Entry(term: 3, index: 10, kind: .confChange, data: ConfChange.addLearner(4).encoded)])
            try m.compact(at: 6)
            try m.save(hardState: HardState(term: 3, vote: 2, commit: 10), entries: entries(11...12, term: 3, size: 0))
            let (_, reopened) = try DiskStorage.open(directory: dir.path)
            #expect(reopened == m.model)
            #expect(reopened.snapshot.metadata.index == 6)
            #expect(reopened.entries.map(\.index) == Array(7...12))
            #expect(reopened.entries.map(\.term) == [2, 3, 3, 3, 3, 3])
        }
        // A node restarted from it accepts the state (its preconditions check the log's shape).
        let (_, again) = try DiskStorage.open(directory: dir.path)
        let node = RaftNode(config: Config(id: 1, randomSeed: 1), persisted: again)
        #expect(node.status.lastIndex == 12)
        #expect(node.status.commit == 10)
    }

    @Test func leaderSnapshotReplacesADisagreeingLog() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let (storage, state) = try DiskStorage.open(directory: dir.path)
        var m = Mirror(storage: storage, model: state)
        try m.save(hardState: HardState(term: 1, vote: 1, commit: 5), entries: entries(1...12, term: 1))
        let s = Snapshot(metadata: SnapshotMetadata(index: 10, term: 2, confState: ConfState(voters: [1, 2])),
                         data: [1, 2, 3])
        try m.save(hardState: HardState(term: 2, vote: 0, commit: 10), snapshot: s)
        let (_, afterSnap) = try DiskStorage.open(directory: dir.path)
        #expect(afterSnap == m.model)
        #expect(afterSnap.entries.isEmpty, "entries 11 and 12 of term 1 must not survive the snapshot")
        try m.save(entries: entries(11...13, term: 2))
        // A snapshot that agrees with the log keeps what follows it.
        let s2 = Snapshot(metadata: SnapshotMetadata(index: 12, term: 2, confState: ConfState(voters: [1, 2])), data: [9])
        try m.save(hardState: HardState(term: 2, vote: 0, commit: 12), snapshot: s2)
        let (_, reopened) = try DiskStorage.open(directory: dir.path)
        #expect(reopened == m.model)
        #expect(reopened.snapshot == s2)
        #expect(reopened.entries.map(\.index) == [13])
    }

    /// Cuts the last segment at every byte offset inside its last record: recovery must succeed and
    /// keep exactly the records before it.
    @Test func tornLastRecordAtEveryOffset() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let (storage, state) = try DiskStorage.open(directory: dir.path)
        var m = Mirror(storage: storage, model: state)
        try m.save(hardState: HardState(term: 1, vote: 1, commit: 3), entries: entries(1...5, term: 1))
        try m.save(entries: entries(6...7, term: 1))
        let before = m.model
        let segment = storage.segmentFiles.last!
        let start = try fileSize(segment)
        try m.save(entries: [entry(8, term: 1, size: 40)])
        let end = try fileSize(segment)
        #expect(end - start == Record.headerSize + 17 + 40)
        for cut in start..<end {
            let copy = try dir.copy()
            defer { copy.remove() }
            truncateFile(copy.path + "/wal/" + (segment as NSString).lastPathComponent, to: cut)
            let (s, recovered) = try DiskStorage.open(directory: copy.path)
            #expect(recovered == before, "cut at \(cut)")
            #expect((s.recovery.truncatedTail != nil) == (cut > start), "cut at \(cut)")
            #expect(s.recovery.truncatedTail.map { $0.offset } ?? start == start)
            // The log continues cleanly after the repair.
            try s.save(hardState: nil, entries: [entry(8, term: 2)], snapshot: nil)
            let (_, again) = try DiskStorage.open(directory: copy.path)
            #expect(again.entries.last == entry(8, term: 2))
        }
        let (_, whole) = try DiskStorage.open(directory: dir.path)
        #expect(whole == m.model)
    }

    @Test func badChecksumOnTheLastRecordIsATornTail() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let (storage, state) = try DiskStorage.open(directory: dir.path)
        var m = Mirror(storage: storage, model: state)
        try m.save(hardState: HardState(term: 1, vote: 1, commit: 2), entries: entries(1...4, term: 1))
        let before = m.model
        let segment = storage.segmentFiles.last!
        let start = try fileSize(segment)
        try m.save(entries: entries(5...5, term: 1))
        try flipByte(segment, at: start + Record.headerSize + 20)
        let (s, recovered) = try DiskStorage.open(directory: dir.path)
        #expect(recovered == before)
        let tail = try #require(s.recovery.truncatedTail)
        #expect(tail.offset == start)
        #expect(tail.reason.contains("checksum"))
        #expect(try fileSize(segment) == start)
    }

    /// A flipped byte in a record that valid records follow is not a torn write: open must refuse
    /// and say where.
    @Test(arguments: [0, 4, 6, Record.headerSize + 3, Record.headerSize + 30])
    func corruptMiddleRecordIsAnError(byteInRecord: Int) throws {
        let dir = TempDir()
        defer { dir.remove() }
        let (storage, state) = try DiskStorage.open(directory: dir.path)
        var m = Mirror(storage: storage, model: state)
        try m.save(hardState: HardState(term: 1, vote: 1, commit: 2), entries: entries(1...3, term: 1))
        let segment = storage.segmentFiles.last!
        let victim = try fileSize(segment)
        try m.save(entries: entries(4...4, term: 1))
        try m.save(entries: entries(5...6, term: 1))
        try flipByte(segment, at: victim + byteInRecord)
        #expect {
            _ = try DiskStorage.open(directory: dir.path)
        } throws: { error in
            guard case let StorageError.corruptRecord(file, offset, _) = error else { return false }
            return file == segment && offset == victim && "\(error)".contains(segment) && "\(error)".contains("offset \(victim)")
        }
    }

    @Test func corruptRecordInAnEarlierSegmentIsAnError() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let (storage, state) = try DiskStorage.open(directory: dir.path, options: .init(segmentSizeLimit: 300))
        var m = Mirror(storage: storage, model: state)
        for i in Index(1)...30 { try m.save(hardState: HardState(term: 1, vote: 1, commit: i - 1), entries: [entry(i, term: 1)]) }
        #expect(storage.segmentFiles.count > 3)
        let victim = storage.segmentFiles[1]
        // The last record of a closed segment: nothing follows it in that file, but it is not the last segment.
        let size = try fileSize(victim)
        try flipByte(victim, at: size - 1)
        #expect {
            _ = try DiskStorage.open(directory: dir.path)
        } throws: { error in
            guard case let StorageError.corruptRecord(file, _, _) = error else { return false }
            return file == victim
        }
    }

    @Test func segmentsRollAndSnapshotsDeleteThem() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let (storage, state) = try DiskStorage.open(directory: dir.path, options: .init(segmentSizeLimit: 512))
        var m = Mirror(storage: storage, model: state)
        for i in stride(from: Index(1), through: 200, by: 4) {
            try m.save(hardState: HardState(term: 1, vote: 1, commit: i - 1), entries: entries(i...(i + 3), term: 1))
        }
        let rolled = storage.segmentFiles
        #expect(rolled.count > 20)
        for seg in rolled.dropLast() { #expect(try fileSize(seg) >= 512) }
        try m.compact(at: 100)
        // Two snapshots are kept, so nothing goes until the second one.
        #expect(Set(rolled).isSubset(of: storage.segmentFiles))
        try m.compact(at: 150)
        let left = storage.segmentFiles
        #expect(left.count < rolled.count)
        #expect(left.first != rolled.first)
        for gone in rolled where !left.contains(gone) { #expect(!FileManager.default.fileExists(atPath: gone)) }
        try m.compact(at: 190)
        #expect(try storage.snapshotFiles().count == 2)
        #expect(storage.segmentFiles.count < left.count)
        let (reopened, recovered) = try DiskStorage.open(directory: dir.path, options: .init(segmentSizeLimit: 512))
        #expect(recovered == m.model)
        #expect(recovered.snapshot.metadata.index == 190)
        #expect(reopened.segmentFiles == storage.segmentFiles)
    }

    @Test func snapshotFileCorruptionIsDetected() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let s = Snapshot(metadata: SnapshotMetadata(index: 7, term: 2, confState: ConfState(voters: [1, 3], learners: [5])),
                         data: Array("the state".utf8))
        try SnapshotFile.write(s, directory: dir.path)
        let path = dir.path + "/" + SnapshotFile.name(for: s.metadata)
        #expect(try SnapshotFile.read(path: path) == s)
        let size = try fileSize(path)
        for offset in [0, 9, 20, size - 6, size - 1] {
            let copy = try dir.copy()
            defer { copy.remove() }
            let p = copy.path + "/" + SnapshotFile.name(for: s.metadata)
            try flipByte(p, at: offset)
            #expect(throws: StorageError.self) { _ = try SnapshotFile.read(path: p) }
        }
        truncateFile(path, to: size - 3)
        #expect(throws: StorageError.self) { _ = try SnapshotFile.read(path: path) }
    }

    @Test func corruptNewestSnapshotFallsBackToTheOlderOne() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let (storage, state) = try DiskStorage.open(directory: dir.path, options: .init(segmentSizeLimit: 256))
        var m = Mirror(storage: storage, model: state)
        try m.save(hardState: HardState(term: 1, vote: 1, commit: 40), entries: entries(1...40, term: 1))
        try m.compact(at: 20)
        try m.compact(at: 30)
        let newest = try storage.snapshotFiles().last!
        try flipByte(newest, at: 12)
        let (s, recovered) = try DiskStorage.open(directory: dir.path, options: .init(segmentSizeLimit: 256))
        #expect(s.recovery.corruptSnapshots.count == 1)
        #expect(s.recovery.corruptSnapshots[0].contains(newest))
        #expect(recovered.snapshot.metadata.index == 20)
        #expect(recovered.entries.map(\.index) == Array(21...40))
        #expect(recovered.entries == entries(21...40, term: 1))
        #expect(FileManager.default.fileExists(atPath: newest + ".corrupt"))
    }

    @Test func corruptOnlySnapshotRefusesToStart() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let opts = DiskStorage.Options(segmentSizeLimit: 256, retainedSnapshots: 1)
        let (storage, state) = try DiskStorage.open(directory: dir.path, options: opts)
        var m = Mirror(storage: storage, model: state)
        for i in Index(1)...45 { try m.save(hardState: HardState(term: 1, vote: 1, commit: i - 1), entries: [entry(i, term: 1)]) }
        let before = storage.segmentFiles
        try m.compact(at: 35)
        #expect(storage.segmentFiles.first != before.first, "segments covered by the only snapshot are deleted")
        let snap = try storage.snapshotFiles().last!
        try flipByte(snap, at: 30)
        #expect {
            _ = try DiskStorage.open(directory: dir.path, options: opts)
        } throws: { error in
            guard case StorageError.inconsistent = error else { return false }
            return "\(error)".contains(snap)
        }
    }
}

/// Replay of a WAL whose first segments are gone: found by the kill -9 test, where a snapshot file
/// written just before a crash (its marker never logged) let the next compaction delete the
/// segment holding the entry right after an older marker.
struct ReplayTests {
    @Test func markerAtTheStartOfTheSurvivingLogDoesNotDemandTheDeletedEntries() throws {
        var r = Replay()
        try r.apply(.hardState(HardState(term: 2, vote: 1, commit: 380)), file: "f", offset: 0)
        try r.apply(.snapshotMarker(index: 380, term: 2), file: "f", offset: 1)
        for i in Index(382)...395 { try r.apply(.entry(entry(i, term: 2)), file: "f", offset: 2) }
        let s = Snapshot(metadata: SnapshotMetadata(index: 390, term: 2, confState: ConfState(voters: [1])), data: [1])
        let state = try r.assemble(snapshot: s)
        #expect(state.snapshot == s)
        #expect(state.entries.map(\.index) == Array(391...395))
        // Starting from the older snapshot would need entry 381, which is gone: refused, not invented.
        let old = Snapshot(metadata: SnapshotMetadata(index: 380, term: 2, confState: ConfState(voters: [1])), data: [1])
        #expect(throws: StorageError.self) { _ = try r.assemble(snapshot: old) }
    }
}

/// A conflict that rewrites the log from an index whose segment a later compaction deleted: found
/// by the kill -9 test ("entry 803 does not continue the log 804...804"). Raft produces this
/// sequence: a follower appends 803 (segment A is then full) and 804 (segment B), a new leader
/// replaces the uncommitted 803... (written to B), the log commits, and two snapshots at or above
/// 803 let the compaction delete A. The surviving log then starts with 804 followed by 803.
struct RewriteBelowTheSurvivingLogTests {
    @Test func conflictWhoseEarlierEntriesAreInADeletedSegment() throws {
        let dir = TempDir()
        defer { dir.remove() }
        let opts = DiskStorage.Options(segmentSizeLimit: 512)
        let (storage, state) = try DiskStorage.open(directory: dir.path, options: opts)
        var m = Mirror(storage: storage, model: state)
        // Single entries, commit trailing by three, until the active segment is full.
        var n: Index = 0
        repeat {
            n += 1
            try m.save(hardState: HardState(term: 2, vote: 1, commit: n > 3 ? n - 3 : 0), entries: [entry(n, term: 2)])
        } while try fileSize(storage.segmentFiles.last!) < opts.segmentSizeLimit
        let segA = storage.segmentFiles.last!
        try m.save(entries: [entry(n + 1, term: 2)])
        let segB = storage.segmentFiles.last!
        #expect(segB != segA, "entry \(n + 1) starts a new segment")
        // A new leader replaces n... (uncommitted: commit is n - 3).
        try m.save(hardState: HardState(term: 3, vote: 2, commit: n - 1), entries: entries(n...(n + 2), term: 3, size: 7))
        try m.save(hardState: HardState(term: 3, vote: 2, commit: n + 2), entries: [])
        try m.compact(at: n + 1)
        try m.compact(at: n + 2)
        #expect(storage.segmentFiles == [segB], "the second snapshot covers every segment before B")
        try m.save(hardState: HardState(term: 3, vote: 2, commit: n + 2), entries: [entry(n + 3, term: 3)])

        let (_, recovered) = try DiskStorage.open(directory: dir.path, options: opts)
        #expect(recovered == m.model)
        #expect(recovered.snapshot.metadata.index == n + 2)
        #expect(recovered.entries == [entry(n + 3, term: 3)])
        _ = RaftNode(config: Config(id: 1, randomSeed: 1), persisted: recovered)

        // Falling back to the older snapshot (n + 1) needs nothing from A either.
        let newest = try storage.snapshotFiles().last!
        try flipByte(newest, at: 12)
        let (_, fallback) = try DiskStorage.open(directory: dir.path, options: opts)
        #expect(fallback.snapshot.metadata.index == n + 1)
        #expect(fallback.entries.map(\.index) == [n + 2, n + 3])
        #expect(fallback.entries.map(\.term) == [3, 3])
    }

    /// The same sequence as replayed records, with the exact indices of the failure.
    @Test func replayOf804Then803() throws {
        var r = Replay()
        try r.apply(.hardState(HardState(term: 5, vote: 0, commit: 800)), file: "f", offset: 0)
        try r.apply(.entry(entry(804, term: 5)), file: "f", offset: 1)
        try r.apply(.entry(entry(803, term: 6)), file: "f", offset: 2)
        try r.apply(.entry(entry(804, term: 6)), file: "f", offset: 3)
        try r.apply(.hardState(HardState(term: 6, vote: 0, commit: 804)), file: "f", offset: 4)
        try r.apply(.snapshotMarker(index: 803, term: 6), file: "f", offset: 5)
        try r.apply(.entry(entry(805, term: 6)), file: "f", offset: 6)
        let s803 = Snapshot(metadata: SnapshotMetadata(index: 803, term: 6, confState: ConfState(voters: [1])), data: [1])
        let state = try r.assemble(snapshot: s803)
        #expect(state.entries == [entry(804, term: 6), entry(805, term: 6)])
        #expect(state.hardState.commit == 804)
        // A snapshot at 802 also fits: the log now starts at 803.
        let s802 = Snapshot(metadata: SnapshotMetadata(index: 802, term: 5, confState: ConfState(voters: [1])), data: [1])
        #expect(try r.assemble(snapshot: s802).entries.map(\.index) == [803, 804, 805])
        // One at 801 would need entry 802, which only a deleted segment held: refused.
        let s801 = Snapshot(metadata: SnapshotMetadata(index: 801, term: 5, confState: ConfState(voters: [1])), data: [1])
        #expect(throws: StorageError.self) { _ = try r.assemble(snapshot: s801) }
    }

    /// What Raft never writes is still refused: an entry at or below a snapshot recorded before it.
    @Test(arguments: [Index(790), 800])
    func entryAtOrBelowAnEarlierSnapshotMarkerIsAnError(index: Index) throws {
        var r = Replay()
        try r.apply(.entry(entry(795, term: 5)), file: "f", offset: 0)
        try r.apply(.entry(entry(796, term: 5)), file: "f", offset: 1)
        try r.apply(.snapshotMarker(index: 800, term: 5), file: "f", offset: 2)
        try r.apply(.entry(entry(801, term: 5)), file: "f", offset: 3)
        #expect {
            try r.apply(.entry(entry(index, term: 6)), file: "seg", offset: 4)
        } throws: { error in
            guard case let StorageError.inconsistent(why) = error else { return false }
            return why.contains("seg at offset 4") && why.contains("snapshot 800")
        }
    }
}

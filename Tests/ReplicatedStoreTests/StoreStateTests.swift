import Foundation
import Raft
@testable import ReplicatedStore
import Testing

/// Entries for a pure store, numbered from `start`.
struct EntryFeed {
    var next: Index = 1
    var seq: UInt64 = 0

    mutating func entry(_ op: StoreOperation) -> (Entry, RequestID) {
        seq += 1
        let id = RequestID(node: 1, sequence: seq)
        defer { next += 1 }
        return (Entry(term: 1, index: next, data: StoreCommand(id: id, operation: op).encoded), id)
    }

    mutating func raw(_ data: [UInt8], kind: EntryKind = .normal) -> Entry {
        defer { next += 1 }
        return Entry(term: 1, index: next, kind: kind, data: data)
    }
}

extension StoreState {
    /// Applies `e`, which must be a store command.
    mutating func must(_ e: Entry) throws -> AppliedCommand {
        let r = apply(e)
        return try #require(r)
    }
}

struct StoreStateTests {
    let v1: [UInt8] = Array("one".utf8)
    let v2: [UInt8] = Array("two".utf8)

    @Test func createUpdateDeleteWithVersionsAndIndexes() throws {
        var s = StoreState()
        var f = EntryFeed()
        let (e1, id1) = f.entry(.create(collection: "networks", key: "n1", value: v1))
        let r1 = try s.must(e1)
        #expect(r1.id == id1 && r1.index == 1)
        let o1 = try #require(s.get("networks", "n1"))
        #expect(o1 == StoredObject(collection: "networks", key: "n1", value: v1, version: 1, createIndex: 1, modifyIndex: 1))
        #expect(try r1.result.get() == [Change(kind: .created, index: 1, object: o1)])

        // The leader's empty entry and conf changes only advance the index.
        #expect(s.apply(f.raw([])) == nil)
        #expect(s.apply(f.raw(ConfChange.addVoter(4).encoded, kind: .confChange)) == nil)
        #expect(s.appliedIndex == 3)

        let r2 = try s.must(f.entry(.update(collection: "networks", key: "n1", value: v2, expectedVersion: nil)).0)
        #expect(r2.index == 4)
        #expect(s.get("networks", "n1") == StoredObject(collection: "networks", key: "n1", value: v2, version: 2, createIndex: 1, modifyIndex: 4))
        #expect(try r2.result.get().map(\.kind) == [.updated])

        let dup = try s.must(f.entry(.create(collection: "networks", key: "n1", value: v1)).0)
        #expect(dup.result == .failure(.alreadyExists(collection: "networks", key: "n1")))
        #expect(s.get("networks", "n1")?.version == 2)

        let del = try s.must(f.entry(.delete(collection: "networks", key: "n1", expectedVersion: nil)).0)
        #expect(try del.result.get() == [Change(kind: .deleted, index: 6, object: StoredObject(
            collection: "networks", key: "n1", value: v2, version: 2, createIndex: 1, modifyIndex: 4))])
        #expect(s.get("networks", "n1") == nil)
        #expect(s.collectionNames.isEmpty)

        let gone = try s.must(f.entry(.update(collection: "networks", key: "n1", value: v1, expectedVersion: nil)).0)
        #expect(gone.result == .failure(.notFound(collection: "networks", key: "n1")))
        // Re-created: a new life, version 1 again.
        _ = s.apply(f.entry(.create(collection: "networks", key: "n1", value: v1)).0)
        #expect(s.get("networks", "n1")?.version == 1)
        #expect(s.get("networks", "n1")?.createIndex == 8)
        let bad = try s.must(f.entry(.create(collection: "", key: "x", value: v1)).0)
        #expect(bad.result == .failure(.invalid("empty collection or key")))
    }

    @Test func compareAndSwapConflicts() throws {
        var s = StoreState()
        var f = EntryFeed()
        _ = s.apply(f.entry(.create(collection: "tasks", key: "t", value: v1)).0)
        // Two writers read version 1; the first swap wins, the second conflicts.
        let a = try s.must(f.entry(.compareAndSwap(collection: "tasks", key: "t", version: 1, value: Array("a".utf8))).0)
        let b = try s.must(f.entry(.compareAndSwap(collection: "tasks", key: "t", version: 1, value: Array("b".utf8))).0)
        #expect(try a.result.get().first?.object.version == 2)
        #expect(b.result == .failure(.versionMismatch(collection: "tasks", key: "t", expected: 1, actual: 2)))
        #expect(s.get("tasks", "t")?.value == Array("a".utf8))
        let staleDelete = try s.must(f.entry(.delete(collection: "tasks", key: "t", expectedVersion: 1)).0)
        #expect(staleDelete.result == .failure(.versionMismatch(collection: "tasks", key: "t", expected: 1, actual: 2)))
        let delete = try s.must(f.entry(.delete(collection: "tasks", key: "t", expectedVersion: 2)).0)
        #expect(try delete.result.get().count == 1)
        #expect(s.objectCount == 0)
    }

    @Test func transactionsAreAllOrNothing() throws {
        var s = StoreState()
        var f = EntryFeed()
        _ = s.apply(f.entry(.create(collection: "ipam", key: "10.0.0.2", value: v1)).0)
        let before = s
        let failed = try s.must(f.entry(.transaction([
            .create(collection: "ipam", key: "10.0.0.3", value: v1),
            .create(collection: "ipam", key: "10.0.0.2", value: v2),
        ])).0)
        #expect(failed.result == .failure(.alreadyExists(collection: "ipam", key: "10.0.0.2")))
        var expected = before
        _ = expected.apply(Entry(term: 1, index: 2))
        #expect(s == expected, "a failed transaction leaves nothing behind")
        let ok = try s.must(f.entry(.transaction([
            .create(collection: "ipam", key: "10.0.0.3", value: v1),
            .update(collection: "ipam", key: "10.0.0.2", value: v2, expectedVersion: 1),
        ])).0)
        #expect(try ok.result.get().map(\.kind) == [.created, .updated])
        #expect(s.list("ipam").map(\.key) == ["10.0.0.2", "10.0.0.3"])
    }

    @Test func replayedEntriesAreSkippedAndGarbageIsIgnored() throws {
        var s = StoreState()
        var f = EntryFeed()
        let (e, _) = f.entry(.create(collection: "c", key: "k", value: v1))
        _ = s.apply(e)
        let snapshot = s
        #expect(s.apply(e) == nil)
        #expect(s == snapshot)
        #expect(s.apply(f.raw([0x53, 1, 2])) == nil)
        #expect(s.appliedIndex == 2)
    }

    @Test func commandEncodingIsStableAndRoundTrips() throws {
        let ops: [StoreOperation] = [
            .create(collection: "c", key: "k", value: []),
            .update(collection: "networks", key: "ключ", value: [0, 255, 7], expectedVersion: nil),
            .update(collection: "c", key: "k", value: [1], expectedVersion: 9),
            .delete(collection: "c", key: "k", expectedVersion: nil),
            .delete(collection: "c", key: "k", expectedVersion: .max),
            .transaction([.create(collection: "a", key: "b", value: [3]), .delete(collection: "a", key: "c", expectedVersion: 1)]),
        ]
        for (i, op) in ops.enumerated() {
            let cmd = StoreCommand(id: RequestID(node: 3, sequence: UInt64(i)), operation: op)
            #expect(try StoreCommand(decoding: cmd.encoded) == cmd)
            #expect(cmd.encoded == cmd.encoded)
        }
        // The format is persisted in the log: pin one encoding byte for byte.
        let pinned = StoreCommand(id: RequestID(node: 1, sequence: 2), operation: .create(collection: "c", key: "k", value: [9]))
        #expect(pinned.encoded == [0x53, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
                                   1, 1, 0, 0, 0, 0x63, 1, 0, 0, 0, 0x6B, 1, 0, 0, 0, 9])
        for bad in [[], [0x53], Array(pinned.encoded.dropLast()), pinned.encoded + [0]] as [[UInt8]] {
            #expect(throws: StoreError.self) { _ = try StoreCommand(decoding: bad) }
        }
        let nested = StoreCommand(id: RequestID(node: 1, sequence: 1), operation: .transaction([.transaction([])]))
        #expect(throws: StoreError.self) { _ = try StoreCommand(decoding: nested.encoded) }
    }

    @Test func snapshotRestoreIsExact() throws {
        var a = StoreState()
        var f = EntryFeed()
        var rng = SplitMix64(seed: 5)
        var tail: [Entry] = []
        for n in 0..<400 {
            let c = "c\(rng.next() % 3)"
            let k = "k\(rng.next() % 20)"
            let v = (0..<Int(rng.next() % 16)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let op: StoreOperation = switch rng.next() % 4 {
            case 0: .create(collection: c, key: k, value: v)
            case 1: .update(collection: c, key: k, value: v, expectedVersion: rng.next() % 2 == 0 ? nil : rng.next() % 3 + 1)
            case 2: .delete(collection: c, key: k, expectedVersion: nil)
            default: .transaction([.create(collection: c, key: k + "x", value: v), .delete(collection: c, key: k, expectedVersion: nil)])
            }
            let e = f.entry(op).0
            if n < 300 { _ = a.apply(e) } else { tail.append(e) }
        }
        #expect(a.objectCount > 10)
        var b = try StoreState(decoding: a.encoded)
        #expect(b == a)
        #expect(b.encoded == a.encoded)
        for e in tail {
            #expect(a.apply(e) == b.apply(e))
        }
        #expect(a == b)
        #expect(a.appliedIndex == 400)
        #expect(throws: StoreError.self) { _ = try StoreState(decoding: Array(a.encoded.dropLast())) }
        #expect(throws: StoreError.self) { _ = try StoreState(decoding: [0x53]) }
    }

    struct Network: Codable, Sendable, Equatable {
        var name: String
        var subnet: String
        var vni: Int
    }

    @Test func typedCollections() throws {
        let networks = TypedCollection<Network>("networks")
        var s = StoreState()
        var f = EntryFeed()
        let n = Network(name: "web", subnet: "10.0.1.0/24", vni: 4097)
        _ = s.apply(f.entry(try networks.create("web", n)).0)
        var got = try #require(try networks.get("web", in: s))
        #expect(got.value == n && got.version == 1)
        got.value.vni = 4098
        let swapped = try s.must(f.entry(try networks.update("web", got.value, ifVersion: 1)).0)
        #expect(try swapped.result.get().first?.object.version == 2)
        let stale = try s.must(f.entry(try networks.update("web", n, ifVersion: 1)).0)
        #expect(stale.result == .failure(.versionMismatch(collection: "networks", key: "web", expected: 1, actual: 2)))
        #expect(try networks.list(in: s).map(\.value) == [got.value])
        #expect(try networks.encode(n) == networks.encode(n))
    }
}

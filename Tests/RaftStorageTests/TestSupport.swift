import Foundation
import Raft
@testable import RaftStorage
import Testing

/// A fresh directory under the system temp directory, removed by `remove()`.
struct TempDir {
    let path: String

    init(_ label: String = "raftstorage") {
        var template = Array((NSTemporaryDirectory() + "/\(label)-XXXXXX").utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(p != nil, "mkdtemp failed")
        path = String(cString: p!)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }

    /// A copy of this directory's tree in a new temp directory.
    func copy() throws -> TempDir {
        let c = TempDir("raftstorage-copy")
        try FileManager.default.removeItem(atPath: c.path)
        try FileManager.default.copyItem(atPath: path, toPath: c.path)
        return c
    }
}

func entry(_ index: Index, term: Term, size: Int = 24) -> Entry {
    Entry(term: term, index: index, data: (0..<size).map { UInt8(truncatingIfNeeded: Int(index) &* 31 &+ $0) })
}

func entries(_ range: ClosedRange<Index>, term: Term, size: Int = 24) -> [Entry] {
    range.map { entry($0, term: term, size: size) }
}

func fileSize(_ path: String) throws -> Int {
    (try FileManager.default.attributesOfItem(atPath: path)[.size] as! NSNumber).intValue
}

func truncateFile(_ path: String, to size: Int) {
    precondition(truncate(path, off_t(size)) == 0)
}

func flipByte(_ path: String, at offset: Int) throws {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    bytes[offset] ^= 0x5A
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Applies the same writes to a `DiskStorage` and to the core's in-memory `PersistentState`, so a
/// reopened storage can be compared with what the core says must have been persisted.
struct Mirror {
    let storage: DiskStorage
    var model: PersistentState

    mutating func save(hardState: HardState? = nil, entries es: [Entry] = [], snapshot: Snapshot? = nil) throws {
        try storage.save(hardState: hardState, entries: es, snapshot: snapshot)
        if let snapshot { model.install(snapshot) }
        model.append(es)
        if let hardState { model.hardState = hardState }
    }

    mutating func compact(at index: Index, data: String = "state") throws {
        let s = Snapshot(metadata: SnapshotMetadata(index: index, term: model.term(at: index)!,
                                                    confState: ConfState(voters: [1, 2, 3])),
                         data: Array("\(data) \(index)".utf8))
        try storage.compact(s)
        model.install(s)
    }
}

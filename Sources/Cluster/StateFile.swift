#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import SystemBasics

/// One record of the state, by kind and id.
public enum RecordReference: Hashable, Sendable {
    case network(String)
    case endpoint(String)
    case service(String)
}

/// The node's state on disk: a snapshot (`state.json`, replaced atomically:
/// temporary file, fsync, rename) and a journal (`state.journal`) of the
/// records changed since, appended and fsynced per change.
///
/// A change costs what it changed, not the whole state: rewriting every
/// record per change made `docker network create` and `connect` slower
/// with every object (113 ms at 200 networks, issue 17). Each `save`
/// appends one group of JSON lines, a line per record put or deleted, then
/// a commit line; a group without its commit line (a crash mid-write) is
/// not replayed, so a change is on disk whole or not at all. Once the
/// journal holds more lines than the state has records (and at least
/// `compactionFloor`), the next save writes a snapshot and empties the journal;
/// replaying a journal onto a newer snapshot changes nothing (puts and
/// deletes are absolute), so a crash between the two is harmless.
public final class StateFile: @unchecked Sendable {
    public let path: String
    public let journalPath: String
    /// Journal lines below which no snapshot is written.
    public let compactionFloor: Int
    private let lock = Lock()
    /// The state as on disk, to tell what a save changes.
    private var saved = ClusterState()
    private var journalLines = 0

    public init(directory: String, compactionFloor: Int = 1_000) {
        path = directory + "/state.json"
        journalPath = directory + "/state.journal"
        self.compactionFloor = compactionFloor
    }

    /// One journal line: a record put or deleted, or the end of a change.
    struct Entry: Codable {
        var network: NetworkRecord?
        var endpoint: EndpointRecord?
        var service: ServiceRecord?
        /// The id of a deleted record, with its kind.
        var deleted: String?
        var kind: String?
        /// Ends a change: only a change with its commit line is replayed.
        var commit: Bool?
    }

    /// The snapshot with every whole change of the journal applied.
    public func load() throws -> ClusterState {
        try lock.withLock {
            var state = ClusterState()
            if FileManager.default.fileExists(atPath: path) {
                state = try Self.decoder.decode(ClusterState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
            }
            journalLines = 0
            if let journal = FileManager.default.contents(atPath: journalPath) {
                var pending: [Entry] = []
                for line in journal.split(separator: UInt8(ascii: "\n")) {
                    journalLines += 1
                    // A torn last line (a crash mid-write) ends the journal.
                    guard let entry = try? Self.decoder.decode(Entry.self, from: Data(line)) else { break }
                    if entry.commit == true {
                        for change in pending { Self.apply(change, to: &state) }
                        pending = []
                    } else {
                        pending.append(entry)
                    }
                }
            }
            saved = state
            return state
        }
    }

    /// Makes the disk hold `state`: the records that differ from the last
    /// save are journalled (or a snapshot written when the journal is long).
    /// `touching`, when given, names every record the change can have
    /// touched, and only those are compared (a create or an attach then
    /// costs the same at 1,000 records as at 10); debug builds check the
    /// claim against the whole comparison.
    public func save(_ state: ClusterState, touching records: [RecordReference]? = nil) throws {
        try lock.withLock {
            let entries = records.map { Self.changes(of: $0, from: saved, to: state) } ?? Self.changes(from: saved, to: state)
            assert(records == nil || Self.sameChanges(entries, Self.changes(from: saved, to: state)),
                   "a save touching \(records ?? []) changed other records too")
            guard !entries.isEmpty else { return }
            let records = state.networks.count + state.endpoints.count + state.services.count
            if journalLines + entries.count + 1 > max(compactionFloor, records) {
                try writeSnapshot(state)
            } else {
                var data = Data()
                for entry in entries + [Entry(commit: true)] {
                    data.append(try Self.encoder.encode(entry))
                    data.append(UInt8(ascii: "\n"))
                }
                try append(data)
                journalLines += entries.count + 1
            }
            // With the records named, only they are copied: `saved` then
            // shares no storage with the caller's state, which a caller
            // changing its state in place (the local store) would otherwise
            // copy whole on its next change.
            if records == nil {
                saved = state
            } else {
                for entry in entries { Self.apply(entry, to: &saved) }
            }
        }
    }

    /// The journal lines that make `old` into `new`.
    /// A kind of record whose dictionary the change did not touch is
    /// skipped at once: dictionaries that still share their storage compare
    /// equal without a look at their elements (a change copies only the
    /// one it mutates), so a network create does not walk every endpoint.
    static func changes(from old: ClusterState, to new: ClusterState) -> [Entry] {
        var entries: [Entry] = []
        if old.networks != new.networks {
            for (id, record) in new.networks where old.networks[id] != record { entries.append(Entry(network: record)) }
            for id in old.networks.keys where new.networks[id] == nil { entries.append(Entry(deleted: id, kind: "network")) }
        }
        if old.endpoints != new.endpoints {
            for (id, record) in new.endpoints where old.endpoints[id] != record { entries.append(Entry(endpoint: record)) }
            for id in old.endpoints.keys where new.endpoints[id] == nil { entries.append(Entry(deleted: id, kind: "endpoint")) }
        }
        if old.services != new.services {
            for (id, record) in new.services where old.services[id] != record { entries.append(Entry(service: record)) }
            for id in old.services.keys where new.services[id] == nil { entries.append(Entry(deleted: id, kind: "service")) }
        }
        return entries
    }

    /// The journal lines for the records `references` name only.
    static func changes(of references: [RecordReference], from old: ClusterState, to new: ClusterState) -> [Entry] {
        references.compactMap { reference in
            switch reference {
            case .network(let id):
                old.networks[id] == new.networks[id] ? nil : new.networks[id].map { Entry(network: $0) } ?? Entry(deleted: id, kind: "network")
            case .endpoint(let id):
                old.endpoints[id] == new.endpoints[id] ? nil : new.endpoints[id].map { Entry(endpoint: $0) } ?? Entry(deleted: id, kind: "endpoint")
            case .service(let id):
                old.services[id] == new.services[id] ? nil : new.services[id].map { Entry(service: $0) } ?? Entry(deleted: id, kind: "service")
            }
        }
    }

    /// Whether two lists of journal lines make the same change (in any order).
    static func sameChanges(_ a: [Entry], _ b: [Entry]) -> Bool {
        let key = { (entry: Entry) -> String in
            entry.network?.id ?? entry.endpoint?.id ?? entry.service?.id ?? "\(entry.kind ?? "")/\(entry.deleted ?? "")"
        }
        return a.count == b.count && Set(a.map(key)) == Set(b.map(key))
    }

    static func apply(_ entry: Entry, to state: inout ClusterState) {
        if let record = entry.network { state.networks[record.id] = record }
        if let record = entry.endpoint { state.endpoints[record.id] = record }
        if let record = entry.service { state.services[record.id] = record }
        if let id = entry.deleted {
            switch entry.kind {
            case "network": state.networks[id] = nil
            case "endpoint": state.endpoints[id] = nil
            case "service": state.services[id] = nil
            default: break
            }
        }
    }

    private func append(_ data: Data) throws {
        let fd = open(journalPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateFileError(path: journalPath, errno: errno) }
        defer { close(fd) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == data.count, fsync(fd) == 0 else {
            throw StateFileError(path: journalPath, errno: errno)
        }
    }

    /// The whole state into `state.json`, then an empty journal.
    private func writeSnapshot(_ state: ClusterState) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(state)
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateFileError(path: temporary, errno: errno) }
        let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == data.count, synced == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw StateFileError(path: path, errno: errno)
        }
        guard truncate(journalPath, 0) == 0 || errno == ENOENT else {
            throw StateFileError(path: journalPath, errno: errno)
        }
        journalLines = 0
    }

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()
}

/// A state file that could not be written, with the system's reason.
public struct StateFileError: Error, CustomStringConvertible {
    public var path: String
    public var errno: Int32

    public var description: String {
        "cannot write \(path): \(String(cString: strerror(errno)))"
    }
}

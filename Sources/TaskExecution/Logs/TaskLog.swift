import Cluster
import FoundationEssentials

/// One line of a task's log (Docker's json-file format, which the shim
/// writes).
public struct TaskLogLine: Sendable, Equatable {
    public enum Stream: String, Sendable { case stdout, stderr }
    public var stream: Stream
    /// RFC 3339 with nanoseconds, as the shim wrote it.
    public var time: String
    public var text: [UInt8]

    /// The time as a date (to the microsecond), for since/until.
    public var date: Date? { LogTime.date(time) }
}

/// Reads task logs: whole files, a tail, or new lines as they are written.
public enum TaskLog {
    private struct Record: Decodable {
        var log: String
        var stream: String
        var time: String
    }

    /// The lines of `files` (oldest first), filtered by stream and time,
    /// and the last `tail` of them when asked.
    public static func read(files: [String], streams: Set<TaskLogLine.Stream>, since: Date? = nil, until: Date? = nil,
                            tail: Int? = nil) -> [TaskLogLine] {
        var lines: [TaskLogLine] = []
        for file in files {
            guard let bytes = try? FileTree.read(file, limit: 1 << 30) else { continue }
            lines += parse(bytes[...], streams: streams, since: since, until: until)
        }
        if let tail, tail >= 0, lines.count > tail { lines.removeFirst(lines.count - tail) }
        return lines
    }

    /// Parses complete JSON lines; a torn last line is skipped.
    public static func parse(_ bytes: ArraySlice<UInt8>, streams: Set<TaskLogLine.Stream>, since: Date? = nil,
                             until: Date? = nil) -> [TaskLogLine] {
        let decoder = JSONDecoder()
        var lines: [TaskLogLine] = []
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            guard let record = try? decoder.decode(Record.self, from: Data(line)),
                  let stream = TaskLogLine.Stream(rawValue: record.stream), streams.contains(stream) else { continue }
            let entry = TaskLogLine(stream: stream, time: record.time, text: Array(record.log.utf8))
            if since != nil || until != nil, let date = entry.date {
                if let since, date < since { continue }
                if let until, date > until { continue }
            }
            lines.append(entry)
        }
        return lines
    }
}

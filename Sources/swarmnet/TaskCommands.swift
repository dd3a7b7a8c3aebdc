import ArgumentParser
import DockerAPI
import Foundation
import Inspect

/// `swarmnet task ...`: the tasks (containers) this node runs, as the
/// executor sees them. `docker ps|inspect|logs` show the same through
/// Docker's API; these work with no docker CLI installed.
struct TaskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "task", abstract: "Show this node's tasks: their state, details and logs.",
        subcommands: [TaskList.self, TaskInspect.self, TaskLogs.self])
}

struct TaskList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ps", abstract: "List tasks (all, ended ones included).", aliases: ["ls"])

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Output format: table or json.") var format: OutputFormat = .table

    func run() throws {
        try reportingErrors {
            let tasks = try JSONDecoder().decode([ContainerSummary].self, from: daemon.call("GET", "/containers/json?all=1"))
            try Output.print(tasks, format: format) { tasks in
                TextTable(headers: ["ID", "NAME", "IMAGE", "STATE", "STATUS", "NETWORKS"], rows: tasks.map { task in
                    [String(task.id.prefix(12)), task.names.first.map { String($0.dropFirst()) } ?? "-", task.image, task.state, task.status,
                     task.networkSettings.networks.map { "\($0.key)=\($0.value.ipAddress)" }.sorted().joined(separator: ",").ifEmpty("-")]
                })
            }
        }
    }
}

struct TaskInspect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "inspect", abstract: "Show tasks in detail (JSON, as docker inspect).")

    @OptionGroup var daemon: DaemonOptions
    @Argument(help: "Task names or IDs (a unique prefix will do).") var tasks: [String]

    func run() throws {
        try reportingErrors {
            let found = try tasks.map {
                try JSONDecoder().decode(ContainerInspect.self, from: daemon.call("GET", "/containers/\(NetworkInspect.escape($0))/json"))
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(found), as: UTF8.self))
        }
    }
}

struct TaskLogs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print a task's output (stdout and stderr).")

    @OptionGroup var daemon: DaemonOptions
    @Option(help: "Only the last N lines.") var tail: Int?
    @Flag(name: [.short, .long], help: "Prefix each line with its time (RFC 3339, nanoseconds).") var timestamps = false
    @Argument(help: "Task name or ID.") var task: String

    func run() throws {
        try reportingErrors {
            var query = "stdout=1&stderr=1"
            if let tail { query += "&tail=\(tail)" }
            if timestamps { query += "&timestamps=1" }
            let stream = try daemon.call("GET", "/containers/\(NetworkInspect.escape(task))/logs?\(query)")
            // Docker's multiplexed frames: stream, 3 zero bytes, length, payload.
            var index = stream.startIndex
            while index + 8 <= stream.endIndex {
                let kind = stream[index]
                let length = stream[(index + 4)..<(index + 8)].reduce(0) { $0 << 8 | Int($1) }
                let end = min(index + 8 + length, stream.endIndex)
                let payload = stream[(index + 8)..<end]
                FileHandle(fileDescriptor: kind == 2 ? 2 : 1).write(Data(payload))
                index = end
            }
        }
    }
}

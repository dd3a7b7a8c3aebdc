import ArgumentParser
import Foundation
import DockerAPI
import Inspect
import Namespaces
import Netlink

/// How a listing is printed.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// Options every kernel-reading debug command takes.
struct NamespaceOptions: ParsableArguments {
    @Option(name: .long, help: "Network namespace to read, as `ip netns` names it (default: the current one).")
    var netns: String?

    @Option(name: .long, help: "Output format: table or json.")
    var format: OutputFormat = .table

    /// A session in the chosen namespace; a missing namespace is an error
    /// that names it.
    func session() throws -> RouteNetlink {
        try RouteNetlink(namespace: netns.map { try NetworkNamespace.named($0) })
    }
}

enum Output {
    static func print<V: Encodable>(_ views: [V], format: OutputFormat, table: ([V]) -> TextTable) throws {
        switch format {
        case .table:
            Swift.print(table(views).render(), terminator: "")
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            Swift.print(String(decoding: try encoder.encode(views), as: UTF8.self))
        }
    }
}

/// Turns library errors into ArgumentParser's clean one-line failure.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as NetlinkError {
        throw ValidationFailure(message: error.description)
    } catch let error as NamespaceError {
        throw ValidationFailure(message: error.description)
    } catch let error as UnixHTTPClient.ClientError {
        throw ValidationFailure(message: error.description)
    }
}

struct ValidationFailure: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

import FoundationEssentials
import SystemBasics
import Cluster

/// A placement constraint, `node.labels.zone==east` or `node.role!=manager`,
/// as swarmkit reads them: the value is compared without case for every
/// key but labels, whose values compare exactly.
public struct Constraint: Sendable, Equatable {
    public enum Key: Sendable, Equatable {
        case id, hostname, role, os, architecture
        case label(String)
    }

    public var key: Key
    public var equals: Bool
    public var value: String

    /// Parses one constraint; the error names what is wrong, as the API
    /// answers it (400).
    public init(parsing text: String) throws(ControlError) {
        let (operatorRange, equals): (Range<String.Index>, Bool)
        if let range = text.firstRange(of: "==") {
            (operatorRange, equals) = (range, true)
        } else if let range = text.firstRange(of: "!=") {
            (operatorRange, equals) = (range, false)
        } else {
            throw ControlError(.invalidArgument, "invalid constraint \"\(text)\": constraint expected one operator from ==, !=")
        }
        let name = text[..<operatorRange.lowerBound].trimming(" \t")
        let value = text[operatorRange.upperBound...].trimming(" \t")
        guard !value.isEmpty, !value.contains("=") else {
            throw ControlError(.invalidArgument, "invalid constraint \"\(text)\": the value is empty or has a second operator")
        }
        switch name.lowercased() {
        case "node.id": key = .id
        case "node.hostname": key = .hostname
        case "node.role": key = .role
        case "node.platform.os": key = .os
        case "node.platform.arch": key = .architecture
        default:
            guard name.hasPrefix("node.labels."), name.count > "node.labels.".count else {
                throw ControlError(.invalidArgument,
                                   "invalid constraint \"\(text)\": the key must be node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.NAME")
            }
            key = .label(String(name.dropFirst("node.labels.".count)))
        }
        self.equals = equals
        self.value = value
    }

    public static func parse(_ texts: [String]) throws(ControlError) -> [Constraint] {
        var parsed: [Constraint] = []
        for text in texts { parsed.append(try Constraint(parsing: text)) }
        return parsed
    }

    public func isSatisfied(by node: SwarmNode) -> Bool {
        let actual: String?
        switch key {
        case .id: actual = node.id
        case .hostname: actual = node.name ?? node.description.hostname
        case .role: actual = node.role.rawValue
        case .os: actual = node.description.os
        case .architecture: actual = node.description.architecture
        case .label(let label): actual = node.labels[label]
        }
        let matches: Bool
        if case .label = key {
            matches = actual == value
        } else {
            matches = actual?.lowercased() == value.lowercased()
        }
        return matches == equals
    }
}

extension SwarmNode {
    /// The node attribute a spread preference names (`node.labels.zone`),
    /// nil when the node has none.
    public func attribute(_ descriptor: String) -> String? {
        switch descriptor.lowercased() {
        case "node.id": id
        case "node.hostname": name ?? description.hostname
        case "node.role": role.rawValue
        case "node.platform.os": description.os
        case "node.platform.arch": description.architecture
        default: descriptor.hasPrefix("node.labels.") ? labels[String(descriptor.dropFirst("node.labels.".count))] : nil
        }
    }

    /// The node takes new tasks: it reports in, and operators have not
    /// paused or drained it.
    public var acceptsTasks: Bool { state == .ready && availability == .active }
}

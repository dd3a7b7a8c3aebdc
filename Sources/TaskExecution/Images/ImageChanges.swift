import FoundationEssentials
import SystemBasics

/// `docker import --change`: the Dockerfile instructions that set an
/// image's runtime defaults (CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE,
/// LABEL, STOPSIGNAL). JSON arrays are exec form; other text is shell form
/// (`/bin/sh -c`), as in a Dockerfile.
public enum ImageChanges {
    public static func apply(_ changes: [String], to base: ImageRuntimeConfig) throws -> ImageRuntimeConfig {
        var config = base
        for change in changes {
            let trimmed = change.trimming(" \t")
            guard !trimmed.isEmpty else { continue }
            let parts = trimmed.split(separator: " ", maxSplits: 1).map(String.init)
            let instruction = parts[0].uppercased()
            let argument = parts.count > 1 ? parts[1].trimming(" \t") : ""
            switch instruction {
            case "CMD": config.cmd = try commandForm(argument, instruction)
            case "ENTRYPOINT": config.entrypoint = try commandForm(argument, instruction)
            case "ENV":
                let pair = argument.contains("=") ? argument : argument.replacing(" ", with: "=", maxReplacements: 1)
                guard pair.contains("=") else { throw ImageError.invalidReference(change, "ENV needs NAME=VALUE") }
                let name = String(pair.split(separator: "=", maxSplits: 1)[0])
                config.env = (config.env ?? []).filter { !$0.hasPrefix(name + "=") } + [pair]
            case "WORKDIR": config.workingDir = argument
            case "USER": config.user = argument
            case "STOPSIGNAL": config.stopSignal = argument
            case "EXPOSE":
                for port in argument.split(separator: " ") {
                    let key = port.contains("/") ? String(port) : "\(port)/tcp"
                    config.exposedPorts = (config.exposedPorts ?? [:]).merging([key: EmptyObject()]) { $1 }
                }
            case "LABEL":
                let pair = argument.split(separator: "=", maxSplits: 1).map { $0.trimming("\" ") }
                guard pair.count == 2 else { throw ImageError.invalidArchive("--change \(change): LABEL needs KEY=VALUE") }
                config.labels = (config.labels ?? [:]).merging([pair[0]: pair[1]]) { $1 }
            default:
                throw ImageError.invalidArchive("--change \(change): \(instruction) is not one of CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, WORKDIR")
            }
        }
        return config
    }

    private static func commandForm(_ argument: String, _ instruction: String) throws -> [String] {
        if argument.hasPrefix("[") {
            guard let list = try? JSONDecoder().decode([String].self, from: Data(argument.utf8)) else {
                throw ImageError.invalidArchive("--change \(instruction) \(argument): not a JSON array of strings")
            }
            return list
        }
        return ["/bin/sh", "-c", argument]
    }
}

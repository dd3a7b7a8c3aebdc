import Foundation
import Testing

/// Runs the scripts in testdata/ in the manner of etcd-io/raft's interaction tests: each block is
/// a command, a `----` line, and the exact output expected (`ok` for none), ended by a blank line.
/// Set RAFT_REWRITE=1 to write the actual output back into the source scripts, then review the diff.
struct InteractionTests {
    static let dataDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata")

    static var scripts: [String] {
        guard let dir = Bundle.module.url(forResource: "testdata", withExtension: nil),
              let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path)
        else { return [] }
        return names.filter { $0.hasSuffix(".txt") }.sorted()
    }

    @Test func scriptsArePresent() {
        #expect(Self.scripts.count >= 10, "expected the interaction scripts as test resources")
    }

    @Test(arguments: scripts)
    func script(_ name: String) throws {
        let rewrite = ProcessInfo.processInfo.environment["RAFT_REWRITE"] != nil
        // Rewriting must start from the source scripts, not the copies bundled at build time.
        let dir = rewrite ? Self.dataDirectory : Bundle.module.url(forResource: "testdata", withExtension: nil)!
        let url = dir.appendingPathComponent(name)
        let text = try String(contentsOf: url, encoding: .utf8)
        var env = InteractionEnv()
        var rewritten: [String] = []
        let lines = text.components(separatedBy: "\n")
        var i = 0
        while i < lines.count {
            let line = lines[i]
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") {
                rewritten.append(line)
                i += 1
                continue
            }
            let lineNo = i + 1
            i += 1
            guard i < lines.count, lines[i] == "----" else {
                Issue.record("\(name):\(lineNo): command without ---- block: \(line)")
                return
            }
            i += 1
            var expected: [String] = []
            while i < lines.count, !lines[i].isEmpty {
                expected.append(lines[i])
                i += 1
            }
            let words = Self.split(trimmed)
            var actual: [String]
            do {
                actual = try env.run(words[0], Array(words.dropFirst()))
            } catch {
                Issue.record("\(name):\(lineNo): \(line): \(error)")
                return
            }
            if actual.isEmpty { actual = ["ok"] }
            if actual != expected && !rewrite {
                Issue.record("""
                \(name):\(lineNo): \(line)
                expected:
                \(expected.joined(separator: "\n"))
                actual:
                \(actual.joined(separator: "\n"))
                """)
            }
            rewritten += [line, "----"] + actual
        }
        if rewrite {
            var out = rewritten.joined(separator: "\n")
            if !out.hasSuffix("\n") { out += "\n" }
            try out.write(to: Self.dataDirectory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
    }

    /// Splits on spaces, keeping "quoted strings" together (without the quotes).
    static func split(_ s: String) -> [String] {
        var words: [String] = []
        var cur = ""
        var quoted = false
        for c in s {
            if c == "\"" { quoted.toggle(); continue }
            if c == " " && !quoted {
                if !cur.isEmpty { words.append(cur); cur = "" }
            } else {
                cur.append(c)
            }
        }
        if !cur.isEmpty { words.append(cur) }
        return words
    }
}

/// Seeds for simulator tests: a fixed list, or the one in `GOSSIP_SEED` to replay a failure.
enum Seeds {
    static func list(_ defaults: [UInt64]) -> [UInt64] {
        if let text = environment("GOSSIP_SEED"), let seed = UInt64(text) { return [seed] }
        return defaults
    }

    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        return String(cString: value)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

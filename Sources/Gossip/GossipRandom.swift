/// A seeded xoshiro256** generator: every random choice of a node comes from one of these,
/// so a simulator run is a pure function of its seed.
public struct GossipRandom: RandomNumberGenerator, Sendable {
    private var s0: UInt64
    private var s1: UInt64
    private var s2: UInt64
    private var s3: UInt64

    /// Expands `seed` with splitmix64, as the xoshiro authors recommend, so that nearby seeds diverge.
    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix()
        s1 = splitmix()
        s2 = splitmix()
        s3 = splitmix()
    }

    public mutating func next() -> UInt64 {
        let result = rotate(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = rotate(s3, 45)
        return result
    }

    private func rotate(_ x: UInt64, _ k: UInt64) -> UInt64 {
        (x << k) | (x >> (64 - k))
    }

    /// Up to `count` distinct elements chosen uniformly (a partial Fisher–Yates shuffle).
    mutating func sample<T>(_ items: [T], count: Int) -> [T] {
        var pool = items
        let n = Swift.min(count, pool.count)
        guard n > 0 else { return [] }
        for i in 0..<n {
            let j = Int.random(in: i..<pool.count, using: &self)
            pool.swapAt(i, j)
        }
        return Array(pool[0..<n])
    }

    /// A uniformly random offset in `0..<nanoseconds`, used to stagger timers so nodes do not tick in lockstep.
    mutating func jitter(_ nanoseconds: Int64) -> Int64 {
        guard nanoseconds > 0 else { return 0 }
        return Int64.random(in: 0..<nanoseconds, using: &self)
    }
}

/// Small numeric helpers, kept here so the module needs no Foundation.
enum GossipMath {
    /// Natural logarithm for positive finite `x`, from `x = m·2^e` and the atanh series of ln(m).
    /// Deterministic on every platform, which a libm call need not be.
    static func log(_ x: Double) -> Double {
        guard x > 0, x.isFinite else { return x == 0 ? -.infinity : .nan }
        let exponent = Double(x.exponent)
        let m = x.significand  // in [1, 2)
        let y = (m - 1) / (m + 1)  // in [0, 1/3)
        let y2 = y * y
        var term = y
        var sum = 0.0
        var k = 1.0
        for _ in 0..<30 {
            sum += term / k
            term *= y2
            k += 2
        }
        return exponent * 0.693_147_180_559_945_3 + 2 * sum
    }

    static func log10(_ x: Double) -> Double {
        log(x) / 2.302_585_092_994_045_7
    }

    /// memberlist's retransmit limit: `multiplier * ceil(log10(n + 1))`.
    static func retransmitLimit(multiplier: Int, nodes: Int) -> Int {
        let scale = Int(log10(Double(max(nodes, 0) + 1)).rounded(.up))
        return max(1, multiplier * max(scale, 1))
    }

    /// Adds one without trapping: incarnations and Lamport times arrive from the network.
    static func successor(_ value: UInt64) -> UInt64 {
        value == .max ? .max : value + 1
    }
}

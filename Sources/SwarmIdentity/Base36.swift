/// Base 36 (0-9, a-z) of a big-endian unsigned integer, as Docker writes the
/// parts of a join token (`SWMTKN-1-<digest>-<secret>`).
enum Base36 {
    private static let digits = Array("0123456789abcdefghijklmnopqrstuvwxyz".utf8)

    /// `bytes` as one big-endian number in base 36, left-padded with zeros to
    /// `width` digits.
    static func encode(_ bytes: [UInt8], width: Int) -> String {
        var number = bytes.drop { $0 == 0 }.map { UInt32($0) }
        var out: [UInt8] = []
        // Repeated division of the byte string by 36.
        while !number.isEmpty {
            var remainder: UInt32 = 0
            var quotient: [UInt32] = []
            quotient.reserveCapacity(number.count)
            for byte in number {
                let value = remainder << 8 | byte
                let digit = value / 36
                remainder = value % 36
                if !(quotient.isEmpty && digit == 0) { quotient.append(digit) }
            }
            out.append(digits[Int(remainder)])
            number = quotient
        }
        while out.count < width { out.append(UInt8(ascii: "0")) }
        return String(decoding: out.reversed(), as: UTF8.self)
    }

    static func isValid(_ text: Substring) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x7a).contains($0) }
    }
}

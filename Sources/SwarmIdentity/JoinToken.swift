import Crypto
import FoundationEssentials

/// A join token in Docker's format: `SWMTKN-1-<CA digest>-<secret>`.
///
/// The digest (SHA-256 of the root CA certificate's DER, base 36, 50 digits)
/// lets a joining node check the manager it reaches before it sends the
/// secret; the secret (128 random bits, base 36, 25 digits) is what the
/// manager checks. A worker token and a manager token differ in the secret
/// only.
public struct JoinToken: Sendable, Hashable, CustomStringConvertible {
    public static let prefix = "SWMTKN"
    public static let version = "1"
    static let digestWidth = 50
    static let secretWidth = 25

    public var caDigest: String
    public var secret: String

    public init(caDigest: String, secret: String) {
        self.caDigest = caDigest
        self.secret = secret
    }

    /// A new token for the CA whose certificate is `caCertificateDER`.
    public static func generate(caCertificateDER: [UInt8]) -> JoinToken {
        var random = SystemRandomNumberGenerator()
        let bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &random) }
        return JoinToken(caDigest: digest(of: caCertificateDER), secret: Base36.encode(bytes, width: secretWidth))
    }

    /// The token's digest part for a CA certificate.
    public static func digest(of caCertificateDER: [UInt8]) -> String {
        Base36.encode(Array(SHA256.hash(data: caCertificateDER)), width: digestWidth)
    }

    /// Parses a token; the error says what is wrong with it, never the secret.
    public init(parsing text: String) throws(JoinTokenError) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count > 1, parts[0] == Self.prefix else { throw .malformed("it does not start with \(Self.prefix)-") }
        guard parts.count == 4 else { throw .malformed("it has \(parts.count) parts separated by '-', not 4") }
        guard parts[1] == Self.version else { throw .malformed("unknown token version '\(parts[1])'") }
        guard parts[2].count == Self.digestWidth, Base36.isValid(parts[2]) else {
            throw .malformed("the CA digest is not \(Self.digestWidth) base-36 digits")
        }
        guard parts[3].count == Self.secretWidth, Base36.isValid(parts[3]) else {
            throw .malformed("the secret is not \(Self.secretWidth) base-36 digits")
        }
        caDigest = String(parts[2])
        secret = String(parts[3])
    }

    public var description: String { "\(Self.prefix)-\(Self.version)-\(caDigest)-\(secret)" }

    /// Whether the CA a manager presents is the one this token names.
    public func matches(caCertificateDER: [UInt8]) -> Bool {
        Self.digest(of: caCertificateDER) == caDigest
    }

    /// Compares secrets in time independent of where they differ.
    public func hasSecret(of other: JoinToken) -> Bool {
        let a = Array(secret.utf8), b = Array(other.secret.utf8)
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

public enum JoinTokenError: Error, Sendable, Hashable, CustomStringConvertible {
    case malformed(String)

    public var description: String {
        switch self {
        case let .malformed(why): "invalid join token: \(why)"
        }
    }
}

import Crypto
import FoundationEssentials

/// One AES-256 key of the gossip keyring. Its description is a fingerprint, never the key.
public struct GossipKey: Sendable, Hashable, CustomStringConvertible {
    public static let byteCount = 32

    /// The raw key.
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard bytes.count == Self.byteCount else { throw Keyring.Error.invalidKeySize(bytes.count) }
        self.bytes = bytes
    }

    /// A key as `swarmnet` and `gossip-node --key` print and accept it.
    public init(base64: String) throws {
        guard let data = Data(base64Encoded: base64) else { throw Keyring.Error.invalidBase64 }
        try self.init(bytes: Array(data))
    }

    /// A fresh key from the system's secure random generator.
    public static func random() -> GossipKey {
        let key = SymmetricKey(size: .bits256)
        // Cannot fail: the size is fixed above.
        return try! GossipKey(bytes: key.withUnsafeBytes { Array($0) })
    }

    public var base64: String { Data(bytes).base64EncodedString() }

    /// The first 8 hex digits of the key's SHA-256: enough to tell keys apart in a dump.
    public var fingerprint: String {
        SHA256.hash(data: bytes).prefix(4).map { byte in
            let hex = String(byte, radix: 16)
            return hex.count == 1 ? "0" + hex : hex
        }.joined()
    }

    public var description: String { "key \(fingerprint)" }

    var symmetricKey: SymmetricKey { SymmetricKey(data: bytes) }
}

/// The keys a node encrypts and decrypts gossip with (AES-256-GCM), as memberlist's keyring:
/// the primary key seals everything sent; every key is tried on what is received, so a new key
/// can be installed everywhere, then made primary, then the old one removed, without a moment
/// in which two nodes cannot read each other.
///
/// Sealed format: `version u8 | nonce (12 random bytes) | ciphertext | tag (16 bytes)`. The nonce
/// is drawn at random for every message and does not depend on the key; the version byte is
/// authenticated as associated data.
public struct Keyring: Sendable, Hashable {
    public enum Error: Swift.Error, Sendable, Hashable, CustomStringConvertible {
        case invalidKeySize(Int)
        case invalidBase64
        case keyNotInstalled(String)
        case cannotRemovePrimaryKey(String)

        public var description: String {
            switch self {
            case .invalidKeySize(let size): "a gossip key has \(GossipKey.byteCount) bytes, not \(size)"
            case .invalidBase64: "the key is not valid base64"
            case .keyNotInstalled(let fingerprint): "key \(fingerprint) is not in the keyring"
            case .cannotRemovePrimaryKey(let fingerprint): "key \(fingerprint) is the primary key; make another key primary first"
            }
        }
    }

    public static let version: UInt8 = 1
    static let nonceSize = 12
    static let tagSize = 16
    /// Bytes a sealed message is longer than its plaintext.
    public static let overhead = 1 + nonceSize + tagSize

    /// The primary key first, then the others in the order they were installed.
    public private(set) var keys: [GossipKey]

    public init(primary: GossipKey, others: [GossipKey] = []) {
        keys = [primary]
        for key in others where !keys.contains(key) { keys.append(key) }
    }

    public var primary: GossipKey { keys[0] }

    /// Installs `key` for receiving; sending keeps the current primary key.
    public mutating func install(_ key: GossipKey) {
        if !keys.contains(key) { keys.append(key) }
    }

    /// Makes an installed key the one everything is sent with.
    public mutating func use(_ key: GossipKey) throws {
        guard let index = keys.firstIndex(of: key) else { throw Error.keyNotInstalled(key.fingerprint) }
        keys.remove(at: index)
        keys.insert(key, at: 0)
    }

    /// Removes a key that is no longer primary; messages sealed with it are dropped from now on.
    public mutating func remove(_ key: GossipKey) throws {
        guard let index = keys.firstIndex(of: key) else { throw Error.keyNotInstalled(key.fingerprint) }
        guard index != 0 else { throw Error.cannotRemovePrimaryKey(key.fingerprint) }
        keys.remove(at: index)
    }

    /// Encrypts with the primary key and a fresh random nonce.
    public func seal(_ plaintext: [UInt8]) -> [UInt8] {
        let header = [Self.version]
        // AES.GCM.seal only throws for a nonce of the wrong size, and ours is generated here.
        let box = try! AES.GCM.seal(plaintext, using: primary.symmetricKey, nonce: AES.GCM.Nonce(), authenticating: header)
        var sealed = header
        sealed.reserveCapacity(plaintext.count + Self.overhead)
        sealed.append(contentsOf: box.combined!)
        return sealed
    }

    /// Decrypts with whichever key opens `sealed`, the primary key first; nil if none does (or the
    /// bytes are not a sealed message of this version).
    public func open(_ sealed: [UInt8]) -> [UInt8]? {
        guard sealed.count >= Self.overhead, sealed[0] == Self.version else { return nil }
        guard let box = try? AES.GCM.SealedBox(combined: sealed[1...]) else { return nil }
        let header = [Self.version]
        for key in keys {
            if let plaintext = try? AES.GCM.open(box, using: key.symmetricKey, authenticating: header) {
                return Array(plaintext)
            }
        }
        return nil
    }
}

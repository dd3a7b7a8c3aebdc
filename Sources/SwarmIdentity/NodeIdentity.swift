import Crypto
import FoundationEssentials
import Glibc
import SwiftASN1
import X509

/// Who a certificate says its holder is: CN node ID, OU role, O cluster ID.
public struct PeerIdentity: Sendable, Hashable, CustomStringConvertible {
    public var nodeID: String
    public var role: NodeRole
    public var clusterID: String

    public init(nodeID: String, role: NodeRole, clusterID: String) {
        self.nodeID = nodeID
        self.role = role
        self.clusterID = clusterID
    }

    /// Reads the identity out of a certificate's subject.
    public init(certificate: Certificate) throws {
        func attribute(_ oid: ASN1ObjectIdentifier) -> String? {
            for rdn in certificate.subject {
                for attribute in rdn where attribute.type == oid { return String(attribute.value) }
            }
            return nil
        }
        guard let cn = attribute(.RDNAttributeType.commonName), !cn.isEmpty,
              let ou = attribute(.RDNAttributeType.organizationalUnitName),
              let role = NodeRole(organizationalUnit: ou),
              let o = attribute(.RDNAttributeType.organizationName), !o.isEmpty
        else { throw IdentityError.invalid("the certificate's subject is not a swarm node's (CN node, OU swarm-manager|swarm-worker, O cluster)") }
        self.init(nodeID: cn, role: role, clusterID: o)
    }

    /// The identity in a DER certificate (as TLS hands it over).
    public init(der: [UInt8]) throws {
        try self.init(certificate: try Certificate(derEncoded: der))
    }

    public var description: String { "node \(nodeID) (\(role.rawValue))" }
}

/// This node's key and certificate, and the root it trusts, as kept on
/// disk under the state directory (Docker's `swarm/certificates`):
/// `swarm-root-ca.crt`, `swarm-node.crt`, `swarm-node.key` (mode 0600).
public struct NodeIdentity: Sendable {
    /// The key's raw bytes (swift-crypto's keys are not Sendable).
    private let keyBytes: Data
    public var key: P256.Signing.PrivateKey { try! P256.Signing.PrivateKey(rawRepresentation: keyBytes) }
    public let certificate: Certificate
    public let rootCA: Certificate
    public let peer: PeerIdentity

    public init(key: P256.Signing.PrivateKey, certificate: Certificate, rootCA: Certificate) throws {
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw IdentityError.invalid("the node's key does not belong to its certificate")
        }
        keyBytes = key.rawRepresentation
        self.certificate = certificate
        self.rootCA = rootCA
        peer = try PeerIdentity(certificate: certificate)
    }

    /// A fresh key and its signing request (the subject is left to the CA).
    public static func makeRequest() throws -> (key: P256.Signing.PrivateKey, csrPEM: String) {
        let key = P256.Signing.PrivateKey()
        let csr = try CertificateSigningRequest(
            version: .v1, subject: DistinguishedName(), privateKey: .init(key), attributes: .init(),
            signatureAlgorithm: .ecdsaWithSHA256)
        return (key, try csr.serializeAsPEM().pemString)
    }

    public var certificatePEM: String { (try? certificate.serializeAsPEM().pemString) ?? "" }
    public var rootCAPEM: String { (try? rootCA.serializeAsPEM().pemString) ?? "" }
    public var rootCADER: [UInt8] { rootCA.derBytes }

    /// True once less than half of the certificate's life is left: then it
    /// is renewed (swarmkit renews between 50% and 80% of its life).
    public func needsRenewal(at now: Date = Date()) -> Bool {
        let life = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
        return now >= certificate.notValidBefore + life / 2
    }

    static let files = (root: "swarm-root-ca.crt", certificate: "swarm-node.crt", key: "swarm-node.key")

    /// Loads the identity from `directory`; nil when there is none.
    public static func load(directory: String) throws -> NodeIdentity? {
        let path = { (name: String) in directory + "/" + name }
        guard FileManager.default.fileExists(atPath: path(files.key)) else { return nil }
        func read(_ name: String) throws -> String {
            guard let data = FileManager.default.contents(atPath: path(name)) else {
                throw IdentityError.invalid("\(path(name)) cannot be read")
            }
            return String(decoding: data, as: UTF8.self)
        }
        return try NodeIdentity(
            key: try P256.Signing.PrivateKey(pemRepresentation: read(files.key)),
            certificate: try Certificate(pemEncoded: read(files.certificate)),
            rootCA: try Certificate(pemEncoded: read(files.root)))
    }

    /// Writes the identity to `directory` (each file replaced atomically;
    /// the key first readable by root only).
    public func save(directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        for (name, text, mode) in [(Self.files.key, key.pemRepresentation, 0o600), (Self.files.certificate, certificatePEM, 0o644),
                                   (Self.files.root, rootCAPEM, 0o644)] {
            let path = directory + "/" + name
            let temporary = path + ".tmp"
            guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8), attributes: [.posixPermissions: mode]) else {
                throw IdentityError.invalid("cannot write \(temporary)")
            }
            guard rename(temporary, path) == 0 else { throw IdentityError.invalid("cannot rename \(temporary) to \(path)") }
        }
    }
}

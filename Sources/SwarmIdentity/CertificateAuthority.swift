import Crypto
import FoundationEssentials
import SwiftASN1
import X509

/// A node's role in the swarm, as its certificate carries it (OU).
public enum NodeRole: String, Codable, Sendable, Hashable, CaseIterable {
    case manager
    case worker

    /// The certificate's organizational unit, as Docker names it.
    public var organizationalUnit: String { "swarm-\(rawValue)" }

    public init?(organizationalUnit: String) {
        guard let role = Self.allCases.first(where: { $0.organizationalUnit == organizationalUnit }) else { return nil }
        self = role
    }
}

/// The swarm's root CA (ECDSA P-256), made at `swarm init`: it signs every
/// node's certificate, and its certificate is every node's only trust root.
/// Its key lives in the replicated store, so any manager can sign.
public struct CertificateAuthority: Sendable {
    public let certificate: Certificate
    /// The key's raw bytes (swift-crypto's keys are not Sendable).
    private let keyBytes: Data
    private var key: P256.Signing.PrivateKey { try! P256.Signing.PrivateKey(rawRepresentation: keyBytes) }

    /// Docker's root CA lives 20 years.
    public static let rootValidity: TimeInterval = 20 * 365 * 24 * 3600
    /// Node certificates: 90 days, Docker's default (`--cert-expiry`).
    public static let defaultNodeValidity: TimeInterval = 90 * 24 * 3600
    /// Certificates start an hour early, so a node whose clock is a little
    /// behind accepts them.
    static let backdate: TimeInterval = 3600

    /// A new root CA.
    public static func create(now: Date = Date()) throws -> CertificateAuthority {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("swarm-ca") }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: .init(key.publicKey),
            notValidBefore: now - backdate, notValidAfter: now + rootValidity,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 1))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key))
        return CertificateAuthority(certificate: certificate, key: key)
    }

    /// The CA kept in the store.
    public init(certificatePEM: String, keyPEM: String) throws {
        certificate = try Certificate(pemEncoded: certificatePEM)
        let key = try P256.Signing.PrivateKey(pemRepresentation: keyPEM)
        keyBytes = key.rawRepresentation
        guard certificate.publicKey == Certificate.PublicKey(key.publicKey) else {
            throw IdentityError.invalid("the root CA's key does not belong to its certificate")
        }
    }

    private init(certificate: Certificate, key: P256.Signing.PrivateKey) {
        self.certificate = certificate
        keyBytes = key.rawRepresentation
    }

    public var certificatePEM: String { (try? certificate.serializeAsPEM().pemString) ?? "" }
    public var keyPEM: String { key.pemRepresentation }
    public var certificateDER: [UInt8] { certificate.derBytes }

    /// Signs a node certificate for the key in `csr`. The subject is the
    /// CA's to choose (CN node ID, OU role, O cluster ID), never the
    /// requester's: a CSR only proves possession of its key.
    public func issue(for csr: CertificateSigningRequest, nodeID: String, role: NodeRole, clusterID: String,
                      validity: TimeInterval = defaultNodeValidity, now: Date = Date()) throws -> Certificate {
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw IdentityError.invalid("the certificate signing request's signature does not verify")
        }
        let subject = try DistinguishedName {
            OrganizationName(clusterID)
            OrganizationalUnitName(role.organizationalUnit)
            CommonName(nodeID)
        }
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: csr.publicKey,
            notValidBefore: now - Self.backdate, notValidAfter: now + validity,
            issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames([.dnsName(role.organizationalUnit), .dnsName(nodeID)])
            },
            issuerPrivateKey: .init(key))
    }

    /// Whether this CA signed `certificate` (and the certificate is current).
    public func signed(_ certificate: Certificate, at now: Date = Date()) -> Bool {
        certificate.issuer == self.certificate.subject
            && self.certificate.publicKey.isValidSignature(certificate.signature, for: certificate)
            && certificate.notValidBefore <= now && now <= certificate.notValidAfter
    }
}

public enum IdentityError: Error, Sendable, CustomStringConvertible {
    case invalid(String)

    public var description: String {
        switch self {
        case let .invalid(why): why
        }
    }
}

import Foundation
import SwarmIdentity
import Testing
import X509

@Suite struct JoinTokenTests {
    let ca = try! CertificateAuthority.create()

    @Test func aGeneratedTokenHasDockersShapeAndParsesBack() throws {
        let token = JoinToken.generate(caCertificateDER: ca.certificateDER)
        let text = token.description
        let parts = text.split(separator: "-")
        #expect(parts.count == 4 && parts[0] == "SWMTKN" && parts[1] == "1")
        #expect(parts[2].count == 50 && parts[3].count == 25)
        #expect(try JoinToken(parsing: text) == token)
        #expect(token.matches(caCertificateDER: ca.certificateDER))
        #expect(!token.matches(caCertificateDER: try CertificateAuthority.create().certificateDER))
    }

    @Test func twoTokensOfOneCAShareTheDigestButNotTheSecret() {
        let a = JoinToken.generate(caCertificateDER: ca.certificateDER), b = JoinToken.generate(caCertificateDER: ca.certificateDER)
        #expect(a.caDigest == b.caDigest)
        #expect(!a.hasSecret(of: b))
        #expect(a.hasSecret(of: a))
    }

    @Test(arguments: [
        ("", "it does not start with SWMTKN-"),
        ("SWMTKN", "it does not start with SWMTKN-"),
        ("SWMTKN-2-\(String(repeating: "a", count: 50))-\(String(repeating: "b", count: 25))", "unknown token version '2'"),
        ("SWMTKN-1-abc-\(String(repeating: "b", count: 25))", "the CA digest is not 50 base-36 digits"),
        ("SWMTKN-1-\(String(repeating: "a", count: 50))-short", "the secret is not 25 base-36 digits"),
        ("SWMTKN-1-\(String(repeating: "A", count: 50))-\(String(repeating: "b", count: 25))", "the CA digest is not 50 base-36 digits"),
        ("SWMTKN-1-\(String(repeating: "a", count: 50))-\(String(repeating: "b", count: 25))-x", "it has 5 parts separated by '-', not 4"),
    ])
    func malformedTokensAreRefusedSayingWhy(text: String, why: String) {
        #expect {
            try JoinToken(parsing: text)
        } throws: { error in
            "\(error)" == "invalid join token: \(why)"
        }
    }

    @Test func theDigestIsBase36OfSHA256() {
        // 50 base-36 digits hold 256 bits; the leading zeros pad.
        let digest = JoinToken.digest(of: [1, 2, 3])
        #expect(digest.count == 50)
        #expect(digest.allSatisfy { $0.isNumber || ("a"..."z").contains($0) })
        #expect(digest != JoinToken.digest(of: [1, 2, 4]))
    }
}

@Suite struct CertificateTests {
    @Test func theCAIssuesNodeCertificatesWithTheSwarmSubject() throws {
        let ca = try CertificateAuthority.create()
        let (key, csrPEM) = try NodeIdentity.makeRequest()
        let certificate = try ca.issue(for: try CertificateSigningRequest(pemEncoded: csrPEM), nodeID: "node1", role: .worker, clusterID: "cluster1")
        let identity = try NodeIdentity(key: key, certificate: certificate, rootCA: ca.certificate)
        #expect(identity.peer == PeerIdentity(nodeID: "node1", role: .worker, clusterID: "cluster1"))
        #expect(ca.signed(certificate))
        #expect(try !CertificateAuthority.create().signed(certificate))
        // Valid for 90 days by default, and not due for renewal yet.
        let life = certificate.notValidAfter.timeIntervalSince(Date())
        #expect(life > 89 * 24 * 3600 && life <= 90 * 24 * 3600 + 1) // certificates carry whole seconds
        #expect(!identity.needsRenewal())
        #expect(identity.needsRenewal(at: Date() + 46 * 24 * 3600))
        #expect(!ca.signed(certificate, at: Date() + 91 * 24 * 3600))
    }

    @Test func aRequestWhoseSignatureDoesNotVerifyIsRefused() throws {
        let ca = try CertificateAuthority.create()
        let genuine = try CertificateSigningRequest(pemEncoded: try NodeIdentity.makeRequest().csrPEM)
        let other = try CertificateSigningRequest(pemEncoded: try NodeIdentity.makeRequest().csrPEM)
        // Another key's public key under this request's signature.
        let forged = try CertificateSigningRequest(
            version: .v1, subject: genuine.subject, publicKey: other.publicKey, attributes: genuine.attributes,
            signatureAlgorithm: genuine.signatureAlgorithm, signature: genuine.signature)
        #expect(throws: IdentityError.self) {
            try ca.issue(for: forged, nodeID: "n", role: .manager, clusterID: "c")
        }
    }

    @Test func theCAAndTheNodeIdentityRoundTripThroughTheirFiles() throws {
        let ca = try CertificateAuthority.create()
        let again = try CertificateAuthority(certificatePEM: ca.certificatePEM, keyPEM: ca.keyPEM)
        #expect(again.certificate == ca.certificate)
        #expect(throws: IdentityError.self) {
            try CertificateAuthority(certificatePEM: ca.certificatePEM, keyPEM: try CertificateAuthority.create().keyPEM)
        }

        let (key, csrPEM) = try NodeIdentity.makeRequest()
        let certificate = try again.issue(for: try CertificateSigningRequest(pemEncoded: csrPEM), nodeID: "n1", role: .manager, clusterID: "c1")
        let identity = try NodeIdentity(key: key, certificate: certificate, rootCA: ca.certificate)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swarm-identity-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(try NodeIdentity.load(directory: directory) == nil)
        try identity.save(directory: directory)
        let loaded = try #require(try NodeIdentity.load(directory: directory))
        #expect(loaded.peer == identity.peer && loaded.certificate == identity.certificate && loaded.rootCA == identity.rootCA)
        let mode = try FileManager.default.attributesOfItem(atPath: directory + "/swarm-node.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        // A key that is not the certificate's is refused.
        #expect(throws: IdentityError.self) {
            try NodeIdentity(key: try NodeIdentity.makeRequest().key, certificate: certificate, rootCA: ca.certificate)
        }
    }

    @Test func aCertificateWithoutASwarmSubjectIsNoPeer() throws {
        let ca = try CertificateAuthority.create()
        #expect(throws: IdentityError.self) { try PeerIdentity(certificate: ca.certificate) }
        #expect(NodeRole(organizationalUnit: "swarm-manager") == .manager)
        #expect(NodeRole(organizationalUnit: "swarm-admin") == nil)
    }
}

import Crypto
import DockerAPI
import NIOCore
import NIOSSL
import NIOTLS
import SwarmIdentity
import SwiftASN1
import X509

/// TLS for every connection between nodes: TLS 1.3 only, the swarm's root
/// CA as the only trust root, and the node's own certificate. Peers are
/// addressed by IP, so host names are not checked; who the peer is comes
/// from its certificate's subject (`PeerIdentity`), checked per use.
enum ControlTLS {
    static func certificate(_ certificate: Certificate) throws -> NIOSSLCertificate {
        try NIOSSLCertificate(bytes: certificate.derBytes, format: .der)
    }

    static func key(_ key: P256.Signing.PrivateKey) throws -> NIOSSLPrivateKey {
        try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem)
    }

    /// The manager endpoint: a client certificate is verified when one is
    /// sent, and required by every route but the two a joining node uses.
    static func endpointContext(_ identity: NodeIdentity) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [.certificate(try certificate(identity.certificate))], privateKey: .privateKey(try key(identity.key)))
        configuration.minimumTLSVersion = .tlsv13
        configuration.trustRoots = .certificates([try certificate(identity.rootCA)])
        configuration.certificateVerification = .optionalVerification
        return try NIOSSLContext(configuration: configuration)
    }

    /// Raft between managers: both sides present a certificate.
    static func mutualContext(_ identity: NodeIdentity, server: Bool) throws -> NIOSSLContext {
        var configuration = server
            ? TLSConfiguration.makeServerConfiguration(
                certificateChain: [.certificate(try certificate(identity.certificate))], privateKey: .privateKey(try key(identity.key)))
            : TLSConfiguration.makeClientConfiguration()
        if !server {
            configuration.certificateChain = [.certificate(try certificate(identity.certificate))]
            configuration.privateKey = .privateKey(try key(identity.key))
        }
        configuration.minimumTLSVersion = .tlsv13
        configuration.trustRoots = .certificates([try certificate(identity.rootCA)])
        configuration.certificateVerification = .noHostnameVerification
        return try NIOSSLContext(configuration: configuration)
    }

    /// A client of the manager endpoint: with this node's certificate, or
    /// none (joining); trusting `root`, or nothing at all (only to fetch the
    /// CA certificate, which the join token then vouches for).
    static func clientContext(identity: NodeIdentity?, root: Certificate?) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv13
        if let identity {
            configuration.certificateChain = [.certificate(try certificate(identity.certificate))]
            configuration.privateKey = .privateKey(try key(identity.key))
        }
        if let root {
            configuration.trustRoots = .certificates([try certificate(root)])
            configuration.certificateVerification = .noHostnameVerification
        } else {
            configuration.certificateVerification = .none
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// The peer's verified certificate on a TLS channel (on its event loop).
    static func peerCertificate(_ channel: any Channel) -> [UInt8]? {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: NIOSSLHandler.self) else { return nil }
        return try? handler.peerCertificate?.toDERBytes()
    }

    /// TLS for the manager endpoint's HTTP server.
    static func endpointSecurity(_ context: NIOSSLContext) -> ConnectionSecurity {
        ConnectionSecurity(
            configure: { channel in try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context)) },
            peerCertificate: { peerCertificate($0) })
    }
}

/// Closes a mutual-TLS connection whose peer, once the handshake is done,
/// is not allowed (a worker on the Raft port, a removed node, another
/// swarm's node). Nothing is read from a connection before this passes.
final class PeerAuthorization: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let allow: @Sendable (PeerIdentity) -> String?
    private let onRefusal: @Sendable (String) -> Void
    private var authorized = false
    private var held: [NIOAny] = []

    /// `allow` returns nil to accept, or why the peer is refused.
    init(allow: @escaping @Sendable (PeerIdentity) -> String?, onRefusal: @escaping @Sendable (String) -> Void) {
        self.allow = allow
        self.onRefusal = onRefusal
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event {
            let refusal: String?
            if let der = ControlTLS.peerCertificate(context.channel) {
                do {
                    refusal = allow(try PeerIdentity(der: der))
                } catch {
                    refusal = "its certificate is not a swarm node's: \(error)"
                }
            } else {
                refusal = "it presented no certificate"
            }
            if let refusal {
                onRefusal("\(context.remoteAddress.map { "\($0)" } ?? "a peer") refused: \(refusal)")
                context.close(promise: nil)
                return
            }
            authorized = true
            for data in held { context.fireChannelRead(data) }
            held = []
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if authorized { context.fireChannelRead(data) } else { held.append(data) }
    }
}

import SwiftASN1

extension DERSerializable {
    /// The value in DER: a certificate as TLS and join tokens take it, a
    /// subject or public key as Docker's TLSInfo shows them.
    public var derBytes: [UInt8] {
        var serializer = DER.Serializer()
        try? serializer.serialize(self)
        return serializer.serializedBytes
    }
}

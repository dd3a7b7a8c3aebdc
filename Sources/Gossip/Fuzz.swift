/// Entry point for a libFuzzer harness (see `scripts/gossip-fuzz`): every input must decode or
/// throw, never trap; whatever decodes must re-encode to bytes that decode to the same value.
public func fuzzDecode(_ bytes: UnsafeRawBufferPointer) {
    let input = Array(bytes)
    if let messages = try? GossipCodec.decodePacket(input) {
        let again = try? GossipCodec.decodePacket(GossipCodec.packet(messages.map(GossipCodec.encode)))
        precondition(again == messages, "packet round trip changed the messages")
    }
    if let state = try? GossipCodec.decodeStream(input) {
        let again = try? GossipCodec.decodeStream(GossipCodec.encodeStream(state))
        precondition(again == state, "stream round trip changed the state")
    }
}

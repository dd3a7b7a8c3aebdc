import Gossip
import GossipRuntime
import Testing

@Suite("keyring")
struct KeyringTests {
    @Test("seal and open round-trip; a fresh nonce every time; the layout is version, nonce, ciphertext, tag")
    func roundTrip() throws {
        let keyring = Keyring(primary: .random())
        let plaintext = Array("push-pull state".utf8)
        let a = keyring.seal(plaintext)
        let b = keyring.seal(plaintext)
        #expect(a.count == 1 + 12 + plaintext.count + 16)
        #expect(a[0] == Keyring.version)
        #expect(a[1..<13] != b[1..<13])
        #expect(keyring.open(a) == plaintext)
        #expect(keyring.open(b) == plaintext)
    }

    @Test("a wrong key, a tampered byte, a truncated or foreign message do not open")
    func rejects() throws {
        let keyring = Keyring(primary: .random())
        let sealed = keyring.seal([1, 2, 3, 4])
        #expect(Keyring(primary: .random()).open(sealed) == nil)
        for index in sealed.indices {
            var tampered = sealed
            tampered[index] ^= 0x01
            #expect(keyring.open(tampered) == nil, "flipped byte \(index)")
        }
        #expect(keyring.open(Array(sealed.dropLast())) == nil)
        #expect(keyring.open([]) == nil)
        #expect(keyring.open([1, 1]) == nil)
    }

    @Test("install, use and remove rotate the primary key without a gap")
    func rotation() throws {
        let old = GossipKey.random()
        let new = GossipKey.random()
        var sender = Keyring(primary: old)
        var receiver = Keyring(primary: old)
        receiver.install(new)
        #expect(receiver.open(sender.seal([9])) == [9])
        sender.install(new)
        try sender.use(new)
        #expect(sender.primary == new)
        #expect(receiver.open(sender.seal([9])) == [9], "receiver still has old as primary but accepts new")
        #expect(throws: Keyring.Error.cannotRemovePrimaryKey(new.fingerprint)) { try sender.remove(new) }
        try sender.remove(old)
        #expect(sender.keys == [new])
        #expect(sender.open(receiver.seal([9])) == nil, "old key no longer accepted")
        #expect(throws: Keyring.Error.keyNotInstalled(old.fingerprint)) { try sender.use(old) }
    }

    @Test("keys parse from base64 and must be 32 bytes")
    func keyParsing() throws {
        let key = GossipKey.random()
        #expect(try GossipKey(base64: key.base64) == key)
        #expect(throws: Keyring.Error.invalidKeySize(16)) { try GossipKey(bytes: Array(repeating: 0, count: 16)) }
        #expect(throws: Keyring.Error.invalidBase64) { try GossipKey(base64: "not base64!") }
        #expect(!key.description.contains(key.base64))
    }
}

@Suite("encrypted cluster on loopback", .serialized)
struct EncryptedClusterTests {
    @Test("a node with the wrong key cannot join, and the members count what they drop")
    func wrongKey() async throws {
        let key = GossipKey.random()
        try await withCluster(3, keys: [key]) { nodes in
            try await waitForMembership(nodes)
            let intruder = LiveGossipNode(name: "intruder", configuration: .fast, keyring: Keyring(primary: .random()),
                                          streamTimeout: .seconds(1))
            let address = try await intruder.start(bind: "127.0.0.1", port: 0)
            defer { _ = address }
            let seed = nodes[0].dump().address
            await #expect(throws: LiveGossipNode.Error.self) { try await intruder.join([try NodeAddress(parsing: seed)]) }
            #expect(nodes[0].counters().transport.undecryptableStreams >= 1)
            // A plaintext node is refused as well: its packets do not open either.
            let plain = LiveGossipNode(name: "plain", configuration: .fast, streamTimeout: .seconds(1))
            try await plain.start(bind: "127.0.0.1", port: 0)
            await #expect(throws: LiveGossipNode.Error.self) { try await plain.join([try NodeAddress(parsing: seed)]) }
            try await Task.sleep(for: .milliseconds(500))
            #expect(nodes.allSatisfy { node in !node.members().contains { $0.name == "intruder" || $0.name == "plain" } })
            #expect(intruder.members().count == 1)
            #expect(plain.members().count == 1)
            #expect(nodes[0].counters().transport.undecryptable >= 2)
            #expect(nodes[0].dump().counters.transport.undecryptableStreams >= 2, "the drop counter is in the dump")
            await intruder.shutdown()
            await plain.shutdown()
        }
    }

    @Test("rotating the key mid-run keeps the cluster converged and drops nothing")
    func rotation() async throws {
        let old = GossipKey.random()
        let new = GossipKey.random()
        try await withCluster(4, keys: [old]) { nodes in
            try await waitForMembership(nodes)
            for node in nodes { try node.joinNetwork("net1") }
            try nodes[1].put(network: "net1", table: "t", key: "before", value: [1])
            try await eventually("the first entry everywhere", within: .seconds(5)) {
                nodes.allSatisfy { $0.entries(network: "net1", table: "t").count == 1 }
            }
            // Install everywhere, then switch, then remove: gossip runs throughout.
            for node in nodes { try node.installKey(new) }
            try await Task.sleep(for: .milliseconds(100))
            for node in nodes {
                try node.useKey(new)
                try await Task.sleep(for: .milliseconds(50))
            }
            try nodes[2].put(network: "net1", table: "t", key: "during", value: [2])
            try await Task.sleep(for: .milliseconds(200))
            for node in nodes { try node.removeKey(old) }
            try nodes[3].put(network: "net1", table: "t", key: "after", value: [3])
            try await eventually("all three entries everywhere", within: .seconds(5)) {
                nodes.allSatisfy { $0.entries(network: "net1", table: "t").map(\.key) == ["after", "before", "during"] }
            }
            // Past a few probe and push-pull rounds on the new key alone.
            try await Task.sleep(for: .milliseconds(1200))
            #expect(nodes.allSatisfy { aliveCount($0) == 4 })
            #expect(nodes.allSatisfy { $0.keyring()?.keys == [new] })
            #expect(nodes.map { $0.counters().transport.undecryptable } == [0, 0, 0, 0])
            #expect(nodes.allSatisfy { $0.counters().core.membersDeclaredDead == 0 })
        }
    }
}

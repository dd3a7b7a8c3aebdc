import Gossip

/// Questions tests ask of a whole simulated cluster.
extension Simulation {
    /// Every running node in `among` sees exactly the running nodes of `among` as alive or suspect
    /// (ignoring suspect/alive differences, which refutation settles), and the others as not active.
    func membershipConverged(among: [Int]? = nil) -> Bool {
        let group = among ?? running
        let expected = Set(group.filter { node($0) != nil }.map { names[$0] })
        for index in group {
            guard let node = node(index) else { continue }
            let active = Set(node.memberList.filter { $0.status.isActive }.map(\.name))
            if active != expected { return false }
        }
        return true
    }

    /// Every running node in `among` sees `status` for `name`.
    func everyone(_ among: [Int]? = nil, sees name: String, as status: MemberStatus) -> Bool {
        (among ?? running).allSatisfy { index in
            guard let node = node(index) else { return true }
            return node.member(named: name)?.status == status
        }
    }

    /// Every running node in `among` shows `value` (nil: nothing) for the entry.
    func everyone(_ among: [Int]? = nil, shows value: [UInt8]?, network: String, table: String, key: String) -> Bool {
        (among ?? running).allSatisfy { index in
            guard let node = node(index) else { return true }
            return node.entry(network: network, table: table, key: key) == value
        }
    }

    /// How many running nodes show any value for the entry.
    func holders(network: String, table: String, key: String) -> Int {
        running.filter { node($0)?.entry(network: network, table: table, key: key) != nil }.count
    }

    /// Makes every running node join `network`.
    func joinEveryone(_ network: String) throws {
        for index in running {
            let outputs = try with(index) { node, now in try node.joinNetwork(network, now: now) }
            send(outputs, from: index)
        }
    }

    func describe(_ index: Int) -> String {
        guard let node = node(index) else { return "\(names[index]): not running" }
        return "\(names[index]) #\(node.incarnation) health \(node.localHealthScore): "
            + node.memberList.map { "\($0.name)=\($0.status)" }.joined(separator: " ")
    }
}

extension Simulation {
    /// Each running node's stored version of an entry, for failure messages.
    func describeEntry(network: String, table: String, key: String) -> String {
        running.map { index -> String in
            let node = node(index)!
            guard let stored = node.storedEntries.first(where: { $0.key == EntryKey(network: network, table: table, key: key) })?.entry else {
                return "\(index):-"
            }
            let visible = node.entry(network: network, table: table, key: key) != nil
            return "\(index):\(stored.owner)@\(stored.time)\(stored.deleting ? "†" : "")\(visible ? "" : "(hidden)")"
        }.joined(separator: " ")
    }
}

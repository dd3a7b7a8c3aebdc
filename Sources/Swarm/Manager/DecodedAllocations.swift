import Cluster
import Raft
import ReplicatedStore

/// The allocations as the pure rules take them (`ClusterState`), kept
/// decoded between store revisions: a refresh decodes only the records
/// the store's history says were written since the last one, and reads
/// the store whole only when the history no longer reaches back. Decoding
/// every record at every revision made each write cost more with each
/// network: at 1,000 networks, 60% of a `network create` went to decoding
/// the 999 records it did not touch.
///
/// It also keeps which records changed since the daemon was last handed
/// the definitions, so that a manager's daemon gets the change, not every
/// network again.
struct DecodedAllocations: Sendable {
    /// The allocation revision (its object's modify index) `state` is at.
    private(set) var revision: UInt64?
    private(set) var state = ClusterState()
    /// The store index `state` has read up to.
    private var appliedIndex: Index?
    /// Networks and services changed since `takeChanges`; nil when the
    /// store was read whole since (anything may have changed).
    private var changedNetworks: Set<String>? = []
    private var changedServices: Set<String>? = []

    /// Brings `state` to the store's current records.
    mutating func refresh(from store: SwarmStore, revision: UInt64) {
        self.revision = revision
        if let appliedIndex, let delta = store.raft.store.changes(after: appliedIndex) {
            for change in delta.changes { apply(change) }
            self.appliedIndex = delta.appliedIndex
            return
        }
        // Read the index first: changes applied while the collections are
        // listed are applied again by the next refresh, which is harmless
        // (a put or a delete is absolute).
        appliedIndex = store.raft.store.appliedIndex
        state.networks = Self.decodeAll(store, NetworkRecord.collection)
        state.endpoints = Self.decodeAll(store, EndpointRecord.collection)
        state.services = Self.decodeAll(store, ServiceRecord.collection)
        changedNetworks = nil
        changedServices = nil
    }

    /// The networks and services changed since the last call, as the
    /// daemon takes them (nil: read the definitions whole); forgets them.
    mutating func takeChanges() -> (networks: [String: NetworkRecord?], services: [String: ServiceRecord?])? {
        defer {
            changedNetworks = []
            changedServices = []
        }
        guard let changedNetworks, let changedServices else { return nil }
        return (Dictionary(uniqueKeysWithValues: changedNetworks.map { ($0, state.networks[$0]) }),
                Dictionary(uniqueKeysWithValues: changedServices.map { ($0, state.services[$0]) }))
    }

    private mutating func apply(_ change: Change) {
        let object = change.object
        let deleted = change.kind == .deleted
        switch object.collection {
        case NetworkRecord.collection:
            state.networks[object.key] = deleted ? nil : Self.decode(object)
            changedNetworks?.insert(object.key)
        case EndpointRecord.collection:
            state.endpoints[object.key] = deleted ? nil : Self.decode(object)
        case ServiceRecord.collection:
            state.services[object.key] = deleted ? nil : Self.decode(object)
            changedServices?.insert(object.key)
        default:
            break
        }
    }

    /// A record that does not decode is left out, as a full read leaves it out.
    private static func decode<Record: Decodable & Sendable>(_ object: StoredObject) -> Record? {
        (SwarmStore.decode(object) as SwarmStore.Versioned<Record>?)?.object
    }

    private static func decodeAll<Record: Decodable & Sendable>(_ store: SwarmStore, _ collection: String) -> [String: Record] {
        var records: [String: Record] = [:]
        for object in store.raft.store.list(collection) {
            if let record: Record = decode(object) { records[object.key] = record }
        }
        return records
    }
}

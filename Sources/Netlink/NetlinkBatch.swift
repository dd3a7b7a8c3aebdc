import CNetlinkShim
import Addressing

/// Many independent requests to be applied with few system calls (see
/// `RouteNetlink.apply`). Building a batch does no I/O. Descriptions of the
/// requests are kept as values and turned into text only for a failure.
public struct NetlinkBatch: Sendable {
    private(set) var requests: [NetlinkRequest] = []
    private var items: [Item] = []

    public init() {}

    public var count: Int { requests.count }

    /// `bridge fdb append MAC dev DEVICE dst DESTINATION self permanent`.
    public mutating func fdbAppend(_ entry: FDBEntry) {
        requests.append(FDBEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_APPEND))
        items.append(.fdb(entry, delete: false))
    }

    /// `bridge fdb del MAC dev DEVICE dst DESTINATION self`.
    public mutating func fdbDelete(_ entry: FDBEntry) {
        requests.append(FDBEntry.request(type: RTM_DELNEIGH, entry: entry, flags: 0))
        items.append(.fdb(entry, delete: true))
    }

    /// `ip neigh replace ADDRESS lladdr MAC dev DEVICE nud permanent`.
    public mutating func neighbourReplace(_ entry: NeighbourEntry) {
        requests.append(NeighbourEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_REPLACE))
        items.append(.neighbour(entry, delete: false))
    }

    /// `ip neigh del ADDRESS dev DEVICE`.
    public mutating func neighbourDelete(_ entry: NeighbourEntry) {
        requests.append(NeighbourEntry.request(type: RTM_DELNEIGH, entry: entry, flags: 0))
        items.append(.neighbour(entry, delete: true))
    }

    func operation(at index: Int) -> String { items[index].operation }
    func object(at index: Int) -> String { items[index].object }

    enum Item: Sendable {
        case fdb(FDBEntry, delete: Bool)
        case neighbour(NeighbourEntry, delete: Bool)

        var operation: String {
            switch self {
            case .fdb(_, let delete): delete ? "delete fdb entry" : "append fdb entry"
            case .neighbour(_, let delete): delete ? "delete neighbour" : "replace neighbour"
            }
        }

        var object: String {
            switch self {
            case .fdb(let entry, _): entry.objectDescription
            case .neighbour(let entry, _): entry.objectDescription
            }
        }
    }
}

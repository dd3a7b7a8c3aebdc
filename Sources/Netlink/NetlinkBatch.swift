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
        items.append(.fdb(entry, "append fdb entry"))
    }

    /// `bridge fdb replace MAC dev DEVICE dst DESTINATION self permanent`.
    public mutating func fdbReplace(_ entry: FDBEntry) {
        requests.append(FDBEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_REPLACE))
        items.append(.fdb(entry, "replace fdb entry"))
    }

    /// `bridge fdb del MAC dev DEVICE dst DESTINATION self`.
    public mutating func fdbDelete(_ entry: FDBEntry) {
        requests.append(FDBEntry.request(type: RTM_DELNEIGH, entry: entry, flags: 0))
        items.append(.fdb(entry, "delete fdb entry"))
    }

    /// `ip neigh replace ADDRESS lladdr MAC dev DEVICE nud permanent`.
    public mutating func neighbourReplace(_ entry: NeighbourEntry) {
        requests.append(NeighbourEntry.request(type: RTM_NEWNEIGH, entry: entry, flags: NLM_F_CREATE | NLM_F_REPLACE))
        items.append(.neighbour(entry, "replace neighbour"))
    }

    /// `ip neigh del ADDRESS dev DEVICE`.
    public mutating func neighbourDelete(_ entry: NeighbourEntry) {
        requests.append(NeighbourEntry.request(type: RTM_DELNEIGH, entry: entry, flags: 0))
        items.append(.neighbour(entry, "delete neighbour"))
    }

    func operation(at index: Int) -> String { items[index].operation }
    func object(at index: Int) -> String { items[index].object }

    /// A request's object and verb, kept as values until a failure needs words.
    enum Item: Sendable {
        case fdb(FDBEntry, StaticString)
        case neighbour(NeighbourEntry, StaticString)

        var operation: String {
            switch self {
            case .fdb(_, let verb), .neighbour(_, let verb): "\(verb)"
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

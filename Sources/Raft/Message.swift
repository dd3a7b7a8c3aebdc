/// The kinds of message nodes exchange; `hup`, `beat` and `checkQuorum` are local-only, never sent.
public enum MessageType: UInt8, Sendable, Hashable, CustomStringConvertible {
    case hup
    case beat
    case checkQuorum
    case propose
    case append
    case appendResponse
    case vote
    case voteResponse
    case preVote
    case preVoteResponse
    case snapshot
    case heartbeat
    case heartbeatResponse
    case readIndex
    case readIndexResponse
    case transferLeader
    case timeoutNow
    case unreachable
    case snapshotStatus

    public var description: String {
        switch self {
        case .hup: "Hup"
        case .beat: "Beat"
        case .checkQuorum: "CheckQuorum"
        case .propose: "Prop"
        case .append: "App"
        case .appendResponse: "AppResp"
        case .vote: "Vote"
        case .voteResponse: "VoteResp"
        case .preVote: "PreVote"
        case .preVoteResponse: "PreVoteResp"
        case .snapshot: "Snap"
        case .heartbeat: "Heartbeat"
        case .heartbeatResponse: "HeartbeatResp"
        case .readIndex: "ReadIndex"
        case .readIndexResponse: "ReadIndexResp"
        case .transferLeader: "TransferLeader"
        case .timeoutNow: "TimeoutNow"
        case .unreachable: "Unreachable"
        case .snapshotStatus: "SnapStatus"
        }
    }

    /// Responses carry the term of the request they answer, so they are matched by kind, not by term alone.
    var response: MessageType? {
        switch self {
        case .vote: .voteResponse
        case .preVote: .preVoteResponse
        default: nil
        }
    }
}

/// One Raft message. Fields follow etcd-io/raft's `Message`; unused fields stay zero.
public struct Message: Sendable, Hashable, CustomStringConvertible {
    public var type: MessageType
    public var from: NodeID
    public var to: NodeID
    public var term: Term
    /// For appends: the term of the entry at `index`. For votes: the candidate's last term. For rejections: the hint term.
    public var logTerm: Term
    /// For appends: the index before `entries`. For votes: the candidate's last index. For responses: the acknowledged index.
    public var index: Index
    public var entries: [Entry]
    public var commit: Index
    public var snapshot: Snapshot?
    public var reject: Bool
    /// On a rejected append, the follower's guess of where the logs may agree (the fast back-off hint).
    public var rejectHint: Index
    /// Opaque bytes: a ReadIndex request id, or `campaignTransfer` on votes caused by a leader transfer.
    public var context: [UInt8]

    public init(
        type: MessageType, from: NodeID = noNode, to: NodeID = noNode, term: Term = 0,
        logTerm: Term = 0, index: Index = 0, entries: [Entry] = [], commit: Index = 0,
        snapshot: Snapshot? = nil, reject: Bool = false, rejectHint: Index = 0, context: [UInt8] = []
    ) {
        self.type = type
        self.from = from
        self.to = to
        self.term = term
        self.logTerm = logTerm
        self.index = index
        self.entries = entries
        self.commit = commit
        self.snapshot = snapshot
        self.reject = reject
        self.rejectHint = rejectHint
        self.context = context
    }

    /// Marks a vote request made after `TimeoutNow`; it must bypass the leader lease of CheckQuorum.
    static let campaignTransfer: [UInt8] = Array("transfer".utf8)

    /// True for messages that never leave the node that made them.
    public var isLocal: Bool {
        switch type {
        case .hup, .beat, .checkQuorum, .unreachable, .snapshotStatus: true
        default: false
        }
    }

    /// One line, stable across runs, used by the interaction tests.
    public var description: String {
        var s = "\(from)->\(to) \(type) term=\(term)"
        switch type {
        case .append:
            s += " log=\(logTerm)/\(index) commit=\(commit)"
            if !entries.isEmpty {
                s += " entries=[" + entries.map(Self.describe).joined(separator: " ") + "]"
            }
        case .appendResponse:
            s += reject ? " reject index=\(index) hint=\(logTerm)/\(rejectHint)" : " index=\(index)"
        case .vote, .preVote:
            s += " last=\(logTerm)/\(index)"
            if context == Self.campaignTransfer { s += " transfer" }
        case .voteResponse, .preVoteResponse:
            s += reject ? " rejected" : " granted"
        case .heartbeat:
            s += " commit=\(commit)"
            if !context.isEmpty { s += " ctx=\(String(decoding: context, as: UTF8.self))" }
        case .heartbeatResponse:
            if !context.isEmpty { s += " ctx=\(String(decoding: context, as: UTF8.self))" }
        case .snapshot:
            if let m = snapshot?.metadata { s += " snapshot=\(m.term)/\(m.index)" }
        case .readIndex, .readIndexResponse:
            if type == .readIndexResponse { s += " index=\(index)" }
            s += " ctx=\(String(decoding: context, as: UTF8.self))"
        case .propose:
            s += " entries=[" + entries.map(Self.describe).joined(separator: " ") + "]"
        default:
            break
        }
        return s
    }

    /// An entry as `term/index` plus its payload, for traces.
    public static func describe(_ e: Entry) -> String {
        switch e.kind {
        case .normal:
            return e.data.isEmpty ? "\(e.term)/\(e.index)" : "\(e.term)/\(e.index) \"\(String(decoding: e.data, as: UTF8.self))\""
        case .confChange:
            let cc = ConfChange(decoding: e.data).map { "\($0)" } ?? "bad-conf-change"
            return "\(e.term)/\(e.index) \(cc)"
        }
    }
}

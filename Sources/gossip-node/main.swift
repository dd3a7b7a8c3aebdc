// gossip-node: one gossip runtime from command-line flags, for live tests and benchmarks.
//
//   gossip-node --name NAME --bind ADDR:PORT [--advertise ADDR] [--join ADDR:PORT]...
//               [--profile fast|lan] [--key BASE64]... [--network NET]... [--control PATH]
//   gossip-node ctl PATH COMMAND...     send one command to a running node, print the reply
//   gossip-node keygen                  print a fresh base64 key
//
// Commands (one a line, on stdin or the control socket):
//   put NET TABLE KEY VALUE | delete NET TABLE KEY | join-network NET | leave-network NET
//   dump [NET TABLE] | members | leave | quit
//
// Everything the node sees is printed on stdout as one JSON object a line, each with "event"
// and "t" (wall-clock nanoseconds since the epoch, comparable between processes on one host).
import Foundation
import Gossip
import GossipRuntime
import Logging
import NIOCore
import NIOPosix
import Synchronization

struct Options {
    var name = ""
    var bind = NodeAddress(host: "127.0.0.1", port: 7946)
    var advertise: String?
    var joins: [NodeAddress] = []
    var configuration = GossipConfiguration.lan
    var keys: [GossipKey] = []
    var networks: [String] = []
    var control: String?

    static let usage = """
        usage: gossip-node --name NAME --bind ADDR:PORT [--advertise ADDR] [--join ADDR:PORT]...
                           [--profile fast|lan] [--key BASE64]... [--network NET]... [--control PATH]
               gossip-node ctl PATH COMMAND...
               gossip-node keygen
        """

    init(_ arguments: ArraySlice<String>) throws {
        var rest = arguments
        func value(_ flag: String) throws -> String {
            guard let next = rest.popFirst() else { throw UsageError("\(flag) needs a value") }
            return next
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--name": name = try value(flag)
            case "--bind": bind = try NodeAddress(parsing: try value(flag))
            case "--advertise": advertise = try value(flag)
            case "--join": joins.append(try NodeAddress(parsing: try value(flag)))
            case "--profile":
                switch try value(flag) {
                case "fast": configuration = .fast
                case "lan": configuration = .lan
                case let other: throw UsageError("unknown profile \(other) (fast or lan)")
                }
            case "--key": keys.append(try GossipKey(base64: try value(flag)))
            case "--network": networks.append(try value(flag))
            case "--control": control = try value(flag)
            case "-h", "--help": throw UsageError(nil)
            default: throw UsageError("unknown flag \(flag)")
            }
        }
        if name.isEmpty { throw UsageError("--name is required") }
    }
}

struct UsageError: Error {
    var message: String?
    init(_ message: String?) { self.message = message }
}

/// One JSON object a line on stdout; lines from different tasks never interleave.
final class Output: Sendable {
    private let lock = Mutex(())

    func emit(_ event: String, _ fields: [String: JSONValue] = [:]) {
        var object = fields
        object["event"] = .string(event)
        object["t"] = .int(Int64(Date().timeIntervalSince1970 * 1e9))
        write(JSONValue.object(object).encoded())
    }

    func write(_ line: String) {
        lock.withLock { _ in
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
    }
}

/// Just enough JSON to print events without a Codable type for each.
enum JSONValue: Sendable {
    case string(String)
    case int(Int64)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])
    case raw(String)

    func encoded() -> String {
        switch self {
        case .string(let s):
            let data = try! JSONEncoder().encode(s)
            return String(decoding: data, as: UTF8.self)
        case .int(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        case .array(let items): return "[" + items.map { $0.encoded() }.joined(separator: ",") + "]"
        case .object(let fields):
            return "{" + fields.keys.sorted().map { JSONValue.string($0).encoded() + ":" + fields[$0]!.encoded() }
                .joined(separator: ",") + "}"
        case .raw(let json): return json
        }
    }
}

func memberFields(_ member: Member) -> [String: JSONValue] {
    ["name": .string(member.name), "address": .string(member.address.description),
     "incarnation": .int(Int64(member.incarnation)), "status": .string(member.status.description)]
}

func describe(_ event: GossipEvent) -> (String, [String: JSONValue]) {
    switch event {
    case .memberJoined(let m): ("member-joined", memberFields(m))
    case .memberSuspected(let m): ("member-suspected", memberFields(m))
    case .memberAlive(let m): ("member-alive", memberFields(m))
    case .memberFailed(let m): ("member-failed", memberFields(m))
    case .memberLeft(let m): ("member-left", memberFields(m))
    case .memberReaped(let name): ("member-reaped", ["name": .string(name)])
    case .table(let change):
        ("table", ["kind": .string("\(change.kind)"), "network": .string(change.network), "table": .string(change.table),
                   "key": .string(change.key), "owner": .string(change.owner),
                   "value": .string(String(decoding: change.value, as: UTF8.self))])
    }
}

/// Runs one command line; returns the reply line, and whether the node should stop.
func execute(_ line: String, runtime: LiveGossipNode, output: Output) async -> (reply: String, quit: Bool) {
    let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
    guard let verb = words.first else { return ("", false) }
    func ok(_ fields: [String: JSONValue] = [:]) -> String {
        var object = fields
        object["ok"] = .bool(true)
        object["command"] = .string(verb)
        return JSONValue.object(object).encoded()
    }
    do {
        switch (verb, words.count) {
        case ("put", 5...):
            let value = words[4...].joined(separator: " ")
            // Printed before the write, so a reader can time write-to-everywhere from it.
            output.emit("put", ["network": .string(words[1]), "table": .string(words[2]), "key": .string(words[3])])
            try runtime.put(network: words[1], table: words[2], key: words[3], value: Array(value.utf8))
            return (ok(), false)
        case ("delete", 4):
            output.emit("delete", ["network": .string(words[1]), "table": .string(words[2]), "key": .string(words[3])])
            try runtime.delete(network: words[1], table: words[2], key: words[3])
            return (ok(), false)
        case ("join-network", 2):
            try runtime.joinNetwork(words[1])
            return (ok(), false)
        case ("leave-network", 2):
            try runtime.leaveNetwork(words[1])
            return (ok(), false)
        case ("dump", 1), ("dump", 3):
            let dump = try runtime.dump(network: words.count == 3 ? words[1] : nil, table: words.count == 3 ? words[2] : nil)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return (ok(["dump": .raw(String(decoding: try encoder.encode(dump), as: UTF8.self))]), false)
        case ("members", 1):
            return (ok(["members": .array(runtime.members().map { .object(memberFields($0)) })]), false)
        case ("leave", 1), ("quit", 1):
            try await runtime.leave()
            return (ok(), true)
        default:
            throw UsageError("unknown command or wrong arguments: \(line)")
        }
    } catch let error as UsageError {
        return (JSONValue.object(["ok": .bool(false), "command": .string(verb), "error": .string(error.message ?? "")]).encoded(), false)
    } catch {
        return (JSONValue.object(["ok": .bool(false), "command": .string(verb), "error": .string("\(error)")]).encoded(), false)
    }
}

/// Lines from the control socket, each with a way to answer it.
struct ControlRequest: Sendable {
    var line: String
    var answer: @Sendable (String) -> Void
}

final class ControlHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let requests: AsyncStream<ControlRequest>.Continuation

    init(requests: AsyncStream<ControlRequest>.Continuation) { self.requests = requests }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = String(buffer: unwrapInboundIn(data)).trimmingCharacters(in: .whitespacesAndNewlines)
        let channel = context.channel
        requests.yield(ControlRequest(line: line) { reply in
            var buffer = channel.allocator.buffer(capacity: reply.utf8.count + 1)
            buffer.writeString(reply + "\n")
            channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
        })
    }
}

/// Splits a byte stream into lines.
struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer
    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let newline = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 1 << 16 { throw UsageError("control line too long") }
            return .needMoreData
        }
        let line = buffer.readSlice(length: newline - buffer.readerIndex)!
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}

/// `gossip-node ctl PATH COMMAND...`: one request over the control socket.
func control(path: String, command: String) async throws {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                try channel.pipeline.syncOperations.addHandler(ReplyPrinter())
            }
        }
        .connect(unixDomainSocketPath: path).get()
    var buffer = channel.allocator.buffer(capacity: command.utf8.count + 1)
    buffer.writeString(command + "\n")
    try await channel.writeAndFlush(buffer)
    try await channel.closeFuture.get()
}

final class ReplyPrinter: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        print(String(buffer: unwrapInboundIn(data)))
    }
}

func run(_ options: Options) async throws {
    let output = Output()
    let keyring = options.keys.first.map { Keyring(primary: $0, others: Array(options.keys.dropFirst())) }
    let runtime = LiveGossipNode(name: options.name, configuration: options.configuration, keyring: keyring,
                                streamTimeout: options.configuration == .fast ? .seconds(2) : .seconds(10),
                                logger: Logger(label: "gossip-node", factory: { StreamLogHandler.standardError(label: $0) }))
    let events = runtime.events()
    let address = try await runtime.start(bind: options.bind.host, port: Int(options.bind.port), advertise: options.advertise)
    output.emit("ready", ["name": .string(options.name), "address": .string(address.description)])
    let printer = Task {
        for await event in events {
            let (name, fields) = describe(event)
            output.emit(name, fields)
        }
    }
    for network in options.networks { try runtime.joinNetwork(network) }

    let (requests, continuation) = AsyncStream.makeStream(of: ControlRequest.self)
    var controlChannel: (any Channel)?
    if let path = options.control {
        controlChannel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(ControlHandler(requests: continuation))
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
    }
    // stdin is read on a thread of its own (it blocks); its end quits only without a control socket.
    let hasControl = options.control != nil
    let reader = Thread {
        while let line = readLine() {
            continuation.yield(ControlRequest(line: line) { reply in if !reply.isEmpty { output.write(reply) } })
        }
        if !hasControl {
            continuation.yield(ControlRequest(line: "quit") { reply in output.write(reply) })
        }
    }
    reader.start()

    // Join in the background, retrying: seeds may start later than this node.
    let joiner = Task {
        guard !options.joins.isEmpty else { return }
        while !Task.isCancelled {
            do {
                let answered = try await runtime.join(options.joins)
                output.emit("joined", ["answered": .int(Int64(answered))])
                return
            } catch {
                output.emit("join-failed", ["error": .string("\(error)")])
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    for await request in requests {
        let (reply, quit) = await execute(request.line, runtime: runtime, output: output)
        request.answer(reply)
        if quit { break }
    }
    joiner.cancel()
    await runtime.shutdown()
    _ = await printer.result
    try? await controlChannel?.close()
    if let path = options.control { unlink(path) }
    output.emit("stopped")
}

let arguments = CommandLine.arguments.dropFirst()
do {
    switch arguments.first {
    case "keygen":
        print(GossipKey.random().base64)
    case "ctl":
        let rest = Array(arguments.dropFirst())
        guard rest.count >= 2 else { throw UsageError("ctl needs a socket path and a command") }
        try await control(path: rest[0], command: rest[1...].joined(separator: " "))
    default:
        try await run(try Options(arguments))
    }
} catch let error as UsageError {
    if let message = error.message { FileHandle.standardError.write(Data("gossip-node: \(message)\n".utf8)) }
    FileHandle.standardError.write(Data((Options.usage + "\n").utf8))
    exit(2)
} catch {
    FileHandle.standardError.write(Data("gossip-node: \(error)\n".utf8))
    exit(1)
}

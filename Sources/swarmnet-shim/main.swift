// swarmnet-shim: one per task, as containerd's shim. It runs `runc create`
// with pipes for the container's stdout and stderr, becomes the
// container's parent (child subreaper), writes its output to the task's
// log as Docker's json-file driver does (JSON lines, capped and rotated),
// and records the exit status when the container's init ends. It runs in
// a session of its own, so swarmnetd can restart (and adopt the task)
// while the container keeps running.
//
//   swarmnet-shim TASK_DIR RUNTIME_ARGS...
//
// TASK_DIR receives container.log (and .1, .2 … when rotated), exit.json,
// and shim.pid. The runtime's arguments are `runc … create … --pid-file
// TASK_DIR/init.pid ID`. Descriptor 3, when open, is the daemon's ready
// pipe: it gets "ok\n" once the container is created, or "error: …\n".
//
// Only Glibc: a shim per task must stay small.
#if canImport(Glibc)
import Glibc
#endif
import CExecutorShim

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    _ = "usage: swarmnet-shim TASK_DIR RUNTIME CREATE_ARGS...\n".withCString { write(2, $0, strlen($0)) }
    exit(2)
}
let taskDirectory = arguments[1]
let runtimeArguments = Array(arguments[2...])
let maxLogBytes = Int(getenv("SWARMNET_LOG_MAX_SIZE").flatMap { Int(String(cString: $0)) } ?? 10 << 20)
let maxLogFiles = Int(getenv("SWARMNET_LOG_MAX_FILES").flatMap { Int(String(cString: $0)) } ?? 3)

/// The daemon's ready pipe (descriptor 3), if it passed one.
var readyPipe: Int32 = fcntl(3, F_GETFD) >= 0 ? 3 : -1

@MainActor func report(_ line: String) {
    guard readyPipe >= 0 else { return }
    _ = line.withCString { write(readyPipe, $0, strlen($0)) }
    close(readyPipe)
    readyPipe = -1
}

@MainActor func fail(_ message: String) -> Never {
    report("error: \(message)\n")
    exit(1)
}

// MARK: - The log, as Docker's json-file driver writes it

/// `{"log":"…\n","stream":"stdout","time":"2026-12-06T20:55:00.123456789Z"}`
/// per line; a line longer than 16 KiB is split, as Docker splits it.
@MainActor struct JSONLog {
    let path: String
    var descriptor: Int32
    var size: Int

    init(path: String) {
        self.path = path
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        var info = stat()
        size = fstat(descriptor, &info) == 0 ? Int(info.st_size) : 0
    }

    mutating func append(_ line: ArraySlice<UInt8>, stream: String) {
        var record: [UInt8] = Array("{\"log\":\"".utf8)
        for byte in line {
            switch byte {
            case UInt8(ascii: "\""): record += [0x5c, 0x22]
            case UInt8(ascii: "\\"): record += [0x5c, 0x5c]
            case UInt8(ascii: "\n"): record += [0x5c, UInt8(ascii: "n")]
            case UInt8(ascii: "\r"): record += [0x5c, UInt8(ascii: "r")]
            case UInt8(ascii: "\t"): record += [0x5c, UInt8(ascii: "t")]
            case 0..<0x20, 0x7f:
                let hex = Array("0123456789abcdef".utf8)
                record += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xf)]]
            default: record.append(byte)
            }
        }
        record += Array("\",\"stream\":\"\(stream)\",\"time\":\"\(timestamp())\"}\n".utf8)
        if size + record.count > maxLogBytes, maxLogBytes > 0 { rotate() }
        var written = 0
        while written < record.count {
            let result = record.withUnsafeBytes { write(descriptor, $0.baseAddress! + written, record.count - written) }
            if result < 0 {
                if errno == EINTR { continue }
                return // a full disk loses log lines, never the task
            }
            written += result
        }
        size += record.count
    }

    /// container.log → .1 → .2 …; the oldest beyond the limit goes.
    mutating func rotate() {
        close(descriptor)
        if maxLogFiles > 1 {
            for index in stride(from: maxLogFiles - 1, to: 0, by: -1) {
                let from = index == 1 ? path : "\(path).\(index - 1)"
                rename(from, "\(path).\(index)")
            }
        } else {
            unlink(path)
        }
        descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o640)
        size = 0
    }

    func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let nanos = String(now.tv_nsec)
        return "\(parts.tm_year + 1900)-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T\(pad(parts.tm_hour, 2)):"
            + "\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(String(repeating: "0", count: 9 - nanos.count))\(nanos)Z"
    }
}

/// Splits a stream into lines for the log.
@MainActor struct LineBuffer {
    let stream: String
    var pending: [UInt8] = []

    mutating func take(_ bytes: ArraySlice<UInt8>, into log: inout JSONLog) {
        pending += bytes
        while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
            log.append(pending[...newline], stream: stream)
            pending.removeSubrange(...newline)
        }
        while pending.count >= 16384 {
            log.append(pending[..<16384], stream: stream)
            pending.removeSubrange(..<16384)
        }
    }

    mutating func flush(into log: inout JSONLog) {
        if !pending.isEmpty { log.append(pending[...], stream: stream) }
        pending = []
    }
}

// MARK: - Start

guard cex_set_child_subreaper() == 0 else { fail("prctl(PR_SET_CHILD_SUBREAPER): \(String(cString: strerror(errno)))") }
setsid()
signal(SIGPIPE, SIG_IGN)
do {
    let text = "\(getpid())\n"
    let descriptor = open(taskDirectory + "/shim.pid", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    _ = text.withCString { write(descriptor, $0, strlen($0)) }
    close(descriptor)
}

var stdoutPipe: [Int32] = [0, 0]
var stderrPipe: [Int32] = [0, 0]
guard cex_pipe_cloexec(&stdoutPipe) == 0, cex_pipe_cloexec(&stderrPipe) == 0 else { fail("pipe2: \(String(cString: strerror(errno)))") }

var argv: [UnsafeMutablePointer<CChar>?] = runtimeArguments.map { strdup($0) } + [nil]
var envp: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), nil]
let fds: [Int32] = [-1, stdoutPipe[1], stderrPipe[1]]
let runtimePid = fds.withUnsafeBufferPointer { cex_spawn(runtimeArguments[0], &argv, &envp, $0.baseAddress, 3, 0) }
guard runtimePid > 0 else { fail("cannot start \(runtimeArguments[0]): \(String(cString: strerror(-runtimePid)))") }
close(stdoutPipe[1])
close(stderrPipe[1])

var log = JSONLog(path: taskDirectory + "/container.log")
var outLines = LineBuffer(stream: "stdout")
var errLines = LineBuffer(stream: "stderr")
var streamsOpen = [true, true]
var initPid: pid_t = 0
var exitCode: Int32?
var runtimeExited = false
var drainDeadline: Double = 0
var chunk = [UInt8](repeating: 0, count: 65536)

func monotonic() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

@MainActor func readPidFile() -> pid_t {
    let descriptor = Glibc.open(taskDirectory + "/init.pid", O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return 0 }
    defer { close(descriptor) }
    var bytes = [UInt8](repeating: 0, count: 32)
    let got = bytes.withUnsafeMutableBytes { read(descriptor, $0.baseAddress!, 32) }
    return got > 0 ? pid_t(String(decoding: bytes[0..<got], as: UTF8.self).trimmingCharacters()) ?? 0 : 0
}

extension String {
    func trimmingCharacters() -> String { String(filter { !$0.isWhitespace }) }
}

// MARK: - Loop: copy output, reap children, note the init's exit

while true {
    var pollers = [pollfd(fd: streamsOpen[0] ? stdoutPipe[0] : -1, events: Int16(POLLIN), revents: 0),
                   pollfd(fd: streamsOpen[1] ? stderrPipe[0] : -1, events: Int16(POLLIN), revents: 0)]
    _ = poll(&pollers, 2, 100)
    for (index, poller) in pollers.enumerated() where poller.fd >= 0 && poller.revents != 0 {
        let got = chunk.withUnsafeMutableBytes { read(poller.fd, $0.baseAddress!, $0.count) }
        if got > 0 {
            if index == 0 { outLines.take(chunk[0..<got], into: &log) } else { errLines.take(chunk[0..<got], into: &log) }
        } else if got == 0 || (errno != EINTR && errno != EAGAIN) {
            streamsOpen[index] = false
        }
    }
    // Reap every child that ended: runc create, the container's init once
    // it is ours, and its orphans.
    while true {
        var status: Int32 = 0
        let pid = waitpid(-1, &status, WNOHANG)
        if pid <= 0 { break }
        let code = cex_wifexited(status) != 0 ? cex_wexitstatus(status) : 128 + cex_wtermsig(status)
        if pid == runtimePid {
            runtimeExited = true
            if code != 0 {
                // runc's stderr is the container's stderr pipe: its reason
                // went to the log; the daemon reads runc's own log too.
                outLines.flush(into: &log)
                errLines.flush(into: &log)
                fail("\(runtimeArguments[0]) create exited with status \(code)")
            }
            initPid = readPidFile()
            if initPid <= 0 { fail("\(runtimeArguments[0]) create did not write the container's pid") }
            report("ok \(initPid)\n")
        } else if pid == initPid {
            exitCode = code
            drainDeadline = monotonic() + 2
        }
    }
    if exitCode != nil, (!streamsOpen[0] && !streamsOpen[1]) || monotonic() > drainDeadline { break }
    if runtimeExited, initPid > 0, exitCode == nil, kill(initPid, 0) != 0, errno == ESRCH {
        // The init ended and was reaped by someone else (it cannot be, as
        // we are its subreaper, but never loop for ever).
        exitCode = 255
        drainDeadline = monotonic() + 2
    }
}
outLines.flush(into: &log)
errLines.flush(into: &log)

// exit.json, atomically: the daemon takes its presence as "the task ended".
var now = timespec()
clock_gettime(CLOCK_REALTIME, &now)
let record = "{\"exitCode\":\(exitCode ?? 255),\"finishedAt\":\"\(log.timestamp())\"}\n"
let temporary = taskDirectory + "/exit.json.tmp"
let descriptor = Glibc.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
_ = record.withCString { write(descriptor, $0, strlen($0)) }
fsync(descriptor)
close(descriptor)
rename(temporary, taskDirectory + "/exit.json")
exit(0)

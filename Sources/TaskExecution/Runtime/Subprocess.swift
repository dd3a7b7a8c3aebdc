#if canImport(Glibc)
import Glibc
#endif
import CExecutorShim

/// Child processes: the OCI runtime's commands and the task shims. Spawned
/// with posix_spawn (no fork of a threaded process), with exactly the
/// descriptors given: nothing else of the daemon's leaks into a container.
public enum Subprocess {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var command: String
        public var status: String
        public var output: String

        public var description: String {
            let text = output.trimmingTrailingWhitespace()
            return text.isEmpty ? "\(command): \(status)" : "\(command): \(status): \(text)"
        }
    }

    public struct Result: Sendable {
        public var exitCode: Int32
        public var output: [UInt8]
        public var text: String { String(decoding: output, as: UTF8.self) }
    }

    /// Starts a process. `descriptors[i]` becomes the child's descriptor i
    /// (-1: /dev/null). Returns its pid.
    public static func spawn(_ arguments: [String], descriptors: [Int32] = [-1, -1, -1], environment: [String]? = nil,
                             newSession: Bool = false) throws -> pid_t {
        let environment = environment ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let pid = descriptors.withUnsafeBufferPointer { fds in
            cex_spawn(arguments[0], &argv, &envp, fds.baseAddress, Int32(fds.count), newSession ? 1 : 0)
        }
        guard pid > 0 else {
            throw Failure(command: arguments[0], status: "cannot start: \(String(cString: strerror(-pid)))", output: "")
        }
        return pid
    }

    /// Runs a process to its end, with stdout and stderr captured together
    /// (up to 1 MiB) and a deadline after which it is killed. Blocking.
    public static func run(_ arguments: [String], timeout: Double = 60, input: [UInt8]? = nil) throws -> Result {
        var pipeEnds: [Int32] = [0, 0]
        guard cex_pipe_cloexec(&pipeEnds) == 0 else { throw Failure(command: arguments[0], status: "pipe2 failed", output: "") }
        var inputEnds: [Int32] = [-1, -1]
        if input != nil, cex_pipe_cloexec(&inputEnds) != 0 {
            close(pipeEnds[0]); close(pipeEnds[1])
            throw Failure(command: arguments[0], status: "pipe2 failed", output: "")
        }
        let pid: pid_t
        do {
            pid = try spawn(arguments, descriptors: [inputEnds[0], pipeEnds[1], pipeEnds[1]])
        } catch {
            close(pipeEnds[0]); close(pipeEnds[1])
            if input != nil { close(inputEnds[0]); close(inputEnds[1]) }
            throw error
        }
        close(pipeEnds[1])
        if let input {
            close(inputEnds[0])
            _ = input.withUnsafeBytes { write(inputEnds[1], $0.baseAddress, $0.count) }
            close(inputEnds[1])
        }
        defer { close(pipeEnds[0]) }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        let deadline = monotonicSeconds() + timeout
        var timedOut = false
        while true {
            var poller = pollfd(fd: pipeEnds[0], events: Int16(POLLIN), revents: 0)
            let remaining = deadline - monotonicSeconds()
            if remaining <= 0 {
                timedOut = true
                kill(pid, SIGKILL)
                break
            }
            let ready = poll(&poller, 1, Int32(min(remaining, 1) * 1000))
            if ready < 0, errno == EINTR { continue }
            if ready == 0 { continue }
            let got = chunk.withUnsafeMutableBytes { read(pipeEnds[0], $0.baseAddress!, $0.count) }
            if got < 0, errno == EINTR { continue }
            if got <= 0 { break }
            if output.count < 1 << 20 { output.append(contentsOf: chunk[0..<got]) }
        }
        let status = wait(pid)
        if timedOut {
            throw Failure(command: arguments.joined(separator: " "), status: "timed out after \(timeout) s",
                          output: String(decoding: output, as: UTF8.self))
        }
        return Result(exitCode: status, output: output)
    }

    /// Runs a process and returns its output; a non-zero exit is an error
    /// carrying the output (runc prints its reason there).
    @discardableResult
    public static func check(_ arguments: [String], timeout: Double = 60) throws -> String {
        let result = try run(arguments, timeout: timeout)
        guard result.exitCode == 0 else {
            throw Failure(command: arguments.prefix(4).joined(separator: " "), status: "exit status \(result.exitCode)", output: result.text)
        }
        return result.text
    }

    /// Waits for a child; returns its exit code, or 128 + the signal.
    @discardableResult
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return -1 }
        }
        return exitCode(status)
    }

    /// A wait status as a shell reports it: the exit code, or 128 + signal.
    public static func exitCode(_ status: Int32) -> Int32 {
        if cex_wifexited(status) != 0 { return cex_wexitstatus(status) }
        if cex_wifsignaled(status) != 0 { return 128 + cex_wtermsig(status) }
        return -1
    }

    static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

extension String {
    func trimmingTrailingWhitespace() -> String {
        var text = Substring(self)
        while let last = text.last, last.isWhitespace { text = text.dropLast() }
        return String(text)
    }
}

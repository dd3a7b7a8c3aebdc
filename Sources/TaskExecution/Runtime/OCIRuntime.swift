#if canImport(Glibc)
import Glibc
#endif

/// The OCI runtime's command line (runc's, and crun's, which takes the
/// same), as containerd's shim drives it: create and start are separate, so
/// the network is in place before the process runs; kill, delete, and
/// exec for health checks. Blocking: call it off the cooperative pool.
public struct OCIRuntime: Sendable {
    /// The runtime's binary (`runc`, or a path).
    public var binary: String
    /// Where the runtime keeps its state (`--root`): one per daemon, so
    /// several daemons on one machine (the test bed) do not see each
    /// other's containers.
    public var root: String

    public init(binary: String = "runc", root: String) {
        self.binary = binary
        self.root = root
    }

    /// The binary's absolute path, found on PATH.
    public var executable: String {
        if binary.hasPrefix("/") { return binary }
        for directory in ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        where access(directory + "/" + binary, X_OK) == 0 {
            return directory + "/" + binary
        }
        return binary
    }

    /// The arguments of `runc create` (run by the task's shim, which holds
    /// the container's output pipes and becomes its parent).
    public func createArguments(id: String, bundle: String, pidFile: String, logFile: String) -> [String] {
        [executable, "--root", root, "--log", logFile, "--log-format", "json", "create", "--bundle", bundle, "--pid-file", pidFile, id]
    }

    public func start(_ id: String) throws {
        try Subprocess.check([executable, "--root", root, "start", id])
    }

    /// Signals the container's init (`all`: every process in it).
    public func kill(_ id: String, signal: String, all: Bool = false) throws {
        var arguments = [executable, "--root", root, "kill"]
        if all { arguments.append("--all") }
        let result = try Subprocess.run(arguments + [id, signal], timeout: 30)
        // A container that already stopped has nothing to signal.
        if result.exitCode != 0, !result.text.contains("not running"), !result.text.contains("does not exist"),
           !result.text.contains("process already finished") {
            throw Subprocess.Failure(command: "\(binary) kill \(id) \(signal)", status: "exit status \(result.exitCode)", output: result.text)
        }
    }

    /// Removes the container's runtime state; a missing one is fine.
    public func delete(_ id: String, force: Bool = false) throws {
        var arguments = [executable, "--root", root, "delete"]
        if force { arguments.append("--force") }
        let result = try Subprocess.run(arguments + [id], timeout: 30)
        if result.exitCode != 0, !result.text.contains("does not exist"), !result.text.contains("not exist") {
            throw Subprocess.Failure(command: "\(binary) delete \(id)", status: "exit status \(result.exitCode)", output: result.text)
        }
    }

    /// Runs a command in the container (its environment, user and working
    /// directory), for health checks; output is captured.
    public func exec(_ id: String, _ command: [String], timeout: Double) throws -> Subprocess.Result {
        try Subprocess.run([executable, "--root", root, "exec", id] + command, timeout: timeout)
    }
}

// The processes `gwbench suite` starts and stops itself: gwmock, the gateway (plain, under callgrind, with the
// malloc counter preloaded), peers given as commands, and short tools (cc, strip, callgrind_control).
// Every child is tracked by PID and stopped by PID; a SIGINT, SIGTERM or SIGHUP to gwbench passes SIGTERM on to
// the children still running before gwbench dies of the signal.
#if canImport(Glibc)
import Glibc
#endif
import CShims
import GatewayIO
import Synchronization

public struct SuiteError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A child process: its stdout and stderr go to one log file, which is searched for its URL.
public final class ChildProcess: @unchecked Sendable {
    public let name: String
    public let pid: Int32
    public let logPath: String
    public let command: [String]
    /// The exit status once reaped: the exit code, or 128 + N for death by signal N.
    public private(set) var exitStatus: Int32?

    init(name: String, pid: Int32, logPath: String, command: [String]) {
        self.name = name
        self.pid = pid
        self.logPath = logPath
        self.command = command
    }

    /// Starts `executable` with `arguments`.
    /// - Parameters:
    ///   - environment: added to (and overriding) this process's environment.
    ///   - directory: the child's working directory.
    ///   - pin: pins the child to `child` from its first instruction: the calling thread takes that affinity
    ///     for the moment of `posix_spawn` (a child inherits it), then is pinned to `back` again.
    public static func spawn(
        name: String, executable: String, arguments: [String], environment: [String: String] = [:],
        directory: String? = nil, logPath: String, pin: (child: Int, back: Int)? = nil
    ) throws(SuiteError) -> ChildProcess {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        if let directory { _ = CShims_spawn_addchdir(&actions, directory) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = [executable] + arguments
        let env = mergedEnvironment(environment)
        if let pin { CPU.pinCurrentThread(to: pin.child) }
        var pid: pid_t = 0
        let result = withCStrings(argv) { cArgv in
            withCStrings(env) { cEnv in posix_spawnp(&pid, executable, &actions, &attributes, cArgv, cEnv) }
        }
        if let pin { CPU.pinCurrentThread(to: pin.back) }
        guard result == 0 else {
            throw SuiteError("cannot start \(name) (\(executable)): \(String(cString: strerror(result)))")
        }
        ChildRegistry.add(pid)
        return ChildProcess(name: name, pid: pid, logPath: logPath, command: argv)
    }

    /// The log so far.
    public var log: String { Files.read(logPath) ?? "" }

    /// The last lines of the log, for error messages.
    public func logTail(_ count: Int = 15) -> String {
        log.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).joined(separator: "\n")
    }

    /// Waits for the first `listening http://HOST:PORT` line (or, with `anyURL`, any `http://HOST:PORT`) and
    /// returns the URL.
    public func waitForURL(timeoutNs: UInt64, anyURL: Bool = false) throws(SuiteError) -> String {
        let deadline = Clock.monotonicNs() + timeoutNs
        while true {
            if let url = ChildProcess.findURL(in: log, anyURL: anyURL) { return url }
            if !isRunning {
                throw SuiteError("\(name) (pid \(pid)) exited (status \(exitStatus.map(String.init) ?? "?")) before "
                    + "printing its URL; its log (\(logPath)):\n\(logTail())")
            }
            if Clock.monotonicNs() > deadline {
                throw SuiteError("\(name) (pid \(pid)) printed no URL within \(timeoutNs / 1_000_000_000) s; its log (\(logPath)):\n\(logTail())")
            }
            usleep(20_000)
        }
    }

    /// The URL in a log: the first `listening http://…` line, or with `anyURL` the first `http://HOST:PORT`.
    public static func findURL(in text: String, anyURL: Bool = false) -> String? {
        for line in text.split(separator: "\n") {
            guard let start = line.firstRange(of: "http://") else { continue }
            if !anyURL, !line.hasPrefix("listening ") { continue }
            let url = line[start.lowerBound...].prefix { $0 != " " && $0 != "\t" && $0 != "\r" }
            let hostPort = url.dropFirst("http://".count).prefix { $0 != "/" }
            if hostPort.contains(":") { return String(url) }
        }
        return nil
    }

    /// Reaps the child if it has exited. True while it runs.
    public var isRunning: Bool {
        if exitStatus != nil { return false }
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid {
            exitStatus = ChildProcess.decode(status)
            ChildRegistry.remove(pid)
            return false
        }
        return result == 0
    }

    /// Sends `signal` (SIGTERM by default), waits up to `timeoutNs` for the exit, then SIGKILL. Returns the exit
    /// status (the exit code, or 128 + N for death by signal N).
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeoutNs: UInt64 = 15_000_000_000) -> Int32? {
        guard isRunning else { return exitStatus }
        kill(pid, signal)
        if let status = wait(timeoutNs: timeoutNs) { return status }
        kill(pid, SIGKILL)
        _ = wait(timeoutNs: 5_000_000_000)
        return exitStatus
    }

    /// Waits for the exit, up to `timeoutNs`.
    public func wait(timeoutNs: UInt64) -> Int32? {
        let deadline = Clock.monotonicNs() + timeoutNs
        while isRunning {
            if Clock.monotonicNs() > deadline { return nil }
            usleep(5_000)
        }
        return exitStatus
    }

    public func signal(_ number: Int32) { if isRunning { kill(pid, number) } }

    static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }

    static func mergedEnvironment(_ overrides: [String: String]) -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            let name = text.prefix { $0 != "=" }
            if overrides[String(name)] == nil { result.append(text) }
            pointer += 1
        }
        for (name, value) in overrides.sorted(by: { $0.key < $1.key }) { result.append("\(name)=\(value)") }
        return result
    }
}

/// A short command run to completion (cc, strip, callgrind_control), its output captured.
public enum Tool {
    public struct Outcome: Sendable {
        public var status: Int32?
        public var output: String
        public var ok: Bool { status == 0 }
    }

    /// Runs `argv` (found on PATH), waiting at most `timeoutNs`; the output is stdout and stderr together.
    public static func run(_ argv: [String], in directory: String, timeoutNs: UInt64 = 120_000_000_000) -> Outcome {
        let log = directory + "/tool-\(getpid())-\(Clock.monotonicNs()).log"
        defer { unlink(log) }
        let child: ChildProcess
        do {
            child = try ChildProcess.spawn(name: argv[0], executable: argv[0], arguments: Array(argv.dropFirst()), logPath: log)
        } catch {
            return Outcome(status: nil, output: error.description)
        }
        let status = child.wait(timeoutNs: timeoutNs) ?? child.stop(signal: SIGKILL, timeoutNs: 5_000_000_000)
        return Outcome(status: status, output: child.log)
    }

    /// The full path of `name` on PATH, or nil.
    public static func find(_ name: String) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}

/// The children still running, for the signal handler: a fixed table of PIDs (0 = free).
enum ChildRegistry {
    static let capacity = 64
    nonisolated(unsafe) static let pids: UnsafeMutablePointer<Int32> = {
        let table = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        table.initialize(repeating: 0, count: capacity)
        return table
    }()
    private static let lock = Mutex<Void>(())

    static func add(_ pid: Int32) {
        lock.withLock { _ in
            for i in 0..<capacity where pids[i] == 0 {
                pids[i] = pid
                return
            }
        }
    }

    static func remove(_ pid: Int32) {
        lock.withLock { _ in
            for i in 0..<capacity where pids[i] == pid { pids[i] = 0 }
        }
    }

    /// On SIGINT, SIGTERM or SIGHUP: SIGTERM to every child still running, then die of the signal as usual.
    static func installSignalHandlers() {
        _ = pids
        for number in [SIGINT, SIGTERM, SIGHUP] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signo in
                for i in 0..<ChildRegistry.capacity {
                    let pid = ChildRegistry.pids[i]
                    if pid > 0 { kill(pid, SIGTERM) }
                }
                signal(signo, SIG_DFL)
                raise(signo)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = 0
            sigaction(number, &action, nil)
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a peer started right after).
public func freeLoopbackPort() -> UInt16? {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { return nil }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { return nil }
    return UInt16(bigEndian: address.sin_port)
}

/// True when a TCP connection to `address` succeeds now.
public func canConnect(_ address: SocketAddress) -> Bool {
    let fd = socket(address.family, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var storage = address.storage
    let result = withUnsafePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, address.length) }
    }
    return result == 0
}

/// Calls `body` with a NULL-terminated C array of the strings.
func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return body(pointers)
}

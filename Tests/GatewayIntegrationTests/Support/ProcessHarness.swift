// Reusable pieces for integration tests that run our binaries as real processes:
// - `Spawned` starts a binary (gwmock, gateway, gwbench) with arguments and environment, waits for its
//   `listening http://HOST:PORT` line(s), and stops it with a signal, returning the exit status;
// - `RawHTTPClient` is a tiny blocking HTTP/1.1 client over a raw socket, so tests can send exact bytes
//   (pipelining, chunked bodies, malformed heads) and see exactly what comes back.
#if canImport(Glibc)
import Glibc
#endif

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Where the binaries under test are: `$GATEWAY_BIN_DIR`, else `<package root>/.build/debug`.
enum Binaries {
    static var directory: String {
        if let value = getenv("GATEWAY_BIN_DIR"), value.pointee != 0 { return String(cString: value) }
        return packageRoot + "/.build/debug"
    }

    /// The package root, found from this file's path: `<root>/Tests/GatewayIntegrationTests/Support/…`.
    static var packageRoot: String {
        var path = "\(#filePath)"
        for _ in 0..<4 {
            guard let slash = path.lastIndex(of: "/") else { return "." }
            path = String(path[..<slash])
        }
        return path
    }

    static func path(_ name: String) -> String {
        name.hasPrefix("/") ? name : directory + "/" + name
    }
}

/// A running child process. Start it with `Spawned.start`, stop it with `terminate()`.
struct Spawned: Sendable {
    let pid: pid_t
    /// The URLs of the `listening …` and `admin …` lines, in the order printed ("http://127.0.0.1:4242").
    let urls: [String]
    /// Every stdout line read while waiting for the URLs.
    let lines: [String]
    private let stdoutFD: Int32

    /// The port of the first `listening` line.
    var port: Int { Spawned.port(of: urls.first ?? "") ?? 0 }

    /// The port of the first line that starts with `prefix` ("listening", "admin").
    func port(line prefix: String) -> Int? {
        for line in lines where line.hasPrefix(prefix + " ") {
            return Spawned.port(of: String(line.dropFirst(prefix.count + 1)))
        }
        return nil
    }

    /// Starts `binary` (a name in `Binaries.directory`, or an absolute path) and waits until it has
    /// printed `readyLines` lines that begin with `listening ` or `admin `.
    /// - Parameters:
    ///   - environment: added to (and overriding) this process's environment.
    ///   - stderrPath: where the child's stderr goes; nil leaves it on ours (visible in test output).
    ///   - timeout: seconds to wait for the lines before the child is killed and this throws.
    static func start(
        _ binary: String, _ arguments: [String], environment: [String: String] = [:], readyLines: Int = 1,
        stderrPath: String? = nil, timeout: Double = 15
    ) throws -> Spawned {
        let path = Binaries.path(binary)
        guard access(path, X_OK) == 0 else {
            throw HarnessError("no executable at \(path): build it first, or set GATEWAY_BIN_DIR")
        }
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw HarnessError("pipe failed: \(errno)") }
        let readEnd = pipeFDs[0]
        let writeEnd = pipeFDs[1]
        // Close-on-exec, so other children spawned meanwhile do not hold the pipe open; dup2 to 1 clears it.
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let stderrPath {
            posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        }
        // Signals blocked in the test runner must not stay blocked in the child.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = [path] + arguments
        let env = mergedEnvironment(environment)
        var pid: pid_t = 0
        let result = withCStrings(argv) { cArgv in
            withCStrings(env) { cEnv in posix_spawn(&pid, path, &actions, &attributes, cArgv, cEnv) }
        }
        close(writeEnd)
        guard result == 0 else {
            close(readEnd)
            throw HarnessError("posix_spawn \(path) failed: \(result)")
        }

        var lines: [String] = []
        var urls: [String] = []
        var pending: [UInt8] = []
        let deadline = monotonicSeconds() + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while urls.count < readyLines {
            let remaining = deadline - monotonicSeconds()
            var pollFD = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            let ready = remaining > 0 ? poll(&pollFD, 1, Int32(remaining * 1000) + 1) : 0
            if ready == 0 || remaining <= 0 {
                kill(pid, SIGKILL)
                _ = waitStatus(pid, timeout: 5)
                close(readEnd)
                throw HarnessError("\(binary) printed no ready line within \(timeout) s; stdout so far: \(lines)")
            }
            if ready < 0 { continue }
            let count = read(readEnd, &buffer, buffer.count)
            if count <= 0 {
                let status = waitStatus(pid, timeout: 5)
                close(readEnd)
                throw HarnessError("\(binary) exited (status \(status.map(String.init) ?? "?")) before it was ready; stdout: \(lines)")
            }
            pending += buffer[0..<count]
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                lines.append(line)
                for prefix in ["listening ", "admin "] where line.hasPrefix(prefix) {
                    urls.append(String(line.dropFirst(prefix.count)))
                }
            }
        }
        return Spawned(pid: pid, urls: urls, lines: lines, stdoutFD: readEnd)
    }

    /// Sends `signal` and waits for the exit. Returns the exit code, 128 + N for death by signal N, or nil
    /// when the process outlived `timeout` (it is then killed with SIGKILL).
    @discardableResult
    func terminate(signal: Int32 = SIGTERM, timeout: Double = 10) -> Int32? {
        kill(pid, signal)
        let status = Spawned.waitStatus(pid, timeout: timeout)
        if status == nil {
            kill(pid, SIGKILL)
            _ = Spawned.waitStatus(pid, timeout: 5)
        }
        close(stdoutFD)
        return status
    }

    // MARK: Helpers

    private static func port(of url: String) -> Int? {
        guard let colon = url.lastIndex(of: ":") else { return nil }
        return Int(url[url.index(after: colon)...].prefix { $0.isNumber })
    }

    private static func waitStatus(_ pid: pid_t, timeout: Double) -> Int32? {
        let deadline = monotonicSeconds() + timeout
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                let signal = status & 0x7F
                return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
            }
            if result < 0 && errno != EINTR { return nil }
            if monotonicSeconds() > deadline { return nil }
            usleep(5_000)
        }
    }

    private static func mergedEnvironment(_ overrides: [String: String]) -> [String] {
        var result: [String] = []
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            let name = text.prefix { $0 != "=" }
            if overrides[String(name)] == nil { result.append(text) }
            pointer += 1
        }
        for (name, value) in overrides { result.append("\(name)=\(value)") }
        return result
    }
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Calls `body` with a NULL-terminated C array of the strings.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return body(pointers)
}

// MARK: - HTTP

/// One HTTP response as received.
struct HTTPResponse {
    var status: Int
    var reason: String
    var headers: [(name: String, value: String)]
    /// The body, de-chunked.
    var body: [UInt8]
    /// The payload of each HTTP chunk, in order, when the body was chunked.
    var chunks: [[UInt8]]
    /// True when the body was framed by the connection closing.
    var endedByClose: Bool

    /// The first header with this name, ignoring case.
    func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

/// Builds request bytes by hand, so that tests control every byte.
enum HTTPRequest {
    static func post(
        _ path: String, body: String, headers: [(String, String)] = [], host: String = "127.0.0.1"
    ) -> String {
        var text = "POST \(path) HTTP/1.1\r\nHost: \(host)\r\nContent-Type: application/json\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "Content-Length: \(body.utf8.count)\r\n\r\n"
        return text + body
    }

    static func get(_ path: String, headers: [(String, String)] = [], host: String = "127.0.0.1") -> String {
        var text = "GET \(path) HTTP/1.1\r\nHost: \(host)\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        return text + "\r\n"
    }
}

/// A blocking HTTP/1.1 client over one TCP connection. Bytes read past one response are kept for the
/// next, so pipelined responses can be read one by one.
final class RawHTTPClient {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var eof = false

    /// Connects to `host:port` (IPv4). `timeout` bounds every read, in seconds.
    init(port: Int, host: String = "127.0.0.1", timeout: Double = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket failed: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            throw HarnessError("connect to \(host):\(port) failed: errno \(code)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        setTimeout(timeout)
    }

    deinit { close(fd) }

    /// Changes the read timeout, in seconds.
    func setTimeout(_ seconds: Double) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Writes all the bytes.
    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw HarnessError("send failed: errno \(errno)")
            }
            offset += written
        }
    }

    func write(_ text: String) throws { try write(Array(text.utf8)) }

    /// Sends a request and reads its response.
    func send(_ request: String) throws -> HTTPResponse {
        try write(request)
        return try readResponse()
    }

    /// Reads one response (an interim 1xx one too, if that is what comes next).
    /// - Parameter toHead: the request was HEAD, so the response has no body whatever its head says.
    func readResponse(toHead: Bool = false) throws -> HTTPResponse {
        let headEnd = try readUntil([13, 10, 13, 10])
        let head = String(decoding: buffer[..<headEnd], as: UTF8.self)
        buffer.removeSubrange(..<(headEnd + 4))
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw HarnessError("malformed status line: \(statusLine)")
        }
        var response = HTTPResponse(
            status: status, reason: parts.count > 2 ? String(parts[2]) : "", headers: [], body: [], chunks: [],
            endedByClose: false)
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let value = String(line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" })
            response.headers.append((String(line[..<colon]), value))
        }
        if toHead || status < 200 || status == 204 || status == 304 { return response }
        if response.header("transfer-encoding")?.lowercased() == "chunked" {
            while true {
                let lineEnd = try readUntil([13, 10])
                let sizeText = String(decoding: buffer[..<lineEnd], as: UTF8.self).prefix { $0 != ";" }
                buffer.removeSubrange(..<(lineEnd + 2))
                guard let size = Int(sizeText, radix: 16) else { throw HarnessError("bad chunk size '\(sizeText)'") }
                if size == 0 {
                    // Trailers, then the blank line.
                    while true {
                        let end = try readUntil([13, 10])
                        buffer.removeSubrange(..<(end + 2))
                        if end == 0 { break }
                    }
                    return response
                }
                try fill(size + 2)
                let chunk = Array(buffer[..<size])
                buffer.removeSubrange(..<(size + 2))
                response.chunks.append(chunk)
                response.body += chunk
            }
        } else if let lengthText = response.header("content-length") {
            guard let length = Int(lengthText) else { throw HarnessError("bad content-length \(lengthText)") }
            try fill(length)
            response.body = Array(buffer[..<length])
            buffer.removeSubrange(..<length)
        } else {
            while !eof { try readMore() }
            response.body = buffer
            buffer.removeAll()
            response.endedByClose = true
        }
        return response
    }

    /// What the connection does next: more bytes, an orderly close, or a reset (or a timeout).
    enum Outcome: Equatable { case data(Int), closed, reset, timedOut }

    /// Waits for the next event on the connection, keeping any bytes that arrive.
    func nextOutcome() -> Outcome {
        if !buffer.isEmpty { return .data(buffer.count) }
        do {
            try readMore()
            return eof ? .closed : .data(buffer.count)
        } catch let error as ReadError {
            return error.errno == ECONNRESET ? .reset : .timedOut
        } catch {
            return .timedOut
        }
    }

    private struct ReadError: Error {
        let errno: Int32
    }

    private func readMore() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count > 0 {
                buffer += chunk[0..<count]
                return
            }
            if count == 0 {
                eof = true
                return
            }
            if errno == EINTR { continue }
            throw ReadError(errno: errno)
        }
    }

    private func fill(_ count: Int) throws {
        while buffer.count < count {
            if eof { throw HarnessError("connection closed after \(buffer.count) of \(count) bytes") }
            try readMore()
        }
    }

    private func readUntil(_ pattern: [UInt8]) throws -> Int {
        var searchFrom = 0
        while true {
            if buffer.count >= pattern.count {
                var i = searchFrom
                while i + pattern.count <= buffer.count {
                    if buffer[i] == pattern[0] && Array(buffer[i..<(i + pattern.count)]) == pattern { return i }
                    i += 1
                }
                searchFrom = max(0, buffer.count - pattern.count + 1)
            }
            if eof { throw HarnessError("connection closed before the response was complete") }
            do {
                try readMore()
            } catch let error as ReadError {
                throw HarnessError(error.errno == EAGAIN ? "read timed out" : "read failed: errno \(error.errno)")
            }
        }
    }
}

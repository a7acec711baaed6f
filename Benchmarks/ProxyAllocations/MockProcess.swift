#if canImport(Glibc)
import Glibc
#endif

/// The real `gwmock` binary in a child process, so that its allocations are NOT counted: the malloc interposer
/// counts this process only (the gateway's reactor thread and the client).
/// Started with posix_spawn (no Foundation.Process: it would keep a monitoring thread in the measured process).
final class MockProcess: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    let pid: pid_t
    let port: UInt16
    let logPath: String

    /// Starts `binary --listen 127.0.0.1:0 --threads 1` with stdout and stderr to a temp file, and waits
    /// (up to `timeoutSeconds`) for its `listening http://127.0.0.1:PORT` line.
    init(binary: String, timeoutSeconds: Int = 20) throws {
        guard access(binary, X_OK) == 0 else {
            throw Failure(description: "GWMOCK_BIN=\(binary) is not an executable file")
        }
        var template = Array("/tmp/gwmock-bench-XXXXXX".utf8CString)
        let logFD = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard logFD >= 0 else { throw Failure(description: "mkstemp failed: errno \(errno)") }
        logPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        posix_spawn_file_actions_addclose(&actions, logFD)

        let arguments = [binary, "--listen", "127.0.0.1:0", "--threads", "1"]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }

        var child: pid_t = 0
        let status = posix_spawn(&child, binary, &actions, nil, argv, environ)
        close(logFD)
        guard status == 0 else { throw Failure(description: "posix_spawn \(binary) failed: errno \(status)") }
        pid = child

        // Poll the log for the listening line.
        var found: UInt16?
        for _ in 0..<(timeoutSeconds * 50) {
            if let port = MockProcess.listeningPort(inFile: logPath) {
                found = port
                break
            }
            var exitStatus: Int32 = 0
            if waitpid(child, &exitStatus, WNOHANG) == child {
                throw Failure(description: "gwmock exited (status \(exitStatus)) before listening; log: \(logPath)")
            }
            usleep(20_000)
        }
        guard let found else {
            kill(child, SIGKILL)
            _ = waitpid(child, nil, 0)
            throw Failure(description: "gwmock printed no listening line in \(timeoutSeconds) s; log: \(logPath)")
        }
        port = found
    }

    /// SIGTERM, then SIGKILL after 5 s; reaps the child and removes the log.
    func stop() {
        kill(pid, SIGTERM)
        var exitStatus: Int32 = 0
        for _ in 0..<250 {
            if waitpid(pid, &exitStatus, WNOHANG) == pid {
                unlink(logPath)
                return
            }
            usleep(20_000)
        }
        kill(pid, SIGKILL)
        _ = waitpid(pid, &exitStatus, 0)
        unlink(logPath)
    }

    /// The PORT of the first `listening http://HOST:PORT` line in the file, if there is one yet.
    static func listeningPort(inFile path: String) -> UInt16? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&chunk, 1, chunk.count, file)
            if count <= 0 { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        let text = String(decoding: bytes, as: UTF8.self)
        for line in text.split(separator: "\n") {
            guard let range = line.firstRange(of: "listening http://") else { continue }
            let hostPort = line[range.upperBound...].prefix { !$0.isWhitespace }
            guard let colon = hostPort.lastIndex(of: ":") else { continue }
            if let port = UInt16(hostPort[hostPort.index(after: colon)...]) { return port }
        }
        return nil
    }
}

// A gwmock and a gateway in front of it, both real processes on 127.0.0.1 port 0.
#if canImport(Glibc)
import Glibc
#endif
import Foundation

struct GatewayFixture {
    let mock: Spawned
    let gateway: Spawned
    let configPath: String
    let stderrPath: String
    let directory: String

    /// Starts gwmock (with `mockArguments`) and a gateway whose config points model `gpt-4o-mini` (and
    /// `gpt-4o`, renamed upstream to `gpt-4o-2024-08-06`) at it.
    /// - Parameters:
    ///   - server: extra YAML lines inside `server:` (indented by 2), e.g. "  max_body_bytes: 1000".
    ///   - maxConnections: the provider's `max_connections`.
    ///   - upstreamPort: point the provider here instead of at the mock (e.g. a closed port).
    ///   - policy: extra top-level YAML (groups, keys, admin, store); `DIR` is replaced by the fixture's
    ///     temporary directory.
    static func start(
        mockArguments: [String] = [], server: String = "", maxConnections: Int = 64, upstreamPort: Int? = nil,
        threads: Int = 1, policy: String = "", environment: [String: String] = [:]
    ) throws -> GatewayFixture {
        let mock = try Spawned.start("gwmock", ["--listen", "127.0.0.1:0", "--threads", "1"] + mockArguments)
        let directory = NSTemporaryDirectory() + "gateway-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configPath = directory + "/gateway.yaml"
        let stderrPath = directory + "/gateway.stderr"
        let port = upstreamPort ?? mock.port
        let yaml = """
            server:
              listen: ["127.0.0.1:0"]
              threads: \(threads)
            \(server)
            providers:
              - name: mock
                kind: openai
                base_url: http://127.0.0.1:\(port)/v1
                api_key_env: TEST_PROVIDER_KEY
                max_connections: \(maxConnections)
            models:
              - name: gpt-4o-mini
                deployments: [{provider: mock, model: gpt-4o-mini}]
              - name: gpt-4o
                deployments: [{provider: mock, model: gpt-4o-2024-08-06}]
            \(policy.replacingOccurrences(of: "DIR", with: directory))
            """
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        let gateway: Spawned
        do {
            gateway = try Spawned.start(
                "gateway", ["serve", "--config", configPath],
                environment: ["TEST_PROVIDER_KEY": "sk-provider-secret"].merging(environment) { _, new in new },
                readyLines: policy.contains("admin:") ? 2 : 1, stderrPath: stderrPath)
        } catch {
            mock.terminate()
            throw error
        }
        return GatewayFixture(mock: mock, gateway: gateway, configPath: configPath, stderrPath: stderrPath, directory: directory)
    }

    func client(timeout: Double = 10) throws -> RawHTTPClient {
        try RawHTTPClient(port: gateway.port, timeout: timeout)
    }

    /// A client of the admin listener.
    func adminClient() throws -> RawHTTPClient {
        guard let port = gateway.port(line: "admin") else { throw HarnessError("no admin listener") }
        return try RawHTTPClient(port: port)
    }

    /// Stops both processes; returns the gateway's exit status.
    @discardableResult
    func stop() -> Int32? {
        let status = gateway.terminate()
        mock.terminate()
        try? FileManager.default.removeItem(atPath: directory)
        return status
    }

    var gatewayStderr: String {
        (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
    }

    /// gwmock's `/mock/stats` as JSON.
    func mockStats() throws -> [String: Any] {
        let response = try RawHTTPClient(port: mock.port).send(HTTPRequest.get("/mock/stats"))
        return try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] ?? [:]
    }

    /// The open file descriptors of the gateway process.
    var gatewayOpenFiles: Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(gateway.pid)/fd").count) ?? -1
    }

    /// The gateway's resident memory in KiB.
    var gatewayRSSKiB: Int {
        guard let status = try? String(contentsOfFile: "/proc/\(gateway.pid)/status", encoding: .utf8) else { return -1 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? -1
        }
        return -1
    }
}

/// A chat request body of about `bytes` bytes, with `model` first or last.
func chatBody(
    model: String = "gpt-4o-mini", bytes: Int = 300, modelFirst: Bool = true, stream: Bool = false, includeUsage: Bool = false
) -> String {
    let overhead = 120
    let content = String(repeating: "a", count: max(1, bytes - overhead))
    let messages = "\"messages\":[{\"role\":\"user\",\"content\":\"\(content)\"}]"
    var streamField = stream ? ",\"stream\":true" : ""
    if includeUsage { streamField += ",\"stream_options\":{\"include_usage\":true}" }
    return modelFirst ? "{\"model\":\"\(model)\",\(messages)\(streamField)}" : "{\(messages)\(streamField),\"model\":\"\(model)\"}"
}

func json(_ response: HTTPResponse) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
}

/// The `error.code` of an OpenAI-style error body.
func errorCode(_ response: HTTPResponse) -> String? {
    (json(response)["error"] as? [String: Any])?["code"] as? String
}

/// A one-connection upstream on a thread that answers every request with its own request head and body
/// as the response body, so tests can see exactly what the gateway forwarded.
final class EchoUpstream: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let received = NSLock()
    private var heads: [String] = []

    init() throws {
        (listener, port) = try bindLoopback(listening: true)
        let thread = Thread { [self] in self.serve() }
        thread.start()
    }

    var requests: [String] {
        received.lock()
        defer { received.unlock() }
        return heads
    }

    private func serve() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            let thread = Thread { [self] in self.handle(client) }
            thread.start()
        }
    }

    private func handle(_ fd: Int32) {
        defer { close(fd) }
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            // Read one request: head, then Content-Length bytes.
            var headEnd: Int?
            while headEnd == nil {
                if let range = findCRLFCRLF(buffer) { headEnd = range; break }
                let count = recv(fd, &chunk, chunk.count, 0)
                if count <= 0 { return }
                buffer += chunk[0..<count]
            }
            let head = String(decoding: buffer[..<headEnd!], as: UTF8.self)
            var length = 0
            for line in head.split(separator: "\r\n") where line.lowercased().hasPrefix("content-length:") {
                length = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
            let total = headEnd! + 4 + length
            while buffer.count < total {
                let count = recv(fd, &chunk, chunk.count, 0)
                if count <= 0 { return }
                buffer += chunk[0..<count]
            }
            let request = String(decoding: buffer[..<total], as: UTF8.self)
            buffer.removeSubrange(..<total)
            received.lock()
            heads.append(request)
            received.unlock()
            let body = Array(request.utf8)
            var response = Array("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: keep-alive\r\nx-request-id: upstream-own-id\r\ncontent-length: \(body.count)\r\n\r\n".utf8)
            response += body
            var offset = 0
            while offset < response.count {
                let sent = response[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
                if sent <= 0 { return }
                offset += sent
            }
        }
    }

    private func findCRLFCRLF(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }
}

/// Reads whatever arrives next on a raw socket (for timing tests that must see bytes as they come).
func receiveSome(_ fd: Int32) -> [UInt8] {
    var chunk = [UInt8](repeating: 0, count: 65536)
    let count = recv(fd, &chunk, chunk.count, 0)
    return count > 0 ? Array(chunk[0..<count]) : []
}

/// Binds a TCP socket to 127.0.0.1 on a free port; listens when asked. Returns the socket and its port.
func bindLoopback(listening: Bool) throws -> (Int32, Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let result = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            guard bind(fd, pointer, length) == 0 else { return -1 }
            if listening && listen(fd, 64) != 0 { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard result == 0 else {
        close(fd)
        throw HarnessError("bind to 127.0.0.1 failed: errno \(errno)")
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}

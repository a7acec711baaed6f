// A blocking HTTP/1.1 client over one TCP connection, so the tests control every byte they send
// (pipelining, chunked bodies, malformed heads) and see exactly what comes back.
#if canImport(Glibc)
import Glibc
#endif

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

struct TestResponse {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

final class AdminTestClient {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var eof = false

    init(port: Int, timeout: Double = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket failed: \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let code = errno
            close(fd)
            throw TestError("connect to 127.0.0.1:\(port) failed: errno \(code)")
        }
        var value = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw TestError("send failed: errno \(errno)")
            }
            offset += written
        }
    }

    func write(_ text: String) throws { try write(Array(text.utf8)) }

    /// Sends a request and reads its response.
    func send(_ request: String) throws -> TestResponse {
        try write(request)
        return try readResponse()
    }

    /// Reads one response framed by Content-Length (or none, for 204 and HEAD).
    func readResponse(head: Bool = false) throws -> TestResponse {
        let end = try readUntil([13, 10, 13, 10])
        let text = String(decoding: buffer[..<end], as: UTF8.self)
        buffer.removeSubrange(..<(end + 4))
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0] == "HTTP/1.1", let status = Int(parts[1]) else {
            throw TestError("malformed status line: \(statusLine)")
        }
        var response = TestResponse(status: status, headers: [], body: [])
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw TestError("malformed header line: \(line)") }
            response.headers.append((String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " })))
        }
        if head || status == 204 || status < 200 { return response }
        guard let lengthText = response.header("content-length"), let length = Int(lengthText) else {
            throw TestError("response without content-length: \(statusLine)")
        }
        try fill(length)
        response.body = Array(buffer[..<length])
        buffer.removeSubrange(..<length)
        return response
    }

    enum Outcome: Equatable { case data, closed, reset, timedOut }

    /// What the connection does next: more bytes, an orderly close, a reset, or nothing before the timeout.
    func nextOutcome() -> Outcome {
        if !buffer.isEmpty { return .data }
        do {
            try readMore()
            return eof ? .closed : .data
        } catch let error as ReadError {
            return error.errno == ECONNRESET ? .reset : .timedOut
        } catch {
            return .timedOut
        }
    }

    private struct ReadError: Error { let errno: Int32 }

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
            if eof { throw TestError("connection closed after \(buffer.count) of \(count) bytes") }
            try readMore()
        }
    }

    private func readUntil(_ pattern: [UInt8]) throws -> Int {
        while true {
            if buffer.count >= pattern.count {
                for i in 0...(buffer.count - pattern.count) where buffer[i] == pattern[0] && Array(buffer[i..<(i + pattern.count)]) == pattern {
                    return i
                }
            }
            if eof { throw TestError("connection closed before the response was complete") }
            do {
                try readMore()
            } catch let error as ReadError {
                throw TestError(error.errno == EAGAIN ? "read timed out" : "read failed: errno \(error.errno)")
            }
        }
    }
}

/// Request bytes built by hand.
enum Request {
    static func get(_ path: String, key: String? = nil, headers: [(String, String)] = []) -> String {
        make("GET", path, key: key, headers: headers, body: nil)
    }

    static func make(_ method: String, _ path: String, key: String? = nil, headers: [(String, String)] = [], body: String?) -> String {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if let key { text += "Authorization: Bearer \(key)\r\n" }
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body {
            text += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        } else {
            text += "\r\n"
        }
        return text
    }
}

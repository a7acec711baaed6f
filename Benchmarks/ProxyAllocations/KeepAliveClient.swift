#if canImport(Glibc)
import Glibc
#endif

/// The chat request of the peer figures in shared/BENCHMARKING.md (scripts/bench/chat-300.json): 300 bytes.
let chatBody300 =
    #"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a concise assistant."},"#
    + #"{"role":"user","content":"Summarise in one sentence why a lean proxy in front of language models should "#
    + #"add almost no latency, and name one way to check."}],"max_tokens":64,"temperature":0.2,"stream":false}"#

/// A blocking keep-alive HTTP/1.1 client that does not allocate per request: one request buffer built up front,
/// one receive buffer, and just enough parsing to know where the response ends (the head's `\r\n\r\n`, then
/// `content-length`, or the last chunk of a chunked body). The whole process is measured, so anything this
/// client allocated would be charged to the gateway; the "direct" benchmark measures it alone.
final class KeepAliveClient: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// What `roundTrip()` returns for a failure instead of a status (throwing would allocate an existential).
    enum Outcome {
        static let sendFailed = -1
        static let receiveFailed = -2
        static let closed = -3
        static let malformed = -4
        static let tooLarge = -5
    }

    let port: UInt16
    private var fd: Int32
    private let request: UnsafeMutableRawBufferPointer
    private let requestLength: Int
    private let response: UnsafeMutableRawBufferPointer
    /// Bytes read for the last response, head included (for the report and diagnostics).
    private(set) var lastResponseLength = 0

    init(port: UInt16, body: String = chatBody300, responseCapacity: Int = 1 << 18) throws {
        self.port = port
        let bodyBytes = Array(body.utf8)
        let head = "POST /v1/chat/completions HTTP/1.1\r\n"
            + "Host: 127.0.0.1:\(port)\r\n"
            + "Content-Type: application/json\r\n"
            + "Content-Length: \(bodyBytes.count)\r\n"
            + "\r\n"
        let bytes = Array(head.utf8) + bodyBytes
        request = .allocate(byteCount: bytes.count, alignment: 16)
        request.copyBytes(from: bytes)
        requestLength = bytes.count
        response = .allocate(byteCount: responseCapacity, alignment: 16)
        fd = -1
        try connect()
    }

    deinit {
        close()
        request.deallocate()
        response.deallocate()
    }

    var requestBytes: Int { requestLength }

    func connect() throws {
        close()
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(socketFD, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // A stuck upstream fails the benchmark after 10 s instead of hanging it.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socketFD, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(socketFD)
            throw Failure(description: "connect 127.0.0.1:\(port): errno \(code)")
        }
        fd = socketFD
    }

    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Sends the request and reads one whole response. Returns the HTTP status, or an `Outcome` (< 0).
    @inline(never)
    func roundTrip() -> Int {
        let base = request.baseAddress!
        var sent = 0
        while sent < requestLength {
            let count = send(fd, base + sent, requestLength - sent, Int32(MSG_NOSIGNAL))
            if count <= 0 {
                if count < 0 && errno == EINTR { continue }
                return Outcome.sendFailed
            }
            sent += count
        }
        return receiveResponse()
    }

    private func receiveResponse() -> Int {
        let buffer = response.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let capacity = response.count
        var filled = 0
        var headEnd = -1  // index just past "\r\n\r\n"
        var scanFrom = 0
        var bodyLength = -1  // from content-length
        var chunked = false
        var status = 0
        defer { lastResponseLength = filled }
        while true {
            if filled == capacity { return Outcome.tooLarge }
            let count = recv(fd, buffer + filled, capacity - filled, 0)
            if count == 0 { return Outcome.closed }
            if count < 0 {
                if errno == EINTR { continue }
                return Outcome.receiveFailed
            }
            filled += count

            if headEnd < 0 {
                var index = max(scanFrom, 3)
                while index < filled {
                    if buffer[index] == 10 && buffer[index - 1] == 13 && buffer[index - 2] == 10
                        && buffer[index - 3] == 13
                    {
                        headEnd = index + 1
                        break
                    }
                    index += 1
                }
                if headEnd < 0 {
                    scanFrom = filled
                    continue
                }
                // "HTTP/1.1 200 OK"
                guard headEnd > 12 else { return Outcome.malformed }
                status = 0
                for offset in 9..<12 {
                    let digit = Int(buffer[offset]) - 48
                    guard digit >= 0 && digit <= 9 else { return Outcome.malformed }
                    status = status * 10 + digit
                }
                (bodyLength, chunked) = KeepAliveClient.framing(buffer, headEnd: headEnd)
                if !chunked && bodyLength < 0 { return Outcome.malformed }
            }

            if chunked {
                // The last chunk ("0\r\n\r\n", no trailers) ends the body; one response is in flight at a time,
                // so it is at the end of what was read.
                let bodyBytes = filled - headEnd
                if bodyBytes >= 5 && KeepAliveClient.endsWithLastChunk(buffer, filled: filled)
                    && (bodyBytes == 5 || (buffer[filled - 6] == 10 && buffer[filled - 7] == 13))
                {
                    return status
                }
            } else {
                let total = headEnd + bodyLength
                if filled == total {
                    return status
                }
                if filled > total { return Outcome.malformed }
            }
        }
    }

    private static func endsWithLastChunk(_ buffer: UnsafeMutablePointer<UInt8>, filled: Int) -> Bool {
        buffer[filled - 5] == 48 && buffer[filled - 4] == 13 && buffer[filled - 3] == 10 && buffer[filled - 2] == 13
            && buffer[filled - 1] == 10
    }

    /// Scans the header lines for `content-length` and `transfer-encoding: chunked`.
    private static func framing(_ buffer: UnsafeMutablePointer<UInt8>, headEnd: Int) -> (Int, Bool) {
        var contentLength = -1
        var chunked = false
        var lineStart = 0
        while lineStart < headEnd {
            var lineEnd = lineStart
            while lineEnd < headEnd && buffer[lineEnd] != 10 { lineEnd += 1 }
            if hasPrefix(buffer + lineStart, length: lineEnd - lineStart, "content-length:") {
                var value = 0
                var index = lineStart + 15
                while index < lineEnd && buffer[index] == 32 { index += 1 }
                while index < lineEnd, buffer[index] >= 48 && buffer[index] <= 57 {
                    value = value * 10 + Int(buffer[index] - 48)
                    index += 1
                }
                contentLength = value
            } else if hasPrefix(buffer + lineStart, length: lineEnd - lineStart, "transfer-encoding:") {
                // Any transfer coding other than identity ends in "chunked" for HTTP/1.1 responses.
                var end = lineEnd
                while end > lineStart && (buffer[end - 1] == 13 || buffer[end - 1] == 32) { end -= 1 }
                chunked = end - lineStart >= 7 && hasPrefix(buffer + end - 7, length: 7, "chunked")
            }
            lineStart = lineEnd + 1
        }
        return (contentLength, chunked)
    }

    /// ASCII case-insensitive prefix test against a lowercase pattern; allocation-free (StaticString).
    private static func hasPrefix(_ bytes: UnsafeMutablePointer<UInt8>, length: Int, _ pattern: StaticString) -> Bool {
        let count = pattern.utf8CodeUnitCount
        guard length >= count else { return false }
        let patternBytes = pattern.utf8Start
        for index in 0..<count {
            var byte = bytes[index]
            if byte >= 65 && byte <= 90 { byte += 32 }
            if byte != patternBytes[index] { return false }
        }
        return true
    }

    /// The last response as text (setup and diagnostics only: allocates).
    func lastResponseText() -> String {
        let bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(response)[0..<lastResponseLength])
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What each request carries. Turned into bytes once (`RequestTemplate`), before the load starts.
public struct RequestSpec: Sendable {
    public var method = "POST"
    /// Extra headers, "Name: value" as given on the command line.
    public var headers: [(String, String)] = []
    public var apiKey: String?
    public var model = "gpt-4o-mini"
    /// A body read from a file; nil means the built-in chat request.
    public var body: [UInt8]?
    /// The size of the built-in chat request body.
    public var promptBytes = 300
    /// Ask for a streamed (SSE) response.
    public var stream = false

    public init() {}

    /// Parses "Name: value" (or "Name:value").
    public static func parseHeader(_ text: String) -> (String, String)? {
        guard let colon = text.firstIndex(of: ":") else { return nil }
        let name = text[..<colon].trimmingSpaces
        let value = text[text.index(after: colon)...].trimmingSpaces
        guard !name.isEmpty, !name.contains(" "), !value.contains("\r"), !value.contains("\n") else { return nil }
        return (String(name), String(value))
    }

    /// The body as sent: the file's bytes (with `"stream": true` put in when asked), or the built-in request.
    public func bodyBytes() -> [UInt8] {
        if let body {
            return stream ? RequestSpec.forceStream(body) : body
        }
        return RequestSpec.chatBody(model: model, stream: stream, totalBytes: promptBytes)
    }

    /// An OpenAI chat request of about `totalBytes` bytes (exactly, unless the fixed part is already longer).
    public static func chatBody(model: String, stream: Bool, totalBytes: Int) -> [UInt8] {
        let prefix = #"{"model":"\#(model)","messages":[{"role":"user","content":""#
        let suffix = #""}],"stream":\#(stream ? "true" : "false"),"max_tokens":64}"#
        let fillerCount = max(8, totalBytes - prefix.utf8.count - suffix.utf8.count)
        let words = Array("Summarise the quarterly report in three short bullet points for the team. ".utf8)
        var body = Array(prefix.utf8)
        body.reserveCapacity(prefix.utf8.count + fillerCount + suffix.utf8.count)
        for i in 0..<fillerCount { body.append(words[i % words.count]) }
        body.append(contentsOf: Array(suffix.utf8))
        return body
    }

    /// Sets `"stream": true` in a JSON object body: replaces `"stream": false`, or inserts the field first.
    static func forceStream(_ body: [UInt8]) -> [UInt8] {
        let text = String(decoding: body, as: UTF8.self)
        for spelling in [#""stream":false"#, #""stream": false"#, #""stream" : false"#] where text.contains(spelling) {
            return Array(text.replacing(spelling, with: #""stream":true"#, maxReplacements: 1).utf8)
        }
        if text.contains(#""stream""#) { return body }
        guard let brace = body.firstIndex(of: UInt8(ascii: "{")) else { return body }
        let rest = body[(brace + 1)...]
        let needsComma = rest.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\n") && $0 != UInt8(ascii: "}") })
        return Array(body[...brace]) + Array((#""stream":true"# + (needsComma ? "," : "")).utf8) + Array(rest)
    }
}

/// The bytes of one request, built once and shared read-only by every connection of a thread:
/// sending a request is a `send(2)` of this memory, with no allocation.
public final class RequestTemplate: @unchecked Sendable {
    public let bytes: UnsafeMutableRawBufferPointer
    public let headBytes: Int
    public let bodyBytes: Int
    public let isHead: Bool
    /// The same request as HTTP/2 header fields (`--h2c`, `--h2`): pseudo-headers first, names in lowercase, no
    /// connection-specific fields; ranges into `h2Storage`.
    let h2Fields: [(name: Range<Int>, value: Range<Int>)]
    let h2Storage: UnsafeMutableRawBufferPointer

    public init(spec: RequestSpec, target: BenchTarget) {
        let body = spec.bodyBytes()
        let method = spec.method.uppercased()
        isHead = method == "HEAD"
        let hasBody = !body.isEmpty && !(spec.body == nil && (method == "GET" || method == "HEAD"))
        var head = "\(method) \(target.path) HTTP/1.1\r\n"
        let userNames = Set(spec.headers.map { $0.0.lowercased() })
        if !userNames.contains("host") { head += "Host: \(target.authority)\r\n" }
        if !userNames.contains("user-agent") { head += "User-Agent: gwbench\r\n" }
        if hasBody, !userNames.contains("content-type") { head += "Content-Type: application/json\r\n" }
        if let key = spec.apiKey, !userNames.contains("authorization") { head += "Authorization: Bearer \(key)\r\n" }
        for (name, value) in spec.headers { head += "\(name): \(value)\r\n" }
        if hasBody { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        let headUTF8 = Array(head.utf8)
        headBytes = headUTF8.count
        bodyBytes = hasBody ? body.count : 0
        bytes = .allocate(byteCount: headBytes + bodyBytes, alignment: 16)
        var fields: [(String, String)] = [
            (":method", method), (":scheme", target.tls ? "https" : "http"),
            (":authority", spec.headers.last { $0.0.lowercased() == "host" }?.1 ?? target.authority), (":path", target.path),
        ]
        if !userNames.contains("user-agent") { fields.append(("user-agent", "gwbench")) }
        if hasBody, !userNames.contains("content-type") { fields.append(("content-type", "application/json")) }
        if let key = spec.apiKey, !userNames.contains("authorization") { fields.append(("authorization", "Bearer \(key)")) }
        let connectionSpecific: Set<String> = ["host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "content-length"]
        for (name, value) in spec.headers where !connectionSpecific.contains(name.lowercased()) {
            if name.lowercased() == "te" && value.lowercased() != "trailers" { continue }
            fields.append((name.lowercased(), value))
        }
        if hasBody { fields.append(("content-length", String(body.count))) }
        var storage: [UInt8] = []
        var ranges: [(name: Range<Int>, value: Range<Int>)] = []
        for (name, value) in fields {
            let nameStart = storage.count
            storage += Array(name.utf8)
            let valueStart = storage.count
            storage += Array(value.utf8)
            ranges.append((nameStart..<valueStart, valueStart..<storage.count))
        }
        h2Fields = ranges
        h2Storage = .allocate(byteCount: max(storage.count, 1), alignment: 1)
        storage.withUnsafeBytes { h2Storage.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: storage.count) }
        headUTF8.withUnsafeBytes { bytes.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: headBytes) }
        if hasBody { body.withUnsafeBytes { (bytes.baseAddress! + headBytes).copyMemory(from: $0.baseAddress!, byteCount: bodyBytes) } }
    }

    deinit {
        bytes.deallocate()
        h2Storage.deallocate()
    }

    /// The body alone, for HTTP/2's DATA frames.
    var body: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: bytes.baseAddress! + headBytes, count: bodyBytes) }

    public var count: Int { bytes.count }
    public var text: String { String(decoding: UnsafeRawBufferPointer(bytes), as: UTF8.self) }
}

extension StringProtocol {
    var trimmingSpaces: Substring {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return text
    }
}

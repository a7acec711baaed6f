#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP
import GatewayIO

/// The dynamic parts of a response body. The rest of each body is static text, so rendering is a run of
/// memcpy into the connection's pooled buffer and a few decimals: no allocation, no string building.
struct Echo {
    /// The request's `model` string contents, JSON-escaped as they came.
    var model: UnsafeRawBufferPointer
    var sequence: Int
    var created: Int
    var prompt: Int
    var completion: Int
    var chunks: Int
    var inputs: Int
}

/// Renders gwmock's responses: heads, whole bodies, and stream events.
enum MockRender {
    // MARK: Heads

    /// How the body of a response is framed.
    enum Framing {
        case length(Int)
        case chunked
        /// HTTP/1.0 streaming: the body ends when the connection closes.
        case untilClose
    }

    /// What the head says about the connection: `close`, `keep-alive` (for an HTTP/1.0 client that asked
    /// to keep it), or nothing (HTTP/1.1 keeps it by default).
    enum Connection {
        case persistent, keepAlive, close
    }

    /// The head of every response: status, type, framing and `x-mock-received-ns`.
    static func head(
        _ out: inout ByteBuffer, status: Int, contentType: StaticString, framing: Framing, receivedNs: UInt64,
        connection: Connection, retryAfter: Int = -1
    ) {
        out.append("HTTP/1.1 ")
        out.append(decimal: status)
        out.append(byte: UInt8(ascii: " "))
        let reason = HTTPStatus.reason(status)
        out.append(UnsafeRawPointer(reason.utf8Start), reason.utf8CodeUnitCount)
        out.append("\r\ncontent-type: ")
        out.append(contentType)
        switch framing {
        case .length(let count):
            out.append("\r\ncontent-length: ")
            out.append(decimal: count)
        case .chunked:
            out.append("\r\ncache-control: no-cache\r\ntransfer-encoding: chunked")
        case .untilClose:
            out.append("\r\ncache-control: no-cache")
        }
        out.append("\r\nx-mock-received-ns: ")
        out.append(decimal: Int(truncatingIfNeeded: receivedNs))
        if retryAfter >= 0 {
            out.append("\r\nretry-after: ")
            out.append(decimal: retryAfter)
        }
        switch connection {
        case .persistent: out.append("\r\n\r\n")
        case .keepAlive: out.append("\r\nconnection: keep-alive\r\n\r\n")
        case .close: out.append("\r\nconnection: close\r\n\r\n")
        }
    }

    /// The most bytes `head` writes.
    static let maxHeadBytes = 256

    // MARK: Bodies

    static func chatCompletion(_ out: inout ByteBuffer, _ e: Echo) {
        chatCompletionPrefix(&out, e)
        out.append("\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"")
        tokens(&out, e.chunks)
        out.append("\",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":")
        out.append(decimal: e.prompt)
        out.append(",\"completion_tokens\":")
        out.append(decimal: e.completion)
        out.append(",\"total_tokens\":")
        out.append(decimal: e.prompt + e.completion)
        out.append(",\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}},\"service_tier\":\"default\",\"system_fingerprint\":\"fp_gwmock\"}")
    }

    static func textCompletion(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("{\"id\":\"cmpl-mock")
        out.append(decimal: e.sequence)
        out.append("\",\"object\":\"text_completion\",\"created\":")
        out.append(decimal: e.created)
        out.append(",\"model\":\"")
        appendModel(&out, e)
        out.append("\",\"choices\":[{\"text\":\"")
        tokens(&out, e.chunks)
        out.append("\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":")
        out.append(decimal: e.prompt)
        out.append(",\"completion_tokens\":")
        out.append(decimal: e.completion)
        out.append(",\"total_tokens\":")
        out.append(decimal: e.prompt + e.completion)
        out.append("}}")
    }

    /// One small fixed vector per input.
    static func embeddings(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("{\"object\":\"list\",\"data\":[")
        for index in 0..<e.inputs {
            if index > 0 { out.append(byte: UInt8(ascii: ",")) }
            out.append("{\"object\":\"embedding\",\"index\":")
            out.append(decimal: index)
            out.append(",\"embedding\":[0.0023064255,-0.009327292,0.015797347,-0.0077780345,-0.0046922187,0.014770593,-0.010825794,0.0031026288]}")
        }
        out.append("],\"model\":\"")
        appendModel(&out, e)
        out.append("\",\"usage\":{\"prompt_tokens\":")
        out.append(decimal: e.prompt)
        out.append(",\"total_tokens\":")
        out.append(decimal: e.prompt)
        out.append("}}")
    }

    static let embeddingBytesPerInput = 160

    /// An Anthropic `message`.
    static func anthropicMessage(_ out: inout ByteBuffer, _ e: Echo) {
        anthropicMessagePrefix(&out, e)
        out.append("\",\"content\":[{\"type\":\"text\",\"text\":\"")
        tokens(&out, e.chunks)
        out.append("\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":")
        out.append(decimal: e.prompt)
        out.append(",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":")
        out.append(decimal: e.completion)
        out.append("}}")
    }

    static let modelList: StaticString = """
        {"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1721172741,"owned_by":"gwmock"},\
        {"id":"gpt-4o","object":"model","created":1715367049,"owned_by":"gwmock"},\
        {"id":"text-embedding-3-small","object":"model","created":1705948997,"owned_by":"gwmock"},\
        {"id":"claude-3-5-haiku-latest","object":"model","created":1729555200,"owned_by":"gwmock"}]}
        """

    /// An error body in the endpoint's shape: OpenAI's `{"error":{…}}` or Anthropic's `{"type":"error",…}`.
    static func error(_ out: inout ByteBuffer, status: Int, anthropic: Bool, message: StaticString) {
        if anthropic {
            out.append("{\"type\":\"error\",\"error\":{\"type\":\"")
            out.append(anthropicType(status))
            out.append("\",\"message\":\"")
            appendMessage(&out, status: status, message)
            out.append("\"}}")
        } else {
            let (type, code) = openAIType(status)
            out.append("{\"error\":{\"message\":\"")
            appendMessage(&out, status: status, message)
            out.append("\",\"type\":\"")
            out.append(type)
            out.append("\",\"param\":null,\"code\":\"")
            out.append(code)
            out.append("\"}}")
        }
    }

    private static func appendMessage(_ out: inout ByteBuffer, status: Int, _ message: StaticString) {
        out.append(message)
        out.append(" (gwmock status ")
        out.append(decimal: status)
        out.append(byte: UInt8(ascii: ")"))
    }

    static func openAIType(_ status: Int) -> (StaticString, StaticString) {
        switch status {
        case 400: ("invalid_request_error", "invalid_request")
        case 401: ("authentication_error", "invalid_api_key")
        case 403: ("permission_error", "model_not_allowed")
        case 404: ("invalid_request_error", "not_found")
        case 405: ("invalid_request_error", "method_not_allowed")
        case 408: ("invalid_request_error", "request_timeout")
        case 413: ("invalid_request_error", "request_too_large")
        case 429: ("rate_limit_error", "rate_limit_exceeded")
        case 431: ("invalid_request_error", "headers_too_large")
        case 501: ("invalid_request_error", "not_implemented")
        case 503: ("server_error", "service_unavailable")
        case 504: ("server_error", "timeout")
        case 500...599: ("server_error", "server_error")
        default: ("invalid_request_error", "mock_error")
        }
    }

    static func anthropicType(_ status: Int) -> StaticString {
        switch status {
        case 400: "invalid_request_error"
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 503, 529: "overloaded_error"
        case 500...599: "api_error"
        default: "invalid_request_error"
        }
    }

    // MARK: Stream events

    /// An OpenAI `chat.completion.chunk` with one content delta; the first one carries the role.
    static func chatChunk(_ out: inout ByteBuffer, _ e: Echo, index: Int) {
        chatChunkPrefix(&out, e)
        out.append(index == 0 ? "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"tok\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
            : "[{\"index\":0,\"delta\":{\"content\":\" tok\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n")
    }

    /// The closing chunks: `finish_reason: "stop"`, the usage chunk when asked for, and `[DONE]`.
    /// Each is a separate event, so `event` is called between them to frame each.
    static func chatFinish(_ out: inout ByteBuffer, _ e: Echo, part: Int) {
        switch part {
        case 0:
            chatChunkPrefix(&out, e)
            out.append("[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n")
        default:
            chatChunkPrefix(&out, e)
            out.append("[],\"usage\":")
            usage(&out, e)
            out.append("}\n\n")
        }
    }

    private static func chatChunkPrefix(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("data: {\"id\":\"chatcmpl-mock")
        out.append(decimal: e.sequence)
        out.append("\",\"object\":\"chat.completion.chunk\",\"created\":")
        out.append(decimal: e.created)
        out.append(",\"model\":\"")
        appendModel(&out, e)
        out.append("\",\"system_fingerprint\":\"fp_gwmock\",\"choices\":")
    }

    /// An OpenAI `text_completion` stream event; `index` -1 is the closing one, -2 the usage one.
    static func completionChunk(_ out: inout ByteBuffer, _ e: Echo, index: Int) {
        out.append("data: {\"id\":\"cmpl-mock")
        out.append(decimal: e.sequence)
        out.append("\",\"object\":\"text_completion\",\"created\":")
        out.append(decimal: e.created)
        out.append(",\"model\":\"")
        appendModel(&out, e)
        switch index {
        case -2:
            out.append("\",\"choices\":[],\"usage\":")
            usage(&out, e)
            out.append("}\n\n")
        case -1:
            out.append("\",\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n")
        case 0:
            out.append("\",\"choices\":[{\"text\":\"tok\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n")
        default:
            out.append("\",\"choices\":[{\"text\":\" tok\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}]}\n\n")
        }
    }

    static func done(_ out: inout ByteBuffer) {
        out.append("data: [DONE]\n\n")
    }

    private static func usage(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("{\"prompt_tokens\":")
        out.append(decimal: e.prompt)
        out.append(",\"completion_tokens\":")
        out.append(decimal: e.completion)
        out.append(",\"total_tokens\":")
        out.append(decimal: e.prompt + e.completion)
        out.append("}")
    }

    static func anthropicMessageStart(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock")
        out.append(decimal: e.sequence)
        out.append("\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"")
        appendModel(&out, e)
        out.append("\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":")
        out.append(decimal: e.prompt)
        out.append(",\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n")
    }

    static let anthropicBlockStart: StaticString =
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"

    static func anthropicDelta(_ out: inout ByteBuffer, index: Int) {
        out.append(index == 0
            ? "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"tok\"}}\n\n"
            : "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" tok\"}}\n\n")
    }

    static let anthropicBlockStop: StaticString =
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"

    static func anthropicMessageDelta(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":")
        out.append(decimal: e.completion)
        out.append("}}\n\n")
    }

    static let anthropicMessageStop: StaticString = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

    // MARK: Tool calls (`x-mock-tool-call`)

    static let toolName: StaticString = "get_weather"
    /// The call's arguments; streams send them in `toolFragmentBytes` pieces, each escaped on its own.
    static let toolArguments: StaticString = #"{"location":"Paris, France","days":3,"units":"celsius"}"#
    static let toolFragmentBytes = 8
    static var toolFragments: Int { (toolArguments.utf8CodeUnitCount + toolFragmentBytes - 1) / toolFragmentBytes }

    /// Appends piece `index` of the arguments (all of them for -1) as JSON string contents.
    private static func toolArgumentsEscaped(_ out: inout ByteBuffer, fragment index: Int) {
        let all = UnsafeRawBufferPointer(start: toolArguments.utf8Start, count: toolArguments.utf8CodeUnitCount)
        let range = index < 0 ? 0..<all.count : (index * toolFragmentBytes)..<min(all.count, (index + 1) * toolFragmentBytes)
        for byte in all[range] {
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { out.append(byte: UInt8(ascii: "\\")) }
            out.append(byte: byte)
        }
    }

    static func chatToolCompletion(_ out: inout ByteBuffer, _ e: Echo) {
        chatCompletionPrefix(&out, e)
        out.append("\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_mock")
        out.append(decimal: e.sequence)
        out.append("\",\"type\":\"function\",\"function\":{\"name\":\"")
        out.append(toolName)
        out.append("\",\"arguments\":\"")
        toolArgumentsEscaped(&out, fragment: -1)
        out.append("\"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":")
        usage(&out, e)
        out.append("}")
    }

    static func anthropicToolMessage(_ out: inout ByteBuffer, _ e: Echo) {
        anthropicMessagePrefix(&out, e)
        out.append("\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_mock")
        out.append(decimal: e.sequence)
        out.append("\",\"name\":\"")
        out.append(toolName)
        out.append("\",\"input\":")
        out.append(toolArguments)
        out.append("}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":")
        out.append(decimal: e.prompt)
        out.append(",\"output_tokens\":")
        out.append(decimal: e.completion)
        out.append("}}")
    }

    /// Stream group `index` of a tool call: 0 opens the call, 1... carry the argument pieces.
    static func chatToolChunk(_ out: inout ByteBuffer, _ e: Echo, index: Int) {
        chatChunkPrefix(&out, e)
        if index == 0 {
            out.append("[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_mock")
            out.append(decimal: e.sequence)
            out.append("\",\"type\":\"function\",\"function\":{\"name\":\"")
            out.append(toolName)
            out.append("\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n")
        } else {
            out.append("[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"")
            toolArgumentsEscaped(&out, fragment: index - 1)
            out.append("\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n")
        }
    }

    static func chatToolFinish(_ out: inout ByteBuffer, _ e: Echo) {
        chatChunkPrefix(&out, e)
        out.append("[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n")
    }

    static func anthropicToolBlockStart(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_mock")
        out.append(decimal: e.sequence)
        out.append("\",\"name\":\"")
        out.append(toolName)
        out.append("\",\"input\":{}}}\n\n")
    }

    static func anthropicToolDelta(_ out: inout ByteBuffer, fragment: Int) {
        out.append("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"")
        toolArgumentsEscaped(&out, fragment: fragment)
        out.append("\"}}\n\n")
    }

    static func anthropicToolMessageDelta(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":")
        out.append(decimal: e.completion)
        out.append("}}\n\n")
    }

    // MARK: Pieces

    /// `{"id":"chatcmpl-mockN","object":"chat.completion","created":T,"model":"M` (the string still open).
    private static func chatCompletionPrefix(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("{\"id\":\"chatcmpl-mock")
        out.append(decimal: e.sequence)
        out.append("\",\"object\":\"chat.completion\",\"created\":")
        out.append(decimal: e.created)
        out.append(",\"model\":\"")
        appendModel(&out, e)
    }

    /// `{"id":"msg_mockN","type":"message","role":"assistant","model":"M` (the string still open).
    private static func anthropicMessagePrefix(_ out: inout ByteBuffer, _ e: Echo) {
        out.append("{\"id\":\"msg_mock")
        out.append(decimal: e.sequence)
        out.append("\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"")
        appendModel(&out, e)
    }

    @inline(__always)
    private static func appendModel(_ out: inout ByteBuffer, _ e: Echo) {
        if let base = e.model.baseAddress, e.model.count > 0 { out.append(base, e.model.count) }
    }

    private static let tokenRun: StaticString =
        " tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok tok"

    /// "tok tok … tok": `count` words, the text of all the stream's deltas joined.
    static func tokens(_ out: inout ByteBuffer, _ count: Int) {
        guard count > 0 else { return }
        out.append("tok")
        var remaining = (count - 1) * 4
        let run = UnsafeRawPointer(tokenRun.utf8Start)
        while remaining > 0 {
            let piece = min(remaining, tokenRun.utf8CodeUnitCount)
            out.append(run, piece)
            remaining -= piece
        }
    }
}

extension ByteBuffer {
    /// Starts an HTTP chunk: leaves room for its size line, which `endChunk` fills in.
    @inline(__always)
    mutating func beginChunk() -> Int {
        let start = writerIndex
        writerIndex += 8
        return start
    }

    /// Ends the chunk begun at `start`: writes "SIZE\r\n" before the data and "\r\n" after it.
    mutating func endChunk(_ start: Int) {
        let dataStart = start + 8
        let count = writerIndex - dataStart
        var digits = 1
        while count >> (4 * digits) != 0 { digits += 1 }
        let line = digits + 2
        let base = self.base!
        if line != 8 { memmove(base + start + line, base + dataStart, count) }
        var value = count
        for i in stride(from: digits - 1, through: 0, by: -1) {
            let nibble = value & 0xF
            (base + start + i).storeBytes(of: nibble < 10 ? UInt8(ascii: "0") + UInt8(nibble) : UInt8(ascii: "a") + UInt8(nibble - 10), as: UInt8.self)
            value >>= 4
        }
        (base + start + digits).storeBytes(of: UInt8(ascii: "\r"), as: UInt8.self)
        (base + start + digits + 1).storeBytes(of: UInt8(ascii: "\n"), as: UInt8.self)
        writerIndex = start + line + count
        append("\r\n")
    }
}

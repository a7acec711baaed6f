import GatewayJSON

/// Translates an Anthropic Messages event stream into an OpenAI chat completion chunk stream, chunk by chunk.
///
/// - `message_start` → a first chunk with `role: assistant`;
/// - text deltas → `content` deltas;
/// - a `tool_use` block → a `tool_calls` delta with its index, id, name and empty arguments, then one arguments
///   delta per `input_json_delta`, in order;
/// - `message_delta` → a chunk with the `finish_reason`;
/// - `message_stop` → a chunk with no choices and the `usage`, then `data: [DONE]`;
/// - `error` → `data: {"error":{…}}`, which OpenAI's SDKs raise; nothing follows it.
///
/// Thinking blocks and `ping`s are dropped. An event whose data is not JSON, or a stream that ends before the
/// message did, ends the output with an error chunk.
public final class AnthropicSSEToOpenAI {
    private let clientModel: String
    private let created: Int64
    private var parser = SSEParser()
    private var id = ""
    /// OpenAI's tool call index of each Anthropic `tool_use` block, by block index.
    private var toolCallIndex: [Int64: Int64] = [:]
    private var finishReason: String?
    private var finished = false

    /// The tokens the upstream reported so far: input from `message_start`, output (and, in newer API versions,
    /// input) from `message_delta`. Nil until the stream reports any.
    public private(set) var usage: TokenUsage?

    /// - Parameters:
    ///   - clientModel: the model name the client asked for, written in every chunk.
    ///   - created: the Unix time in seconds for every chunk's `created`.
    public init(clientModel: String, created: Int64) {
        self.clientModel = clientModel
        self.created = created
    }

    /// Appends the translation of every event that `bytes` completes to `out`; a partial event waits for the rest.
    public func feed(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        parser.feed(bytes) { event in handle(event, into: &out) }
    }

    /// Ends the output at the upstream's end of body: normally once the message stopped, with an error chunk when
    /// the stream was cut short.
    public func finish(into out: inout [UInt8]) {
        guard !finished else { return }
        if finishReason != nil {
            complete(into: &out)
        } else {
            fail("The upstream stream ended before the message was complete.", type: "upstream_error", into: &out)
        }
    }

    private func handle(_ event: SSEParser.Event, into out: inout [UInt8]) {
        guard !finished else { return }
        guard let json = event.data.withUnsafeBytes({ JSONValue.parse(bytes: $0) }) else {
            fail("The upstream sent an event that is not JSON.", type: "upstream_error", into: &out)
            return
        }
        switch json["type"]?.stringValue ?? event.name {
        case "message_start":
            let message = json["message"]
            id = message?["id"]?.stringValue ?? ""
            if let reported = TokenUsage.anthropic(message?["usage"]) { usage = reported }
            chunk(delta: [("role", .string("assistant")), ("content", .string(""))], into: &out)
        case "content_block_start":
            let block = json["content_block"]
            switch block?["type"]?.stringValue {
            case "text"?:
                if let text = block?["text"]?.stringValue, !text.isEmpty { chunk(delta: [("content", .string(text))], into: &out) }
            case "tool_use"?:
                let index = Int64(toolCallIndex.count)
                toolCallIndex[json["index"]?.int64Value ?? -1] = index
                chunk(toolCall: [
                    ("index", .int(index)),
                    ("id", .string(block?["id"]?.stringValue ?? "")),
                    ("type", .string("function")),
                    ("function", .object([("name", .string(block?["name"]?.stringValue ?? "")), ("arguments", .string(""))])),
                ], into: &out)
            default:
                break
            }
        case "content_block_delta":
            let delta = json["delta"]
            switch delta?["type"]?.stringValue {
            case "text_delta"?:
                if let text = delta?["text"]?.stringValue, !text.isEmpty { chunk(delta: [("content", .string(text))], into: &out) }
            case "input_json_delta"?:
                guard let index = toolCallIndex[json["index"]?.int64Value ?? -1],
                      let fragment = delta?["partial_json"]?.stringValue, !fragment.isEmpty else { break }
                chunk(toolCall: [("index", .int(index)), ("function", .object([("arguments", .string(fragment))]))], into: &out)
            default:
                break
            }
        case "message_delta":
            // Counts in message_delta are cumulative: they replace what message_start said.
            if let reported = TokenUsage.anthropic(json["usage"]) {
                var merged = usage ?? reported
                if json["usage"]?["output_tokens"] != nil { merged.completionTokens = reported.completionTokens }
                if json["usage"]?["input_tokens"] != nil { merged.promptTokens = reported.promptTokens }
                usage = merged
            }
            let reason = StopReason.openAI(fromAnthropic: json["delta"]?["stop_reason"]?.stringValue ?? "end_turn")
            finishReason = reason
            chunk(delta: [], finishReason: reason, into: &out)
        case "message_stop":
            if finishReason == nil {
                finishReason = "stop"
                chunk(delta: [], finishReason: "stop", into: &out)
            }
            complete(into: &out)
        case "error":
            let error = json["error"]
            fail(
                error?["message"]?.stringValue ?? ErrorShape.unreadableMessage,
                type: error?["type"]?.stringValue ?? "upstream_error",
                into: &out
            )
        default:
            break   // ping, content_block_stop, and event types of later API versions
        }
    }

    /// One `chat.completion.chunk` with a single choice.
    private func chunk(delta: [(String, JSONValue)], finishReason: String? = nil, into out: inout [UInt8]) {
        let choice: JSONValue = .object([
            ("index", .int(0)),
            ("delta", .object(delta)),
            ("logprobs", .null),
            ("finish_reason", finishReason.map(JSONValue.string) ?? .null),
        ])
        SSEWriter.data(envelope(choices: [choice]).serialized(), into: &out)
    }

    private func chunk(toolCall: [(String, JSONValue)], into out: inout [UInt8]) {
        chunk(delta: [("tool_calls", .array([.object(toolCall)]))], into: &out)
    }

    private func envelope(choices: [JSONValue], usage: TokenUsage? = nil) -> JSONValue {
        var out = ObjectBuilder()
        out.add("id", .string(id))
        out.add("object", .string("chat.completion.chunk"))
        out.add("created", .int(created))
        out.add("model", .string(clientModel))
        out.add("choices", .array(choices))
        out.add("usage", usage?.openAIJSON)
        return out.value
    }

    /// The usage chunk (no choices), as OpenAI sends it with `include_usage`, then `[DONE]`.
    private func complete(into out: inout [UInt8]) {
        let reported = usage ?? TokenUsage(promptTokens: 0, completionTokens: 0)
        SSEWriter.data(envelope(choices: [], usage: reported).serialized(), into: &out)
        out.append(contentsOf: "data: [DONE]\n\n".utf8)
        finished = true
    }

    private func fail(_ message: String, type: String, into out: inout [UInt8]) {
        SSEWriter.data(ErrorShape.openAI(message: message, type: type).serialized(), into: &out)
        finished = true
    }
}

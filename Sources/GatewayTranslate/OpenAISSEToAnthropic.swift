import GatewayJSON

/// Translates an OpenAI chat completion chunk stream into an Anthropic Messages event stream, chunk by chunk.
///
/// - the first chunk → `message_start`. OpenAI reports usage only at the end, so its `usage` holds zeros (or
///   what the first chunk reported); the final counts, input and output tokens, arrive in `message_delta`;
/// - `content` (or `refusal`) deltas → a text block: `content_block_start`, `text_delta`s;
/// - each tool call → a `tool_use` block with the call's id and name, then one `input_json_delta` per arguments
///   fragment, in order;
/// - a new block first stops the open one (`content_block_stop`), as Anthropic streams one block at a time;
/// - `finish_reason` → the stop reason, written with the usage in `message_delta` once the usage chunk or
///   `[DONE]` arrives, then `message_stop`;
/// - `{"error":{…}}` → an `error` event; nothing follows it.
///
/// OpenAI and vLLM stream each tool call whole before the next. A fragment for a call whose block was already
/// stopped cannot be placed, and ends the output with an error event rather than corrupting the arguments.
public final class OpenAISSEToAnthropic {
    private enum OpenBlock: Equatable {
        case none
        case text(block: Int64)
        case toolCall(index: Int64, block: Int64)
    }

    private let clientModel: String
    private var parser = SSEParser()
    private var started = false
    private var openBlock = OpenBlock.none
    private var nextBlock: Int64 = 0
    private var startedToolCalls: Set<Int64> = []
    private var stopReason: String?
    private var finished = false

    /// The tokens the upstream reported, from its usage chunk. Nil until it arrives (an upstream that was not asked
    /// for `include_usage` reports none).
    public private(set) var usage: TokenUsage?

    /// - Parameter clientModel: the model name the client asked for, written in `message_start`.
    public init(clientModel: String) {
        self.clientModel = clientModel
    }

    /// Appends the translation of every event that `bytes` completes to `out`; a partial event waits for the rest.
    public func feed(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        parser.feed(bytes) { event in handle(event, into: &out) }
    }

    /// Ends the output at the upstream's end of body: normally once a finish reason arrived (even without
    /// `[DONE]`), with an error event when the stream was cut short.
    public func finish(into out: inout [UInt8]) {
        guard !finished else { return }
        if stopReason != nil {
            complete(into: &out)
        } else {
            stopBlock(into: &out)
            fail("The upstream stream ended before the response was complete.", into: &out)
        }
    }

    private func handle(_ event: SSEParser.Event, into out: inout [UInt8]) {
        guard !finished else { return }
        if event.data.elementsEqual("[DONE]".utf8) {
            complete(into: &out)
            return
        }
        guard let chunk = event.data.withUnsafeBytes({ JSONValue.parse(bytes: $0) }), chunk.objectMembers != nil else {
            fail("The upstream sent an event that is not a JSON object.", into: &out)
            return
        }
        if let error = chunk["error"], !error.isNull {
            fail(error["message"]?.stringValue ?? error.stringValue ?? ErrorShape.unreadableMessage, into: &out)
            return
        }
        if let reported = TokenUsage.openAI(chunk["usage"]) { usage = reported }
        if !started { start(id: chunk["id"]?.stringValue ?? "", into: &out) }
        // One choice: translated requests never ask for more.
        guard let choice = chunk["choices"]?.arrayValue?.first else { return }
        let delta = choice["delta"]
        for key in ["content", "refusal"] {
            if let text = delta?[key]?.stringValue, !text.isEmpty { appendText(text, into: &out) }
        }
        for call in delta?["tool_calls"]?.arrayValue ?? [] {
            guard appendToolCall(call, into: &out) else { return }
        }
        if let reason = choice["finish_reason"]?.stringValue {
            stopBlock(into: &out)
            stopReason = StopReason.anthropic(fromOpenAI: reason)
        }
    }

    private func start(id: String, into out: inout [UInt8]) {
        started = true
        let message: JSONValue = .object([
            ("id", .string(id)),
            ("type", .string("message")),
            ("role", .string("assistant")),
            ("model", .string(clientModel)),
            ("content", .array([])),
            ("stop_reason", .null),
            ("stop_sequence", .null),
            ("usage", (usage ?? TokenUsage(promptTokens: 0, completionTokens: 0)).anthropicJSON),
        ])
        write("message_start", [("message", message)], into: &out)
    }

    private func appendText(_ text: String, into out: inout [UInt8]) {
        let block: Int64
        if case let .text(open) = openBlock {
            block = open
        } else {
            block = startBlock(.object([("type", .string("text")), ("text", .string(""))]), into: &out)
            openBlock = .text(block: block)
        }
        write("content_block_delta", [
            ("index", .int(block)),
            ("delta", .object([("type", .string("text_delta")), ("text", .string(text))])),
        ], into: &out)
    }

    /// Starts the call's block on its first fragment, then passes its arguments on.
    /// - Returns: false when the fragment cannot be placed and the output ended with an error.
    private func appendToolCall(_ call: JSONValue, into out: inout [UInt8]) -> Bool {
        let index = call["index"]?.int64Value ?? 0
        let block: Int64
        if case let .toolCall(openIndex, openBlockIndex) = openBlock, openIndex == index {
            block = openBlockIndex
        } else if startedToolCalls.contains(index) {
            stopBlock(into: &out)
            fail("The upstream interleaved the arguments of tool call \(index) with a later call.", into: &out)
            return false
        } else {
            startedToolCalls.insert(index)
            block = startBlock(.object([
                ("type", .string("tool_use")),
                ("id", .string(call["id"]?.stringValue ?? "")),
                ("name", .string(call["function"]?["name"]?.stringValue ?? "")),
                ("input", .object([])),
            ]), into: &out)
            openBlock = .toolCall(index: index, block: block)
        }
        if let fragment = call["function"]?["arguments"]?.stringValue, !fragment.isEmpty {
            write("content_block_delta", [
                ("index", .int(block)),
                ("delta", .object([("type", .string("input_json_delta")), ("partial_json", .string(fragment))])),
            ], into: &out)
        }
        return true
    }

    /// Stops the open block, then starts one.
    /// - Returns: the new block's index.
    private func startBlock(_ contentBlock: JSONValue, into out: inout [UInt8]) -> Int64 {
        stopBlock(into: &out)
        let block = nextBlock
        nextBlock += 1
        write("content_block_start", [("index", .int(block)), ("content_block", contentBlock)], into: &out)
        return block
    }

    private func stopBlock(into out: inout [UInt8]) {
        switch openBlock {
        case .none: return
        case let .text(block), let .toolCall(_, block):
            write("content_block_stop", [("index", .int(block))], into: &out)
        }
        openBlock = .none
    }

    /// `message_delta` with the stop reason and the final usage, then `message_stop`.
    private func complete(into out: inout [UInt8]) {
        if !started { start(id: "", into: &out) }
        stopBlock(into: &out)
        write("message_delta", [
            ("delta", .object([("stop_reason", .string(stopReason ?? "end_turn")), ("stop_sequence", .null)])),
            ("usage", (usage ?? TokenUsage(promptTokens: 0, completionTokens: 0)).anthropicJSON),
        ], into: &out)
        write("message_stop", [], into: &out)
        finished = true
    }

    private func fail(_ message: String, into out: inout [UInt8]) {
        SSEWriter.event("error", ErrorShape.anthropic(message: message, type: "api_error").serialized(), into: &out)
        finished = true
    }

    /// An event named `type`, whose data carries the same `type` first, as Anthropic writes them.
    private func write(_ type: String, _ members: [(String, JSONValue)], into out: inout [UInt8]) {
        SSEWriter.event(type, JSONValue.object([("type", .string(type))] + members).serialized(), into: &out)
    }
}

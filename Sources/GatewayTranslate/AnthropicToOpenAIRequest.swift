import GatewayJSON

/// From the Anthropic shape to the OpenAI shape: a client's messages request, an upstream's answer.
public enum AnthropicToOpenAI {
    /// Turns an Anthropic `/v1/messages` request into an OpenAI `/v1/chat/completions` request.
    ///
    /// The top-level `system` becomes the first message. A user turn's `tool_result` blocks become `tool` messages,
    /// placed before the rest of the turn because OpenAI wants them right after the assistant's tool calls.
    /// `max_tokens` is written as `max_completion_tokens`, which OpenAI's newer models require and vLLM accepts.
    /// A streamed request asks for `stream_options.include_usage`, so that the stream ends with its usage.
    /// Parameters OpenAI lacks (`top_k`, `thinking`, `service_tier`) are dropped; thinking blocks are left out.
    /// - Parameters:
    ///   - body: the client's JSON body.
    ///   - upstreamModel: the model id the deployment knows, written as `model`.
    /// - Returns: the OpenAI JSON body.
    /// - Throws: `TranslationError` naming the field that cannot be translated.
    public static func request(_ body: UnsafeRawBufferPointer, upstreamModel: String) throws(TranslationError) -> [UInt8] {
        let request = try JSONFields.object(body, name: "body")
        guard let messages = try JSONFields.optionalArray(request["messages"], "messages"), !messages.isEmpty else {
            throw TranslationError(field: "messages", "must be a non-empty array")
        }

        var out = ObjectBuilder()
        out.add("model", .string(upstreamModel))
        var openAIMessages: [JSONValue] = []
        let system = try JSONFields.texts(request["system"], "system")
        if !system.isEmpty {
            openAIMessages.append(.object([("role", .string("system")), ("content", content(texts: system))]))
        }
        for (position, message) in messages.enumerated() {
            let field = "messages[\(position)]"
            _ = try JSONFields.object(message, field)
            switch try JSONFields.string(message["role"], field + ".role") {
            case "user": openAIMessages += try userMessages(message["content"], field + ".content")
            case "assistant": openAIMessages.append(try assistantMessage(message["content"], field + ".content"))
            case let role: throw TranslationError(field: field + ".role", "must be user or assistant, not \"\(role)\"")
            }
        }
        out.add("messages", .array(openAIMessages))
        out.add("max_completion_tokens", try JSONFields.optionalPositiveInt(request["max_tokens"], "max_tokens").map(JSONValue.int))
        out.add("temperature", try JSONFields.optionalNumber(request["temperature"], "temperature"))
        out.add("top_p", try JSONFields.optionalNumber(request["top_p"], "top_p"))
        if let stops = try JSONFields.optionalArray(request["stop_sequences"], "stop_sequences") {
            guard stops.allSatisfy({ $0.stringValue != nil }) else {
                throw TranslationError(field: "stop_sequences", "must be an array of strings")
            }
            out.add("stop", .array(stops))
        }
        if let stream = try JSONFields.optionalBool(request["stream"], "stream") {
            out.add("stream", .bool(stream))
            if stream { out.add("stream_options", .object([("include_usage", .bool(true))])) }
        }
        if let tools = try JSONFields.optionalArray(request["tools"], "tools") {
            out.add("tools", .array(try tools.enumerated().map { (position, tool) throws(TranslationError) in
                try openAITool(tool, "tools[\(position)]")
            }))
        }
        if let choice = try JSONFields.optionalObject(request["tool_choice"], "tool_choice") {
            out.add("tool_choice", try toolChoice(choice))
            if try JSONFields.optionalBool(choice["disable_parallel_tool_use"], "tool_choice.disable_parallel_tool_use") == true {
                out.add("parallel_tool_calls", .bool(false))
            }
        }
        if let metadata = try JSONFields.optionalObject(request["metadata"], "metadata"),
           let user = try JSONFields.optionalString(metadata["user_id"], "metadata.user_id") {
            out.add("user", .string(user))
        }
        return out.value.serialized()
    }

    /// OpenAI content from texts: one text as a string, several as text parts (so that none is lost or merged).
    static func content(texts: [String]) -> JSONValue {
        texts.count == 1 ? .string(texts[0]) : .array(texts.map(JSONValue.textBlock))
    }

    /// A user turn: its tool results as `tool` messages, then its text and images as one user message.
    private static func userMessages(_ content: JSONValue?, _ field: String) throws(TranslationError) -> [JSONValue] {
        guard let blocks = content?.arrayValue else {
            let texts = try JSONFields.texts(content, field)
            return texts.isEmpty ? [] : [.object([("role", .string("user")), ("content", Self.content(texts: texts))])]
        }
        var toolMessages: [JSONValue] = []
        var parts: [JSONValue] = []
        for (position, block) in blocks.enumerated() {
            let blockField = "\(field)[\(position)]"
            switch try JSONFields.string(block["type"], blockField + ".type") {
            case "text":
                let text = try JSONFields.string(block["text"], blockField + ".text")
                if !text.isEmpty { parts.append(.textBlock(text)) }
            case "image":
                parts.append(try Images.openAIPart(fromAnthropicBlock: block, blockField))
            case "tool_result":
                let texts = try JSONFields.texts(block["content"], blockField + ".content")
                toolMessages.append(.object([
                    ("role", .string("tool")),
                    ("tool_call_id", .string(try JSONFields.string(block["tool_use_id"], blockField + ".tool_use_id"))),
                    ("content", texts.isEmpty ? .string("") : Self.content(texts: texts)),
                ]))
            case let other:
                throw TranslationError(field: blockField + ".type", "unsupported content block \"\(other)\"")
            }
        }
        guard !parts.isEmpty else { return toolMessages }
        // A lone text stays a plain string, as most clients write it.
        let userContent: JSONValue = parts.count == 1 && parts[0]["type"] == .string("text") ? parts[0]["text"]! : .array(parts)
        return toolMessages + [.object([("role", .string("user")), ("content", userContent)])]
    }

    /// An assistant turn: its text as `content`, its `tool_use` blocks as `tool_calls` with the input as JSON text.
    private static func assistantMessage(_ content: JSONValue?, _ field: String) throws(TranslationError) -> JSONValue {
        var texts: [String] = []
        var toolCalls: [JSONValue] = []
        if let blocks = content?.arrayValue {
            for (position, block) in blocks.enumerated() {
                let blockField = "\(field)[\(position)]"
                switch try JSONFields.string(block["type"], blockField + ".type") {
                case "text":
                    let text = try JSONFields.string(block["text"], blockField + ".text")
                    if !text.isEmpty { texts.append(text) }
                case "tool_use":
                    let input = try JSONFields.optionalObject(block["input"], blockField + ".input") ?? .object([])
                    toolCalls.append(.object([
                        ("id", .string(try JSONFields.string(block["id"], blockField + ".id"))),
                        ("type", .string("function")),
                        ("function", .object([
                            ("name", .string(try JSONFields.string(block["name"], blockField + ".name"))),
                            ("arguments", .string(String(decoding: input.serialized(), as: UTF8.self))),
                        ])),
                    ]))
                case "thinking", "redacted_thinking":
                    continue   // the model's own reasoning, which an OpenAI upstream cannot take back
                case let other:
                    throw TranslationError(field: blockField + ".type", "unsupported content block \"\(other)\"")
                }
            }
        } else {
            texts = try JSONFields.texts(content, field)
        }
        var message = ObjectBuilder()
        message.add("role", .string("assistant"))
        message.add("content", texts.isEmpty ? (toolCalls.isEmpty ? .string("") : .null) : Self.content(texts: texts))
        if !toolCalls.isEmpty { message.add("tool_calls", .array(toolCalls)) }
        return message.value
    }

    /// `{name, description, input_schema}` as `{type: function, function: {name, description, parameters}}`.
    private static func openAITool(_ tool: JSONValue, _ field: String) throws(TranslationError) -> JSONValue {
        _ = try JSONFields.object(tool, field)
        // Server tools (web search, code execution, …) run at Anthropic and have no OpenAI equivalent.
        if let type = try JSONFields.optionalString(tool["type"], field + ".type"), type != "custom" {
            throw TranslationError(field: field + ".type", "unsupported tool type \"\(type)\"")
        }
        var function = ObjectBuilder()
        function.add("name", .string(try JSONFields.string(tool["name"], field + ".name")))
        function.add("description", try JSONFields.optionalString(tool["description"], field + ".description").map(JSONValue.string))
        function.add("parameters", try JSONFields.object(tool["input_schema"], field + ".input_schema"))
        return .object([("type", .string("function")), ("function", function.value)])
    }

    /// auto/any/tool/none as auto/required/a named function/none.
    private static func toolChoice(_ choice: JSONValue) throws(TranslationError) -> JSONValue {
        switch try JSONFields.string(choice["type"], "tool_choice.type") {
        case "auto": return .string("auto")
        case "any": return .string("required")
        case "none": return .string("none")
        case "tool":
            let name = try JSONFields.string(choice["name"], "tool_choice.name")
            return .object([("type", .string("function")), ("function", .object([("name", .string(name))]))])
        case let other:
            throw TranslationError(field: "tool_choice.type", "unsupported tool choice \"\(other)\"")
        }
    }
}

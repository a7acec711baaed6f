import GatewayJSON

extension AnthropicToOpenAI {
    /// Turns an Anthropic message into an OpenAI `chat.completion`.
    ///
    /// Text blocks are joined into `content`, `tool_use` blocks become `tool_calls` with the input as JSON text,
    /// thinking blocks are left out. `prompt_tokens` counts Anthropic's cached input tokens too.
    /// - Parameters:
    ///   - body: the upstream's JSON body (a 2xx answer; errors go through `ErrorShape`).
    ///   - clientModel: the model name the client asked for, written as `model`.
    ///   - created: the Unix time in seconds for `created`; Anthropic's answer carries none.
    /// - Returns: the OpenAI JSON body and the usage read from the answer.
    /// - Throws: `TranslationError` when the body is not an Anthropic message.
    public static func response(
        _ body: UnsafeRawBufferPointer, clientModel: String, created: Int64
    ) throws(TranslationError) -> TranslatedResponse {
        let message = try JSONFields.object(body, name: "body")
        guard let blocks = try JSONFields.optionalArray(message["content"], "content") else {
            throw TranslationError(field: "content", "is required")
        }
        var text = ""
        var toolCalls: [JSONValue] = []
        for (position, block) in blocks.enumerated() {
            let field = "content[\(position)]"
            switch try JSONFields.optionalString(block["type"], field + ".type") {
            case "text"?:
                text += try JSONFields.string(block["text"], field + ".text")
            case "tool_use"?:
                let input = try JSONFields.optionalObject(block["input"], field + ".input") ?? .object([])
                toolCalls.append(.object([
                    ("id", .string(try JSONFields.string(block["id"], field + ".id"))),
                    ("type", .string("function")),
                    ("function", .object([
                        ("name", .string(try JSONFields.string(block["name"], field + ".name"))),
                        ("arguments", .string(String(decoding: input.serialized(), as: UTF8.self))),
                    ])),
                ]))
            default:
                continue   // thinking and blocks of later API versions have no OpenAI form
            }
        }
        let usage = TokenUsage.anthropic(message["usage"])
        let stopReason = try JSONFields.optionalString(message["stop_reason"], "stop_reason")

        var reply = ObjectBuilder()
        reply.add("role", .string("assistant"))
        reply.add("content", text.isEmpty && !toolCalls.isEmpty ? .null : .string(text))
        if !toolCalls.isEmpty { reply.add("tool_calls", .array(toolCalls)) }
        var choice = ObjectBuilder()
        choice.add("index", .int(0))
        choice.add("message", reply.value)
        choice.add("logprobs", .null)
        choice.add("finish_reason", .string(StopReason.openAI(fromAnthropic: stopReason ?? "end_turn")))

        var out = ObjectBuilder()
        out.add("id", .string(try JSONFields.optionalString(message["id"], "id") ?? ""))
        out.add("object", .string("chat.completion"))
        out.add("created", .int(created))
        out.add("model", .string(clientModel))
        out.add("choices", .array([choice.value]))
        if let usage { out.add("usage", usage.openAIJSON) }
        return TranslatedResponse(body: out.value.serialized(), usage: usage)
    }
}

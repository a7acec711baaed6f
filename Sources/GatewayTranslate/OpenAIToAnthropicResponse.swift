import GatewayJSON

extension OpenAIToAnthropic {
    /// Turns an OpenAI `chat.completion` into an Anthropic message.
    ///
    /// The first choice's text (or refusal) becomes a text block and its tool calls `tool_use` blocks, their
    /// arguments parsed into `input`.
    /// - Parameters:
    ///   - body: the upstream's JSON body (a 2xx answer; errors go through `ErrorShape`).
    ///   - clientModel: the model name the client asked for, written as `model`.
    /// - Returns: the Anthropic JSON body and the usage read from the answer.
    /// - Throws: `TranslationError` when the body is not a chat completion, or a tool call's arguments are not a
    ///   JSON object (Anthropic's `input` must be one).
    public static func response(_ body: UnsafeRawBufferPointer, clientModel: String) throws(TranslationError) -> TranslatedResponse {
        let completion = try JSONFields.object(body, name: "body")
        guard let choice = try JSONFields.optionalArray(completion["choices"], "choices")?.first else {
            throw TranslationError(field: "choices", "must hold a choice")
        }
        let message = try JSONFields.object(choice["message"], "choices[0].message")
        var content: [JSONValue] = []
        let text = try JSONFields.optionalString(message["content"], "choices[0].message.content")
        let refusal = try JSONFields.optionalString(message["refusal"], "choices[0].message.refusal")
        if let text = text ?? refusal, !text.isEmpty { content.append(.textBlock(text)) }
        let calls = try JSONFields.optionalArray(message["tool_calls"], "choices[0].message.tool_calls") ?? []
        for (position, call) in calls.enumerated() {
            let field = "choices[0].message.tool_calls[\(position)]"
            let function = try JSONFields.object(call["function"], field + ".function")
            content.append(.object([
                ("type", .string("tool_use")),
                ("id", .string(try JSONFields.string(call["id"], field + ".id"))),
                ("name", .string(try JSONFields.string(function["name"], field + ".function.name"))),
                ("input", try ToolArguments.object(function["arguments"], field + ".function.arguments")),
            ]))
        }
        let finishReason = try JSONFields.optionalString(choice["finish_reason"], "choices[0].finish_reason")
        let usage = TokenUsage.openAI(completion["usage"])

        var out = ObjectBuilder()
        out.add("id", .string(try JSONFields.optionalString(completion["id"], "id") ?? ""))
        out.add("type", .string("message"))
        out.add("role", .string("assistant"))
        out.add("model", .string(clientModel))
        out.add("content", .array(content))
        out.add("stop_reason", .string(StopReason.anthropic(fromOpenAI: finishReason ?? "stop")))
        out.add("stop_sequence", .null)
        out.add("usage", (usage ?? TokenUsage(promptTokens: 0, completionTokens: 0)).anthropicJSON)
        return TranslatedResponse(body: out.value.serialized(), usage: usage)
    }
}

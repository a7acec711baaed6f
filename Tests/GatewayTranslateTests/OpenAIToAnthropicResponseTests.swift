import GatewayJSON
import GatewayTranslate
import Testing

/// OpenAI chat completions as Anthropic messages.
@Suite struct OpenAIToAnthropicResponseTests {
    static func translate(_ body: String) throws(TranslationError) -> TranslatedResponse {
        try run(body) { raw throws(TranslationError) in try OpenAIToAnthropic.response(raw, clientModel: "my-gpt") }
    }

    @Test func textAndToolCalls() throws {
        let result = try Self.translate(#"""
        {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion", "created": 1741570283,
         "model": "gpt-4o-2024-08-06",
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "Let me look that up.", "refusal": null,
           "tool_calls": [{"id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                          {"id": "call_def", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
           "logprobs": null, "finish_reason": "tool_calls"}],
         "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163, "prompt_tokens_details": {"cached_tokens": 0}},
         "system_fingerprint": "fp_fc9f1d7035"}
        """#)
        let out = try #require(parseJSON(result.body))
        #expect(out["id"] == .string("chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG"))
        #expect(out["type"] == .string("message"))
        #expect(out["role"] == .string("assistant"))
        #expect(out["model"] == .string("my-gpt"))
        #expect(out["stop_reason"] == .string("tool_use"))
        #expect(out["stop_sequence"] == .null)
        #expect(out["usage"] == JSONValue.parse(#"{"input_tokens": 1117, "output_tokens": 46}"#))
        #expect(result.usage == TokenUsage(promptTokens: 1117, completionTokens: 46))
        #expect(out["content"] == JSONValue.parse(#"""
            [{"type": "text", "text": "Let me look that up."},
             {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"location": "Paris"}},
             {"type": "tool_use", "id": "call_def", "name": "get_time", "input": {}}]
            """#))
    }

    @Test(arguments: [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal")])
    func stopReason(openAI: String, anthropic: String) throws {
        let result = try Self.translate(#"""
        {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
         "finish_reason": "\#(openAI)"}], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
        """#)
        let out = try #require(parseJSON(result.body))
        #expect(out["stop_reason"] == .string(anthropic))
        #expect(out["content"] == .array([.textBlock("Hi")]))
    }

    @Test func refusalBecomesText() throws {
        let result = try Self.translate(#"""
        {"id": "chatcmpl-2", "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
         "refusal": "I can't help with that."}, "finish_reason": "stop"}]}
        """#)
        let out = try #require(parseJSON(result.body))
        #expect(out["content"] == .array([.textBlock("I can't help with that.")]))
        #expect(out["usage"] == JSONValue.parse(#"{"input_tokens": 0, "output_tokens": 0}"#), "Anthropic's usage is required")
        #expect(result.usage == nil)
    }

    @Test(arguments: [
        ("null", "body"),
        (#"{"choices": []}"#, "choices"),
        (#"{"choices": [{"finish_reason": "stop"}]}"#, "choices[0].message"),
        (#"{"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{\"a\":"}}]}}]}"#,
         "choices[0].message.tool_calls[0].function.arguments"),
    ])
    func malformed(body: String, field: String) {
        #expect(translationError(body, { raw throws(TranslationError) in
            try OpenAIToAnthropic.response(raw, clientModel: "m")
        })?.field == field)
    }
}

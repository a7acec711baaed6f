import GatewayJSON
import GatewayTranslate
import Testing

/// Anthropic messages as OpenAI chat completions.
@Suite struct AnthropicToOpenAIResponseTests {
    static func translate(_ body: String) throws(TranslationError) -> TranslatedResponse {
        try run(body) { raw throws(TranslationError) in
            try AnthropicToOpenAI.response(raw, clientModel: "my-claude", created: 1_750_000_000)
        }
    }

    @Test func textAndToolUse() throws {
        let result = try Self.translate(#"""
        {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5-20250929",
         "content": [{"type": "thinking", "thinking": "Need the tool.", "signature": "EqQB"},
                     {"type": "text", "text": "I'll check "}, {"type": "text", "text": "the weather."},
                     {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                      "input": {"location": "San Francisco, CA", "unit": "celsius"}}],
         "stop_reason": "tool_use", "stop_sequence": null,
         "usage": {"input_tokens": 2095, "output_tokens": 503, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 100}}
        """#)
        let out = try #require(parseJSON(result.body))
        #expect(out["id"] == .string("msg_01XFDUDYJgAACzvnptvVoYEL"))
        #expect(out["object"] == .string("chat.completion"))
        #expect(out["created"] == .int(1_750_000_000))
        #expect(out["model"] == .string("my-claude"), "the name the client asked for")
        let choice = try #require(out["choices"]?.arrayValue?.first)
        #expect(choice["index"] == .int(0))
        #expect(choice["finish_reason"] == .string("tool_calls"))
        let message = try #require(choice["message"])
        #expect(message["role"] == .string("assistant"))
        #expect(message["content"] == .string("I'll check the weather."))
        let call = try #require(message["tool_calls"]?.arrayValue?.first)
        #expect(call["id"] == .string("toolu_01A09q90qw90lq917835lq9"))
        #expect(call["type"] == .string("function"))
        #expect(call["function"]?["name"] == .string("get_weather"))
        let arguments = try #require(call["function"]?["arguments"]?.stringValue)
        #expect(JSONValue.parse(arguments) == JSONValue.parse(#"{"location": "San Francisco, CA", "unit": "celsius"}"#))
        #expect(out["usage"] == JSONValue.parse(#"{"prompt_tokens": 2195, "completion_tokens": 503, "total_tokens": 2698}"#))
        #expect(result.usage == TokenUsage(promptTokens: 2195, completionTokens: 503))
    }

    @Test(arguments: [("end_turn", "stop"), ("max_tokens", "length"), ("stop_sequence", "stop"), ("tool_use", "tool_calls"),
                      ("refusal", "content_filter")])
    func finishReason(anthropic: String, openAI: String) throws {
        let result = try Self.translate(#"""
        {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi"}],
         "stop_reason": "\#(anthropic)", "usage": {"input_tokens": 10, "output_tokens": 1}}
        """#)
        let out = try #require(parseJSON(result.body))
        #expect(out["choices"]?.arrayValue?.first?["finish_reason"] == .string(openAI))
        #expect(out["choices"]?.arrayValue?.first?["message"]?["tool_calls"] == nil)
    }

    @Test func withoutUsage() throws {
        let result = try Self.translate(#"{"id": "msg_1", "content": [], "stop_reason": "end_turn"}"#)
        #expect(result.usage == nil)
        let out = try #require(parseJSON(result.body))
        #expect(out["usage"] == nil)
        #expect(out["choices"]?.arrayValue?.first?["message"]?["content"] == .string(""))
    }

    @Test(arguments: [("<html>502</html>", "body"), (#"{"type": "message"}"#, "content"),
                      (#"{"content": [{"type": "tool_use", "name": "f", "input": {}}]}"#, "content[0].id")])
    func malformed(body: String, field: String) {
        #expect(translationError(body, { raw throws(TranslationError) in
            try AnthropicToOpenAI.response(raw, clientModel: "m", created: 0)
        })?.field == field)
    }
}

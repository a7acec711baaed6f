import GatewayJSON
import GatewayTranslate
import Testing

/// A request translated to the other shape and back keeps its meaning.
@Suite struct RoundTripTests {
    /// Tool call arguments are JSON text whose spelling may change; compare them parsed.
    static func normalized(_ message: JSONValue) -> JSONValue {
        guard case let .object(members) = message else { return message }
        return .object(members.map { name, value in
            guard name == "tool_calls", let calls = value.arrayValue else { return (name, value) }
            return (name, .array(calls.map { call in
                guard let arguments = call["function"]?["arguments"]?.stringValue, let parsed = JSONValue.parse(arguments),
                      case let .object(callMembers) = call, case let .object(function)? = call["function"] else { return call }
                let parsedFunction = JSONValue.object(function.map { $0.0 == "arguments" ? ($0.0, parsed) : $0 })
                return .object(callMembers.map { $0.0 == "function" ? ($0.0, parsedFunction) : $0 })
            }))
        })
    }

    @Test func openAIThroughAnthropicAndBack() throws {
        let original = #"""
        {"model": "gpt-4o", "max_completion_tokens": 500, "temperature": 0.2, "top_p": 1, "stop": ["END"],
         "stream": true, "user": "u-7", "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
         "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
         "messages": [
           {"role": "system", "content": "You are helpful."},
           {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                                        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}}]},
           {"role": "assistant", "content": "Checking.", "tool_calls": [
             {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{ \"city\" : \"Oslo\" }"}},
             {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Bergen\"}"}}]},
           {"role": "tool", "tool_call_id": "call_1", "content": "-3°C"},
           {"role": "tool", "tool_call_id": "call_2", "content": "4°C, rain"},
           {"role": "user", "content": "Which is warmer?"}]}
        """#
        let anthropic = try run(original, toAnthropic)
        let back = try run(anthropic, toOpenAI)
        let before = try #require(JSONValue.parse(original))
        let after = try #require(parseJSON(back))
        for field in ["model", "max_completion_tokens", "temperature", "top_p", "stop", "stream", "user", "tool_choice"] {
            #expect(after[field] == before[field], "\(field)")
        }
        #expect(after["stream_options"]?["include_usage"] == .bool(true))
        let beforeTools = try #require(before["tools"]?.arrayValue)
        let afterTools = try #require(after["tools"]?.arrayValue)
        #expect(afterTools == beforeTools)
        let beforeMessages = try #require(before["messages"]?.arrayValue).map(Self.normalized)
        let afterMessages = try #require(after["messages"]?.arrayValue).map(Self.normalized)
        #expect(afterMessages.count == beforeMessages.count)
        for (a, b) in zip(afterMessages, beforeMessages) {
            // The assistant message gains nothing but its tool calls' `type`, already present here.
            #expect(a == b)
        }
    }

    @Test func anthropicThroughOpenAIAndBack() throws {
        let original = #"""
        {"model": "claude-sonnet-4-5", "max_tokens": 700, "temperature": 1, "stop_sequences": ["###"], "stream": false,
         "system": "You are terse.", "metadata": {"user_id": "u-9"},
         "tool_choice": {"type": "any"},
         "tools": [{"name": "lookup", "description": "Look a word up",
                    "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}],
         "messages": [
           {"role": "user", "content": [{"type": "text", "text": "Define"},
                                        {"type": "image", "source": {"type": "url", "url": "https://example.com/w.png"}}]},
           {"role": "assistant", "content": [{"type": "text", "text": "Looking up."},
                                             {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"word": "ephemeral", "limit": 2}}]},
           {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "lasting a short time"},
                                        {"type": "text", "text": "Shorter please."}]}]}
        """#
        let openAI = try run(original, toOpenAI)
        let back = try run(openAI, toAnthropic)
        let before = try #require(JSONValue.parse(original))
        let after = try #require(parseJSON(back))
        for field in ["model", "max_tokens", "temperature", "stop_sequences", "stream", "system", "metadata", "tool_choice", "tools"] {
            #expect(after[field] == before[field], "\(field)")
        }
        let beforeMessages = try #require(before["messages"]?.arrayValue)
        let afterMessages = try #require(after["messages"]?.arrayValue)
        #expect(afterMessages.count == 3)
        #expect(afterMessages[0] == beforeMessages[0])
        #expect(afterMessages[1] == beforeMessages[1])
        #expect(afterMessages[2] == beforeMessages[2])
    }
}

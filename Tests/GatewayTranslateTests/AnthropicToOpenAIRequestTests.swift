import GatewayJSON
import GatewayTranslate
import Testing

/// Anthropic messages requests as OpenAI chat completion requests.
@Suite struct AnthropicToOpenAIRequestTests {
    static let everyFeature = #"""
    {
      "model": "claude-sonnet-4-5",
      "max_tokens": 1024,
      "system": [{"type": "text", "text": "You are a weather assistant."},
                 {"type": "text", "text": "Answer in French.", "cache_control": {"type": "ephemeral"}}],
      "messages": [
        {"role": "user", "content": [
          {"type": "text", "text": "What is the weather in Paris?"},
          {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
          {"type": "image", "source": {"type": "url", "url": "https://example.com/paris.jpg"}}
        ]},
        {"role": "assistant", "content": [
          {"type": "thinking", "thinking": "The user wants the weather.", "signature": "EqQBCgIYAhIM"},
          {"type": "text", "text": "Let me check."},
          {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}
        ]},
        {"role": "user", "content": [
          {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18°C, cloudy"},
          {"type": "text", "text": "And tomorrow?"}
        ]},
        {"role": "assistant", "content": "I will check tomorrow too."},
        {"role": "user", "content": "Thanks"}
      ],
      "temperature": 0.5,
      "top_p": 0.95,
      "top_k": 40,
      "stop_sequences": ["END"],
      "stream": true,
      "tools": [{"name": "get_weather", "description": "Current weather",
                 "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}],
      "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true},
      "metadata": {"user_id": "user-1234"}
    }
    """#

    @Test func everyFeatureMaps() throws {
        let out = try translated(Self.everyFeature, toOpenAI)
        #expect(out["model"] == .string("gpt-4o"))
        #expect(out["max_completion_tokens"] == .int(1024))
        #expect(out["max_tokens"] == nil)
        #expect(out["temperature"] == .double(0.5))
        #expect(out["top_p"] == .double(0.95))
        #expect(out["top_k"] == nil)
        #expect(out["stop"] == .array([.string("END")]))
        #expect(out["stream"] == .bool(true))
        #expect(out["stream_options"] == .object([("include_usage", .bool(true))]))
        #expect(out["user"] == .string("user-1234"))
        #expect(out["metadata"] == nil)
        #expect(out["tool_choice"] == JSONValue.parse(#"{"type":"function","function":{"name":"get_weather"}}"#))
        #expect(out["parallel_tool_calls"] == .bool(false))
        #expect(out["tools"] == JSONValue.parse(#"""
            [{"type":"function","function":{"name":"get_weather","description":"Current weather",
              "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]
            """#))

        let messages = try #require(out["messages"]?.arrayValue)
        #expect(messages.map { $0["role"]?.stringValue } == ["system", "user", "assistant", "tool", "user", "assistant", "user"])
        #expect(messages[0]["content"] == .array([.textBlock("You are a weather assistant."), .textBlock("Answer in French.")]))
        let question = try #require(messages[1]["content"]?.arrayValue)
        #expect(question.count == 3)
        #expect(question[0] == .textBlock("What is the weather in Paris?"))
        #expect(question[1]["image_url"]?["url"] == .string("data:image/jpeg;base64,/9j/4AAQSkZJRg=="))
        #expect(question[2]["image_url"]?["url"] == .string("https://example.com/paris.jpg"))

        #expect(messages[2]["content"] == .string("Let me check."), "thinking is left out")
        let calls = try #require(messages[2]["tool_calls"]?.arrayValue)
        #expect(calls.count == 1)
        #expect(calls[0]["id"] == .string("toolu_01A"))
        #expect(calls[0]["type"] == .string("function"))
        #expect(calls[0]["function"]?["name"] == .string("get_weather"))
        let arguments = try #require(calls[0]["function"]?["arguments"]?.stringValue)
        #expect(JSONValue.parse(arguments) == .object([("city", .string("Paris")), ("unit", .string("celsius"))]))

        #expect(messages[3]["tool_call_id"] == .string("toolu_01A"))
        #expect(messages[3]["content"] == .string("18°C, cloudy"))
        #expect(messages[4]["content"] == .string("And tomorrow?"))
        #expect(messages[5]["content"] == .string("I will check tomorrow too."))
        #expect(messages[6]["content"] == .string("Thanks"))
    }

    @Test func simpleForms() throws {
        let out = try translated(#"""
        {"model": "claude-haiku-4-5", "max_tokens": 64, "system": "Be brief.", "stream": false,
         "messages": [{"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {}}]},
                      {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                    "content": [{"type": "text", "text": "noon"}]}]}]}
        """#, toOpenAI)
        let messages = try #require(out["messages"]?.arrayValue)
        #expect(messages.count == 4)
        #expect(messages[0] == .object([("role", .string("system")), ("content", .string("Be brief."))]))
        #expect(messages[1] == .object([("role", .string("user")), ("content", .string("Hi"))]))
        #expect(messages[2]["content"] == .null, "a message of tool calls only has null content")
        #expect(messages[2]["tool_calls"]?.arrayValue?.first?["function"]?["arguments"] == .string("{}"))
        #expect(messages[3] == .object([("role", .string("tool")), ("tool_call_id", .string("toolu_1")), ("content", .string("noon"))]))
        #expect(out["stream"] == .bool(false))
        #expect(out["stream_options"] == nil, "only a streamed request asks for usage in the stream")
    }

    @Test(arguments: [
        (#"{"type":"auto"}"#, #""auto""#),
        (#"{"type":"any"}"#, #""required""#),
        (#"{"type":"none"}"#, #""none""#),
        (#"{"type":"tool","name":"get_weather"}"#, #"{"type":"function","function":{"name":"get_weather"}}"#),
    ])
    func toolChoice(anthropic: String, openAI: String) throws {
        let out = try translated(#"""
        {"max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}],
         "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}], "tool_choice": \#(anthropic)}
        """#, toOpenAI)
        #expect(out["tool_choice"] == JSONValue.parse(openAI))
        #expect(out["parallel_tool_calls"] == nil)
    }

    @Test(arguments: [
        ("{", "body"),
        (#"{"max_tokens": 10}"#, "messages"),
        (#"{"messages": []}"#, "messages"),
        (#"{"messages": [{"role": "system", "content": "Hi"}]}"#, "messages[0].role"),
        (#"{"messages": [{"role": "user", "content": 5}]}"#, "messages[0].content"),
        (#"{"messages": [{"role": "user", "content": [{"type": "document"}]}]}"#, "messages[0].content[0].type"),
        (#"{"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]}"#,
         "messages[0].content[0].source.type"),
        (#"{"messages": [{"role": "assistant", "content": [{"type": "tool_use", "name": "f", "input": {}}]}]}"#,
         "messages[0].content[0].id"),
        (#"{"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}]}]}"#,
         "messages[0].content[0].input"),
        (#"{"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]}]}"#,
         "messages[0].content[0].content[0].type"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "web_search_20250305", "name": "web_search"}]}"#,
         "tools[0].type"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "tools": [{"name": "f"}]}"#, "tools[0].input_schema"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "tool_choice": {"type": "maybe"}}"#, "tool_choice.type"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": "many"}"#, "max_tokens"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "stop_sequences": "END"}"#, "stop_sequences"),
    ])
    func untranslatableRequestsNameTheField(body: String, field: String) {
        let error = translationError(body, toOpenAI)
        #expect(error?.field == field, "\(error?.message ?? "no error")")
    }
}

import GatewayJSON
import GatewayTranslate
import Testing

/// OpenAI chat completion requests as Anthropic messages requests.
@Suite struct OpenAIToAnthropicRequestTests {
    static let everyFeature = #"""
    {
      "model": "gpt-4o",
      "messages": [
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
        {"role": "user", "content": "What is the weather in Paris and Tokyo?"},
        {"role": "user", "content": [
          {"type": "text", "text": "Here is a photo."},
          {"type": "image_url", "image_url": {"url": "https://example.com/paris.jpg", "detail": "high"}},
          {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
        ]},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
          {"id": "call_1", "type": "function",
           "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"celsius\"}"}},
          {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C, cloudy"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24°C"}, {"type": "text", "text": "sunny"}]},
        {"role": "user", "content": "Thanks! And tomorrow?"}
      ],
      "max_completion_tokens": 1024,
      "max_tokens": 99,
      "temperature": 0.7,
      "top_p": 0.9,
      "stop": ["END", "STOP"],
      "stream": true,
      "stream_options": {"include_usage": true},
      "tools": [
        {"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "get_time"}}
      ],
      "tool_choice": "required",
      "parallel_tool_calls": false,
      "user": "user-1234",
      "seed": 7,
      "response_format": {"type": "text"}
    }
    """#

    @Test func everyFeatureMaps() throws {
        let out = try translated(Self.everyFeature, toAnthropic)
        #expect(out["model"] == .string("claude-sonnet-4-5"))
        #expect(out["max_tokens"] == .int(1024), "max_completion_tokens wins over max_tokens")
        #expect(out["system"] == .array([.textBlock("You are a weather assistant."), .textBlock("Answer in French.")]))
        #expect(out["temperature"] == .double(0.7))
        #expect(out["top_p"] == .double(0.9))
        #expect(out["stop_sequences"] == .array([.string("END"), .string("STOP")]))
        #expect(out["stream"] == .bool(true))
        for dropped in ["stream_options", "seed", "response_format", "user", "stop", "max_completion_tokens", "parallel_tool_calls"] {
            #expect(out[dropped] == nil, "\(dropped) has no Anthropic form")
        }
        #expect(out["metadata"]?["user_id"] == .string("user-1234"))
        #expect(out["tool_choice"] == .object([("type", .string("any")), ("disable_parallel_tool_use", .bool(true))]))

        let tools = try #require(out["tools"]?.arrayValue)
        #expect(tools.count == 2)
        #expect(tools[0]["name"] == .string("get_weather"))
        #expect(tools[0]["description"] == .string("Current weather for a city"))
        #expect(tools[0]["input_schema"]?["required"] == .array([.string("city")]))
        #expect(tools[0]["input_schema"]?["properties"]?["unit"]?["enum"] == .array([.string("celsius"), .string("fahrenheit")]))
        #expect(tools[1]["input_schema"] == .object([("type", .string("object")), ("properties", .object([]))]))
        #expect(tools[1]["description"] == nil)

        let messages = try #require(out["messages"]?.arrayValue)
        #expect(messages.map { $0["role"]?.stringValue } == ["user", "assistant", "user"], "same-role messages merge")
        let question = try #require(messages[0]["content"]?.arrayValue)
        #expect(question.count == 4)
        #expect(question[0] == .textBlock("What is the weather in Paris and Tokyo?"))
        #expect(question[1] == .textBlock("Here is a photo."))
        #expect(question[2]["type"] == .string("image"))
        #expect(question[2]["source"] == .object([("type", .string("url")), ("url", .string("https://example.com/paris.jpg"))]))
        #expect(question[3]["source"]?["type"] == .string("base64"))
        #expect(question[3]["source"]?["media_type"] == .string("image/png"))
        #expect(question[3]["source"]?["data"] == .string("iVBORw0KGgo="))

        let answer = try #require(messages[1]["content"]?.arrayValue)
        #expect(answer.count == 3)
        #expect(answer[0] == .textBlock("Let me check."))
        #expect(answer[1]["type"] == .string("tool_use"))
        #expect(answer[1]["id"] == .string("call_1"))
        #expect(answer[1]["name"] == .string("get_weather"))
        #expect(answer[1]["input"] == .object([("city", .string("Paris")), ("unit", .string("celsius"))]))
        #expect(answer[2]["input"] == .object([("city", .string("Tokyo"))]))

        let results = try #require(messages[2]["content"]?.arrayValue)
        #expect(results.count == 3, "both tool results and the next user text form one user turn")
        #expect(results[0]["type"] == .string("tool_result"))
        #expect(results[0]["tool_use_id"] == .string("call_1"))
        #expect(results[0]["content"] == .string("18°C, cloudy"))
        #expect(results[1]["tool_use_id"] == .string("call_2"))
        #expect(results[1]["content"] == .array([.textBlock("24°C"), .textBlock("sunny")]))
        #expect(results[2] == .textBlock("Thanks! And tomorrow?"))
    }

    @Test func defaultsAndSimpleForms() throws {
        let out = try translated(#"""
        {"model": "gpt-4o", "stop": "\n\n", "max_tokens": 300,
         "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
        """#, toAnthropic)
        #expect(out["max_tokens"] == .int(300))
        #expect(out["system"] == .string("Be brief."), "one system text stays a string")
        #expect(out["stop_sequences"] == .array([.string("\n\n")]))
        #expect(out["messages"] == .array([.object([("role", .string("user")), ("content", .array([.textBlock("Hi")]))])]))
        #expect(out["stream"] == nil)
        #expect(out["tool_choice"] == nil)

        let bare = try translated(#"{"messages": [{"role": "user", "content": "Hi"}]}"#, toAnthropic)
        #expect(bare["max_tokens"] == .int(OpenAIToAnthropic.defaultMaxTokens))
        #expect(OpenAIToAnthropic.defaultMaxTokens == 4096)
        #expect(bare["system"] == nil)
    }

    @Test(arguments: [
        (#""auto""#, #"{"type":"auto"}"#),
        (#""none""#, #"{"type":"none"}"#),
        (#""required""#, #"{"type":"any"}"#),
        (#"{"type": "function", "function": {"name": "get_weather"}}"#, #"{"type":"tool","name":"get_weather"}"#),
    ])
    func toolChoice(openAI: String, anthropic: String) throws {
        let out = try translated(#"""
        {"messages": [{"role": "user", "content": "Hi"}],
         "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
         "tool_choice": \#(openAI)}
        """#, toAnthropic)
        #expect(out["tool_choice"] == JSONValue.parse(anthropic))
    }

    @Test func assistantToolCallWithoutTextOrArguments() throws {
        let out = try translated(#"""
        {"messages": [{"role": "user", "content": "What time is it?"},
          {"role": "assistant", "content": null,
           "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
          {"role": "tool", "tool_call_id": "call_9", "content": "noon"}]}
        """#, toAnthropic)
        let messages = try #require(out["messages"]?.arrayValue)
        #expect(messages.count == 3)
        #expect(messages[1]["content"] == .array([.object([
            ("type", .string("tool_use")), ("id", .string("call_9")), ("name", .string("get_time")), ("input", .object([])),
        ])]))
    }

    @Test(arguments: [
        ("not json", "body"),
        ("[1, 2]", "body"),
        (#"{"model": "gpt-4o"}"#, "messages"),
        (#"{"messages": []}"#, "messages"),
        (#"{"messages": "Hi"}"#, "messages"),
        (#"{"messages": [{"role": "system", "content": "Only a system prompt."}]}"#, "messages"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "n": 2}"#, "n"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "temperature": "hot"}"#, "temperature"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": -1}"#, "max_tokens"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "stop": [1]}"#, "stop"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "tool_choice": 3}"#, "tool_choice"),
        (#"{"messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function"}]}"#, "tools[0].function"),
        (#"{"messages": [{"role": "wizard", "content": "Hi"}]}"#, "messages[0].role"),
        (#"{"messages": [{"content": "Hi"}]}"#, "messages[0].role"),
        (#"{"messages": [42]}"#, "messages[0]"),
        (#"{"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}"#, "messages[0].content[0].type"),
        (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]}"#,
         "messages[0].content[0].image_url.url"),
        (#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]}"#,
         "messages[0].content[0].image_url.url"),
        (#"{"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{\"city\": "}}]}]}"#,
         "messages[0].tool_calls[0].function.arguments"),
        (#"{"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]}"#,
         "messages[0].tool_calls[0].function.arguments"),
        (#"{"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]}"#,
         "messages[0].tool_calls[0].id"),
        (#"{"messages": [{"role": "tool", "content": "18°C"}]}"#, "messages[0].tool_call_id"),
    ])
    func untranslatableRequestsNameTheField(body: String, field: String) {
        let error = translationError(body, toAnthropic)
        #expect(error?.field == field, "\(error?.message ?? "no error")")
        #expect(error?.message.hasPrefix(field) == true)
    }
}

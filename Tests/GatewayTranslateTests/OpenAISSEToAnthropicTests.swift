import GatewayJSON
import GatewayTranslate
import Testing

/// OpenAI chunk streams as Anthropic event streams.
@Suite struct OpenAISSEToAnthropicTests {
    /// Text, then two tool calls, then the finish reason and the `include_usage` chunk, as OpenAI streams them.
    static let toolStream = #"""
    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_abc","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}

    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"Let me check "},"logprobs":null,"finish_reason":null}],"usage":null}

    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"Paris and Zürich ☀️."},"logprobs":null,"finish_reason":null}],"usage":null}

    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}]},"logprobs":null,"finish_reason":null}],"usage":null}

    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"lo"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"cation\": \"Paris\"}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"location\": "}}]},"logprobs":null,"finish_reason":null}],"usage":null}

    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"\"Z\u00fcrich\", \"days\": [1, 2]}"}}]},"logprobs":null,"finish_reason":null}],"usage":null}

    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}],"usage":null}

    data: {"id":"chatcmpl-AbC123","object":"chat.completion.chunk","created":1727000000,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":82,"completion_tokens":41,"total_tokens":123}}

    data: [DONE]


    """#

    static func translate(_ input: [UInt8], size: Int) -> (out: [UInt8], usage: TokenUsage?) {
        let translator = OpenAISSEToAnthropic(clientModel: "my-gpt")
        let out = feedInPieces(input, size: size, feed: { translator.feed($0, into: &$1) }, finish: { translator.finish(into: &$0) })
        return (out, translator.usage)
    }

    static func translate(_ input: String, size: Int = 9) -> (out: [UInt8], usage: TokenUsage?) {
        translate(Array(input.utf8), size: size)
    }

    /// The source's arguments fragments of each tool call, concatenated.
    static func sourceArguments(_ input: String) -> [String] {
        var arguments: [Int64: String] = [:]
        for event in outputEvents(Array(input.utf8)) {
            for call in event.json?["choices"]?.arrayValue?.first?["delta"]?["tool_calls"]?.arrayValue ?? [] {
                arguments[call["index"]?.int64Value ?? 0, default: ""] += call["function"]?["arguments"]?.stringValue ?? ""
            }
        }
        return arguments.keys.sorted().map { arguments[$0]! }
    }

    @Test func everySplitGivesTheSameOutput() {
        #expect(firstSplitThatDiffers(Array(Self.toolStream.utf8)) { Self.translate($0, size: $1).out } == nil)
    }

    @Test func eventsFollowTheMessagesProtocol() throws {
        let (out, usage) = Self.translate(Self.toolStream)
        let events = outputEvents(out)
        let types = events.map { $0.json?["type"]?.stringValue ?? "?" }
        #expect(events.map(\.name) == types.map(Optional.some), "the event name repeats the data's type")
        #expect(types == [
            "message_start",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
            "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
            "message_delta", "message_stop",
        ])
        let json = events.compactMap(\.json)
        let message = try #require(json[0]["message"])
        #expect(message["id"] == .string("chatcmpl-AbC123"))
        #expect(message["model"] == .string("my-gpt"))
        #expect(message["role"] == .string("assistant"))
        #expect(message["content"] == .array([]))
        #expect(message["usage"] == JSONValue.parse(#"{"input_tokens": 0, "output_tokens": 0}"#), "not known yet")

        #expect(json[1]["content_block"] == .textBlock(""))
        #expect(json[2..<4].compactMap { $0["delta"]?["text"]?.stringValue }.joined() == "Let me check Paris and Zürich ☀️.")
        #expect(json[2..<5].allSatisfy { $0["index"] == .int(0) })

        let source = Self.sourceArguments(Self.toolStream)
        for (call, start) in [(0, 5), (1, 9)] {
            let block = json[start]
            #expect(block["index"] == .int(Int64(call + 1)))
            #expect(block["content_block"]?["type"] == .string("tool_use"))
            #expect(block["content_block"]?["id"] == .string(call == 0 ? "call_DdmO9pD3xa9XTPNJ32zg2hcA" : "call_2"))
            #expect(block["content_block"]?["name"] == .string("get_weather"))
            #expect(block["content_block"]?["input"] == .object([]))
            let deltas = json[(start + 1)...(start + 2)]
            #expect(deltas.allSatisfy { $0["index"] == .int(Int64(call + 1)) && $0["delta"]?["type"] == .string("input_json_delta") })
            let arguments = deltas.compactMap { $0["delta"]?["partial_json"]?.stringValue }.joined()
            #expect(arguments == source[call])
            #expect(JSONValue.parse(arguments) != nil && JSONValue.parse(arguments) == JSONValue.parse(source[call]))
        }

        #expect(json[13]["delta"] == JSONValue.parse(#"{"stop_reason": "tool_use", "stop_sequence": null}"#))
        #expect(json[13]["usage"] == JSONValue.parse(#"{"input_tokens": 82, "output_tokens": 41}"#))
        #expect(usage == TokenUsage(promptTokens: 82, completionTokens: 41))
    }

    @Test func crlfCommentsMultiLineDataAndNoUsage() {
        let input = ": OPENROUTER PROCESSING\r\n\r\n"
            + "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\r\n"
            + "data: \"finish_reason\":null}]}\r\n\r\n"
            + "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\r\n\r\n"
            + "data: [DONE]\r\n\r\n"
        #expect(firstSplitThatDiffers(Array(input.utf8)) { Self.translate($0, size: $1).out } == nil)
        let whole = Self.translate(input, size: input.utf8.count)
        let json = outputEvents(whole.out).compactMap(\.json)
        #expect(json.compactMap { $0["delta"]?["text"]?.stringValue }.joined() == "Hello")
        #expect(json.last?["type"] == .string("message_stop"))
        let delta = json.dropLast().last
        #expect(delta?["delta"]?["stop_reason"] == .string("max_tokens"))
        #expect(delta?["usage"] == JSONValue.parse(#"{"input_tokens": 0, "output_tokens": 0}"#))
        #expect(whole.usage == nil, "an upstream not asked for include_usage reports none")
    }

    @Test func vLLMUsageChunkWithNullChoicesAndNoDone() {
        let input = #"""
        data: {"id":"cmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}

        data: {"id":"cmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

        data: {"id":"cmpl-1","object":"chat.completion.chunk","choices":null,"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}


        """#
        let (out, usage) = Self.translate(input)
        let json = outputEvents(out).compactMap(\.json)
        #expect(json.map { $0["type"]?.stringValue } == [
            "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop",
        ])
        #expect(json[4]["delta"]?["stop_reason"] == .string("end_turn"))
        #expect(json[4]["usage"] == JSONValue.parse(#"{"input_tokens": 7, "output_tokens": 2}"#))
        #expect(usage == TokenUsage(promptTokens: 7, completionTokens: 2))
    }

    @Test func errorChunk() {
        let input = #"""
        data: {"id":"c2","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}

        data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","code":null}}

        data: [DONE]


        """#
        let events = outputEvents(Self.translate(input).out)
        #expect(events.map(\.name) == ["message_start", "content_block_start", "content_block_delta", "error"])
        #expect(events.last?.json == JSONValue.parse(#"""
            {"type": "error", "error": {"type": "api_error", "message": "The server had an error while processing your request."}}
            """#))
    }

    @Test func interleavedToolCallsEndWithAnError() {
        let input = #"""
        data: {"id":"c3","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{\"x\""}}]}}]}

        data: {"id":"c3","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{}"}}]}}]}

        data: {"id":"c3","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":": 1}"}}]}}]}


        """#
        let events = outputEvents(Self.translate(input).out)
        #expect(events.last?.name == "error")
        #expect(events.filter { $0.name == "content_block_start" }.count == events.filter { $0.name == "content_block_stop" }.count)
    }

    /// A stream cut anywhere ends in a well-formed output: blocks closed, then `message_stop` or an error.
    @Test func truncatedStreams() {
        let input = Array(Self.toolStream.utf8)
        for cut in stride(from: 0, through: input.count, by: 3) {
            let events = outputEvents(Self.translate(Array(input[0..<cut]), size: 64).out)
            #expect(events.allSatisfy { $0.json?["type"]?.stringValue == $0.name }, "cut \(cut)")
            #expect(events.last?.name == "message_stop" || events.last?.name == "error", "cut \(cut)")
            let opened = events.filter { $0.name == "content_block_start" }.count
            #expect(opened == events.filter { $0.name == "content_block_stop" }.count, "cut \(cut)")
        }
    }

    @Test func dataThatIsNotJSONEndsWithAnError() {
        let events = outputEvents(Self.translate("data: {\"id\": \n\ndata: [DONE]\n\n").out)
        #expect(events.map(\.name) == ["error"])
    }
}

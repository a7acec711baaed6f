import GatewayJSON
import GatewayTranslate
import Testing

/// Anthropic event streams as OpenAI chunk streams.
@Suite struct AnthropicSSEToOpenAITests {
    /// A text block then two parallel tool calls, as the Messages API streams them (ping and an empty first
    /// `partial_json` included).
    static let toolStream = #"""
    event: message_start
    data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2,"cache_creation_input_tokens":0,"cache_read_input_tokens":28},"content":[],"stop_reason":null}}

    event: content_block_start
    data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

    event: ping
    data: {"type": "ping"}

    event: content_block_delta
    data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let's check the weather "}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"for San Francisco and Zürich ☀️:"}}

    event: content_block_stop
    data: {"type":"content_block_stop","index":0}

    event: content_block_start
    data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":" \"San Francisc"}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"o, CA\", \"unit\": \"fah"}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"renheit\"}"}}

    event: content_block_stop
    data: {"type":"content_block_stop","index":1}

    event: content_block_start
    data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_02Zz","name":"get_weather","input":{}}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\": \"Z\u00fcrich\","}}

    event: content_block_delta
    data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"days\": [1, 2]}"}}

    event: content_block_stop
    data: {"type":"content_block_stop","index":2}

    event: message_delta
    data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

    event: message_stop
    data: {"type":"message_stop"}


    """#

    static func translate(_ input: [UInt8], size: Int) -> (out: [UInt8], usage: TokenUsage?) {
        let translator = AnthropicSSEToOpenAI(clientModel: "my-claude", created: 1_750_000_000)
        let out = feedInPieces(input, size: size, feed: { translator.feed($0, into: &$1) }, finish: { translator.finish(into: &$0) })
        return (out, translator.usage)
    }

    /// The source's `partial_json` fragments of each tool_use block, concatenated.
    static func sourceArguments(_ input: String) -> [String] {
        var arguments: [Int64: String] = [:]
        for event in outputEvents(Array(input.utf8)) {
            guard let json = event.json, json["delta"]?["type"] == .string("input_json_delta"),
                  let index = json["index"]?.int64Value, let fragment = json["delta"]?["partial_json"]?.stringValue else { continue }
            arguments[index, default: ""] += fragment
        }
        return arguments.keys.sorted().map { arguments[$0]! }
    }

    @Test func everySplitGivesTheSameOutput() {
        #expect(firstSplitThatDiffers(Array(Self.toolStream.utf8)) { Self.translate($0, size: $1).out } == nil)
    }

    @Test func chunksCarryTheMessage() throws {
        let (out, usage) = Self.translate(Array(Self.toolStream.utf8), size: 7)
        let events = outputEvents(out)
        #expect(events.allSatisfy { $0.name == nil }, "OpenAI streams have data lines only")
        #expect(events.last?.data == "[DONE]")
        let chunks = events.dropLast().compactMap(\.json)
        #expect(chunks.count == events.count - 1, "every chunk is JSON")
        for chunk in chunks {
            #expect(chunk["id"] == .string("msg_014p7gG3wDgGV9EUtLvnow3U"))
            #expect(chunk["object"] == .string("chat.completion.chunk"))
            #expect(chunk["created"] == .int(1_750_000_000))
            #expect(chunk["model"] == .string("my-claude"))
        }
        let deltas = chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"] }
        #expect(deltas.first?["role"] == .string("assistant"))
        #expect(deltas.compactMap { $0["content"]?.stringValue }.joined() == "Okay, let's check the weather for San Francisco and Zürich ☀️:")

        let calls = deltas.flatMap { $0["tool_calls"]?.arrayValue ?? [] }
        let starts = calls.filter { $0["id"] != nil }
        #expect(starts.count == 2)
        #expect(starts.map { $0["index"] } == [.int(0), .int(1)])
        #expect(starts.map { $0["id"] } == [.string("toolu_01T1x1fJ34qAmk2tNTrN7Up6"), .string("toolu_02Zz")])
        #expect(starts.allSatisfy { $0["function"]?["name"] == .string("get_weather") && $0["function"]?["arguments"] == .string("") })
        #expect(starts.allSatisfy { $0["type"] == .string("function") })
        let source = Self.sourceArguments(Self.toolStream)
        for index in 0..<2 {
            let arguments = calls.filter { $0["index"] == .int(Int64(index)) }
                .compactMap { $0["function"]?["arguments"]?.stringValue }.joined()
            #expect(arguments == source[index], "the fragments pass through in order")
            #expect(JSONValue.parse(arguments) != nil && JSONValue.parse(arguments) == JSONValue.parse(source[index]))
        }

        let finishReasons = chunks.compactMap { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue }
        #expect(finishReasons == ["tool_calls"])
        let last = try #require(chunks.last)
        #expect(last["choices"] == .array([]))
        #expect(last["usage"] == JSONValue.parse(#"{"prompt_tokens": 500, "completion_tokens": 89, "total_tokens": 589}"#))
        #expect(usage == TokenUsage(promptTokens: 500, completionTokens: 89))
    }

    @Test func crlfCommentsAndMultiLineData() throws {
        let input = """
        : keep-alive\r
        event: message_start\r
        data: {"type":"message_start","message":{"id":"msg_2","usage":\r
        data: {"input_tokens":12,"output_tokens":1}}}\r
        \r
        event: content_block_delta\r
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\r
        \r
        : another comment\r
        event: message_delta\r
        data: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":15,"output_tokens":3}}\r
        \r
        event: message_stop\r
        data: {"type":"message_stop"}\r
        \r

        """
        let bytes = Array(input.utf8)
        #expect(firstSplitThatDiffers(bytes) { Self.translate($0, size: $1).out } == nil)
        let whole = Self.translate(bytes, size: bytes.count)
        let chunks = outputEvents(whole.out).compactMap(\.json)
        #expect(chunks.compactMap { $0["choices"]?.arrayValue?.first?["delta"]?["content"]?.stringValue }.joined() == "Hi")
        #expect(chunks.compactMap { $0["choices"]?.arrayValue?.first?["finish_reason"]?.stringValue } == ["length"])
        #expect(whole.usage == TokenUsage(promptTokens: 15, completionTokens: 3), "message_delta's cumulative counts win")
    }

    @Test func errorEvent() throws {
        let input = #"""
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_3","usage":{"input_tokens":9,"output_tokens":1}}}

        event: error
        data: {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}


        """#
        let (out, usage) = Self.translate(Array(input.utf8), size: 5)
        let events = outputEvents(out)
        #expect(events.count == 2, "nothing follows the error")
        #expect(events.last?.json == JSONValue.parse(#"{"error": {"message": "Overloaded", "type": "overloaded_error", "code": null}}"#))
        #expect(usage == TokenUsage(promptTokens: 9, completionTokens: 1))
    }

    /// A stream cut anywhere ends in a well-formed output: JSON chunks, then `[DONE]` or an error.
    @Test func truncatedStreams() {
        let input = Array(Self.toolStream.utf8)
        for cut in stride(from: 0, through: input.count, by: 3) {
            let (out, _) = Self.translate(Array(input[0..<cut]), size: 64)
            let events = outputEvents(out)
            #expect(events.dropLast().allSatisfy { $0.json?["object"] == .string("chat.completion.chunk") }, "cut \(cut)")
            let last = events.last
            #expect(last?.data == "[DONE]" || last?.json?["error"]?["type"] == .string("upstream_error"), "cut \(cut)")
        }
    }

    @Test func missingMessageStopStillCompletes() {
        let input = #"""
        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}


        """#
        let events = outputEvents(Self.translate(Array(input.utf8), size: 10).out)
        #expect(events.last?.data == "[DONE]")
        #expect(events.dropLast().last?.json?["usage"]?["completion_tokens"] == .int(4))
    }

    @Test func dataThatIsNotJSONEndsWithAnError() {
        let input = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\n\ndata: {\"type\":\"message_stop\"}\n\n"
        let events = outputEvents(Self.translate(Array(input.utf8), size: 4).out)
        #expect(events.count == 1)
        #expect(events.first?.json?["error"]?["type"] == .string("upstream_error"))
    }
}

import GatewayPolicy
import Testing

@Suite struct UsageTapTests {
    static let openAIJSON = """
        {"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini",\
        "choices":[{"index":0,"message":{"role":"assistant","content":"the \\"usage\\":{\\"prompt_tokens\\":1} is text",\
        "usage":{"prompt_tokens":777}},"finish_reason":"stop"}],\
        "metadata":{"usage":{"prompt_tokens":555,"completion_tokens":555}},\
        "usage": {"prompt_tokens": 1234, "completion_tokens":56, "total_tokens":1290,\
        "prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":7}},\
        "system_fingerprint":null}
        """

    static let openAISSE = """
        data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}\r
        \r
        data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hello \\"usage\\": 5"}}],"usage":null}\r
        \r
        : a comment line with "usage":{"prompt_tokens":9}\r
        \r
        data: {"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":16,"total_tokens":35}}\r
        \r
        data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{}}],"usage":null}\r
        \r
        data: [DONE]\r
        \r

        """

    static let anthropicJSON = """
        {"id":"msg_1","type":"message","role":"assistant","model":"claude-haiku",\
        "content":[{"type":"text","text":"{\\"usage\\":{\\"input_tokens\\":3}}"}],\
        "stop_reason":"end_turn","stop_sequence":null,\
        "usage":{"input_tokens":2095,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":503}}
        """

    static let anthropicSSE = """
        event: message_start
        data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-haiku","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}

        event: content_block_start
        data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

        event: ping
        data: {"type": "ping"}

        event: content_block_delta
        data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \\"output_tokens\\":99"}}

        event: content_block_stop
        data: {"type":"content_block_stop","index":0}

        event: message_delta
        data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

        event: message_stop
        data: {"type":"message_stop"}


        """

    static let cases: [(UsageTap.Mode, String, Usage)] = [
        (.openAIJSON, openAIJSON, Usage(promptTokens: 1234, completionTokens: 56)),
        (.openAISSE, openAISSE, Usage(promptTokens: 19, completionTokens: 16)),
        (.anthropicJSON, anthropicJSON, Usage(promptTokens: 2095, completionTokens: 503)),
        (.anthropicSSE, anthropicSSE, Usage(promptTokens: 25, completionTokens: 15)),
    ]

    static func run(_ mode: UsageTap.Mode, _ pieces: [ArraySlice<UInt8>]) -> Usage? {
        var tap = UsageTap(mode: mode)
        for piece in pieces { piece.withUnsafeBytes { tap.feed($0) } }
        return tap.usage
    }

    @Test(arguments: 0..<4)
    func wholeBody(_ i: Int) {
        let (mode, body, expected) = UsageTapTests.cases[i]
        let bytes = Array(body.utf8)
        #expect(UsageTapTests.run(mode, [bytes[...]]) == expected)
    }

    @Test(arguments: 0..<4)
    func splitAtEveryByte(_ i: Int) {
        let (mode, body, expected) = UsageTapTests.cases[i]
        let bytes = Array(body.utf8)
        for cut in 0...bytes.count {
            let usage = UsageTapTests.run(mode, [bytes[..<cut], bytes[cut...]])
            #expect(usage == expected, "cut at \(cut) of \(bytes.count)")
            if usage != expected { break }
        }
        // One byte at a time.
        #expect(UsageTapTests.run(mode, bytes.indices.map { bytes[$0...$0] }) == expected)
    }

    /// Long strings and containers are scanned eight bytes at a time: put the bytes that matter (quotes, escapes,
    /// brackets inside strings, a fake "usage" in text) at every offset of a word, and cut the body everywhere.
    @Test func wordAtATimeScanningMissesNothing() {
        for shift in 0..<8 {
            let pad = String(repeating: "x", count: shift)
            let text = pad + #"long text with \"quotes\", a \\ backslash, {braces} and [brackets] and \"usage\":{\"prompt_tokens\":9}"#
            let body = #"{"id":"\#(pad)a","choices":[{"message":{"content":"\#(text)"},"n":[1,{"a":"]}"}]}],"#
                + #""note":"\#(text)","usage":{"prompt_tokens":\#(10 + shift),"completion_tokens":7}}"#
            let bytes = Array(body.utf8)
            let expected = Usage(promptTokens: 10 + shift, completionTokens: 7)
            for cut in 0...bytes.count {
                let usage = UsageTapTests.run(.openAIJSON, [bytes[..<cut], bytes[cut...]])
                #expect(usage == expected, "shift \(shift), cut at \(cut) of \(bytes.count)")
                if usage != expected { return }
            }
        }
    }

    @Test func lineFeedsOnlyAndCarriageReturnsOnly() {
        let sse = UsageTapTests.openAISSE
        let lf = sse.replacingOccurrences(of: "\r\n", with: "\n")
        let cr = sse.replacingOccurrences(of: "\r\n", with: "\r")
        for text in [lf, cr] {
            let bytes = Array(text.utf8)
            for cut in 0...bytes.count {
                #expect(UsageTapTests.run(.openAISSE, [bytes[..<cut], bytes[cut...]]) == Usage(promptTokens: 19, completionTokens: 16))
            }
        }
    }

    @Test func nullUsageDoesNotReset() {
        let chunks = """
            data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}

            data: {"choices":[],"usage":null}

            data: {"usage":null,"choices":[{"delta":{"content":"x"}}]}

            data: [DONE]


            """
        #expect(UsageTapTests.run(.openAISSE, [Array(chunks.utf8)[...]]) == Usage(promptTokens: 7, completionTokens: 3))
    }

    @Test func noUsageIsNil() {
        let streams: [(UsageTap.Mode, String)] = [
            (.openAIJSON, #"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":null}"#),
            (.openAIJSON, #"{"error":{"message":"bad","type":"invalid_request_error"}}"#),
            (.openAISSE, "data: {\"choices\":[],\"usage\":null}\n\ndata: [DONE]\n\n"),
            (.anthropicJSON, #"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            (.anthropicSSE, "event: ping\ndata: {\"type\":\"ping\"}\n\n"),
            (.openAIJSON, ""),
            (.openAIJSON, "<html>502 Bad Gateway</html>"),
        ]
        for (mode, text) in streams {
            #expect(UsageTapTests.run(mode, [Array(text.utf8)[...]]) == nil, "\(text)")
        }
    }

    @Test func embeddingsHavePromptTokensOnly() {
        let body = #"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2,3e-5]}],"model":"embed-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#
        #expect(UsageTapTests.run(.openAIJSON, [Array(body.utf8)[...]]) == Usage(promptTokens: 8, completionTokens: 0))
    }

    @Test func nonIntegersAndNegativesAreIgnored() {
        let body = #"{"usage":{"prompt_tokens":1.5,"completion_tokens":-3}}"#
        #expect(UsageTapTests.run(.openAIJSON, [Array(body.utf8)[...]]) == nil)
    }

    /// A 6 MB response whose usage comes last, with decoys in strings and nested objects, fed in
    /// 16 KiB reads: found, with the tap's size fixed.
    @Test func hugeBodyWithUsageAtTheEnd() {
        var body = #"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":""#
        let filler = #"lorem ipsum \"usage\":{\"prompt_tokens\":1} {[\\ "#
        body += String(repeating: filler, count: 6_000_000 / filler.utf8.count)
        body += #""}}],"data":["#
        body += String(repeating: #"{"usage":{"prompt_tokens":2},"e":[1,2,3.5,[[{}]]]},"#, count: 20_000)
        body += #"null],"usage":{"prompt_tokens":4321,"completion_tokens":8765}}"#
        let bytes = Array(body.utf8)
        #expect(bytes.count > 6_000_000)
        var pieces: [ArraySlice<UInt8>] = []
        var offset = 0
        while offset < bytes.count {
            pieces.append(bytes[offset..<min(bytes.count, offset + 16_384)])
            offset += 16_384
        }
        #expect(UsageTapTests.run(.openAIJSON, pieces) == Usage(promptTokens: 4321, completionTokens: 8765))
        #expect(MemoryLayout<UsageTap>.size <= 192, "a fixed, small state: no buffer")

        // And a long stream: 50,000 content chunks, then the usage chunk.
        var sse = ""
        for i in 0..<50_000 {
            sse += "data: {\"choices\":[{\"delta\":{\"content\":\"token \(i) \\\"x\\\"\"}}],\"usage\":null}\n\n"
        }
        sse += "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":50000}}\n\ndata: [DONE]\n\n"
        let sseBytes = Array(sse.utf8)
        var ssePieces: [ArraySlice<UInt8>] = []
        offset = 0
        while offset < sseBytes.count {
            ssePieces.append(sseBytes[offset..<min(sseBytes.count, offset + 4093)])
            offset += 4093
        }
        #expect(UsageTapTests.run(.openAISSE, ssePieces) == Usage(promptTokens: 11, completionTokens: 50_000))
    }

    @Test func deepNestingDoesNotConfuseTheTopLevel() {
        let deep = String(repeating: "[{\"a\":", count: 100) + "1" + String(repeating: "}]", count: 100)
        let body = "{\"x\":\(deep),\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}"
        let bytes = Array(body.utf8)
        for cut in stride(from: 0, through: bytes.count, by: 7) {
            #expect(UsageTapTests.run(.openAIJSON, [bytes[..<cut], bytes[cut...]]) == Usage(promptTokens: 5, completionTokens: 6))
        }
    }

    @Test func anthropicDeltaMayCarryInputTokens() {
        let sse = """
            event: message_start
            data: {"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1}}}

            event: message_delta
            data: {"type":"message_delta","delta":{},"usage":{"input_tokens":12,"output_tokens":40}}


            """
        #expect(UsageTapTests.run(.anthropicSSE, [Array(sse.utf8)[...]]) == Usage(promptTokens: 12, completionTokens: 40))
        // message.usage only counts in the Anthropic stream.
        let json = #"{"message":{"usage":{"input_tokens":10}}}"#
        #expect(UsageTapTests.run(.openAIJSON, [Array(json.utf8)[...]]) == nil)
    }

    @Test func usageOfTheWrongShapeIsIgnored() {
        let bodies = [
            #"{"usage":[{"prompt_tokens":5}],"x":{"usage":{"prompt_tokens":6}}}"#,
            #"{"usage":[5,6],"choices":[{"usage":{"completion_tokens":7}}]}"#,
            #"{"usage":{"details":{"prompt_tokens":5},"list":[{"completion_tokens":6}]}}"#,
            #"[{"usage":{"prompt_tokens":5}}]"#,
            #"{"usage":"{\"prompt_tokens\":5}"}"#,
        ]
        for body in bodies {
            for mode in [UsageTap.Mode.openAIJSON, .anthropicSSE] {
                let text = mode == .anthropicSSE ? "data: \(body)\n\n" : body
                #expect(UsageTapTests.run(mode, [Array(text.utf8)[...]]) == nil, "\(mode) \(body)")
            }
        }
    }

    @Test func multiLineDataEvents() {
        let sse = "data: {\"usage\":\ndata: {\"prompt_tokens\":3,\ndata: \"completion_tokens\":4}}\n\n"
        let bytes = Array(sse.utf8)
        for cut in 0...bytes.count {
            #expect(UsageTapTests.run(.openAISSE, [bytes[..<cut], bytes[cut...]]) == Usage(promptTokens: 3, completionTokens: 4))
        }
    }
}

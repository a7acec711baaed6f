@testable import GatewayPolicy
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

    // MARK: The backward read of a whole body

    /// Bodies whose usage the backward read should take, and bodies where it must hand over to the forward scan.
    static var wholeBodies: [(UsageTap.Mode, String)] {
        var bodies: [(UsageTap.Mode, String)] = [(.openAIJSON, openAIJSON), (.anthropicJSON, anthropicJSON)]
        let usage = #"{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":[0,{"x":"}"}]},"completion_tokens_details":{"reasoning_tokens":0}}"#
        let tails = [
            #""usage":\#(usage)}"#,
            #""usage":\#(usage),"service_tier":"default","system_fingerprint":"fp_\"usage\":{}\\"}"#,
            #""usage" : \#(usage) , "n" : -1.5e+3 , "ok" : true , "list" : [ "a\"]" , { } ] }"#,
            "\"usage\"\n:\r\n{ \"prompt_tokens\" :\t7 ,\n\"completion_tokens\": 8 }\n}\n",
            #""usage":{"prompt_tokens":1,"completion_tokens":2},"x":{"usage":{"prompt_tokens":5,"completion_tokens":6}}}"#,
            #""usage":{"completion_tokens":2,"prompt_tokens":1,"prompt_tokens":3,"input_tokens":4}}"#,
            #""usage":{"input_tokens":11,"cache_read_input_tokens":5,"output_tokens":12,"server_tool_use":{"web_search_requests":1}}}"#,
            // Where the last usage alone does not decide: the forward scan's answer stands.
            #""usage":{"prompt_tokens":1,"completion_tokens":2},"usage":{"prompt_tokens":3}}"#,
            #""usage":{"prompt_tokens":1,"completion_tokens":2},"usage":null}"#,
            #""usage":{"prompt_tokens":1,"completion_tokens":2},"usage":{"prompt_tokens":3.5,"completion_tokens":4}}"#,
            #""usage":{"prompt_tokens":1,"completion_tokens":-2}}"#,
            #""usage":{"prompt_tokens":1,"completion_tokens":2,}}"#,
            #""usage":{"prompt_tokens":1,"completion_tokens":2},"data":[1,2}"#,
            #""usage":{"prompt\u005ftokens":1,"completion_tokens":2}}"#,
            #""usage":{"prompt_tokens":123456789012345678901234567890,"completion_tokens":2}}"#,
            #""us\u0061ge":{"prompt_tokens":1,"completion_tokens":2}}"#,
            #""usage":[{"prompt_tokens":1,"completion_tokens":2}]}"#,
            #""usage":{}}"#,
            #""model":"m"}"#,
            #""usage":{"prompt_tokens":1,"completion_tokens":2}} trailing"#,
            #""usage":{"prompt_tokens":1,"completion_tokens":2}}{"id":"second"}"#,
            #""usage":{"prompt_tokens":1,"completion_tokens":2}}{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
            #""text":"a \\\"usage\\\":{\\\"prompt_tokens\\\":9,\\\"completion_tokens\\\":9}}"}"#,
            #""text":"ends in a backslash \\","usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        ]
        let heads = [
            #"{"id":"chatcmpl-1","choices":[{"message":{"content":"hi \"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}"}}],"#,
            #"{"#,
            #"  {"usage":{"prompt_tokens":50,"completion_tokens":60},"#,
            #"{"usage":{"prompt_tokens":50},"#,
            #"{"content":[{"text":"\\"}],"#,
        ]
        for head in heads {
            for tail in tails {
                bodies.append((.openAIJSON, head + tail))
                bodies.append((.anthropicJSON, head + tail))
            }
        }
        // The usage further from the end than the backward read reaches.
        bodies.append((.openAIJSON, #"{"usage":{"prompt_tokens":1,"completion_tokens":2},"text":""#
            + String(repeating: "x", count: 5000) + #""}"#))
        bodies.append((.openAIJSON, #"{"text":""# + String(repeating: "y\\\"", count: 3000)
            + #"","usage":{"prompt_tokens":1,"completion_tokens":2}}"#))
        return bodies
    }

    static func run(_ mode: UsageTap.Mode, whole bytes: ArraySlice<UInt8>) -> (Usage?, Bool) {
        var tap = UsageTap(mode: mode, bodyLength: bytes.count)
        bytes.withUnsafeBytes { tap.feed($0) }
        return (tap.usage, tap.readFromEnd)
    }

    @Test func backwardReadAgreesWithTheForwardScan() {
        var taken = 0
        for (mode, body) in UsageTapTests.wholeBodies {
            let bytes = Array(body.utf8)
            let forward = UsageTapTests.run(mode, [bytes[...]])
            let (backward, fromEnd) = UsageTapTests.run(mode, whole: bytes[...])
            #expect(backward == forward, "\(body)")
            if fromEnd { taken += 1 }
            // Split anywhere, the first feed is not the whole body: the forward scan, with the same answer.
            for cut in 0...bytes.count {
                var tap = UsageTap(mode: mode, bodyLength: bytes.count)
                bytes[..<cut].withUnsafeBytes { tap.feed($0) }
                bytes[cut...].withUnsafeBytes { tap.feed($0) }
                #expect(tap.usage == forward, "cut at \(cut): \(body)")
                if tap.usage != forward { break }
            }
            // A length that is not the body's: the forward scan.
            var tap = UsageTap(mode: mode, bodyLength: bytes.count + 1)
            bytes.withUnsafeBytes { tap.feed($0) }
            #expect(tap.usage == forward && !tap.readFromEnd)
        }
        #expect(taken >= 40, "the backward read is taken where it can be")
        // Where the usage is last and whole, it is read from the end.
        for (mode, body, _) in UsageTapTests.cases where mode == .openAIJSON || mode == .anthropicJSON {
            #expect(UsageTapTests.run(mode, whole: Array(body.utf8)[...]).1)
        }
        // Streams ignore the length.
        let sse = Array(UsageTapTests.openAISSE.utf8)
        #expect(UsageTapTests.run(.openAISSE, whole: sse[...]) == (Usage(promptTokens: 19, completionTokens: 16), false))
    }

    /// The whole body at every offset of a word, and with its bytes that matter (quotes, backslash runs, brackets)
    /// at every offset too.
    @Test func backwardReadAtEveryWordOffset() {
        for (mode, body) in UsageTapTests.wholeBodies.prefix(60) {
            let bytes = Array(body.utf8)
            let forward = UsageTapTests.run(mode, [bytes[...]])
            for shift in 0..<8 {
                let buffer = [UInt8](repeating: UInt8(ascii: "\""), count: shift) + bytes + [UInt8(ascii: "\\")]
                let slice = buffer[shift..<(shift + bytes.count)]
                #expect(UsageTapTests.run(mode, whole: slice).0 == forward, "shift \(shift): \(body)")
                let padded = Array((String(repeating: " ", count: shift) + body + String(repeating: "\n", count: shift)).utf8)
                #expect(UsageTapTests.run(mode, whole: padded[...]).0 == forward, "pad \(shift): \(body)")
            }
        }
        for shift in 0..<8 {
            let pad = String(repeating: "x", count: shift)
            let body = #"{"id":"\#(pad)","note":"\#(pad)\\\\\"usage\":{\"prompt_tokens\":9}\\","list":[{"\#(pad)":"]}"}],"#
                + #""usage":{"prompt_tokens":\#(10 + shift),"completion_tokens":7,"d\#(pad)":{"k":"}\\\""}},"\#(pad)":"\\"}"#
            let bytes = Array(body.utf8)
            let (usage, fromEnd) = UsageTapTests.run(.openAIJSON, whole: bytes[...])
            #expect(usage == Usage(promptTokens: 10 + shift, completionTokens: 7) && fromEnd, "\(body)")
            #expect(usage == UsageTapTests.run(.openAIJSON, [bytes[...]]))
        }
    }

    /// Truncated and mangled bodies: never a crash, never a read outside the body (the address sanitizer and
    /// exclusive slices would show it), and only answers the forward scan could give for a well-formed prefix.
    @Test func malformedBodiesDoNotCrashTheBackwardRead() {
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            seed ^= seed << 13
            seed ^= seed >> 7
            seed ^= seed << 17
            return Int(seed >> 1)
        }
        let structural = Array(#"{}[]":,\ 0-e"#.utf8)
        for (mode, body) in UsageTapTests.wholeBodies.prefix(40) {
            let bytes = Array(body.utf8)
            for end in 0...bytes.count {
                _ = UsageTapTests.run(mode, whole: bytes[..<end])
                _ = UsageTapTests.run(mode, whole: bytes[(bytes.count - end)...])
            }
            for _ in 0..<200 {
                var mangled = bytes
                for _ in 0..<(1 + next() % 4) where !mangled.isEmpty {
                    mangled[next() % mangled.count] = structural[next() % structural.count]
                }
                let copy = Array(mangled)
                _ = UsageTapTests.run(mode, whole: copy[...])
            }
        }
        for text in ["}", "{}", "{\"", "{\"usage\"}", "{\"usage\":}", "{:{}}", "{\"\\\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}",
                     "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}", "{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}"] {
            let bytes = Array(text.utf8)
            #expect(UsageTapTests.run(.openAIJSON, whole: bytes[...]).0 == UsageTapTests.run(.openAIJSON, [bytes[...]]), "\(text)")
        }
    }
}

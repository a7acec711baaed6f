// gwmock, run as a real process on port 0: the response shapes, usage rules, fault and latency headers,
// stats, and the HTTP/1.1 corners (keep-alive, pipelining, chunked and large bodies, 100-continue).
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("gwmock")
struct MockTests {
    static let chatBody = #"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello to the mock provider, please."}]}"#

    /// Starts a gwmock on a free port.
    static func startMock(_ extra: [String] = []) throws -> Spawned {
        try Spawned.start("gwmock", ["--listen", "127.0.0.1:0"] + extra)
    }

    static func json(_ response: HTTPResponse) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(response.body))
        return try #require(object as? [String: Any], "not a JSON object: \(response.text)")
    }

    /// The SSE events of a stream body, each as its text without the blank line.
    static func events(_ response: HTTPResponse) -> [String] {
        response.text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
    }

    static func ceilQuarter(_ count: Int) -> Int { (count + 3) / 4 }

    // MARK: Shapes and usage

    @Test func nonStreamingChatCompletion() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: Self.chatBody))
        #expect(response.status == 200)
        #expect(response.header("content-type") == "application/json")
        #expect(Int(response.header("content-length") ?? "") == response.body.count)
        #expect(response.body.count > 300 && response.body.count < 800)
        let object = try Self.json(response)
        #expect(object["object"] as? String == "chat.completion")
        #expect(object["model"] as? String == "gpt-4o-mini")
        let choices = try #require(object["choices"] as? [[String: Any]])
        let message = try #require(choices.first?["message"] as? [String: Any])
        #expect(message["role"] as? String == "assistant")
        #expect((message["content"] as? String)?.isEmpty == false)
        #expect(choices.first?["finish_reason"] as? String == "stop")
        let usage = try #require(object["usage"] as? [String: Any])
        let prompt = Self.ceilQuarter(Self.chatBody.utf8.count)
        #expect(usage["prompt_tokens"] as? Int == prompt)
        #expect(usage["completion_tokens"] as? Int == 16)
        #expect(usage["total_tokens"] as? Int == prompt + 16)
    }

    @Test func receivedNsHeaderIsMonotonicTime() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let before = UInt64(monotonicSeconds() * 1e9)
        let client = try RawHTTPClient(port: mock.port)
        let responses = [
            try client.send(HTTPRequest.post("/v1/chat/completions", body: Self.chatBody)),
            try client.send(HTTPRequest.get("/v1/models")),
            try client.send(HTTPRequest.get("/nowhere")),
        ]
        let after = UInt64(monotonicSeconds() * 1e9)
        for response in responses {
            let value = try #require(response.header("x-mock-received-ns").flatMap { UInt64($0) })
            #expect(value >= before && value <= after)
        }
    }

    @Test func usageHeaderOverridesBoth() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let response = try client.send(HTTPRequest.post(
            "/v1/chat/completions", body: Self.chatBody, headers: [("x-mock-usage", "123,45")]))
        let usage = try #require(try Self.json(response)["usage"] as? [String: Any])
        #expect(usage["prompt_tokens"] as? Int == 123)
        #expect(usage["completion_tokens"] as? Int == 45)
        #expect(usage["total_tokens"] as? Int == 168)
    }

    @Test func chunksFlagAndHeaderSetCompletionTokens() throws {
        let mock = try Self.startMock(["--chunks", "4"])
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        var usage = try #require(try Self.json(client.send(HTTPRequest.post("/v1/chat/completions", body: Self.chatBody)))["usage"] as? [String: Any])
        #expect(usage["completion_tokens"] as? Int == 4)
        usage = try #require(try Self.json(client.send(HTTPRequest.post(
            "/v1/chat/completions", body: Self.chatBody, headers: [("x-mock-chunks", "9")])))["usage"] as? [String: Any])
        #expect(usage["completion_tokens"] as? Int == 9)
    }

    @Test func streamingChatCompletion() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let body = #"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: body, headers: [("x-mock-chunks", "5")]))
        #expect(response.status == 200)
        #expect(response.header("content-type") == "text/event-stream")
        #expect(response.header("transfer-encoding") == "chunked")
        #expect(response.header("x-mock-received-ns").flatMap { UInt64($0) } != nil)
        let events = Self.events(response)
        // One HTTP chunk per SSE event.
        #expect(response.chunks.count == events.count)
        for chunk in response.chunks {
            let text = String(decoding: chunk, as: UTF8.self)
            #expect(text.hasPrefix("data: ") && text.hasSuffix("\n\n"))
        }
        #expect(events.last == "data: [DONE]")
        let objects = try events.dropLast().map { event -> [String: Any] in
            let data = Data(event.dropFirst("data: ".count).utf8)
            return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        }
        let content = objects.filter { object in
            let delta = ((object["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any])
            return delta?["content"] != nil
        }
        #expect(content.count == 5)
        for object in objects {
            #expect(object["object"] as? String == "chat.completion.chunk")
            #expect(object["model"] as? String == "gpt-4o")
        }
        let finish = objects.compactMap { ($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String }
        #expect(finish == ["stop"])
        let usage = try #require(objects.last?["usage"] as? [String: Any])
        #expect(usage["prompt_tokens"] as? Int == Self.ceilQuarter(body.utf8.count))
        #expect(usage["completion_tokens"] as? Int == 5)

        // Without include_usage there is no usage chunk; the connection stays usable.
        let plain = try client.send(HTTPRequest.post("/v1/chat/completions", body: #"{"model":"m","stream":true}"#))
        let plainEvents = Self.events(plain)
        #expect(plainEvents.count == 16 + 2)
        #expect(!plain.text.contains("\"usage\""))
        #expect(plainEvents.last == "data: [DONE]")
    }

    @Test func completionsAndEmbeddingsShapes() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let completion = try Self.json(client.send(HTTPRequest.post("/v1/completions", body: #"{"model":"davinci","prompt":"hi"}"#)))
        #expect(completion["object"] as? String == "text_completion")
        #expect(completion["model"] as? String == "davinci")
        #expect((completion["usage"] as? [String: Any])?["completion_tokens"] as? Int == 16)

        let body = #"{"model":"text-embedding-3-small","input":["one","two","three"]}"#
        let embeddings = try Self.json(client.send(HTTPRequest.post("/v1/embeddings", body: body)))
        #expect(embeddings["object"] as? String == "list")
        let data = try #require(embeddings["data"] as? [[String: Any]])
        #expect(data.count == 3)
        #expect(data.map { $0["index"] as? Int } == [0, 1, 2])
        #expect((data.first?["embedding"] as? [Double])?.isEmpty == false)
        #expect((embeddings["usage"] as? [String: Any])?["prompt_tokens"] as? Int == Self.ceilQuarter(body.utf8.count))

        let single = try Self.json(client.send(HTTPRequest.post("/v1/embeddings", body: #"{"model":"e","input":"just one"}"#)))
        #expect((single["data"] as? [Any])?.count == 1)

        let models = try Self.json(client.send(HTTPRequest.get("/v1/models")))
        #expect(models["object"] as? String == "list")
        #expect(((models["data"] as? [Any])?.count ?? 0) > 0)
    }

    @Test func anthropicMessage() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let body = #"{"model":"claude-3-5-haiku-latest","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}"#
        let object = try Self.json(client.send(HTTPRequest.post("/v1/messages", body: body)))
        #expect(object["type"] as? String == "message")
        #expect(object["role"] as? String == "assistant")
        #expect(object["model"] as? String == "claude-3-5-haiku-latest")
        #expect(object["stop_reason"] as? String == "end_turn")
        let content = try #require(object["content"] as? [[String: Any]])
        #expect(content.first?["type"] as? String == "text")
        let usage = try #require(object["usage"] as? [String: Any])
        #expect(usage["input_tokens"] as? Int == Self.ceilQuarter(body.utf8.count))
        #expect(usage["output_tokens"] as? Int == 16)
    }

    @Test func anthropicStream() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let body = #"{"model":"claude-3-5-haiku-latest","stream":true,"messages":[]}"#
        let response = try client.send(HTTPRequest.post("/v1/messages", body: body, headers: [("x-mock-chunks", "3")]))
        #expect(response.status == 200)
        #expect(response.header("content-type") == "text/event-stream")
        let events = Self.events(response)
        #expect(response.chunks.count == events.count)
        let names = events.map { event in
            event.split(separator: "\n").first.map { String($0.dropFirst("event: ".count)) } ?? ""
        }
        #expect(names == [
            "message_start", "content_block_start", "content_block_delta", "content_block_delta",
            "content_block_delta", "content_block_stop", "message_delta", "message_stop",
        ])
        for event in events {
            let lines = event.split(separator: "\n")
            #expect(lines.count == 2)
            let data = Data(lines[1].dropFirst("data: ".count).utf8)
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            #expect(object["type"] as? String == String(lines[0].dropFirst("event: ".count)))
        }
        let delta = try #require(events.first { $0.hasPrefix("event: message_delta") })
        #expect(delta.contains(#""output_tokens":3"#))
        let start = try #require(events.first)
        #expect(start.contains(#""input_tokens":\#(Self.ceilQuarter(body.utf8.count))"#))
    }

    // MARK: Faults and delays

    @Test func statusHeader() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let response = try client.send(HTTPRequest.post(
            "/v1/chat/completions", body: Self.chatBody, headers: [("x-mock-status", "503")]))
        #expect(response.status == 503)
        let error = try #require(try Self.json(response)["error"] as? [String: Any])
        #expect(error["message"] is String)
        #expect(error["type"] is String)
        #expect(response.header("x-mock-received-ns") != nil)
        // The connection survives an error response.
        #expect(try client.send(HTTPRequest.post("/v1/chat/completions", body: Self.chatBody)).status == 200)
        // On /v1/messages the error is Anthropic-shaped.
        let anthropic = try Self.json(client.send(HTTPRequest.post(
            "/v1/messages", body: #"{"model":"c"}"#, headers: [("x-mock-status", "529")])))
        #expect(anthropic["type"] as? String == "error")
        #expect((anthropic["error"] as? [String: Any])?["type"] as? String == "overloaded_error")
    }

    @Test func profilesPlaySeveralProvidersAndChangeAtRunTime() throws {
        let mock = try Self.startMock(["--threads", "2", "--profile", "a:status=429,retry-after=1", "--profile", "b:chunks=3"])
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let limited = try client.send(HTTPRequest.post("/a/v1/chat/completions", body: Self.chatBody))
        #expect(limited.status == 429)
        #expect(limited.header("retry-after") == "1")
        let ok = try client.send(HTTPRequest.post("/b/v1/chat/completions", body: Self.chatBody))
        #expect(ok.status == 200)
        #expect((try Self.json(ok)["usage"] as? [String: Any])?["completion_tokens"] as? Int == 3)
        // Headers still override a profile.
        #expect(try client.send(HTTPRequest.post(
            "/a/v1/chat/completions", body: Self.chatBody, headers: [("x-mock-status", "200")])).status == 200)
        // A profile changed at run time applies on every thread; an unknown profile is a 404.
        #expect(try client.send(HTTPRequest.post("/mock/profiles/a?status=200&chunks=5", body: "")).status == 200)
        for _ in 0..<4 {
            let fresh = try RawHTTPClient(port: mock.port)
            let response = try fresh.send(HTTPRequest.post("/a/v1/chat/completions", body: Self.chatBody))
            #expect(response.status == 200)
            #expect(response.header("retry-after") == nil)
        }
        #expect(try client.send(HTTPRequest.post("/mock/profiles/a?status=abc", body: "")).status == 400)
        #expect(try client.send(HTTPRequest.post("/zz/v1/chat/completions", body: Self.chatBody)).status == 404)
        let stats = try Self.json(client.send(HTTPRequest.get("/mock/stats")))
        let byProfile = try #require(stats["by_profile"] as? [String: Int])
        #expect(byProfile["a"] == 6 && byProfile["b"] == 1, "\(byProfile)")
    }

    @Test func failRateFailsEveryNthRequest() throws {
        let mock = try Self.startMock(["--fail-rate", "0.25", "--fail-status", "429"])
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        var statuses: [Int] = []
        for _ in 0..<8 {
            statuses.append(try client.send(HTTPRequest.post("/v1/chat/completions", body: Self.chatBody)).status)
        }
        #expect(statuses == [200, 200, 200, 429, 200, 200, 200, 429])
    }

    @Test func latencyHeaderDelaysTheHead() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let start = monotonicSeconds()
        let response = try client.send(HTTPRequest.post(
            "/v1/chat/completions", body: Self.chatBody, headers: [("x-mock-latency-ms", "200")]))
        let elapsed = monotonicSeconds() - start
        #expect(response.status == 200)
        #expect(elapsed >= 0.18)
    }

    @Test func streamTimingHeaders() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let start = monotonicSeconds()
        let response = try client.send(HTTPRequest.post(
            "/v1/chat/completions", body: #"{"model":"m","stream":true}"#,
            headers: [("x-mock-ttft-ms", "100"), ("x-mock-itl-ms", "20"), ("x-mock-chunks", "5")]))
        let elapsed = monotonicSeconds() - start
        #expect(response.status == 200)
        #expect(Self.events(response).count == 5 + 2)
        // ttft + 4 gaps between 5 content events.
        #expect(elapsed >= 0.17)
    }

    @Test func resetFaultSendsNoResponse() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        try client.write(HTTPRequest.post("/v1/chat/completions", body: Self.chatBody, headers: [("x-mock-fault", "reset")]))
        let outcome = client.nextOutcome()
        #expect(outcome == .reset || outcome == .closed)
    }

    @Test func stallFaultNeverAnswers() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port, timeout: 0.3)
        try client.write(HTTPRequest.post("/v1/chat/completions", body: Self.chatBody, headers: [("x-mock-fault", "stall")]))
        #expect(client.nextOutcome() == .timedOut)
        // The server itself is fine.
        let other = try RawHTTPClient(port: mock.port)
        #expect(try other.send(HTTPRequest.get("/v1/models")).status == 200)
    }

    @Test func closeMidBodyFault() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        try client.write(HTTPRequest.post("/v1/chat/completions", body: Self.chatBody, headers: [("x-mock-fault", "close-mid-body")]))
        #expect(throws: HarnessError.self) { try client.readResponse() }

        let stream = try RawHTTPClient(port: mock.port)
        try stream.write(HTTPRequest.post(
            "/v1/chat/completions", body: #"{"model":"m","stream":true}"#, headers: [("x-mock-fault", "close-mid-body")]))
        #expect(throws: HarnessError.self) { try stream.readResponse() }
    }

    // MARK: Stats

    @Test func healthAnswersOnAKeptAliveConnection() throws {
        let mock = try Self.startMock([])
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let health = try client.send(HTTPRequest.get("/health"))
        #expect(health.status == 200)
        #expect(try Self.json(health)["status"] as? String == "ok")
        // The connection goes on with the next request.
        #expect(try client.send(HTTPRequest.get("/v1/models")).status == 200)
    }

    @Test func statsCountRequestsPathsAndModels() throws {
        let mock = try Self.startMock(["--threads", "2"])
        defer { mock.terminate() }
        // Several connections, so that both threads are likely to serve some.
        for model in ["alpha", "alpha", "beta"] {
            let client = try RawHTTPClient(port: mock.port)
            #expect(try client.send(HTTPRequest.post("/v1/chat/completions", body: #"{"model":"\#(model)"}"#)).status == 200)
        }
        let client = try RawHTTPClient(port: mock.port)
        #expect(try client.send(HTTPRequest.post("/v1/embeddings", body: #"{"model":"emb","input":"x"}"#)).status == 200)
        #expect(try client.send(HTTPRequest.get("/v1/nothing")).status == 404)
        let stats = try Self.json(client.send(HTTPRequest.get("/mock/stats")))
        // The stats request counts itself.
        #expect(stats["requests"] as? Int == 6)
        #expect(stats["connections"] as? Int == 4)
        let paths = try #require(stats["by_path"] as? [String: Int])
        #expect(paths["/v1/chat/completions"] == 3)
        #expect(paths["/v1/embeddings"] == 1)
        #expect(paths["/mock/stats"] == 1)
        #expect(paths["other"] == 1)
        let models = try #require(stats["by_model"] as? [String: Int])
        #expect(models == ["alpha": 2, "beta": 1, "emb": 1])
    }

    // MARK: HTTP/1.1

    @Test func keepAliveServesSeveralRequests() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        for model in ["first", "second", "third"] {
            let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: #"{"model":"\#(model)"}"#))
            #expect(response.status == 200)
            #expect(response.header("connection") == nil)
            #expect(try Self.json(response)["model"] as? String == model)
        }
        let stats = try Self.json(client.send(HTTPRequest.get("/mock/stats")))
        #expect(stats["connections"] as? Int == 1)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        // The first one waits 100 ms; the second must still come second.
        let first = HTTPRequest.post("/v1/chat/completions", body: #"{"model":"one"}"#, headers: [("x-mock-latency-ms", "100")])
        let second = HTTPRequest.post("/v1/messages", body: #"{"model":"two"}"#)
        let third = HTTPRequest.post("/v1/chat/completions", body: #"{"model":"three","stream":true}"#)
        let fourth = HTTPRequest.get("/v1/models")
        try client.write(first + second + third + fourth)
        #expect(try Self.json(client.readResponse())["model"] as? String == "one")
        #expect(try Self.json(client.readResponse())["model"] as? String == "two")
        let stream = try client.readResponse()
        #expect(Self.events(stream).last == "data: [DONE]")
        #expect(stream.text.contains(#""model":"three""#))
        #expect(try Self.json(client.readResponse())["object"] as? String == "list")
    }

    @Test func chunkedRequestBody() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let body = Array(#"{"model":"chunky","messages":[{"role":"user","content":"split across chunks"}]}"#.utf8)
        var request = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        var offset = 0
        for size in [7, 30, body.count] where offset < body.count {
            let piece = body[offset..<min(body.count, offset + size)]
            request += String(piece.count, radix: 16) + "\r\n" + String(decoding: piece, as: UTF8.self) + "\r\n"
            offset += piece.count
        }
        request += "0\r\n\r\n"
        let object = try Self.json(client.send(request))
        #expect(object["model"] as? String == "chunky")
        #expect((object["usage"] as? [String: Any])?["prompt_tokens"] as? Int == Self.ceilQuarter(body.count))
        // The connection is in sync afterwards.
        #expect(try client.send(HTTPRequest.get("/v1/models")).status == 200)
    }

    @Test func largeBodiesAreCounted() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port, timeout: 30)
        for size in [100_000, 10 * 1024 * 1024] {
            let filler = String(repeating: "a", count: size)
            let body = #"{"model":"big","stream":false,"messages":[{"role":"user","content":"\#(filler)"}]}"#
            let object = try Self.json(client.send(HTTPRequest.post("/v1/chat/completions", body: body)))
            #expect(object["model"] as? String == "big")
            #expect((object["usage"] as? [String: Any])?["prompt_tokens"] as? Int == Self.ceilQuarter(body.utf8.count))
        }
    }

    @Test func expectContinue() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let body = Self.chatBody
        try client.write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
        let interim = try client.readResponse()
        #expect(interim.status == 100)
        try client.write(body)
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(try Self.json(response)["model"] as? String == "gpt-4o-mini")
    }

    @Test func http10ClosesAfterTheResponse() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let body = Self.chatBody
        let response = try client.send("POST /v1/chat/completions HTTP/1.0\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(response.status == 200)
        #expect(response.header("connection") == "close")
        #expect(client.nextOutcome() == .closed)
    }

    @Test func malformedRequestGets400AndClose() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let response = try client.send("GARBAGE\r\n\r\n")
        #expect(response.status == 400)
        #expect(response.header("connection") == "close")
        #expect(client.nextOutcome() == .closed)
    }

    @Test func headRequestGetsNoBody() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        try client.write("HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
        let head = try client.readResponse(toHead: true)
        #expect(head.status == 405)
        #expect(head.header("content-length") != nil)
        // No body bytes followed: the next response parses cleanly.
        #expect(try client.send(HTTPRequest.get("/v1/models")).status == 200)
    }

    @Test func oversizedHeadGets431() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        // 20 KiB of headers still works (the read buffer grows)...
        let medium = try client.send(HTTPRequest.get("/v1/models", headers: [("x-filler", String(repeating: "f", count: 20_000))]))
        #expect(medium.status == 200)
        // ...past 64 KiB it is refused.
        let huge = try client.send(HTTPRequest.get("/v1/models", headers: [("x-filler", String(repeating: "f", count: 70_000))]))
        #expect(huge.status == 431)
        #expect(client.nextOutcome() == .closed)
    }

    @Test func unknownPathAndWrongMethod() throws {
        let mock = try Self.startMock()
        defer { mock.terminate() }
        let client = try RawHTTPClient(port: mock.port)
        let missing = try client.send(HTTPRequest.get("/v2/whatever"))
        #expect(missing.status == 404)
        #expect((try Self.json(missing)["error"] as? [String: Any])?["message"] is String)
        #expect(try client.send(HTTPRequest.get("/v1/chat/completions")).status == 405)
    }

    // MARK: Process

    @Test func sigtermExitsZero() throws {
        let mock = try Self.startMock(["--threads", "2"])
        let client = try RawHTTPClient(port: mock.port)
        // Even with a request stalled.
        try client.write(HTTPRequest.post("/v1/chat/completions", body: Self.chatBody, headers: [("x-mock-fault", "stall")]))
        let start = monotonicSeconds()
        #expect(mock.terminate() == 0)
        #expect(monotonicSeconds() - start < 2)
    }

    @Test func tlsFlagsAreRefused() throws {
        #expect(throws: HarnessError.self) {
            _ = try Spawned.start("gwmock", ["--listen", "127.0.0.1:0", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
                                  stderrPath: "/dev/null")
        }
    }
}

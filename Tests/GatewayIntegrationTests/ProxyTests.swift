// The gateway as a real process between real sockets and a real gwmock: forwarding, framing,
// keep-alive, streaming, backpressure, upstream faults, drain.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

@Suite("Proxy", .serialized)
struct ProxyTests {
    @Test("a chat completion goes through, with the gateway's headers")
    func forwardsChatCompletion() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let body = chatBody(bytes: 300)
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: body))
        #expect(response.status == 200)
        #expect(response.header("x-gateway-deployment") == "mock/gpt-4o-mini")
        #expect(response.header("x-gateway-attempts") == "1")
        #expect(response.header("x-request-id")?.hasPrefix("gw-") == true)
        #expect(response.header("x-mock-received-ns") != nil)
        let usage = json(response)["usage"] as? [String: Any]
        #expect(usage?["prompt_tokens"] as? Int == (body.utf8.count + 3) / 4)
        #expect(usage?["completion_tokens"] as? Int == 16)

        let echoed = try client.send(HTTPRequest.post("/v1/chat/completions", body: body, headers: [("x-request-id", "my-id-42")]))
        #expect(echoed.header("x-request-id") == "my-id-42")
    }

    @Test("generated request ids: gw- and 12 base-32 digits (15 bytes, a string stored inline), all different")
    func generatedRequestIDs() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let body = chatBody(bytes: 300)
        var seen = Set<String>()
        for _ in 0..<500 {
            let id = try #require(try client.send(HTTPRequest.post("/v1/chat/completions", body: body)).header("x-request-id"))
            #expect(id.utf8.count == 15 && id.hasPrefix("gw-"))
            #expect(id.utf8.dropFirst(3).allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                || (UInt8(ascii: "a")...UInt8(ascii: "v")).contains($0) }, "\(id)")
            seen.insert(id)
        }
        #expect(seen.count == 500)
    }

    @Test("the upstream sees hop-by-hop headers removed, its own key, X-Forwarded-For and the renamed model")
    func rewritesTheRequest() throws {
        let echo = try EchoUpstream()
        let fixture = try GatewayFixture.start(upstreamPort: echo.port)
        defer { fixture.stop() }
        let client = try fixture.client()
        let body = chatBody(model: "gpt-4o", bytes: 200)
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: body, headers: [
            ("Authorization", "Bearer client-virtual-key"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "must-not-pass"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic abc"),
            ("X-Forwarded-For", "10.1.2.3"),
            ("X-Custom", "kept"),
        ]))
        #expect(response.status == 200)
        let forwarded = response.text
        let lower = forwarded.lowercased()
        #expect(forwarded.hasPrefix("POST /v1/chat/completions HTTP/1.1\r\n"))
        #expect(lower.contains("authorization: bearer sk-provider-secret\r\n"))
        #expect(!lower.contains("client-virtual-key"))
        #expect(!lower.contains("x-hop"))
        #expect(!lower.contains("keep-alive: timeout"))
        #expect(!lower.contains("\r\nte:"))
        #expect(!lower.contains("proxy-authorization"))
        #expect(lower.contains("x-custom: kept\r\n"))
        #expect(lower.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1\r\n"))
        #expect(lower.contains("host: 127.0.0.1:\(echo.port)\r\n"))
        #expect(lower.contains("x-request-id: gw-"))
        // The alias: the body says the upstream's model id, and Content-Length matches the new body.
        let forwardedBody = forwarded.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        #expect(forwardedBody == body.replacingOccurrences(of: "\"gpt-4o\"", with: "\"gpt-4o-2024-08-06\""))
        #expect(lower.contains("content-length: \(forwardedBody.utf8.count)\r\n"))
        // The response carries our request id, not the upstream's own.
        #expect(response.header("x-request-id")?.hasPrefix("gw-") == true)
        #expect(response.headers.filter { $0.name.lowercased() == "x-request-id" }.count == 1)
    }

    @Test("1,000 keep-alive requests use few upstream connections")
    func reusesUpstreamConnections() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let clients = try (0..<4).map { _ in try fixture.client() }
        let body = chatBody()
        for i in 0..<1000 {
            let response = try clients[i % 4].send(HTTPRequest.post("/v1/chat/completions", body: body))
            #expect(response.status == 200)
        }
        let stats = try fixture.mockStats()
        #expect(stats["requests"] as? Int ?? 0 >= 1000)
        // One gateway thread, requests sent one at a time: one connection suffices; allow some slack.
        #expect((stats["connections"] as? Int ?? 999) <= 5)
    }

    @Test("chunked request bodies are re-framed; chunked responses pass through")
    func chunkedBothWays() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let body = chatBody(bytes: 5000, stream: true, includeUsage: true)
        let bytes = Array(body.utf8)
        var request = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
        var offset = 0
        while offset < bytes.count {
            let size = min(777, bytes.count - offset)
            request += String(size, radix: 16) + "\r\n" + String(decoding: bytes[offset..<(offset + size)], as: UTF8.self) + "\r\n"
            offset += size
        }
        request += "0\r\n\r\n"
        let response = try client.send(request)
        #expect(response.status == 200)
        #expect(response.header("transfer-encoding")?.lowercased() == "chunked")
        let text = response.text
        #expect(text.hasSuffix("data: [DONE]\n\n"))
        #expect(response.chunks.count > 1)
        // The mock counted every byte of the de-chunked body.
        #expect(text.contains("\"prompt_tokens\":\((bytes.count + 3) / 4)"))
        // And the connection is still good.
        let again = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody()))
        #expect(again.status == 200)
    }

    @Test("a 10 MB body arrives whole, with the model first (streamed) or last (collected)", arguments: [true, false])
    func largeBody(modelFirst: Bool) throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client(timeout: 60)
        let body = chatBody(bytes: 10 * 1024 * 1024, modelFirst: modelFirst)
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: body))
        #expect(response.status == 200)
        let usage = json(response)["usage"] as? [String: Any]
        #expect(usage?["prompt_tokens"] as? Int == (body.utf8.count + 3) / 4)
    }

    @Test("a large body with a second top-level model after the routed part is refused before it counts")
    func smuggledSecondModel() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client(timeout: 30)
        let filler = String(repeating: "a", count: 200_000)
        let body = "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"\(filler)\"}],\"model\":\"gpt-4o\"}"
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: body))
        #expect(response.status == 400)
        #expect(errorCode(response) == "invalid_request")
        // gwmock saw the head but never a complete body (it counts models once a body is complete).
        let byModel = try fixture.mockStats()["by_model"] as? [String: Any]
        #expect(byModel?.isEmpty == true, "gwmock completed a request: \(String(describing: byModel))")
    }

    @Test("SSE events reach the client one by one, before the upstream sends the last")
    func streamsEventsAsTheyArrive() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let request = HTTPRequest.post("/v1/chat/completions", body: chatBody(stream: true), headers: [
            ("x-mock-chunks", "5"), ("x-mock-itl-ms", "150"),
        ])
        let started = monotonicSeconds()
        try client.write(request)
        var received: [UInt8] = []
        var firstEventAt: Double?
        while !String(decoding: received, as: UTF8.self).contains("[DONE]") {
            let bytes = receiveSome(client.fd)
            if bytes.isEmpty { break }
            received += bytes
            if firstEventAt == nil, String(decoding: received, as: UTF8.self).contains("data: {") {
                firstEventAt = monotonicSeconds()
            }
        }
        let finishedAt = monotonicSeconds()
        #expect(String(decoding: received, as: UTF8.self).contains("data: [DONE]"))
        let first = try #require(firstEventAt)
        // Four more gaps of 150 ms follow the first event: had the gateway buffered the stream, the first
        // event would have come with the last.
        #expect(finishedAt - first >= 0.5)
        #expect(first - started < finishedAt - started)
    }

    @Test("slow readers do not make the gateway buffer responses")
    func slowReadersStayBounded() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let before = fixture.gatewayRSSKiB
        // 1,000 clients each ask for a ~1 MB stream and read nothing.
        var clients: [RawHTTPClient] = []
        for index in 0..<1000 {
            let client = try fixture.client()
            if index > 0 {
                // Small windows, so the kernel holds little and the test is about the gateway's buffers.
                // (Not on client 0, which reads the whole stream at the end: a tiny window makes that slow.)
                var size: Int32 = 4096
                setsockopt(client.fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
            try client.write(HTTPRequest.post("/v1/chat/completions", body: chatBody(stream: true), headers: [("x-mock-chunks", "8000")]))
            clients.append(client)
        }
        usleep(2_000_000)
        let during = fixture.gatewayRSSKiB
        // Unbounded buffering would hold ~1 GB; the gateway keeps about 24 KiB per stream (two 4 KiB heads
        // and a 16 KiB read buffer), so 1,000 streams stay well under 64 MB.
        #expect(during - before < 64 * 1024, "RSS grew from \(before) KiB to \(during) KiB")
        print("slow readers: gateway RSS \(before) KiB before, \(during) KiB with 1,000 stalled streams")
        // The streams are still alive and complete when a client reads.
        var tail: [UInt8] = []
        var total = 0
        while true {
            let bytes = receiveSome(clients[0].fd)
            if bytes.isEmpty { break }
            total += bytes.count
            tail = Array((tail + bytes).suffix(64))
            if String(decoding: tail, as: UTF8.self).contains("data: [DONE]") { break }
        }
        #expect(total > 1_000_000)
        #expect(String(decoding: tail, as: UTF8.self).contains("data: [DONE]"))
        clients.removeAll()
    }

    @Test("upstream refuses the connection: 502")
    func connectRefused() throws {
        // A port that was free a moment ago: nothing listens there.
        let closed = try RawHTTPListenerPort.unusedPort()
        let fixture = try GatewayFixture.start(upstreamPort: closed)
        defer { fixture.stop() }
        let client = try fixture.client()
        _ = try client.send(HTTPRequest.get("/health"))
        let files = fixture.gatewayOpenFiles
        for _ in 0..<5 {
            let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody()))
            #expect(response.status == 502)
            #expect(errorCode(response) == "upstream_error")
        }
        #expect(fixture.gatewayOpenFiles == files, "file descriptors leaked")
        #expect(fixture.gatewayStderr.contains("connection refused"))
    }

    @Test("upstream resets before the response head: 502")
    func resetBeforeResponse() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("x-mock-fault", "reset")]))
        #expect(response.status == 502)
        #expect(errorCode(response) == "upstream_error")
        // The client connection survives an upstream failure.
        #expect(try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody())).status == 200)
    }

    @Test("no upstream connection within the connect timeout: 503")
    func noConnectionInTime() throws {
        // One upstream connection, held by a stalled request: the next request waits, then gets 503.
        let fixture = try GatewayFixture.start(
            server: "  timeouts: {upstream_connect_ms: 300, upstream_response_ms: 5000}", maxConnections: 1)
        defer { fixture.stop() }
        let staller = try fixture.client()
        try staller.write(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("x-mock-fault", "stall")]))
        usleep(200_000)
        let response = try fixture.client().send(HTTPRequest.post("/v1/chat/completions", body: chatBody()))
        #expect(response.status == 503)
        #expect(errorCode(response) == "upstream_unavailable")
    }

    @Test("no response within the response timeout: 504")
    func responseTimeout() throws {
        let fixture = try GatewayFixture.start(server: "  timeouts: {upstream_response_ms: 400}")
        defer { fixture.stop() }
        let files = fixture.gatewayOpenFiles
        let client = try fixture.client()
        let started = monotonicSeconds()
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("x-mock-fault", "stall")]))
        #expect(response.status == 504)
        #expect(errorCode(response) == "upstream_timeout")
        #expect(monotonicSeconds() - started >= 0.35)
        #expect(fixture.gatewayStderr.contains("-> 504"))
        // The stalled upstream connection was closed, and the client's is still usable.
        #expect(try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody())).status == 200)
        #expect(fixture.gatewayOpenFiles <= files + 2)
    }

    @Test("upstream closes mid-body: the client connection is closed")
    func resetAfterResponseStarted() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let error = #expect(throws: HarnessError.self) {
            _ = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("x-mock-fault", "close-mid-body")]))
        }
        #expect(error?.description.contains("closed") == true)
    }

    @Test("a request in flight completes when SIGTERM arrives, then the gateway exits 0")
    func drainsOnSIGTERM() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.mock.terminate() }
        let client = try fixture.client()
        let idle = try fixture.client()
        try client.write(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("x-mock-latency-ms", "800")]))
        usleep(200_000)
        kill(fixture.gateway.pid, SIGTERM)
        let response = try client.readResponse()
        #expect(response.status == 200)
        #expect(response.header("connection") == "close")
        #expect(idle.nextOutcome() == .closed)
        #expect(fixture.gateway.terminate(signal: 0, timeout: 10) == 0)
        // New connections are refused once draining has begun.
        #expect(throws: (any Error).self) { _ = try fixture.client() }
    }

    @Test("a reused upstream connection that fails before any response byte is retried once on a new one")
    func retriesOnceOnAFreshConnection() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        // Warm the pool: the next request goes out on a reused connection.
        #expect(try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody())).status == 200)
        let before = try fixture.mockStats()["requests"] as? Int ?? 0
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("x-mock-fault", "reset")]))
        #expect(response.status == 502)
        // The reused connection, then a new one, then (the model's retry budget of 3, after a backoff) one more.
        #expect(response.header("x-gateway-attempts") == "3")
        let after = try fixture.mockStats()["requests"] as? Int ?? 0
        // Three attempts reached the mock, plus the stats request.
        #expect(after - before == 4)
    }

    @Test("SIGHUP reloads the configuration without dropping connections")
    func reloadsOnSIGHUP() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        #expect(try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(model: "gpt-new"))).status == 404)
        var yaml = try String(contentsOfFile: fixture.configPath, encoding: .utf8)
        yaml += "\n  - name: gpt-new\n    deployments: [{provider: mock, model: gpt-4o-mini}]\n"
        try yaml.write(toFile: fixture.configPath, atomically: true, encoding: .utf8)
        kill(fixture.gateway.pid, SIGHUP)
        var status = 0
        for _ in 0..<50 where status != 200 {
            usleep(50_000)
            status = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(model: "gpt-new"))).status
        }
        #expect(status == 200)
        // A broken file is refused and the running configuration stays.
        try "models: [".write(toFile: fixture.configPath, atomically: true, encoding: .utf8)
        kill(fixture.gateway.pid, SIGHUP)
        usleep(300_000)
        #expect(try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(model: "gpt-new"))).status == 200)
        #expect(fixture.gatewayStderr.contains("reload failed"))
    }

    @Test("an HTTP/1.0 client gets a streamed response de-chunked, ended by close")
    func http10Client() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let body = chatBody(stream: true)
        let response = try client.send("POST /v1/chat/completions HTTP/1.0\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        #expect(response.status == 200)
        #expect(response.header("transfer-encoding") == nil)
        #expect(response.endedByClose)
        #expect(response.text.hasPrefix("data: {"))
        #expect(response.text.hasSuffix("data: [DONE]\n\n"))
    }

    @Test("pipelined requests are answered in order")
    func pipelining() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let one = HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("x-request-id", "first")])
        let two = HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("x-request-id", "second"), ("x-mock-latency-ms", "50")])
        let three = HTTPRequest.get("/v1/models", headers: [("x-request-id", "third")])
        try client.write(one + two + three)
        #expect(try client.readResponse().header("x-request-id") == "first")
        #expect(try client.readResponse().header("x-request-id") == "second")
        let models = try client.readResponse()
        #expect(models.status == 200)
        #expect(models.text.contains("\"gpt-4o-mini\""))
    }

    @Test("Expect: 100-continue gets an interim response before the body is sent")
    func expectContinue() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let body = chatBody()
        try client.write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
        let interim = try client.readResponse()
        #expect(interim.status == 100)
        try client.write(body)
        #expect(try client.readResponse().status == 200)
    }

    @Test("unknown models, bad JSON and unknown paths get OpenAI-style errors and keep the connection")
    func requestErrors() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let unknown = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(model: "no-such-model")))
        #expect(unknown.status == 404)
        #expect(errorCode(unknown) == "model_not_found")
        let notJSON = try client.send(HTTPRequest.post("/v1/chat/completions", body: "[1,2]"))
        #expect(notJSON.status == 400)
        #expect(errorCode(notJSON) == "invalid_request")
        let noModel = try client.send(HTTPRequest.post("/v1/chat/completions", body: "{\"messages\":[]}"))
        #expect(noModel.status == 400)
        let path = try client.send(HTTPRequest.get("/v2/nothing"))
        #expect(path.status == 404)
        let method = try client.send(HTTPRequest.get("/v1/chat/completions"))
        #expect(method.status == 405)
        #expect(try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody())).status == 200)
    }

    @Test("a body over max_body_bytes gets 413 and the connection closes")
    func bodyTooLarge() throws {
        let fixture = try GatewayFixture.start(server: "  max_body_bytes: 1000")
        defer { fixture.stop() }
        let client = try fixture.client()
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(bytes: 2000)))
        #expect(response.status == 413)
        #expect(errorCode(response) == "request_too_large")
        #expect(client.nextOutcome() == .closed)
        // Chunked: the limit holds while decoding.
        let chunked = try fixture.client()
        let big = String(repeating: "b", count: 1500)
        let reply = try chunked.send("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5dc\r\n\(big)\r\n0\r\n\r\n")
        #expect(reply.status == 413)
    }

    @Test("a slow header section times out with 408")
    func headerTimeout() throws {
        let fixture = try GatewayFixture.start(server: "  timeouts: {header_ms: 300}")
        defer { fixture.stop() }
        let client = try fixture.client()
        try client.write("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        let response = try client.readResponse()
        #expect(response.status == 408)
        #expect(client.nextOutcome() == .closed)
    }
}

/// Finds a TCP port on 127.0.0.1 that nothing listens on.
enum RawHTTPListenerPort {
    static func unusedPort() throws -> Int {
        let (fd, port) = try bindLoopback(listening: false)
        close(fd)
        return port
    }
}

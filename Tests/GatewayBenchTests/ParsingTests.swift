#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import GatewayBench

@Suite struct ParsingTests {
    @Test func targets() throws {
        let plain = try BenchTarget(parsing: "127.0.0.1:9000")
        #expect(plain.path == "/v1/chat/completions")
        #expect(plain.authority == "127.0.0.1:9000")
        #expect(plain.address.port == 9000)
        #expect(try BenchTarget(parsing: "http://127.0.0.1:9000").path == "/v1/chat/completions")
        #expect(try BenchTarget(parsing: "http://127.0.0.1:9000/").path == "/v1/chat/completions")
        #expect(try BenchTarget(parsing: "http://localhost:81/v1/embeddings").path == "/v1/embeddings")
        let secure = try BenchTarget(parsing: "https://127.0.0.1:8443/v1/models")
        #expect(secure.tls && !plain.tls)
        #expect(secure.host == "127.0.0.1" && secure.address.port == 8443 && secure.path == "/v1/models")
        #expect(secure.description == "https://127.0.0.1:8443/v1/models")
        #expect(try BenchTarget(parsing: "https://[::1]:8443").host == "::1")
        #expect(throws: BenchTarget.ParseError.self) { try BenchTarget(parsing: "http://127.0.0.1") }
    }

    @Test func durations() {
        #expect(Durations.parse("5s") == 5_000_000_000)
        #expect(Durations.parse("500ms") == 500_000_000)
        #expect(Durations.parse("1.5s") == 1_500_000_000)
        #expect(Durations.parse("2m") == 120_000_000_000)
        #expect(Durations.parse("250us") == 250_000)
        #expect(Durations.parse("3") == 3_000_000_000)
        #expect(Durations.parse("fast") == nil)
        #expect(Durations.parse("-1s") == nil)
        #expect(Durations.describe(500_000_000) == "500ms")
        #expect(Durations.describe(2_000_000_000) == "2s")
    }

    @Test func requestBytesAreBuiltOnce() throws {
        var spec = RequestSpec()
        spec.apiKey = "sk-test"
        spec.headers = [("x-mock-chunks", "4")]
        let target = try BenchTarget(parsing: "127.0.0.1:9000")
        let template = RequestTemplate(spec: spec, target: target)
        let text = template.text
        #expect(text.hasPrefix("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n"))
        #expect(text.contains("Authorization: Bearer sk-test\r\n"))
        #expect(text.contains("x-mock-chunks: 4\r\n"))
        #expect(text.contains("Content-Length: \(template.bodyBytes)\r\n"))
        #expect(template.bodyBytes == 300)
        #expect(text.hasSuffix(#""stream":false,"max_tokens":64}"#))
        #expect(text.contains(#""model":"gpt-4o-mini""#))

        spec.stream = true
        spec.promptBytes = 1000
        let streaming = RequestTemplate(spec: spec, target: target)
        #expect(streaming.bodyBytes == 1000)
        #expect(streaming.text.contains(#""stream":true"#))

        spec.body = Array(#"{"model":"m","stream": false}"#.utf8)
        #expect(String(decoding: spec.bodyBytes(), as: UTF8.self) == #"{"model":"m","stream":true}"#)
        spec.body = Array(#"{"model":"m"}"#.utf8)
        #expect(String(decoding: spec.bodyBytes(), as: UTF8.self) == #"{"stream":true,"model":"m"}"#)

        var get = RequestSpec()
        get.method = "GET"
        let getTemplate = RequestTemplate(spec: get, target: try BenchTarget(parsing: "127.0.0.1:1/v1/models"))
        #expect(getTemplate.bodyBytes == 0)
        #expect(!getTemplate.text.contains("Content-Length"))
        #expect(RequestSpec.parseHeader("x-a:  b c ")! == ("x-a", "b c"))
        #expect(RequestSpec.parseHeader("nocolon") == nil)
    }

    @Test func sseEventsAcrossAnySplit() {
        let stream = Array("data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\nevent: x\ndata: [DONE]\n\n".utf8)
        for split in 0...stream.count {
            var scanner = SSEScanner()
            var events = 0
            stream.withUnsafeBytes { raw in
                events += scanner.feed(raw.baseAddress!, split)
                events += scanner.feed(raw.baseAddress! + split, stream.count - split)
            }
            #expect(events == 3, "split at \(split)")
        }
    }

    @Test func procStat() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 1 0 100 0 0"
        #expect(ProcessCPU.parseStat(line) == 325)
        #expect(ProcessCPU.parseStat("garbage") == nil)
        #expect(ProcessCPU.read(pid: getpid()) != nil)
    }

    @Test func openLoopPlanCoversExactlyTheMeasuredRequests() throws {
        var config = LoadConfig(target: try BenchTarget(parsing: "127.0.0.1:1"), request: RequestSpec())
        config.mode = .open(rate: 1000)
        config.warmupNs = 500_000_000
        config.durationNs = 2_000_000_000
        let plan = RunPlan(config: config, now: 0)
        #expect(plan.warmupCount == 500)
        #expect(plan.scheduleEnd == 2500)
        #expect(plan.measureStart == plan.start + 500_000_000)
        #expect(plan.windowNs == 2_000_000_000)
        config.requestCount = 100
        #expect(RunPlan(config: config, now: 0).scheduleEnd == 600)
    }

    @Test func validation() throws {
        var config = LoadConfig(target: try BenchTarget(parsing: "127.0.0.1:1"), request: RequestSpec())
        config.streamsPerConnection = 2
        #expect(throws: LoadConfig.ValidationError.self) { try config.validate() }
        do {
            try config.validate()
        } catch {
            #expect(error.description.contains("needs HTTP/2 (--h2 or --h2c)"))
        }
        config.httpProtocol = .h2c
        try config.validate()
        // h2 is over TLS, h2c is not: each names the other for the wrong scheme.
        config.httpProtocol = .h2
        do {
            try config.validate()
            Issue.record("--h2 with an http:// URL passed validation")
        } catch {
            #expect(error.description.contains("needs an https:// URL (use --h2c"))
        }
        config.target = try BenchTarget(parsing: "https://127.0.0.1:1")
        try config.validate()
        config.httpProtocol = .h2c
        do {
            try config.validate()
            Issue.record("--h2c with an https:// URL passed validation")
        } catch {
            #expect(error.description.contains("needs an http:// URL (use --h2 "))
        }
        config.target = try BenchTarget(parsing: "127.0.0.1:1")
        config.streamsPerConnection = LoadConfig.maxStreamsPerConnection + 1
        #expect(throws: LoadConfig.ValidationError.self) { try config.validate() }
        config.httpProtocol = .http1
        config.streamsPerConnection = 1
        config.threads = 4
        config.connections = 2
        #expect(throws: LoadConfig.ValidationError.self) { try config.validate() }
    }
}

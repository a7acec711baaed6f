import Testing
@testable import GatewayBench

/// The request template as HTTP/2 header fields (`--h2c`, `--h2`).
@Suite struct H2RequestTests {
    static func fields(_ template: RequestTemplate) -> [(String, String)] {
        template.h2Fields.map {
            (String(decoding: UnsafeRawBufferPointer(rebasing: template.h2Storage[$0.name]), as: UTF8.self),
             String(decoding: UnsafeRawBufferPointer(rebasing: template.h2Storage[$0.value]), as: UTF8.self))
        }
    }

    @Test func pseudoHeadersFirstLowercaseNamesNoConnectionFields() throws {
        var spec = RequestSpec()
        spec.apiKey = "sk-1"
        spec.headers = [("X-Mock-Chunks", "4"), ("Connection", "close"), ("Host", "api.example"), ("TE", "gzip"),
                        ("Transfer-Encoding", "chunked")]
        let template = RequestTemplate(spec: spec, target: try BenchTarget(parsing: "http://127.0.0.1:9000/v1/chat/completions"))
        let fields = H2RequestTests.fields(template)
        #expect(fields.prefix(4).map(\.0) == [":method", ":scheme", ":authority", ":path"])
        #expect(fields.prefix(4).map(\.1) == ["POST", "http", "api.example", "/v1/chat/completions"])
        let names = fields.map(\.0)
        #expect(names.allSatisfy { $0 == $0.lowercased() })
        for banned in ["host", "connection", "te", "transfer-encoding"] { #expect(!names.contains(banned)) }
        #expect(fields.contains { $0 == ("x-mock-chunks", "4") })
        #expect(fields.contains { $0 == ("authorization", "Bearer sk-1") })
        #expect(fields.contains { $0 == ("content-type", "application/json") })
        #expect(fields.contains { $0 == ("content-length", String(template.bodyBytes)) })
        // The body is the HTTP/1.1 request's body, without its head.
        #expect(template.body.count == template.bodyBytes && template.body.first == UInt8(ascii: "{"))
    }

    @Test func anHTTPSTargetSaysSchemeHTTPS() throws {
        let template = RequestTemplate(spec: RequestSpec(), target: try BenchTarget(parsing: "https://localhost:8443/v1/chat/completions"))
        let fields = H2RequestTests.fields(template)
        #expect(fields.prefix(4).map(\.1) == ["POST", "https", "localhost:8443", "/v1/chat/completions"])
    }

    @Test func aGetHasNoBodyFields() throws {
        var spec = RequestSpec()
        spec.method = "GET"
        let template = RequestTemplate(spec: spec, target: try BenchTarget(parsing: "127.0.0.1:9000/v1/models"))
        let names = H2RequestTests.fields(template).map(\.0)
        #expect(!names.contains("content-length") && !names.contains("content-type"))
        #expect(template.bodyBytes == 0)
    }
}

// HTTPHeadParser.adoptRequest (the head an HTTP/2 stream renders, taken from its field ranges) against
// parseRequest on the same bytes: the same verdict, the same method, target, fields, kinds and framing.
import GatewayIO
import Testing

@testable import GatewayHTTP

@Suite("Adopted request heads")
struct AdoptedRequestTests {
    /// Renders "METHOD TARGET HTTP/1.1\r\n" and the fields as H2Stream does, with their ranges.
    private func render(_ method: String, _ target: String, _ fields: [(String, String)])
        -> (RawBuffer, ByteRange, ByteRange, [HeaderField]) {
        var text = Array(method.utf8) + [0x20]
        let methodRange = ByteRange(start: 0, count: Int32(method.utf8.count))
        let targetRange = ByteRange(start: Int32(text.count), count: Int32(target.utf8.count))
        text += Array(target.utf8) + Array(" HTTP/1.1\r\n".utf8)
        let ranges = appendRenderedFields(fields, to: &text)
        return (RawBuffer(text), methodRange, targetRange, ranges)
    }

    private func bothWays(_ method: String, _ target: String, _ fields: [(String, String)],
                          sourceLocation: SourceLocation = #_sourceLocation) -> HTTPHeadParser.Outcome {
        let (buffer, methodRange, targetRange, ranges) = render(method, target, fields)
        let parsed = HTTPHeadParser(), adopted = HTTPHeadParser()
        let expected = parsed.parseRequest(buffer.pointer, buffer.count)
        let outcome = ranges.withUnsafeBufferPointer {
            adopted.adoptRequest(buffer.pointer, headLength: buffer.count, method: methodRange, target: targetRange, fields: $0)
        }
        #expect(outcome == expected, sourceLocation: sourceLocation)
        guard outcome == .complete else { return outcome }
        #expect(adopted.headLength == parsed.headLength && adopted.method == parsed.method, sourceLocation: sourceLocation)
        #expect(adopted.methodRange == parsed.methodRange && adopted.target == parsed.target, sourceLocation: sourceLocation)
        #expect(adopted.contentLength == parsed.contentLength && adopted.chunked == parsed.chunked, sourceLocation: sourceLocation)
        #expect(adopted.keepAlive == parsed.keepAlive && adopted.expectContinue == parsed.expectContinue, sourceLocation: sourceLocation)
        #expect(adopted.hasGatewayFields == parsed.hasGatewayFields && adopted.hostCount == parsed.hostCount, sourceLocation: sourceLocation)
        expectSameFields(adopted, parsed, sourceLocation: sourceLocation)
        return outcome
    }

    @Test func wellFormedHeadsAgree() {
        #expect(bothWays("POST", "/v1/chat/completions", [
            ("content-type", "application/json"), ("authorization", "Bearer sk-test"), ("content-length", "300"),
            ("host", "gw.example"),
        ]) == .complete)
        #expect(bothWays("POST", "/v1/chat/completions", [("host", "a"), ("transfer-encoding", "chunked")]) == .complete)
        #expect(bothWays("GET", "/v1/models", [("host", "a"), ("x-gateway-route", "b"), ("expect", "100-continue")]) == .complete)
        #expect(bothWays("DELETE", "/x?y=%20", [("host", "a"), ("x-empty", ""), ("user-agent", "h2load nghttp2/1.52.0")]) == .complete)
    }

    @Test func theParsersRulesStillApply() {
        #expect(bothWays("POST", "/v1/x", [("host", "a"), ("host", "b")]) != .complete, "two Host fields")
        #expect(bothWays("POST", "/v1/x", [("content-type", "a")]) != .complete, "no Host")
        #expect(bothWays("POST", "/v1/x", [("host", "a"), ("content-length", "1"), ("content-length", "2")]) != .complete)
        #expect(bothWays("POST", "/v1/x", [("host", "a"), ("content-length", "12x")]) != .complete)
        #expect(bothWays("POST", "/v1/x", [("host", "a"), ("content-length", "3"), ("transfer-encoding", "chunked")]) != .complete)
        #expect(bothWays("POST", "/v1/x", [("host", "a"), ("transfer-encoding", "gzip")]) != .complete)
        #expect(bothWays("PO(T", "/v1/x", [("host", "a")]) != .complete, "a method that is not a token")
        #expect(bothWays("POST", "/v1/\u{7F}", [("host", "a")]) != .complete, "a control byte in the target")
        #expect(bothWays("POST", "/v1/é", [("host", "a")]) != .complete, "a byte past ASCII in the target")
        #expect(bothWays("GET", "", [("host", "a")]) != .complete, "no target (CONNECT has no :path)")
    }

    @Test func tooManyFieldsGet431() {
        let fields = [("host", "a")] + (0..<HTTPHeadParser.maxFields).map { ("x-f\($0)", "v") }
        #expect(bothWays("GET", "/", fields) == .failed(HTTPParseError(status: 431, code: .headersTooLarge, message: "too many header fields")))
    }
}

// HTTPHeadParser.adoptResponse (the head an upstream HTTP/2 stream renders, taken from its field ranges) against
// parseResponse on the same bytes: the same verdict, status, fields, kinds and framing.
import GatewayIO
import Testing

@testable import GatewayHTTP

@Suite("Adopted response heads")
struct AdoptedResponseTests {
    /// Renders "HTTP/1.1 STATUS OK\r\n" and the fields as UpstreamH2Stream does, with their ranges.
    private func render(_ status: Int, _ fields: [(String, String)]) -> (RawBuffer, [HeaderField]) {
        var text = Array("HTTP/1.1 \(status) OK\r\n".utf8)
        let ranges = appendRenderedFields(fields, to: &text)
        return (RawBuffer(text), ranges)
    }

    private func bothWays(_ status: Int, _ fields: [(String, String)],
                          sourceLocation: SourceLocation = #_sourceLocation) -> HTTPHeadParser.Outcome {
        let (buffer, ranges) = render(status, fields)
        let parsed = HTTPHeadParser(), adopted = HTTPHeadParser()
        let expected = parsed.parseResponse(buffer.pointer, buffer.count)
        let outcome = ranges.withUnsafeBufferPointer {
            adopted.adoptResponse(buffer.pointer, headLength: buffer.count, status: status, fields: $0)
        }
        #expect(outcome == expected, sourceLocation: sourceLocation)
        guard outcome == .complete else { return outcome }
        #expect(adopted.status == parsed.status && adopted.headLength == parsed.headLength, sourceLocation: sourceLocation)
        #expect(adopted.minorVersion == parsed.minorVersion && adopted.keepAlive == parsed.keepAlive, sourceLocation: sourceLocation)
        #expect(adopted.contentLength == parsed.contentLength && adopted.chunked == parsed.chunked, sourceLocation: sourceLocation)
        #expect(adopted.hasGatewayFields == parsed.hasGatewayFields, sourceLocation: sourceLocation)
        expectSameFields(adopted, parsed, sourceLocation: sourceLocation)
        return outcome
    }

    @Test func wellFormedHeadsAgree() {
        #expect(bothWays(200, [("content-type", "application/json"), ("content-length", "518"),
                               ("x-request-id", "req-1")]) == .complete)
        #expect(bothWays(200, [("content-type", "text/event-stream"), ("transfer-encoding", "chunked")]) == .complete)
        #expect(bothWays(204, []) == .complete)
        #expect(bothWays(429, [("retry-after", "2"), ("content-length", "0"), ("x-gateway-note", "a"),
                               ("connection", "x-hop"), ("x-hop", "1")]) == .complete)
    }

    @Test func framingFaultsAreTheUpstreamsInBothWays() {
        for fields in [[("content-length", "1"), ("transfer-encoding", "chunked")],
                       [("content-length", "1"), ("content-length", "2")],
                       [("content-length", "x")],
                       [("transfer-encoding", "gzip")],
                       [("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")]] {
            let outcome = bothWays(200, fields)
            guard case .failed(let error) = outcome else {
                Issue.record("accepted \(fields)")
                continue
            }
            #expect(error.status == 502, "\(fields)")
        }
    }

    @Test func tooManyFieldsAreRefused() {
        let fields = (0..<(HTTPHeadParser.maxFields + 1)).map { ("x-field-\($0)", "v") }
        let (buffer, ranges) = render(200, fields)
        let outcome = ranges.withUnsafeBufferPointer {
            HTTPHeadParser().adoptResponse(buffer.pointer, headLength: buffer.count, status: 200, fields: $0)
        }
        guard case .failed(let error) = outcome else {
            Issue.record("accepted \(fields.count) fields")
            return
        }
        #expect(error.status == 502)
    }
}

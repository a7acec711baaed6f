import Foundation
import GatewayIO
import Testing

@testable import GatewayHTTP

enum ErrorBodyFixtures {
    static let allCodes: [StaticCode] = [
        .invalidRequest, .invalidAPIKey, .budgetExceeded, .modelNotAllowed, .modelNotFound, .notFound,
        .methodNotAllowed, .requestTooLarge, .requestTimeout, .rateLimitExceeded, .headersTooLarge,
        .notImplemented, .upstreamError, .upstreamUnavailable, .upstreamTimeout, .shuttingDown,
    ]

    static let messages: [String] = [
        "plain message",
        "",
        #"the model "gpt-4o" does not exist"#,
        #"back\slash and \"escaped\" quote"#,
        "line one\nline two\r\nline three",
        "tab\there",
        "controls \u{00} \u{01} \u{08} \u{0B} \u{0C} \u{1B} \u{1F} end",
        "DEL \u{7F} is legal JSON",
        "unicode: café, 日本語, emoji 🚀, separators \u{2028}\u{2029}",
        #"looks like JSON: {"error":"x"}, [1,2]"#,
        "</script><script>alert(1)</script>",
        String(repeating: "long ", count: 2000),
    ]
}

/// Decodes `{"error":{"message","type","code"}}` with Foundation and checks it has exactly that shape.
func decodeErrorBody(_ bytes: [UInt8]) throws -> (message: String, type: String, code: String) {
    let object = try JSONSerialization.jsonObject(with: Data(bytes))
    let top = try #require(object as? [String: Any])
    #expect(Set(top.keys) == ["error"])
    let error = try #require(top["error"] as? [String: Any])
    #expect(Set(error.keys) == ["message", "type", "code"])
    return (
        try #require(error["message"] as? String),
        try #require(error["type"] as? String),
        try #require(error["code"] as? String)
    )
}

@Suite("Error bodies")
struct ErrorBodyTests {
    @Test("every code gives the OpenAI error shape", arguments: ErrorBodyFixtures.allCodes)
    func shape(_ code: StaticCode) throws {
        let decoded = try decodeErrorBody(ErrorBody.json(code: code, message: "m"))
        #expect(decoded.message == "m")
        #expect(decoded.code == code.rawValue)
        #expect(decoded.type == code.type)
    }

    @Test("error types follow the OpenAI vocabulary")
    func types() {
        #expect(StaticCode.invalidAPIKey.type == "authentication_error")
        #expect(StaticCode.modelNotAllowed.type == "permission_error")
        #expect(StaticCode.budgetExceeded.type == "insufficient_quota")
        #expect(StaticCode.rateLimitExceeded.type == "rate_limit_error")
        #expect(StaticCode.modelNotFound.type == "not_found_error")
        #expect(StaticCode.upstreamTimeout.type == "api_error")
        #expect(StaticCode.headersTooLarge.type == "invalid_request_error")
    }

    @Test("messages survive escaping and decode back unchanged", arguments: ErrorBodyFixtures.messages)
    func roundTrip(_ message: String) throws {
        let bytes = ErrorBody.json(code: .invalidRequest, message: message)
        #expect(try decodeErrorBody(bytes).message == message)
        // No raw control byte may appear in a JSON string.
        #expect(!bytes.contains { $0 < 0x20 })
        #expect(String(validatingUTF8: bytes.map { CChar(bitPattern: $0) } + [0]) != nil, "valid UTF-8")
    }

    @Test("escapes are the short forms where JSON has them, \\u00XX otherwise")
    func escapeForms() {
        #expect(ErrorBody.escape("\"") == #"\""#)
        #expect(ErrorBody.escape("\\") == #"\\"#)
        #expect(ErrorBody.escape("\n\r\t") == #"\n\r\t"#)
        #expect(ErrorBody.escape("\u{00}") == #"\u0000"#)
        #expect(ErrorBody.escape("\u{01}\u{1F}") == #"\u0001\u001f"#)
        #expect(ErrorBody.escape("\u{08}\u{0C}") == #"\u0008\u000c"#)
        #expect(ErrorBody.escape("é/ok") == "é/ok")
        let text = String(decoding: ErrorBody.json(code: .notFound, message: "a\"b"), as: UTF8.self)
        #expect(text == #"{"error":{"message":"a\"b","type":"not_found_error","code":"not_found"}}"#)
    }

    struct ResponseCase: Sendable, CustomTestStringConvertible {
        let status: Int
        let code: StaticCode
        let close: Bool
        let requestID: String?
        let extraHeaders: String
        var testDescription: String { "\(status) \(code.rawValue) close=\(close) id=\(requestID ?? "-")" }
    }

    static let responses: [ResponseCase] = [
        ResponseCase(status: 400, code: .invalidRequest, close: true, requestID: nil, extraHeaders: ""),
        ResponseCase(status: 401, code: .invalidAPIKey, close: false, requestID: "req-123", extraHeaders: ""),
        ResponseCase(status: 404, code: .modelNotFound, close: false, requestID: nil, extraHeaders: ""),
        ResponseCase(status: 429, code: .rateLimitExceeded, close: false, requestID: "r", extraHeaders: "retry-after: 3\r\n"),
        ResponseCase(status: 431, code: .headersTooLarge, close: true, requestID: nil, extraHeaders: ""),
        ResponseCase(status: 501, code: .notImplemented, close: true, requestID: "", extraHeaders: ""),
        ResponseCase(status: 502, code: .upstreamError, close: false, requestID: "abc", extraHeaders: "x-a: 1\r\nx-b: 2\r\n"),
        ResponseCase(status: 418, code: .invalidRequest, close: false, requestID: nil, extraHeaders: ""),
    ]

    @Test("the HTTP response is well framed and parses back", arguments: responses)
    func response(_ testCase: ResponseCase) throws {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { memory.deallocate() }
        var out = ByteBuffer()
        out.attach(memory, capacity: 64 * 1024, origin: 0)
        let message = "bad \"thing\"\nhappened"
        let requestIDBytes = testCase.requestID.map { Array($0.utf8) } ?? []
        requestIDBytes.withUnsafeBytes { id in
            ErrorBody.appendResponse(
                to: &out, status: testCase.status, code: testCase.code, message: message, close: testCase.close,
                requestID: testCase.requestID == nil ? nil : id, extraHeaders: testCase.extraHeaders)
        }
        let bytes = Array(UnsafeRawBufferPointer(start: out.readPointer, count: out.readableBytes))

        let parse = Parse.whole(bytes, response: true)
        #expect(parse.outcome == .complete)
        let parser = parse.parser
        #expect(parser.status == testCase.status)
        #expect(parser.minorVersion == 1)
        #expect(!parser.chunked)
        #expect(parser.keepAlive == !testCase.close)
        let reason = HTTPStatus.reason(testCase.status)
        #expect(String(decoding: bytes[9..<parser.startLineLength], as: UTF8.self) == "\(testCase.status) \(reason)")
        #expect(parse.value("content-type") == "application/json")
        if let id = testCase.requestID, !id.isEmpty {
            #expect(parse.value("x-request-id") == id)
        } else {
            #expect(parse.value("x-request-id") == nil)
        }
        if testCase.extraHeaders.contains("retry-after") { #expect(parse.value("retry-after") == "3") }
        if testCase.extraHeaders.contains("x-b") { #expect(parse.value("x-b") == "2") }

        // The declared length is exactly the body that follows the head.
        let body = Array(bytes[parser.headLength...])
        #expect(parser.contentLength == Int64(body.count))
        #expect(body == ErrorBody.json(code: testCase.code, message: message))
        let decoded = try decodeErrorBody(body)
        #expect(decoded.message == message)
        #expect(decoded.code == testCase.code.rawValue)
    }

    @Test("content-length counts bytes, not characters")
    func multibyteLength() throws {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
        defer { memory.deallocate() }
        var out = ByteBuffer()
        out.attach(memory, capacity: 4096, origin: 0)
        ErrorBody.appendResponse(to: &out, status: 404, code: .modelNotFound, message: "le modèle « 日本 » 🚀", close: false)
        let bytes = Array(UnsafeRawBufferPointer(start: out.readPointer, count: out.readableBytes))
        let parse = Parse.whole(bytes, response: true)
        #expect(parse.outcome == .complete)
        #expect(parse.parser.contentLength == Int64(bytes.count - parse.parser.headLength))
        #expect(try decodeErrorBody(Array(bytes[parse.parser.headLength...])).message == "le modèle « 日本 » 🚀")
    }
}

import GatewayJSON
import GatewayTranslate
import Testing

/// Upstream error bodies in the other shape.
@Suite struct ErrorShapeTests {
    static func convert(_ body: String, _ convert: (UnsafeRawBufferPointer) -> [UInt8]) throws -> JSONValue {
        let out = Array(body.utf8).withUnsafeBytes(convert)
        return try #require(parseJSON(out))
    }

    @Test func anthropicErrorForOpenAIClients() throws {
        let out = try Self.convert(
            #"{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"}"#,
            ErrorShape.openAIFromAnthropic
        )
        #expect(out == JSONValue.parse(#"{"error": {"message": "Overloaded", "type": "overloaded_error", "code": null}}"#))
    }

    @Test(arguments: [
        (#"{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}"#,
         "rate_limit_error", "Rate limit reached for gpt-4o"),
        (#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}"#,
         "invalid_request_error", "Incorrect API key provided"),
        (#"{"error": {"message": "The server had an error", "type": "server_error", "code": null}}"#,
         "api_error", "The server had an error"),
        (#"{"object": "error", "message": "max_tokens is too large", "type": "BadRequestError", "param": null, "code": 400}"#,
         "api_error", "max_tokens is too large"),
    ])
    func openAIErrorForAnthropicClients(body: String, type: String, message: String) throws {
        let out = try Self.convert(body, ErrorShape.anthropicFromOpenAI)
        #expect(out["type"] == .string("error"))
        #expect(out["error"]?["type"] == .string(type))
        #expect(out["error"]?["message"] == .string(message))
    }

    @Test(arguments: ["<html><body>502 Bad Gateway</body></html>", "", #"{"detail": "Not Found"}"#])
    func unreadableBodiesGetAGenericMessage(body: String) throws {
        let openAI = try Self.convert(body, ErrorShape.openAIFromAnthropic)
        #expect(openAI["error"]?["message"]?.stringValue?.isEmpty == false)
        #expect(openAI["error"]?["type"] == .string("upstream_error"))
        let anthropic = try Self.convert(body, ErrorShape.anthropicFromOpenAI)
        #expect(anthropic["error"]?["message"]?.stringValue?.isEmpty == false)
        #expect(anthropic["error"]?["type"] == .string("api_error"))
    }
}

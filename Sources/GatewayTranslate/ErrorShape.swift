import GatewayJSON

/// An upstream's error body in the other API's shape, so that a client sees errors in the shape it speaks.
public enum ErrorShape {
    /// The message when the upstream's error body is not one we can read.
    static let unreadableMessage = "The upstream provider returned an error without a readable message."

    /// Anthropic's `{"type":"error","error":{"type","message"}}` as OpenAI's `{"error":{"message","type","code"}}`.
    /// The message and the type pass through; Anthropic has no codes, so `code` is null.
    public static func openAIFromAnthropic(_ body: UnsafeRawBufferPointer) -> [UInt8] {
        let error = JSONValue.parse(bytes: body)?["error"]
        return openAI(
            message: error?["message"]?.stringValue ?? unreadableMessage,
            type: error?["type"]?.stringValue ?? "upstream_error"
        ).serialized()
    }

    /// OpenAI's `{"error":{"message","type","code"}}` (or vLLM's older flat `{"object":"error","message",…}`) as
    /// Anthropic's `{"type":"error","error":{"type","message"}}`, with the type mapped to one Anthropic has.
    public static func anthropicFromOpenAI(_ body: UnsafeRawBufferPointer) -> [UInt8] {
        let root = JSONValue.parse(bytes: body)
        let error = root?["error"]?.objectMembers != nil ? root?["error"] : root
        let message = error?["message"]?.stringValue ?? root?["error"]?.stringValue ?? unreadableMessage
        return anthropic(
            message: message,
            type: anthropicType(openAIType: error?["type"]?.stringValue, code: error?["code"]?.stringValue)
        ).serialized()
    }

    static func openAI(message: String, type: String) -> JSONValue {
        .object([("error", .object([("message", .string(message)), ("type", .string(type)), ("code", .null)]))])
    }

    static func anthropic(message: String, type: String) -> JSONValue {
        .object([("type", .string("error")), ("error", .object([("type", .string(type)), ("message", .string(message))]))])
    }

    private static let anthropicTypes: Set<String> = [
        "invalid_request_error", "authentication_error", "permission_error", "not_found_error", "request_too_large",
        "rate_limit_error", "api_error", "overloaded_error",
    ]

    private static func anthropicType(openAIType: String?, code: String?) -> String {
        if let openAIType, anthropicTypes.contains(openAIType) { return openAIType }
        switch code {
        case "invalid_api_key": return "authentication_error"
        case "rate_limit_exceeded": return "rate_limit_error"
        case "model_not_found": return "not_found_error"
        default: return "api_error"
        }
    }
}

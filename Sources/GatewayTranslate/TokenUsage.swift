import GatewayJSON

/// Tokens an upstream reported, in the gateway's billing terms (Anthropic's input and output tokens).
public struct TokenUsage: Equatable, Sendable {
    /// OpenAI's prompt tokens; Anthropic's input tokens, cached ones included.
    public var promptTokens: Int64
    /// OpenAI's completion tokens; Anthropic's output tokens.
    public var completionTokens: Int64

    public init(promptTokens: Int64, completionTokens: Int64) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }

    public var totalTokens: Int64 { promptTokens + completionTokens }

    /// Anthropic's `usage` object: cache writes and reads are counted apart from `input_tokens` there, but they are
    /// prompt tokens all the same (OpenAI's `prompt_tokens` counts cached tokens too).
    static func anthropic(_ usage: JSONValue?) -> TokenUsage? {
        guard let usage, usage.objectMembers != nil else { return nil }
        let input = (usage["input_tokens"]?.int64Value ?? 0)
            + (usage["cache_creation_input_tokens"]?.int64Value ?? 0)
            + (usage["cache_read_input_tokens"]?.int64Value ?? 0)
        return TokenUsage(promptTokens: input, completionTokens: usage["output_tokens"]?.int64Value ?? 0)
    }

    /// As OpenAI's `usage` object.
    var openAIJSON: JSONValue {
        .object([
            ("prompt_tokens", .int(promptTokens)),
            ("completion_tokens", .int(completionTokens)),
            ("total_tokens", .int(totalTokens)),
        ])
    }

    /// As Anthropic's `usage` object.
    var anthropicJSON: JSONValue {
        .object([("input_tokens", .int(promptTokens)), ("output_tokens", .int(completionTokens))])
    }

    /// OpenAI's `usage` object.
    static func openAI(_ usage: JSONValue?) -> TokenUsage? {
        guard let usage, usage.objectMembers != nil else { return nil }
        return TokenUsage(
            promptTokens: usage["prompt_tokens"]?.int64Value ?? 0,
            completionTokens: usage["completion_tokens"]?.int64Value ?? 0
        )
    }
}

/// A translated non-streamed response and the usage read from it on the way, for billing.
public struct TranslatedResponse: Sendable {
    public let body: [UInt8]
    /// Nil when the upstream reported none.
    public let usage: TokenUsage?
}

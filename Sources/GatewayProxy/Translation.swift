import GatewayConfig
import GatewayHTTP
import GatewayIO
import GatewayTranslate

/// One attempt served by a provider of the other API shape: an OpenAI chat request sent to an Anthropic
/// deployment, or an Anthropic Messages request sent to an OpenAI-shaped one. The request body goes out
/// translated; a streamed 2xx response comes back translated event by event, and any other response is
/// collected whole and translated once. The only place the proxy decodes bodies: untranslated requests
/// never get here.
final class Translation {
    enum Direction {
        /// The client speaks OpenAI's chat completions; the provider is Anthropic.
        case openAIClientAnthropicProvider
        /// The client speaks Anthropic's Messages; the provider is OpenAI-shaped.
        case anthropicClientOpenAIProvider
    }

    let direction: Direction
    let streamRequested: Bool
    private let clientModel: String
    private var toOpenAI: AnthropicSSEToOpenAI?
    private var toAnthropic: OpenAISSEToAnthropic?
    /// The collected response outgrew `max_body_bytes`.
    var failed = false

    /// The direction an endpoint and a provider kind need, or nil when they speak the same shape.
    static func direction(endpoint: APIPath, provider: ProviderKind) -> Direction? {
        switch (endpoint, provider) {
        case (.chatCompletions, .anthropic): .openAIClientAnthropicProvider
        case (.messages, .openai): .anthropicClientOpenAIProvider
        default: nil
        }
    }

    init(_ direction: Direction, clientModel: String, streamRequested: Bool) {
        self.direction = direction
        self.clientModel = clientModel
        self.streamRequested = streamRequested
    }

    /// The upstream path under the provider's base path.
    var upstreamPath: StaticString {
        direction == .openAIClientAnthropicProvider ? "/messages" : "/chat/completions"
    }

    func request(_ body: UnsafeRawBufferPointer, upstreamModel: String) throws(TranslationError) -> [UInt8] {
        switch direction {
        case .openAIClientAnthropicProvider: try OpenAIToAnthropic.request(body, upstreamModel: upstreamModel)
        case .anthropicClientOpenAIProvider: try AnthropicToOpenAI.request(body, upstreamModel: upstreamModel)
        }
    }

    /// Whether a response with this status is translated as a stream (event by event).
    func streams(status: Int) -> Bool { streamRequested && status >= 200 && status < 300 }

    /// Translates stream bytes as they arrive (decoded, without chunk framing).
    func feed(_ bytes: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        switch direction {
        case .openAIClientAnthropicProvider:
            if toOpenAI == nil { toOpenAI = AnthropicSSEToOpenAI(clientModel: clientModel, created: Translation.nowSeconds) }
            toOpenAI!.feed(bytes, into: &out)
        case .anthropicClientOpenAIProvider:
            if toAnthropic == nil { toAnthropic = OpenAISSEToAnthropic(clientModel: clientModel) }
            toAnthropic!.feed(bytes, into: &out)
        }
    }

    /// The end of the stream: whatever the translator still holds (a final usage chunk, `[DONE]`).
    func finish(into out: inout [UInt8]) {
        toOpenAI?.finish(into: &out)
        toAnthropic?.finish(into: &out)
    }

    /// A whole response body: an error shape for statuses >= 400, the other API's response otherwise.
    func whole(_ body: UnsafeRawBufferPointer, status: Int) throws(TranslationError) -> [UInt8] {
        switch (direction, status >= 400) {
        case (.openAIClientAnthropicProvider, true): return ErrorShape.openAIFromAnthropic(body)
        case (.anthropicClientOpenAIProvider, true): return ErrorShape.anthropicFromOpenAI(body)
        case (.openAIClientAnthropicProvider, false):
            return try AnthropicToOpenAI.response(body, clientModel: clientModel, created: Translation.nowSeconds).body
        case (.anthropicClientOpenAIProvider, false):
            return try OpenAIToAnthropic.response(body, clientModel: clientModel).body
        }
    }

    private static var nowSeconds: Int64 { Int64(Clock.realtimeNs() / 1_000_000_000) }
}

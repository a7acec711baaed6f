/// # GatewayTranslate
///
/// Rewrites bodies between the OpenAI Chat Completions shape and the Anthropic Messages shape, so that a client of
/// either API can call a deployment of either provider kind. Pure: bytes in, bytes out, no I/O, no Foundation.
///
/// Each enum is named after the direction its bodies travel, from the shape it reads to the shape it writes:
/// - `OpenAIToAnthropic.request`: an OpenAI client's request for an Anthropic upstream;
///   `OpenAIToAnthropic.response` and `OpenAISSEToAnthropic`: an OpenAI upstream's answer for an Anthropic client.
/// - `AnthropicToOpenAI.request`, `AnthropicToOpenAI.response` and `AnthropicSSEToOpenAI`: the reverse.
/// - `ErrorShape`: an upstream error body of one shape in the other shape.
///
/// A request that cannot be translated throws a `TranslationError` naming the field (answer 400); a response that
/// cannot be translated throws one too (answer 502). Stream translators never throw: what they cannot translate
/// becomes an error event in the client's shape.
///
/// Wiring, in short (an OpenAI client, an Anthropic deployment):
/// ```swift
/// let upstreamBody = try OpenAIToAnthropic.request(body, upstreamModel: deployment.model)
/// // non-streamed answer:
/// let translated = try AnthropicToOpenAI.response(answer, clientModel: requested, created: nowSeconds)
/// bill(translated.usage)
/// // streamed answer, per chunk read from the upstream:
/// let stream = AnthropicSSEToOpenAI(clientModel: requested, created: nowSeconds)
/// stream.feed(chunk, into: &toClient)   // zero or more complete events appended
/// stream.finish(into: &toClient)        // at the upstream's end of body
/// bill(stream.usage)
/// // an upstream error status:
/// let errorBody = ErrorShape.openAIFromAnthropic(answer)
/// ```
public enum GatewayTranslateModule {}

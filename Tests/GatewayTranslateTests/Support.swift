import GatewayJSON
import GatewayTranslate
import Testing

/// Shared helpers: run a translation on a string, parse what comes out, read SSE output.

func parseJSON(_ bytes: [UInt8]) -> JSONValue? {
    bytes.withUnsafeBytes { JSONValue.parse(bytes: $0) }
}

/// Runs a translation over `json`'s bytes.
func run<T>(_ json: String, _ translate: (UnsafeRawBufferPointer) throws(TranslationError) -> T) throws(TranslationError) -> T {
    try run(Array(json.utf8), translate)
}

func run<T>(_ bytes: [UInt8], _ translate: (UnsafeRawBufferPointer) throws(TranslationError) -> T) throws(TranslationError) -> T {
    try bytes.withUnsafeBytes { raw in Result { () throws(TranslationError) in try translate(raw) } }.get()
}

/// The translation of `json`, parsed; a failure to parse fails the test.
func translated(_ json: String, _ translate: (UnsafeRawBufferPointer) throws(TranslationError) -> [UInt8]) throws -> JSONValue {
    let out = try run(json, translate)
    return try #require(parseJSON(out), "output is not JSON: \(String(decoding: out, as: UTF8.self))")
}

/// The error a translation throws for `json`, or nil when it succeeds.
func translationError<T>(_ json: String, _ translate: (UnsafeRawBufferPointer) throws(TranslationError) -> T) -> TranslationError? {
    do {
        _ = try run(json, translate)
        return nil
    } catch {
        return error
    }
}

func toAnthropic(_ raw: UnsafeRawBufferPointer) throws(TranslationError) -> [UInt8] {
    try OpenAIToAnthropic.request(raw, upstreamModel: "claude-sonnet-4-5")
}

func toOpenAI(_ raw: UnsafeRawBufferPointer) throws(TranslationError) -> [UInt8] {
    try AnthropicToOpenAI.request(raw, upstreamModel: "gpt-4o")
}

extension JSONValue {
    /// `{"type":"text","text":…}`, the text block or part of both APIs.
    static func textBlock(_ text: String) -> JSONValue {
        .object([("type", .string("text")), ("text", .string(text))])
    }
}

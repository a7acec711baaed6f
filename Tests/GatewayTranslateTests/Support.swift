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

/// One event of a translator's output: its `event` line (nil when absent) and its data.
struct OutputEvent {
    var name: String?
    var data: String
    var json: JSONValue? { JSONValue.parse(data) }
}

/// Splits a translator's output (LF line ends, one `data` line per event) into events.
func outputEvents(_ out: [UInt8]) -> [OutputEvent] {
    let text = String(decoding: out, as: UTF8.self)
    var events: [OutputEvent] = []
    for block in text.split(separator: "\n\n", omittingEmptySubsequences: true) {
        var event = OutputEvent(name: nil, data: "")
        for line in block.split(separator: "\n") {
            if line.hasPrefix("event: ") { event.name = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { event.data = String(line.dropFirst(6)) }
        }
        events.append(event)
    }
    return events
}

/// Feeds `input` to a stream translator in pieces of `size` bytes, then finishes it.
func feedInPieces(
    _ input: [UInt8], size: Int,
    feed: (UnsafeRawBufferPointer, inout [UInt8]) -> Void, finish: (inout [UInt8]) -> Void
) -> [UInt8] {
    var out: [UInt8] = []
    input.withUnsafeBytes { raw in
        var start = 0
        while start < raw.count {
            let end = min(start + size, raw.count)
            feed(UnsafeRawBufferPointer(rebasing: raw[start..<end]), &out)
            start = end
        }
    }
    finish(&out)
    return out
}

extension JSONValue {
    /// `{"type":"text","text":…}`, the text block or part of both APIs.
    static func textBlock(_ text: String) -> JSONValue {
        .object([("type", .string("text")), ("text", .string(text))])
    }
}

/// The first piece size, from 1 byte up, whose output differs from the output of the whole input in one piece.
func firstSplitThatDiffers(_ input: [UInt8], _ translate: ([UInt8], Int) -> [UInt8]) -> Int? {
    let whole = translate(input, input.count)
    return (1..<max(input.count, 1)).first { translate(input, $0) != whole }
}

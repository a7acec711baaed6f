/// Finds the few top-level fields of a JSON request body that policy needs (`model`, `stream`,
/// `stream_options`) without decoding the body: one pass over the bytes, nested values skipped.
/// About 7x faster than JSONDecoder for a 1 KB chat body (SWIFT-NOTES.md), and it allocates nothing.
public struct JSONFieldScanner {
    public struct Result: Sendable {
        /// The model's string contents, without quotes, as offsets into the body.
        public var model: Range<Int>?
        /// True when the model string holds escapes (then it is compared after unescaping).
        public var modelHasEscapes = false
        public var stream: Bool?
        /// The whole `stream_options` value, if present.
        public var streamOptions: Range<Int>?
        /// False when the body is not a JSON object.
        public var isObject = false

        public init() {}
    }

    public static func scan(_ body: UnsafeRawBufferPointer) -> Result {
        var scanner = JSONCursor(bytes: body)
        var result = Result()
        scanner.skipWhitespace()
        guard scanner.consume(UInt8(ascii: "{")) else { return result }
        scanner.skipWhitespace()
        if scanner.consume(UInt8(ascii: "}")) {
            result.isObject = scanner.atEndAfterWhitespace()
            return result
        }
        while true {
            scanner.skipWhitespace()
            guard let (keyRange, keyEscaped) = scanner.string() else { return result }
            scanner.skipWhitespace()
            guard scanner.consume(UInt8(ascii: ":")) else { return result }
            scanner.skipWhitespace()
            let valueStart = scanner.offset
            // A key spelled with escapes ("mod\u0065l") is the same key to the upstream's parser.
            let key = UnsafeRawBufferPointer(rebasing: body[keyRange])
            if JSONCursor.keyEquals(key, escaped: keyEscaped, "model"), scanner.peek == UInt8(ascii: "\"") {
                guard let (range, escaped) = scanner.string() else { return result }
                result.model = range
                result.modelHasEscapes = escaped
            } else if JSONCursor.keyEquals(key, escaped: keyEscaped, "stream") {
                guard scanner.skipValue() else { return result }
                let value = UnsafeRawBufferPointer(rebasing: body[valueStart..<scanner.offset])
                result.stream = JSONCursor.equals(value, "true") ? true : (JSONCursor.equals(value, "false") ? false : nil)
            } else {
                guard scanner.skipValue() else { return result }
                if JSONCursor.keyEquals(key, escaped: keyEscaped, "stream_options") { result.streamOptions = valueStart..<scanner.offset }
            }
            scanner.skipWhitespace()
            if scanner.consume(UInt8(ascii: ",")) { continue }
            if scanner.consume(UInt8(ascii: "}")) {
                result.isObject = scanner.atEndAfterWhitespace()
                return result
            }
            return result
        }
    }
}

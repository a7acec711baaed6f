import GatewayHTTP

/// The little that gwmock reads from a request body beyond `model` and `stream` (which `JSONFieldScanner`
/// finds): whether `stream_options.include_usage` is true, and how many inputs an embeddings request has.
/// One pass over the bytes, nested values skipped, nothing allocated. A body cut short (only its first
/// 64 KiB kept) gives what its prefix holds.
enum BodyScanner {
    /// The range of the value of `key` in the JSON object `object`, if the key is there at the top level.
    static func value(of key: StaticString, in object: UnsafeRawBufferPointer) -> Range<Int>? {
        var cursor = JSONCursor(bytes: object)
        cursor.skipWhitespace()
        guard cursor.consume(UInt8(ascii: "{")) else { return nil }
        while true {
            cursor.skipWhitespace()
            guard let (name, _) = cursor.string() else { return nil }
            cursor.skipWhitespace()
            guard cursor.consume(UInt8(ascii: ":")) else { return nil }
            cursor.skipWhitespace()
            let start = cursor.offset
            guard cursor.skipValue() else { return nil }
            if JSONCursor.equals(UnsafeRawBufferPointer(rebasing: object[name]), key) { return start..<cursor.offset }
            cursor.skipWhitespace()
            guard cursor.consume(UInt8(ascii: ",")) else { return nil }
        }
    }

    /// True when `stream_options` (the object's bytes) has `"include_usage": true`.
    static func includeUsage(_ streamOptions: UnsafeRawBufferPointer) -> Bool {
        guard let range = value(of: "include_usage", in: streamOptions) else { return false }
        return JSONCursor.equals(UnsafeRawBufferPointer(rebasing: streamOptions[range]), "true")
    }

    /// The number of inputs of an embeddings request: 1 for a string or one token array, else the array's
    /// element count.
    static func inputCount(_ body: UnsafeRawBufferPointer) -> Int {
        guard let range = value(of: "input", in: body) else { return 1 }
        let input = UnsafeRawBufferPointer(rebasing: body[range])
        guard input.first == UInt8(ascii: "[") else { return 1 }
        var cursor = JSONCursor(bytes: input)
        cursor.offset = 1
        cursor.skipWhitespace()
        if cursor.consume(UInt8(ascii: "]")) { return 0 }
        // An array of numbers is one tokenized input.
        if let first = cursor.peek, first == UInt8(ascii: "-") || (first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9")) {
            return 1
        }
        var count = 0
        while true {
            guard cursor.skipValue() else { return max(count, 1) }
            count += 1
            cursor.skipWhitespace()
            guard cursor.consume(UInt8(ascii: ",")) else { return count }
            cursor.skipWhitespace()
        }
    }
}

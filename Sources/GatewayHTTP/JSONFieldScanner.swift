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
    }

    public static func scan(_ body: UnsafeRawBufferPointer) -> Result {
        var scanner = Cursor(bytes: body)
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
            if Cursor.keyEquals(key, escaped: keyEscaped, "model"), scanner.peek == UInt8(ascii: "\"") {
                guard let (range, escaped) = scanner.string() else { return result }
                result.model = range
                result.modelHasEscapes = escaped
            } else if Cursor.keyEquals(key, escaped: keyEscaped, "stream") {
                guard scanner.skipValue() else { return result }
                let value = UnsafeRawBufferPointer(rebasing: body[valueStart..<scanner.offset])
                result.stream = Cursor.equals(value, "true") ? true : (Cursor.equals(value, "false") ? false : nil)
            } else {
                guard scanner.skipValue() else { return result }
                if Cursor.keyEquals(key, escaped: keyEscaped, "stream_options") { result.streamOptions = valueStart..<scanner.offset }
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

    struct Cursor {
        let bytes: UnsafeRawBufferPointer
        var offset = 0

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        var peek: UInt8? { offset < bytes.count ? bytes[offset] : nil }

        mutating func consume(_ byte: UInt8) -> Bool {
            guard offset < bytes.count, bytes[offset] == byte else { return false }
            offset += 1
            return true
        }

        mutating func skipWhitespace() {
            while offset < bytes.count {
                switch bytes[offset] {
                case 0x20, 0x09, 0x0A, 0x0D: offset += 1
                default: return
                }
            }
        }

        mutating func atEndAfterWhitespace() -> Bool {
            skipWhitespace()
            return offset == bytes.count
        }

        /// Reads a string at the cursor; returns its contents' range and whether it held escapes.
        mutating func string() -> (Range<Int>, Bool)? {
            guard consume(UInt8(ascii: "\"")) else { return nil }
            let start = offset
            var escaped = false
            while offset < bytes.count {
                let byte = bytes[offset]
                if byte == UInt8(ascii: "\"") {
                    offset += 1
                    return (start..<(offset - 1), escaped)
                }
                if byte == UInt8(ascii: "\\") {
                    escaped = true
                    offset += 2
                    continue
                }
                if byte < 0x20 { return nil }
                offset += 1
            }
            return nil
        }

        /// Skips any JSON value: strings, numbers, literals, and nested objects and arrays.
        mutating func skipValue() -> Bool {
            guard let first = peek else { return false }
            switch first {
            case UInt8(ascii: "\""):
                return string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while offset < bytes.count {
                    let byte = bytes[offset]
                    switch byte {
                    case UInt8(ascii: "\""):
                        guard string() != nil else { return false }
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["):
                        depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        depth -= 1
                        if depth == 0 {
                            offset += 1
                            return true
                        }
                    default:
                        break
                    }
                    offset += 1
                }
                return false
            default:
                let start = offset
                while offset < bytes.count {
                    switch bytes[offset] {
                    case UInt8(ascii: ","), UInt8(ascii: "}"), UInt8(ascii: "]"), 0x20, 0x09, 0x0A, 0x0D:
                        return offset > start
                    default:
                        offset += 1
                    }
                }
                return offset > start
            }
        }

        /// Whether a key's contents equal an ASCII name once its escapes are decoded, as the upstream's
        /// JSON parser will decode them (`"mod\u0065l"` is `model`). Allocates nothing.
        static func keyEquals(_ key: UnsafeRawBufferPointer, escaped: Bool, _ text: StaticString) -> Bool {
            guard escaped else { return equals(key, text) }
            let target = text.utf8Start
            var i = 0
            var n = 0
            while i < key.count {
                var byte = key[i]
                i += 1
                if byte == UInt8(ascii: "\\") {
                    guard i < key.count else { return false }
                    let escape = key[i]
                    i += 1
                    switch escape {
                    case UInt8(ascii: "u"):
                        guard i + 4 <= key.count else { return false }
                        var value = 0
                        for j in i..<(i + 4) {
                            guard let digit = ChunkedDecoder.hexValue(key[j]) else { return false }
                            value = value << 4 | digit
                        }
                        i += 4
                        guard value < 0x80 else { return false }
                        byte = UInt8(value)
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): byte = escape
                    default: return false
                    }
                }
                guard n < text.utf8CodeUnitCount, target[n] == byte else { return false }
                n += 1
            }
            return n == text.utf8CodeUnitCount
        }

        static func equals(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
            guard bytes.count == text.utf8CodeUnitCount else { return false }
            let target = text.utf8Start
            for i in 0..<bytes.count where bytes[i] != target[i] { return false }
            return true
        }
    }
}

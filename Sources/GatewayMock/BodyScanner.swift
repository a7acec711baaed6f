/// The little that gwmock reads from a request body beyond `model` and `stream` (which `JSONFieldScanner`
/// finds): whether `stream_options.include_usage` is true, and how many inputs an embeddings request has.
/// One pass over the bytes, nested values skipped, nothing allocated. A body cut short (only its first
/// 64 KiB kept) gives what its prefix holds.
enum BodyScanner {
    /// The range of the value of `key` in the JSON object `object`, if the key is there at the top level.
    static func value(of key: StaticString, in object: UnsafeRawBufferPointer) -> Range<Int>? {
        var cursor = Cursor(bytes: object)
        cursor.skipWhitespace()
        guard cursor.consume(UInt8(ascii: "{")) else { return nil }
        while true {
            cursor.skipWhitespace()
            guard let name = cursor.string() else { return nil }
            cursor.skipWhitespace()
            guard cursor.consume(UInt8(ascii: ":")) else { return nil }
            cursor.skipWhitespace()
            let start = cursor.offset
            guard cursor.skipValue() else { return nil }
            if Cursor.equals(UnsafeRawBufferPointer(rebasing: object[name]), key) { return start..<cursor.offset }
            cursor.skipWhitespace()
            guard cursor.consume(UInt8(ascii: ",")) else { return nil }
        }
    }

    /// True when `stream_options` (the object's bytes) has `"include_usage": true`.
    static func includeUsage(_ streamOptions: UnsafeRawBufferPointer) -> Bool {
        guard let range = value(of: "include_usage", in: streamOptions) else { return false }
        return Cursor.equals(UnsafeRawBufferPointer(rebasing: streamOptions[range]), "true")
    }

    /// The number of inputs of an embeddings request: 1 for a string or one token array, else the array's
    /// element count.
    static func inputCount(_ body: UnsafeRawBufferPointer) -> Int {
        guard let range = value(of: "input", in: body) else { return 1 }
        let input = UnsafeRawBufferPointer(rebasing: body[range])
        guard input.first == UInt8(ascii: "[") else { return 1 }
        var cursor = Cursor(bytes: input)
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

        /// Reads a string; returns the range of its contents.
        mutating func string() -> Range<Int>? {
            guard consume(UInt8(ascii: "\"")) else { return nil }
            let start = offset
            while offset < bytes.count {
                let byte = bytes[offset]
                if byte == UInt8(ascii: "\"") {
                    offset += 1
                    return start..<(offset - 1)
                }
                offset += byte == UInt8(ascii: "\\") ? 2 : 1
            }
            return nil
        }

        /// Skips one value of any kind.
        mutating func skipValue() -> Bool {
            guard let first = peek else { return false }
            switch first {
            case UInt8(ascii: "\""):
                return string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while offset < bytes.count {
                    switch bytes[offset] {
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

        static func equals(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
            guard bytes.count == text.utf8CodeUnitCount else { return false }
            let target = text.utf8Start
            for i in 0..<bytes.count where bytes[i] != target[i] { return false }
            return true
        }
    }
}

/// A read position in a JSON text, with the few moves a top-level field scan needs. Allocates nothing.
public struct JSONCursor {
    public let bytes: UnsafeRawBufferPointer
    public var offset = 0

    public init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public var peek: UInt8? { offset < bytes.count ? bytes[offset] : nil }

    public mutating func consume(_ byte: UInt8) -> Bool {
        guard offset < bytes.count, bytes[offset] == byte else { return false }
        offset += 1
        return true
    }

    public mutating func skipWhitespace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case 0x20, 0x09, 0x0A, 0x0D: offset += 1
            default: return
            }
        }
    }

    public mutating func atEndAfterWhitespace() -> Bool {
        skipWhitespace()
        return offset == bytes.count
    }

    /// Reads a string at the cursor; returns its contents' range and whether it held escapes.
    public mutating func string() -> (Range<Int>, Bool)? {
        guard consume(UInt8(ascii: "\"")) else { return nil }
        let start = offset
        var escaped = false
        while offset < bytes.count {
            // Most of a chat body is string contents: pass over them eight bytes at a time while no byte is a quote,
            // a backslash or a control character.
            while offset &+ 8 <= bytes.count {
                let specials = JSONCursor.stringSpecials(bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
                if specials == 0 {
                    offset &+= 8
                    continue
                }
                offset &+= specials.trailingZeroBitCount >> 3  // to the first special byte (little-endian)
                break
            }
            guard offset < bytes.count else { break }
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

    /// The bytes of a word (read little-endian) that are a quote, a backslash or below 0x20, as their high bits
    /// (SWAR). The lowest flagged byte is exactly the first such byte; bytes above it may be flagged falsely (a borrow
    /// carries up), so callers look only at the lowest. Bytes of 0x80 and above never match.
    @inline(__always)
    static func stringSpecials(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        let quote = word ^ (ones &* 0x22)
        let backslash = word ^ (ones &* 0x5C)
        // (x - 0x01…) & ~x & 0x80… flags the bytes of x that are 0; with 0x20… instead of 0x01…, those below 0x20.
        let hits = ((quote &- ones) & ~quote) | ((backslash &- ones) & ~backslash) | ((word &- ones &* 0x20) & ~word)
        return hits & highs
    }

    /// Skips any JSON value: strings, numbers, literals, and nested objects and arrays.
    public mutating func skipValue() -> Bool {
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
    public static func keyEquals(_ key: UnsafeRawBufferPointer, escaped: Bool, _ text: StaticString) -> Bool {
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

    public static func equals(_ bytes: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        guard bytes.count == text.utf8CodeUnitCount else { return false }
        let target = text.utf8Start
        for i in 0..<bytes.count where bytes[i] != target[i] { return false }
        return true
    }
}

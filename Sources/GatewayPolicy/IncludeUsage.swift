// Forcing `stream_options.include_usage` on streamed OpenAI requests, so that every stream ends with
// a usage chunk and is billed. The body is not rewritten: the plan is one splice (replace a byte
// range, or insert at an offset) that the proxy applies with writev segments around the original bytes.
import GatewayHTTP

/// A single edit that makes a streamed request carry `"stream_options":{"include_usage":true}`.
public enum IncludeUsagePlan: Sendable {
    /// Nothing to do: not a streamed request, not an object, or include_usage is already true.
    case unchanged
    /// Replace `body[range]` with `bytes`; an empty range inserts at `range.lowerBound`.
    case splice(range: Range<Int>, bytes: StaticString)

    /// How many bytes the splice adds (negative when it removes); for content-length.
    public var lengthDelta: Int {
        switch self {
        case .unchanged: 0
        case .splice(let range, let bytes): bytes.utf8CodeUnitCount - range.count
        }
    }

    /// The spliced body as one array (tests and slow paths; the proxy writes segments instead).
    public func applied(to body: UnsafeRawBufferPointer) -> [UInt8] {
        switch self {
        case .unchanged:
            return Array(body)
        case .splice(let range, let bytes):
            var out = Array(body[0..<range.lowerBound])
            out += UnsafeBufferPointer(start: bytes.utf8Start, count: bytes.utf8CodeUnitCount)
            out += body[range.upperBound...]
            return out
        }
    }
}

/// Plans the splice for a request body whose top-level fields were found by `JSONFieldScanner`.
/// - `stream_options` absent: insert `,"stream_options":{"include_usage":true}` before the final `}`.
/// - present as an object without `include_usage`: insert `"include_usage":true,` after its `{`,
///   keeping the other members.
/// - present with `include_usage` not `true` (false, null, anything): replace that value with `true`
///   (the last occurrence, which is the one JSON parsers keep).
/// - present as `{}`, or not an object (null, a string...), or malformed: replace the whole value with
///   `{"include_usage":true}`.
/// Returns `.unchanged` unless `fields.stream == true` and the body is an object.
public func includeUsagePlan(body: UnsafeRawBufferPointer, fields: JSONFieldScanner.Result) -> IncludeUsagePlan {
    guard fields.isObject, fields.stream == true else { return .unchanged }
    let whole: StaticString = "{\"include_usage\":true}"
    guard let options = fields.streamOptions else {
        // The scanner saw a complete object, so the last non-blank byte is its closing brace.
        var end = body.count - 1
        while end >= 0, isBlank(body[end]) { end -= 1 }
        guard end > 0, body[end] == UInt8(ascii: "}") else { return .unchanged }
        var previous = end - 1
        while previous >= 0, isBlank(body[previous]) { previous -= 1 }
        if previous >= 0, body[previous] == UInt8(ascii: "{") {
            return .splice(range: end..<end, bytes: "\"stream_options\":{\"include_usage\":true}")
        }
        return .splice(range: end..<end, bytes: ",\"stream_options\":{\"include_usage\":true}")
    }
    guard options.lowerBound < options.upperBound, options.upperBound <= body.count,
          body[options.lowerBound] == UInt8(ascii: "{")
    else { return .splice(range: options, bytes: whole) }

    var cursor = MiniCursor(bytes: UnsafeRawBufferPointer(rebasing: body[options]))
    cursor.offset = 1
    cursor.skipBlank()
    if cursor.consume(UInt8(ascii: "}")) { return .splice(range: options, bytes: whole) }
    var includeUsage: Range<Int>?
    while true {
        cursor.skipBlank()
        guard let (key, escaped) = cursor.string() else { return .splice(range: options, bytes: whole) }
        cursor.skipBlank()
        guard cursor.consume(UInt8(ascii: ":")) else { return .splice(range: options, bytes: whole) }
        cursor.skipBlank()
        let valueStart = cursor.offset
        guard cursor.skipValue() else { return .splice(range: options, bytes: whole) }
        if MiniCursor.keyEquals(UnsafeRawBufferPointer(rebasing: cursor.bytes[key]), escaped: escaped, "include_usage") {
            includeUsage = valueStart..<cursor.offset
        }
        cursor.skipBlank()
        if cursor.consume(UInt8(ascii: ",")) { continue }
        guard cursor.consume(UInt8(ascii: "}")) else { return .splice(range: options, bytes: whole) }
        break
    }
    let base = options.lowerBound
    if let value = includeUsage {
        if MiniCursor.equals(UnsafeRawBufferPointer(rebasing: cursor.bytes[value]), "true") { return .unchanged }
        return .splice(range: (base + value.lowerBound)..<(base + value.upperBound), bytes: "true")
    }
    return .splice(range: (base + 1)..<(base + 1), bytes: "\"include_usage\":true,")
}

private func hexDigit(_ c: UInt8) -> Int? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(c - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(c - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(c - UInt8(ascii: "A") + 10)
    default: nil
    }
}

@inline(__always)
private func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }

/// Just enough JSON to walk one object's members.
private struct MiniCursor {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    mutating func consume(_ byte: UInt8) -> Bool {
        guard offset < bytes.count, bytes[offset] == byte else { return false }
        offset += 1
        return true
    }

    mutating func skipBlank() {
        while offset < bytes.count, isBlank(bytes[offset]) { offset += 1 }
    }

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
            offset += 1
        }
        return nil
    }

    mutating func skipValue() -> Bool {
        guard offset < bytes.count else { return false }
        switch bytes[offset] {
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
        for i in 0..<bytes.count where bytes[i] != text.utf8Start[i] { return false }
        return true
    }

    /// A key equals an ASCII name once its escapes are decoded (`"include\u005fusage"` counts).
    static func keyEquals(_ key: UnsafeRawBufferPointer, escaped: Bool, _ text: StaticString) -> Bool {
        guard escaped else { return equals(key, text) }
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
                        guard let digit = hexDigit(key[j]) else { return false }
                        value = value << 4 | digit
                    }
                    i += 4
                    guard value < 0x80 else { return false }
                    byte = UInt8(value)
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): byte = escape
                default: return false
                }
            }
            guard n < text.utf8CodeUnitCount, text.utf8Start[n] == byte else { return false }
            n += 1
        }
        return n == text.utf8CodeUnitCount
    }
}

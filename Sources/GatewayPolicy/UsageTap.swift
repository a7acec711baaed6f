// Reads the token usage out of a response body while it streams through the proxy, without
// buffering it: a byte-level JSON tokenizer that tracks only the path of the first three object
// levels, under an SSE line splitter for streams. Its state is a few scalars, so a split anywhere
// in the input (even inside a key or a number) needs no tail buffer at all.
// Speed: a container that cannot hold the usage (`choices`, `data`, `content`...) is skipped by a
// tight loop that only counts brackets and steps over strings, eight bytes at a time (SWAR), so most
// bytes cost less than one compare.

#if canImport(Glibc)
import Glibc
#endif
import CShims

/// Extracts `Usage` from a response body fed in chunks as they arrive.
///
/// What it recognizes (numbers only; `null` or missing fields change nothing, the last value seen wins):
/// - `.openAIJSON`: the top-level `usage.prompt_tokens` and `usage.completion_tokens`.
/// - `.openAISSE`: the same in each `data:` event; the final usage chunk of an `include_usage` stream
///   fills them, and `"usage":null` in the other chunks leaves them alone.
/// - `.anthropicJSON`: the top-level `usage.input_tokens` and `usage.output_tokens`.
/// - `.anthropicSSE`: `message_start`'s `message.usage.input_tokens` (and its initial
///   `output_tokens`), then each `message_delta`'s `usage.output_tokens` (cumulative).
/// Either spelling of the names is accepted in every mode (`input_tokens` counts as prompt,
/// `output_tokens` as completion). Feed it the payload bytes (after de-chunking and decompression).
///
/// A JSON body whose length is known up front and that arrives in one feed is read from its end, where both
/// providers put `usage`, so the text before it is not scanned at all; whenever that backward read is not certain
/// to give what the forward scan would, the forward scan runs as usual.
public struct UsageTap: Sendable {
    public enum Mode: Sendable, Equatable {
        case openAIJSON, openAISSE, anthropicJSON, anthropicSSE
    }

    public let mode: Mode

    /// The usage found so far; nil until a token count has been seen.
    public var usage: Usage? {
        guard prompt >= 0 || completion >= 0 else { return nil }
        return Usage(promptTokens: max(0, prompt), completionTokens: max(0, completion))
    }

    private var prompt = -1
    private var completion = -1

    // JSON tokenizer.
    private var lex = Lex.between
    private var depth = 0
    /// Bit d-1 set: the container at depth d (1-based, d <= 64) is an array.
    private var arrayBits: UInt64 = 0
    private var expectingKey = false
    private var stringIsKey = false
    /// The member key at depths 1, 2 and 3.
    private var key1 = KeyID.none
    private var key2 = KeyID.none
    private var key3 = KeyID.none
    /// The key being read, its first 24 bytes in memory order; keys over 24 bytes or with escapes match nothing.
    private var keyWords: (UInt64, UInt64, UInt64) = (0, 0, 0)
    private var keyLength = 0
    private var keyEscaped = false
    private var number = 0
    private var numberValid = true
    /// While skipping a container: the depth at which it ends.
    private var skipBase = 0

    // SSE lines.
    private var line = LineState.start
    private var prefixMatched = 0
    private var swallowLF = false

    private enum Lex: UInt8, Sendable {
        case between, string, escape, number, literal, skip, skipString, skipEscape
    }

    private enum KeyID: UInt8, Sendable {
        case none, usage, message, prompt, completion
    }

    private enum LineState: UInt8, Sendable {
        case start, prefix, data, skip
    }

    /// Whether the usage came from the backward read of a whole body (for tests).
    var readFromEnd: Bool { readWhole }

    /// The body's length when known up front, until the first feed; -1 otherwise.
    private var bodyLength = -1
    /// The backward read took the usage from the whole body: nothing more is scanned.
    private var readWhole = false

    /// - Parameters:
    ///   - mode: the provider and shape of the response.
    ///   - bodyLength: the body's length when the response says it up front (`content-length`). When the first
    ///     feed is that whole body, a JSON body is read from its end (see `readUsageBackwards`).
    public init(mode: Mode, bodyLength: Int? = nil) {
        self.mode = mode
        self.bodyLength = bodyLength ?? -1
    }

    /// Scans the next bytes of the body. Allocates nothing and keeps nothing of the bytes.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0, !readWhole else { return }
        let p = base.assumingMemoryBound(to: UInt8.self)
        if bodyLength >= 0 {
            let whole = bytes.count == bodyLength
            bodyLength = -1
            if whole, mode == .openAIJSON || mode == .anthropicJSON, readUsageBackwards(p, bytes.count) {
                readWhole = true
                return
            }
        }
        switch mode {
        case .openAIJSON, .anthropicJSON:
            tokenize(p, 0, bytes.count)
        case .openAISSE, .anthropicSSE:
            splitLines(p, bytes.count)
        }
    }

    // MARK: SSE

    private static let dataPrefix: (UInt8, UInt8, UInt8, UInt8, UInt8) =
        (UInt8(ascii: "d"), UInt8(ascii: "a"), UInt8(ascii: "t"), UInt8(ascii: "a"), UInt8(ascii: ":"))

    @inline(__always)
    private static func prefixByte(_ i: Int) -> UInt8 {
        switch i {
        case 0: dataPrefix.0
        case 1: dataPrefix.1
        case 2: dataPrefix.2
        case 3: dataPrefix.3
        default: dataPrefix.4
        }
    }

    private mutating func splitLines(_ p: UnsafePointer<UInt8>, _ count: Int) {
        var i = 0
        while i < count {
            let byte = p[i]
            if swallowLF {
                swallowLF = false
                if byte == 0x0A {
                    i += 1
                    continue
                }
            }
            if byte == 0x0A || byte == 0x0D {
                endLine()
                swallowLF = byte == 0x0D
                i += 1
                continue
            }
            switch line {
            case .start, .prefix:
                if prefixMatched < 5, byte == UsageTap.prefixByte(prefixMatched) {
                    prefixMatched += 1
                    line = .prefix
                    if prefixMatched == 5 { line = .data }
                    i += 1
                } else {
                    line = .skip
                }
            case .data:
                // Hand the rest of the line to the tokenizer in one run.
                let end = UsageTap.lineEnd(p, i, count)
                tokenize(p, i, end)
                i = end
            case .skip:
                i = UsageTap.lineEnd(p, i, count)
            }
        }
    }

    /// The offset of the first CR or LF at or after `start`, or `count` (memchr is vectorized).
    @inline(__always)
    private static func lineEnd(_ p: UnsafePointer<UInt8>, _ start: Int, _ count: Int) -> Int {
        var end = count
        if let lf = memchr(p + start, 0x0A, count - start) {
            end = UnsafeRawPointer(p).distance(to: UnsafeRawPointer(lf))
        }
        if let cr = memchr(p + start, 0x0D, end - start) {
            end = UnsafeRawPointer(p).distance(to: UnsafeRawPointer(cr))
        }
        return end
    }

    private mutating func endLine() {
        switch line {
        case .start:
            // A blank line ends the event: whatever its JSON was, the next starts afresh.
            resetTokenizer()
        case .data:
            // Data lines of one event join with a newline, which ends a pending number or literal.
            var newline: UInt8 = 0x0A
            withUnsafePointer(to: &newline) { tokenize($0, 0, 1) }
        case .prefix, .skip:
            break
        }
        line = .start
        prefixMatched = 0
    }

    private mutating func resetTokenizer() {
        lex = .between
        depth = 0
        arrayBits = 0
        expectingKey = false
        key1 = .none
        key2 = .none
        key3 = .none
    }

    // MARK: JSON

    private mutating func tokenize(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) {
        var i = start
        while i < end {
            switch lex {
            case .string:
                // The string's plain bytes in one tight loop: skipped for a value (most of a stream is text),
                // copied in one go for a key.
                let run = i
                i = UsageTap.stringEnd(p, i, end)
                if stringIsKey { appendKeyBytes(p + run, i - run) }
                if i == end { return }
                if p[i] == UInt8(ascii: "\"") {
                    lex = .between
                    if stringIsKey { endKey() }
                } else {
                    lex = .escape
                    keyEscaped = true
                }
                i += 1
            case .escape:
                // The escaped byte cannot end the string; \uXXXX's digits are ordinary bytes.
                i += 1
                lex = .string
            case .number:
                // The digits in one tight loop.
                while i < end {
                    let digit = p[i] &- UInt8(ascii: "0")
                    guard digit < 10 else { break }
                    if number < 1 << 50 { number = number * 10 + Int(digit) }
                    i += 1
                }
                if i == end { return }
                let byte = p[i]
                if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
                            || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") {
                    numberValid = false
                    i += 1
                } else {
                    lex = .between
                    endNumber()
                }
            case .literal:
                let byte = p[i]
                if (byte | 0x20) >= UInt8(ascii: "a"), (byte | 0x20) <= UInt8(ascii: "z") {
                    i += 1
                } else {
                    lex = .between
                }
            case .skip:
                // Only brackets and strings matter here.
                while true {
                    i = UsageTap.structuralByte(p, i, end)
                    if i == end { return }
                    let byte = p[i]
                    i += 1
                    if byte == UInt8(ascii: "\"") {
                        lex = .skipString
                        break
                    }
                    if byte | 0x20 == UInt8(ascii: "{") {
                        depth += 1
                    } else {
                        depth -= 1
                        if depth == skipBase {
                            lex = .between
                            expectingKey = false
                            break
                        }
                    }
                }
            case .skipString:
                i = UsageTap.stringEnd(p, i, end)
                if i == end { return }
                lex = p[i] == UInt8(ascii: "\"") ? .skip : .skipEscape
                i += 1
            case .skipEscape:
                i += 1
                lex = .skipString
            case .between:
                let byte = p[i]
                i += 1
                switch byte {
                case UInt8(ascii: "{"), UInt8(ascii: "["):
                    guard mayHoldUsage else {
                        skipBase = depth
                        depth += 1
                        lex = .skip
                        continue
                    }
                    push(array: byte == UInt8(ascii: "["))
                    expectingKey = byte == UInt8(ascii: "{")
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    if depth > 0 { depth -= 1 }
                    expectingKey = false
                case UInt8(ascii: "\""):
                    lex = .string
                    stringIsKey = expectingKey && !inArray
                    if stringIsKey {
                        keyWords = (0, 0, 0)
                        keyLength = 0
                        keyEscaped = false
                    }
                case UInt8(ascii: ":"):
                    expectingKey = false
                case UInt8(ascii: ","):
                    expectingKey = !inArray
                case UInt8(ascii: "-"):
                    lex = .number
                    number = 0
                    numberValid = false
                case UInt8(ascii: "0")...UInt8(ascii: "9"):
                    lex = .number
                    number = Int(byte - UInt8(ascii: "0"))
                    numberValid = true
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"):
                    lex = .literal
                default:
                    break
                }
            }
        }
    }

    // MARK: Eight bytes at a time

    // SWAR: a 64-bit word holds eight bytes, compared all at once. `zeroBytes(x)` sets bit 7 of each byte of `x`
    // that is zero; the lowest flag is exact (a borrow can only flag bytes above a real zero), so the first match
    // is `trailingZeroBitCount / 8` on the little-endian word, whichever of several masks it came from.
    private static let ones: UInt64 = 0x0101_0101_0101_0101

    @inline(__always)
    private static func zeroBytes(_ x: UInt64) -> UInt64 { (x &- ones) & ~x & (ones &* 0x80) }

    @inline(__always)
    private static func word(_ p: UnsafePointer<UInt8>, _ i: Int) -> UInt64 {
        UInt64(littleEndian: UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self))
    }

    /// The offset of the first `"` or `\` in `p[start..<end]`, or `end`: where a string's plain run stops.
    @inline(__always)
    private static func stringEnd(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Int {
        var i = start
        while i + 8 <= end {
            let w = word(p, i)
            let hits = zeroBytes(w ^ (ones &* 0x22)) | zeroBytes(w ^ (ones &* 0x5C))
            if hits != 0 { return i + hits.trailingZeroBitCount >> 3 }
            i += 8
        }
        while i < end, p[i] != UInt8(ascii: "\""), p[i] != UInt8(ascii: "\\") { i += 1 }
        return i
    }

    /// The offset of the first `"`, `{`, `}`, `[` or `]` in `p[start..<end]`, or `end`: what a skipped container
    /// cares about. (`| 0x20` folds `[` onto `{` and `]` onto `}`.)
    @inline(__always)
    private static func structuralByte(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> Int {
        var i = start
        while i + 8 <= end {
            let w = word(p, i)
            let folded = w | (ones &* 0x20)
            let hits = zeroBytes(w ^ (ones &* 0x22)) | zeroBytes(folded ^ (ones &* 0x7B)) | zeroBytes(folded ^ (ones &* 0x7D))
            if hits != 0 { return i + hits.trailingZeroBitCount >> 3 }
            i += 8
        }
        while i < end {
            let byte = p[i]
            if byte == UInt8(ascii: "\"") || byte | 0x20 == UInt8(ascii: "{") || byte | 0x20 == UInt8(ascii: "}") { break }
            i += 1
        }
        return i
    }

    /// Whether a container starting here can hold the usage: the root; `usage` (or, in an Anthropic
    /// stream, `message`) in the root object; `message.usage`. Anything else is skipped whole.
    @inline(__always)
    private var mayHoldUsage: Bool {
        switch depth {
        case 0: return true
        case 1: return arrayBits & 1 == 0 && (key1 == .usage || (key1 == .message && mode == .anthropicSSE))
        case 2: return mode == .anthropicSSE && arrayBits & 0b11 == 0 && key1 == .message && key2 == .usage
        default: return false
        }
    }

    @inline(__always)
    private var inArray: Bool {
        depth > 0 && depth <= 64 && arrayBits & (1 << UInt64(depth - 1)) != 0
    }

    @inline(__always)
    private mutating func push(array: Bool) {
        depth += 1
        if depth <= 64 {
            let bit: UInt64 = 1 << UInt64(depth - 1)
            if array { arrayBits |= bit } else { arrayBits &= ~bit }
        }
        switch depth {
        case 1: key1 = .none
        case 2: key2 = .none
        case 3: key3 = .none
        default: break
        }
    }

    /// Adds bytes to the key being read. Only the first 24 count (longer keys match nothing); they are copied
    /// into `keyWords` in memory order, as `Name` packs the names.
    @inline(__always)
    private mutating func appendKeyBytes(_ bytes: UnsafePointer<UInt8>, _ count: Int) {
        let start = keyLength
        keyLength += count
        guard start < 24, count > 0 else { return }
        let n = min(count, 24 - start)
        withUnsafeMutableBytes(of: &keyWords) { words in
            (words.baseAddress! + start).copyMemory(from: bytes, byteCount: n)
        }
    }

    private mutating func endKey() {
        expectingKey = false
        guard depth >= 1, depth <= 3 else { return }
        let id = keyEscaped ? KeyID.none : UsageTap.keyID(keyWords, keyLength)
        switch depth {
        case 1: key1 = id
        case 2: key2 = id
        default: key3 = id
        }
    }

    /// The name a key's first 24 bytes (`words`, zero-padded) and length spell, or `.none`.
    @inline(__always)
    private static func keyID(_ words: (UInt64, UInt64, UInt64), _ length: Int) -> KeyID {
        // Most keys are none of the names: their length alone says so, without reading the table.
        let nameLengths: UInt32 = 1 << 5 | 1 << 7 | 1 << 12 | 1 << 13 | 1 << 17  // the lengths in `names`
        guard length < 32, nameLengths & (1 << UInt32(length)) != 0 else { return .none }
        for entry in names where entry.length == length && entry.w0 == words.0 && entry.w1 == words.1 && entry.w2 == words.2 {
            return entry.id
        }
        return .none
    }

    private mutating func endNumber() {
        guard numberValid else { return }
        let target: KeyID
        if depth == 2, arrayBits & 0b11 == 0, key1 == .usage {
            target = key2
        } else if depth == 3, mode == .anthropicSSE, arrayBits & 0b111 == 0, key1 == .message, key2 == .usage {
            target = key3
        } else {
            return
        }
        switch target {
        case .prompt: prompt = number
        case .completion: completion = number
        default: break
        }
    }

    // MARK: A whole body, from its end

    /// How far from the body's end the backward read looks for the `usage` key before it gives up.
    private static let backwardReach = 2048

    @inline(__always)
    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }

    /// The first eight bytes of `text` (zero-padded) as a little-endian word, as `word` reads a body.
    @inline(__always)
    private static func constant(_ text: StaticString) -> UInt64 {
        var value: UInt64 = 0
        for i in 0..<min(8, text.utf8CodeUnitCount) { value |= UInt64(text.utf8Start[i]) << UInt64(8 * i) }
        return value
    }

    /// Reads the usage of a whole JSON body from its end: finds the last `"usage"` key, going backwards, then reads
    /// its object and every member after it forwards, to the body's end.
    ///
    /// It sets the counts and returns true only when that is certain to be what the forward scan finds in a
    /// well-formed body: the body is one object (`{` first, `}` last); the key is the last `"usage"` string followed
    /// by a colon, its quote not escaped, and its value an object; that object and every member after it up to the
    /// root's `}` are well-formed at the top level (a key nested deeper would meet its parents' closing brackets
    /// first); and the object holds both an integer prompt and an integer completion count, so no earlier `usage`
    /// member could change the result. Anything else (no `usage` within `backwardReach` bytes of the end,
    /// `"usage":null`, embeddings' prompt-only usage, a nested last `usage`, malformed text) returns false and
    /// changes nothing. Every read stays inside the buffer, whatever the bytes.
    private mutating func readUsageBackwards(_ p: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        var first = 0
        while first < count, UsageTap.isSpace(p[first]) { first += 1 }
        guard first < count, p[first] == UInt8(ascii: "{") else { return false }
        var last = count - 1
        while last > first, UsageTap.isSpace(p[last]) { last -= 1 }
        guard last > first, p[last] == UInt8(ascii: "}") else { return false }
        let open = UsageTap.lastUsageKey(p, max(first + 1, last - UsageTap.backwardReach), last)
        guard open >= 0 else { return false }

        var prompt = -1
        var completion = -1
        // The usage object's members.
        var i = UsageTap.spaceAfter(p, open + 1, last)
        guard i < last, p[i] != UInt8(ascii: "}") else { return false }
        while true {
            guard UsageTap.member(p, &i, last, counts: true, &prompt, &completion), i < last else { return false }
            if p[i] == UInt8(ascii: ",") {
                i = UsageTap.spaceAfter(p, i + 1, last)
                continue
            }
            guard p[i] == UInt8(ascii: "}") else { return false }
            i = UsageTap.spaceAfter(p, i + 1, last)
            break
        }
        // The root's members after it, up to the root's `}`.
        while i < last {
            guard p[i] == UInt8(ascii: ",") else { return false }
            i = UsageTap.spaceAfter(p, i + 1, last)
            guard UsageTap.member(p, &i, last, counts: false, &prompt, &completion) else { return false }
        }
        guard prompt >= 0, completion >= 0 else { return false }
        self.prompt = prompt
        self.completion = completion
        return true
    }

    /// The offset of the `{` that opens the value of the last `"usage"` key in `p[low..<last]`, or -1: the last
    /// `"usage"` string whose opening quote is not escaped and that a colon follows. In well-formed JSON, a quote
    /// that no odd run of backslashes precedes is a string's delimiter, so such a string is not inside another.
    /// -1 too when that value is not an object, or when the quote's escaping cannot be told.
    private static func lastUsageKey(_ p: UnsafePointer<UInt8>, _ low: Int, _ last: Int) -> Int {
        // Found by its `g`, the rarest of its letters near a body's end, with memrchr (vectorized: a byte loop or
        // a word at a time took about 900 instructions for OpenAI's usage object and the two members after it).
        var end = last
        while end > low, let hit = CShims_memrchr(p + low, Int32(UInt8(ascii: "g")), end - low) {
            let g = UnsafeRawPointer(p).distance(to: UnsafeRawPointer(hit))
            let found = usageKey(p, g - 4, low, last)
            if found != -1 { return found }
            end = g
        }
        return -1
    }

    /// For a `g` at `quote + 4`: the offset of the value's `{` when `p[quote...]` is the `"usage"` key; -1 when it
    /// is not that key (search on); -2 when it is but the read cannot be certain (give up).
    @inline(__always)
    private static func usageKey(_ p: UnsafePointer<UInt8>, _ quote: Int, _ low: Int, _ last: Int) -> Int {
        guard quote >= low, quote + 7 <= last else { return -1 }
        let mask: UInt64 = 0x00FF_FFFF_FFFF_FFFF
        guard word(p, quote) & mask == constant("\"usage\"") else { return -1 }
        var b = quote - 1
        while b >= low, p[b] == UInt8(ascii: "\\") { b -= 1 }
        guard b >= low else { return -2 }
        guard (quote - 1 - b) & 1 == 0 else { return -1 }
        let colon = spaceAfter(p, quote + 7, last)
        guard colon < last, p[colon] == UInt8(ascii: ":") else { return -1 }
        let open = spaceAfter(p, colon + 1, last)
        return open < last && p[open] == UInt8(ascii: "{") ? open : -2
    }

    /// The offset of the first non-space byte at or after `i`, or `end`.
    @inline(__always)
    private static func spaceAfter(_ p: UnsafePointer<UInt8>, _ i: Int, _ end: Int) -> Int {
        var i = i
        while i < end, isSpace(p[i]) { i += 1 }
        return i
    }

    /// The offset of the `"` that closes the string whose bytes start at `start`, or -1 if it does not close
    /// before `end`; `escaped` is set when it holds an escape.
    @inline(__always)
    private static func stringClose(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ escaped: inout Bool) -> Int {
        var i = start
        while true {
            i = stringEnd(p, i, end)
            if i >= end { return -1 }
            if p[i] == UInt8(ascii: "\"") { return i }
            escaped = true
            i += 2
        }
    }

    /// Which count the key `p[start..<start + length]` (unescaped) names: whole words compared, no copy.
    @inline(__always)
    private static func countKey(_ p: UnsafePointer<UInt8>, _ start: Int, _ length: Int) -> KeyID {
        switch length {
        case 12:  // input_tokens
            return word(p, start) == constant("input_to") && word(p, start + 4) == constant("t_tokens") ? .prompt : .none
        case 13:  // prompt_tokens, output_tokens
            let tail = word(p, start + 5)
            guard tail == constant("t_tokens") else { return .none }
            let head = word(p, start)
            return head == constant("prompt_t") ? .prompt : head == constant("output_t") ? .completion : .none
        case 17:  // completion_tokens
            return word(p, start) == constant("completi") && word(p, start + 8) == constant("on_token")
                && p[start + 16] == UInt8(ascii: "s") ? .completion : .none
        default:
            return .none
        }
    }

    /// Reads one member, `"key": value`, strictly, from the key's quote at `i`; leaves `i` at the first non-space
    /// byte after the value. With `counts`, an integer value of a count's key is taken as the forward scan takes it
    /// (a sign, point or exponent makes it no count; the last one wins). False for anything malformed.
    private static func member(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ end: Int, counts: Bool,
                               _ prompt: inout Int, _ completion: inout Int) -> Bool {
        guard i < end, p[i] == UInt8(ascii: "\"") else { return false }
        var escaped = false
        let keyEnd = stringClose(p, i + 1, end, &escaped)
        guard keyEnd >= 0 else { return false }
        let id = counts && !escaped ? countKey(p, i + 1, keyEnd - i - 1) : .none
        i = spaceAfter(p, keyEnd + 1, end)
        guard i < end, p[i] == UInt8(ascii: ":") else { return false }
        i = spaceAfter(p, i + 1, end)
        guard i < end else { return false }
        let byte = p[i]
        if byte &- UInt8(ascii: "0") < 10 || byte == UInt8(ascii: "-") {
            var valid = byte != UInt8(ascii: "-")
            var number = 0
            while i < end {
                let c = p[i]
                let digit = c &- UInt8(ascii: "0")
                if digit < 10 {
                    if number < 1 << 50 { number = number * 10 + Int(digit) }
                } else if c == UInt8(ascii: ".") || c | 0x20 == UInt8(ascii: "e") || c == UInt8(ascii: "+")
                            || c == UInt8(ascii: "-") {
                    valid = false
                } else {
                    break
                }
                i += 1
            }
            if valid {
                switch id {
                case .prompt: prompt = number
                case .completion: completion = number
                default: break
                }
            }
        } else if byte == UInt8(ascii: "\"") {
            var ignored = false
            let close = stringClose(p, i + 1, end, &ignored)
            guard close >= 0 else { return false }
            i = close + 1
        } else if byte | 0x20 == UInt8(ascii: "{") {
            var depth = 1
            i += 1
            while true {
                i = structuralByte(p, i, end)
                guard i < end else { return false }
                let c = p[i]
                i += 1
                if c == UInt8(ascii: "\"") {
                    var ignored = false
                    let close = stringClose(p, i, end, &ignored)
                    guard close >= 0 else { return false }
                    i = close + 1
                } else if c | 0x20 == UInt8(ascii: "{") {
                    depth += 1
                } else {
                    depth -= 1
                    if depth == 0 { break }
                }
            }
        } else if (byte | 0x20) >= UInt8(ascii: "a"), (byte | 0x20) <= UInt8(ascii: "z") {
            while i < end, (p[i] | 0x20) >= UInt8(ascii: "a"), (p[i] | 0x20) <= UInt8(ascii: "z") { i += 1 }
        } else {
            return false
        }
        i = spaceAfter(p, i, end)
        return true
    }

    private struct Name: Sendable {
        let id: KeyID
        let length: Int
        let w0: UInt64
        let w1: UInt64
        let w2: UInt64

        init(_ text: StaticString, _ id: KeyID) {
            self.id = id
            let length = text.utf8CodeUnitCount
            self.length = length
            var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
            withUnsafeMutableBytes(of: &words) { raw in
                raw.baseAddress!.copyMemory(from: text.utf8Start, byteCount: min(length, 24))
            }
            w0 = words.0
            w1 = words.1
            w2 = words.2
        }
    }

    private static let names: [Name] = [
        Name("usage", .usage),
        Name("message", .message),
        Name("prompt_tokens", .prompt),
        Name("input_tokens", .prompt),
        Name("completion_tokens", .completion),
        Name("output_tokens", .completion),
    ]
}

import GatewayIO

/// Parses one HTTP/1.x request or response head in place: the header table holds ranges of the caller's
/// buffer, nothing is copied. One parser lives per connection and is reused for every message.
///
/// It is strict where leniency enables request smuggling: bare LF, obs-fold, whitespace before a colon,
/// controls in values, Content-Length with Transfer-Encoding, and differing Content-Lengths are all errors.
public final class HTTPHeadParser {
    public static let maxHeadBytes = 64 * 1024
    public static let maxFields = 200
    static let maxNominated = 16

    public let fields: UnsafeMutablePointer<HeaderField>
    public private(set) var fieldCount = 0

    /// The start of the last parsed head; ranges are offsets from it.
    public private(set) var base = UnsafeRawPointer(bitPattern: 1)!
    /// The bytes of the head including the blank line that ends it.
    public private(set) var headLength = 0

    // Request line.
    public private(set) var method = HTTPMethod.other
    public private(set) var methodRange = ByteRange.empty
    public private(set) var target = ByteRange.empty
    // Status line.
    public private(set) var status = 0
    // Both.
    public private(set) var minorVersion = 1
    /// The declared Content-Length, or -1.
    public private(set) var contentLength: Int64 = -1
    public private(set) var chunked = false
    public private(set) var connectionClose = false
    public private(set) var connectionKeepAlive = false
    public private(set) var expectContinue = false
    /// The head has an `x-gateway-*` field (the gateway's own request options), so that requests without one
    /// skip looking for them.
    public private(set) var hasGatewayFields = false
    public private(set) var hostCount = 0

    private var nominated: UnsafeMutablePointer<ByteRange>
    private var nominatedCount = 0
    /// How far the search for the end of the head got, so a head that arrives in pieces is scanned once.
    private var scannedUpTo = 0

    public enum Outcome: Equatable {
        case incomplete
        case complete
        case failed(HTTPParseError)
    }

    public init() {
        fields = .allocate(capacity: HTTPHeadParser.maxFields)
        nominated = .allocate(capacity: HTTPHeadParser.maxNominated)
    }

    deinit {
        fields.deallocate()
        nominated.deallocate()
    }

    /// Whether the connection may carry another message after this one.
    public var keepAlive: Bool {
        minorVersion >= 1 ? !connectionClose : connectionKeepAlive && !connectionClose
    }

    @inline(__always)
    public func bytes(_ range: ByteRange) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + Int(range.start), count: Int(range.count))
    }

    /// The value of the first header of a kind, if present.
    public func value(of kind: HeaderKind) -> ByteRange? {
        for i in 0..<fieldCount where fields[i].kind == kind { return fields[i].value }
        return nil
    }

    /// The value of the first header with this lowercase name.
    public func value(named name: StaticString) -> ByteRange? {
        for i in 0..<fieldCount where HTTPBytes.equalsLowercase(base + Int(fields[i].name.start), Int(fields[i].name.count), name) {
            return fields[i].value
        }
        return nil
    }

    /// Points the parsed ranges at a copy of the head (they are offsets, so only the base moves).
    public func rebase(to newBase: UnsafeRawPointer) {
        base = newBase
    }

    /// The length of the start line, without its CRLF.
    public var startLineLength: Int {
        guard let offset = memchrOffset(base, headLength, UInt8(ascii: "\r")) else { return 0 }
        return offset
    }

    /// Forgets the scan position; call when the buffer is consumed or moved.
    public func reset() {
        scannedUpTo = 0
    }

    // MARK: Finding the end of the head

    /// Looks for the blank line that ends a head, from `floor` on (past any skipped empty lines). Returns its end offset, or nil.
    private func findHeadEnd(_ start: UnsafeRawPointer, _ count: Int, from floor: Int = 0) -> Int? {
        var offset = max(floor, scannedUpTo - 2)
        while offset < count {
            guard let found = memchrOffset(start + offset, count - offset, UInt8(ascii: "\n")) else {
                scannedUpTo = count
                return nil
            }
            let lf = offset + found
            // A blank line: "\n\n" or "\n\r\n". A lone LF is rejected later, in the line parser.
            if lf + 1 < count, start.load(fromByteOffset: lf + 1, as: UInt8.self) == UInt8(ascii: "\n") {
                return lf + 2
            }
            if lf + 2 < count, start.load(fromByteOffset: lf + 1, as: UInt8.self) == UInt8(ascii: "\r"),
               start.load(fromByteOffset: lf + 2, as: UInt8.self) == UInt8(ascii: "\n") {
                return lf + 3
            }
            if lf + 2 >= count {
                scannedUpTo = lf
                return nil
            }
            offset = lf + 1
        }
        scannedUpTo = count
        return nil
    }

    // MARK: Requests

    /// Parses a request head at `start`. On `.complete`, `headLength` bytes are the head.
    public func parseRequest(_ start: UnsafeRawPointer, _ available: Int) -> Outcome {
        // Tolerate empty lines before the request line (RFC 9112 2.2).
        var skip = 0
        while skip + 1 < available,
              start.load(fromByteOffset: skip, as: UInt8.self) == UInt8(ascii: "\r"),
              start.load(fromByteOffset: skip + 1, as: UInt8.self) == UInt8(ascii: "\n") {
            skip += 2
        }
        guard let end = findHeadEnd(start, available, from: skip) else {
            return available > HTTPHeadParser.maxHeadBytes ? .failed(HTTPParseError(
                status: 431, code: .headersTooLarge, message: "the request's header section exceeds 64 KiB")) : .incomplete
        }
        scannedUpTo = 0
        if end > HTTPHeadParser.maxHeadBytes {
            return .failed(HTTPParseError(status: 431, code: .headersTooLarge, message: "the request's header section exceeds 64 KiB"))
        }
        resetMessage(start)
        var position = skip
        if let error = parseRequestLine(&position, end) { return .failed(error) }
        if let error = parseFields(position, end, isRequest: true) { return .failed(error) }
        headLength = end
        return .complete
    }

    /// Takes a request head that the gateway rendered itself, from an HTTP/2 stream's fields, without parsing its
    /// text again: `fields` are its name and value ranges (offsets from `start`), in order. The bytes were checked
    /// when they arrived: nghttp2 refuses a field name that is not a lowercase token and a value with a byte our
    /// parser refuses (NUL, CR, LF, other controls but tab, DEL) or with surrounding whitespace, and it refuses the
    /// connection-specific fields. What is left is checked here as `parseRequest` checks it: the method and target
    /// bytes, and every rule about Content-Length, Transfer-Encoding, Host and the field count.
    public func adoptRequest(_ start: UnsafeRawPointer, headLength length: Int, method methodRange: ByteRange, target targetRange: ByteRange,
                             fields adopted: UnsafeBufferPointer<HeaderField>) -> Outcome {
        if length > HTTPHeadParser.maxHeadBytes {
            return .failed(HTTPParseError(status: 431, code: .headersTooLarge, message: "the request's header section exceeds 64 KiB"))
        }
        scannedUpTo = 0
        resetMessage(start)
        let methodStart = Int(methodRange.start), methodEnd = methodStart + Int(methodRange.count)
        guard methodRange.count > 0, (methodStart..<methodEnd).allSatisfy({ HTTPBytes.isToken(byte($0)) }) else {
            return .failed(.bad("malformed request line: bad method"))
        }
        let targetStart = Int(targetRange.start), targetEnd = targetStart + Int(targetRange.count)
        guard targetRange.count > 0, (targetStart..<targetEnd).allSatisfy({ HTTPBytes.isTargetByte(byte($0)) }) else {
            return .failed(.bad("malformed request line: bad request target"))
        }
        self.methodRange = methodRange
        method = HTTPHeadParser.classifyMethod(base + methodStart, methodEnd - methodStart)
        target = targetRange
        minorVersion = 1
        guard adopted.count <= HTTPHeadParser.maxFields else {
            return .failed(HTTPParseError(status: 431, code: .headersTooLarge, message: "too many header fields"))
        }
        var sawTransferEncoding = false
        for field in adopted {
            let kind = HTTPBytes.classify(base + Int(field.name.start), Int(field.name.count))
            fields[fieldCount] = HeaderField(name: field.name, value: field.value, kind: kind, nominatedByConnection: false)
            fieldCount += 1
            if let error = noteField(kind, field.value, isRequest: true, sawTransferEncoding: &sawTransferEncoding) { return .failed(error) }
        }
        if let error = finishFields(isRequest: true) { return .failed(error) }
        headLength = length
        return .complete
    }

    private func resetMessage(_ start: UnsafeRawPointer) {
        base = start
        fieldCount = 0
        nominatedCount = 0
        contentLength = -1
        chunked = false
        connectionClose = false
        connectionKeepAlive = false
        expectContinue = false
        hasGatewayFields = false
        hostCount = 0
        status = 0
        method = .other
    }

    @inline(__always)
    private func byte(_ offset: Int) -> UInt8 { base.load(fromByteOffset: offset, as: UInt8.self) }

    private func parseRequestLine(_ position: inout Int, _ end: Int) -> HTTPParseError? {
        var p = position
        let methodStart = p
        while p < end, HTTPBytes.isToken(byte(p)) { p += 1 }
        guard p > methodStart, p < end, byte(p) == UInt8(ascii: " ") else { return .bad("malformed request line: bad method") }
        methodRange = ByteRange(start: Int32(methodStart), count: Int32(p - methodStart))
        method = HTTPHeadParser.classifyMethod(base + methodStart, p - methodStart)
        p += 1
        let targetStart = p
        while p < end, HTTPBytes.isTargetByte(byte(p)) { p += 1 }
        guard p > targetStart, p < end, byte(p) == UInt8(ascii: " ") else { return .bad("malformed request line: bad request target") }
        target = ByteRange(start: Int32(targetStart), count: Int32(p - targetStart))
        p += 1
        guard p + 10 <= end,
              byte(p) == UInt8(ascii: "H"), byte(p + 1) == UInt8(ascii: "T"), byte(p + 2) == UInt8(ascii: "T"),
              byte(p + 3) == UInt8(ascii: "P"), byte(p + 4) == UInt8(ascii: "/"), byte(p + 5) == UInt8(ascii: "1"),
              byte(p + 6) == UInt8(ascii: "."),
              byte(p + 8) == UInt8(ascii: "\r"), byte(p + 9) == UInt8(ascii: "\n") else {
            return .bad("malformed request line: expected HTTP/1.0 or HTTP/1.1")
        }
        switch byte(p + 7) {
        case UInt8(ascii: "1"): minorVersion = 1
        case UInt8(ascii: "0"): minorVersion = 0
        default: return .bad("unsupported HTTP version")
        }
        position = p + 10
        return nil
    }

    public static func classifyMethod(_ pointer: UnsafeRawPointer, _ count: Int) -> HTTPMethod {
        func equals(_ text: StaticString) -> Bool {
            count == text.utf8CodeUnitCount && memcmpEqual(pointer, UnsafeRawPointer(text.utf8Start), count)
        }
        switch count {
        case 3: return equals("GET") ? .get : (equals("PUT") ? .put : .other)
        case 4: return equals("POST") ? .post : (equals("HEAD") ? .head : .other)
        case 5: return equals("PATCH") ? .patch : .other
        case 6: return equals("DELETE") ? .delete : .other
        case 7: return equals("OPTIONS") ? .options : .other
        default: return .other
        }
    }

    // MARK: Responses

    /// Parses a response head (from an upstream). Errors here mean a broken upstream: 502.
    public func parseResponse(_ start: UnsafeRawPointer, _ available: Int) -> Outcome {
        guard let end = findHeadEnd(start, available) else {
            return available > HTTPHeadParser.maxHeadBytes ? .failed(.upstream("the upstream's response head exceeds 64 KiB")) : .incomplete
        }
        scannedUpTo = 0
        resetMessage(start)
        // "HTTP/1.x NNN reason\r\n"
        guard end >= 14, byte(0) == UInt8(ascii: "H"), byte(1) == UInt8(ascii: "T"), byte(2) == UInt8(ascii: "T"),
              byte(3) == UInt8(ascii: "P"), byte(4) == UInt8(ascii: "/"), byte(5) == UInt8(ascii: "1"),
              byte(6) == UInt8(ascii: "."), byte(8) == UInt8(ascii: " ") else {
            return .failed(.upstream("malformed status line from upstream"))
        }
        minorVersion = byte(7) == UInt8(ascii: "0") ? 0 : 1
        var code = 0
        for i in 9..<12 {
            let digit = byte(i) &- UInt8(ascii: "0")
            guard digit < 10 else { return .failed(.upstream("malformed status code from upstream")) }
            code = code * 10 + Int(digit)
        }
        guard byte(12) == UInt8(ascii: " ") || byte(12) == UInt8(ascii: "\r") else {
            return .failed(.upstream("malformed status code from upstream"))
        }
        status = code
        var p = 12
        while p < end, byte(p) != UInt8(ascii: "\n") {
            let b = byte(p)
            // A CR only as the end of the line: a bare CR is invalid (RFC 9112 2.2).
            guard b == 0x09 || (b == 0x0D && byte(p + 1) == UInt8(ascii: "\n")) || (b >= 0x20 && b != 0x7F) else { return .failed(.upstream("invalid byte in status line")) }
            p += 1
        }
        guard p < end, byte(p - 1) == UInt8(ascii: "\r") else { return .failed(.upstream("malformed status line from upstream")) }
        // Any fault in an upstream's head is the upstream's: 502, never a status that blames the client.
        if let error = parseFields(p + 1, end, isRequest: false) {
            return .failed(error.status == 502 ? error : HTTPParseError(status: 502, code: .upstreamError, message: error.message))
        }
        headLength = end
        return .complete
    }

    /// Takes a response head that the gateway rendered itself, from an upstream HTTP/2 stream's fields, without
    /// parsing its text again: `fields` are its name and value ranges (offsets from `start`), in order. nghttp2 checked
    /// the bytes when they arrived (see `adoptRequest`); what is left is checked here as `parseResponse` checks it:
    /// the rules about Content-Length, Transfer-Encoding and the field count. Every fault is the upstream's (502).
    public func adoptResponse(_ start: UnsafeRawPointer, headLength length: Int, status code: Int,
                              fields adopted: UnsafeBufferPointer<HeaderField>) -> Outcome {
        guard length <= HTTPHeadParser.maxHeadBytes else { return .failed(.upstream("the upstream's response head exceeds 64 KiB")) }
        guard adopted.count <= HTTPHeadParser.maxFields else { return .failed(.upstream("too many header fields from upstream")) }
        scannedUpTo = 0
        resetMessage(start)
        minorVersion = 1
        status = code
        var sawTransferEncoding = false
        for field in adopted {
            let kind = HTTPBytes.classify(base + Int(field.name.start), Int(field.name.count))
            fields[fieldCount] = HeaderField(name: field.name, value: field.value, kind: kind, nominatedByConnection: false)
            fieldCount += 1
            if let error = noteField(kind, field.value, isRequest: false, sawTransferEncoding: &sawTransferEncoding) {
                return .failed(error.status == 502 ? error : HTTPParseError(status: 502, code: .upstreamError, message: error.message))
            }
        }
        if let error = finishFields(isRequest: false) {
            return .failed(error.status == 502 ? error : HTTPParseError(status: 502, code: .upstreamError, message: error.message))
        }
        headLength = length
        return .complete
    }

    // MARK: Header fields

    private func parseFields(_ start: Int, _ end: Int, isRequest: Bool) -> HTTPParseError? {
        var p = start
        var sawTransferEncoding = false
        while true {
            guard p < end else { return .bad("truncated header section") }
            let first = byte(p)
            if first == UInt8(ascii: "\r") {
                guard p + 1 < end, byte(p + 1) == UInt8(ascii: "\n"), p + 2 == end else { return .bad("malformed end of header section") }
                break
            }
            if first == UInt8(ascii: "\n") { return .bad("bare LF in header section") }
            if first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { return .bad("obsolete line folding is not allowed") }
            let nameStart = p
            // Letters, digits and `-` eight at a time; the byte loop decides from the first other byte on.
            while p + 8 <= end {
                let flagged = HTTPBytes.nameBytes(UInt64(littleEndian: base.loadUnaligned(fromByteOffset: p, as: UInt64.self)))
                if flagged != 0x8080_8080_8080_8080 {
                    p += (~flagged & 0x8080_8080_8080_8080).trailingZeroBitCount >> 3
                    break
                }
                p += 8
            }
            while p < end, HTTPBytes.isToken(byte(p)) { p += 1 }
            guard p < end, byte(p) == UInt8(ascii: ":"), p > nameStart else {
                return .bad("invalid header name")
            }
            let nameCount = p - nameStart
            p += 1
            while p < end, byte(p) == UInt8(ascii: " ") || byte(p) == UInt8(ascii: "\t") { p += 1 }
            let valueStart = p
            // Eight bytes at a time while a chunk holds no control byte (< 0x20: CR, LF, tab, ...) and no DEL; the byte
            // loop takes over at the first such byte and decides each byte as before.
            while p + 8 <= end {
                let chunk = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: p, as: UInt64.self))
                let control = (chunk &- 0x2020_2020_2020_2020) & ~chunk & 0x8080_8080_8080_8080
                let del = (chunk ^ 0x7F7F_7F7F_7F7F_7F7F)
                let hasDel = (del &- 0x0101_0101_0101_0101) & ~del & 0x8080_8080_8080_8080
                if control | hasDel != 0 {
                    // The lowest flag is exact (a borrow only flags bytes above a real match).
                    p += (control | hasDel).trailingZeroBitCount >> 3
                    break
                }
                p += 8
            }
            while p < end, HTTPBytes.isValueByte(byte(p)) { p += 1 }
            guard p + 1 < end, byte(p) == UInt8(ascii: "\r"), byte(p + 1) == UInt8(ascii: "\n") else {
                return .bad("invalid byte in header value")
            }
            var valueEnd = p
            while valueEnd > valueStart, byte(valueEnd - 1) == UInt8(ascii: " ") || byte(valueEnd - 1) == UInt8(ascii: "\t") {
                valueEnd -= 1
            }
            p += 2
            guard fieldCount < HTTPHeadParser.maxFields else {
                return HTTPParseError(status: 431, code: .headersTooLarge, message: "too many header fields")
            }
            let kind = HTTPBytes.classify(base + nameStart, nameCount)
            let value = ByteRange(start: Int32(valueStart), count: Int32(valueEnd - valueStart))
            fields[fieldCount] = HeaderField(
                name: ByteRange(start: Int32(nameStart), count: Int32(nameCount)), value: value, kind: kind,
                nominatedByConnection: false)
            fieldCount += 1
            if let error = noteField(kind, value, isRequest: isRequest, sawTransferEncoding: &sawTransferEncoding) { return error }
        }
        return finishFields(isRequest: isRequest)
    }

    /// What a field means for the message: its framing, its connection options, its Host count.
    @inline(__always)
    private func noteField(_ kind: HeaderKind, _ value: ByteRange, isRequest: Bool, sawTransferEncoding: inout Bool) -> HTTPParseError? {
        switch kind {
        case .contentLength:
            guard let length = parseContentLength(value) else { return .bad("invalid Content-Length") }
            if contentLength >= 0, contentLength != length { return .bad("differing Content-Length headers") }
            contentLength = length
        case .transferEncoding:
            if sawTransferEncoding { return .bad("repeated Transfer-Encoding header") }
            sawTransferEncoding = true
            guard HTTPBytes.equalsLowercase(base + Int(value.start), Int(value.count), "chunked") else {
                return isRequest ? HTTPParseError(status: 501, code: .notImplemented, message: "only the chunked transfer coding is supported")
                    : .upstream("unsupported transfer coding from upstream")
            }
            chunked = true
        case .connection:
            parseConnectionTokens(value)
        case .host:
            hostCount += 1
        case .expect:
            if HTTPBytes.equalsLowercase(base + Int(value.start), Int(value.count), "100-continue") { expectContinue = true }
        case .xGatewayPrefixed:
            hasGatewayFields = true
        default:
            break
        }
        return nil
    }

    /// The rules about the fields taken together, once they are all noted.
    private func finishFields(isRequest: Bool) -> HTTPParseError? {
        if chunked && contentLength >= 0 {
            return isRequest ? .bad("both Content-Length and Transfer-Encoding") : .upstream("upstream sent both Content-Length and Transfer-Encoding")
        }
        if isRequest {
            if chunked && minorVersion == 0 { return .bad("Transfer-Encoding in an HTTP/1.0 request") }
            if minorVersion == 1 && hostCount != 1 { return .bad("an HTTP/1.1 request needs exactly one Host header") }
            if hostCount > 1 { return .bad("more than one Host header") }
        }
        if nominatedCount > 0 { markNominated() }
        return nil
    }

    private func parseContentLength(_ value: ByteRange) -> Int64? {
        guard value.count > 0, value.count <= 15 else { return nil }
        var result: Int64 = 0
        for i in 0..<Int(value.count) {
            let digit = byte(Int(value.start) + i) &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            result = result * 10 + Int64(digit)
        }
        return result
    }

    private func parseConnectionTokens(_ value: ByteRange) {
        var p = Int(value.start)
        let end = p + Int(value.count)
        while p < end {
            while p < end, byte(p) == UInt8(ascii: " ") || byte(p) == UInt8(ascii: ",") || byte(p) == UInt8(ascii: "\t") { p += 1 }
            let start = p
            while p < end, byte(p) != UInt8(ascii: ","), byte(p) != UInt8(ascii: " "), byte(p) != UInt8(ascii: "\t") { p += 1 }
            let count = p - start
            guard count > 0 else { continue }
            if HTTPBytes.equalsLowercase(base + start, count, "close") {
                connectionClose = true
            } else if HTTPBytes.equalsLowercase(base + start, count, "keep-alive") {
                connectionKeepAlive = true
            } else if nominatedCount < HTTPHeadParser.maxNominated {
                nominated[nominatedCount] = ByteRange(start: Int32(start), count: Int32(count))
                nominatedCount += 1
            }
        }
    }

    private func markNominated() {
        for i in 0..<fieldCount {
            let name = fields[i].name
            for j in 0..<nominatedCount where nominated[j].count == name.count {
                if HTTPBytes.equalsIgnoringCase(base + Int(name.start), base + Int(nominated[j].start), Int(name.count)) {
                    fields[i].nominatedByConnection = true
                }
            }
        }
    }
}

extension HTTPParseError {
    public static func upstream(_ message: StaticString) -> HTTPParseError {
        HTTPParseError(status: 502, code: .upstreamError, message: message)
    }
}

@inline(__always)
func memchrOffset(_ pointer: UnsafeRawPointer, _ count: Int, _ byte: UInt8) -> Int? {
    guard let found = memchrC(pointer, Int32(byte), count) else { return nil }
    return found - pointer
}

@inline(__always)
func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
    memcmpC(a, b, count) == 0
}

/// Byte-level HTTP vocabulary shared by the request and response codecs.

/// A range of bytes inside a buffer, as offsets from the start of the parsed head.
public struct ByteRange: Sendable, Equatable {
    public var start: Int32
    public var count: Int32
    public static let empty = ByteRange(start: 0, count: 0)
    public init(start: Int32, count: Int32) {
        self.start = start
        self.count = count
    }
}

public enum HTTPMethod: UInt8, Sendable {
    case get, head, post, put, delete, options, patch, other
}

/// The headers the gateway acts on, recognised once while parsing so later passes compare a byte, not a string.
public enum HeaderKind: UInt8, Sendable {
    case other
    case contentLength, transferEncoding, connection, host, expect
    case keepAlive, te, trailer, upgrade, proxyPrefixed
    case authorization, xApiKey, xRequestID, xForwardedFor, contentType
    case xGatewayPrefixed
}

/// One header line, as ranges of the head's bytes. `kind` says whether the gateway treats it specially.
public struct HeaderField: Sendable {
    public var name: ByteRange
    public var value: ByteRange
    public var kind: HeaderKind
    /// True when a `Connection` header names this header: it is hop-by-hop and is not forwarded.
    public var nominatedByConnection: Bool

    /// A field not yet classified (`HTTPHeadParser.adoptRequest` classifies it).
    public init(name: ByteRange, value: ByteRange) {
        self.name = name
        self.value = value
        self.kind = .other
        self.nominatedByConnection = false
    }

    init(name: ByteRange, value: ByteRange, kind: HeaderKind, nominatedByConnection: Bool) {
        self.name = name
        self.value = value
        self.kind = kind
        self.nominatedByConnection = nominatedByConnection
    }
}

/// An error the codec answers itself, with the status and the OpenAI-style code to send back.
public struct HTTPParseError: Error, Sendable, Equatable {
    public var status: Int
    public var code: StaticCode
    public var message: StaticString

    public static func == (lhs: HTTPParseError, rhs: HTTPParseError) -> Bool {
        lhs.status == rhs.status && lhs.code == rhs.code
    }

    public init(status: Int, code: StaticCode, message: StaticString) {
        self.status = status
        self.code = code
        self.message = message
    }

    public static func bad(_ message: StaticString) -> HTTPParseError {
        HTTPParseError(status: 400, code: .invalidRequest, message: message)
    }
}

/// The error codes of the contract (DESIGN.md, "Client API").
public enum StaticCode: String, Sendable {
    case invalidRequest = "invalid_request"
    case invalidAPIKey = "invalid_api_key"
    case budgetExceeded = "budget_exceeded"
    case modelNotAllowed = "model_not_allowed"
    case modelNotFound = "model_not_found"
    case notFound = "not_found"
    case methodNotAllowed = "method_not_allowed"
    case requestTooLarge = "request_too_large"
    case requestTimeout = "request_timeout"
    case rateLimitExceeded = "rate_limit_exceeded"
    case headersTooLarge = "headers_too_large"
    case notImplemented = "not_implemented"
    case upstreamError = "upstream_error"
    case upstreamUnavailable = "upstream_unavailable"
    case upstreamTimeout = "upstream_timeout"
    case shuttingDown = "shutting_down"
    /// Not sent to anyone: the audit code of a request whose client (or upstream) went away mid-way.
    case clientClosed = "client_closed"

    /// The Anthropic error `type` that goes with the code.
    public var anthropicType: String {
        switch self {
        case .invalidAPIKey: "authentication_error"
        case .modelNotAllowed: "permission_error"
        case .budgetExceeded: "billing_error"
        case .rateLimitExceeded: "rate_limit_error"
        case .modelNotFound, .notFound: "not_found_error"
        case .requestTooLarge: "request_too_large"
        case .upstreamUnavailable: "overloaded_error"
        case .upstreamError, .upstreamTimeout, .shuttingDown, .clientClosed: "api_error"
        default: "invalid_request_error"
        }
    }

    /// The OpenAI error `type` that goes with the code.
    public var type: String {
        switch self {
        case .invalidAPIKey: "authentication_error"
        case .modelNotAllowed: "permission_error"
        case .budgetExceeded: "insufficient_quota"
        case .rateLimitExceeded: "rate_limit_error"
        case .modelNotFound, .notFound: "not_found_error"
        case .upstreamError, .upstreamUnavailable, .upstreamTimeout, .shuttingDown, .clientClosed: "api_error"
        default: "invalid_request_error"
        }
    }
}

public enum HTTPStatus {
    /// The reason phrase for a status line.
    public static func reason(_ status: Int) -> StaticString {
        switch status {
        case 100: "Continue"
        case 200: "OK"
        case 204: "No Content"
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 402: "Payment Required"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 413: "Content Too Large"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: "Status"
        }
    }
}

/// Byte classes from RFC 9110.
public enum HTTPBytes {
    // Byte classes are plain functions, not lookup tables: a global table costs a lazy-initialisation
    // check and a retain on every access, which showed up in profiles.

    /// Bit 7 set in each byte of `word` (eight bytes, little-endian) that is a letter, a digit or `-`: the bytes of
    /// almost every header name, eight at a time. Exact in every byte (the arithmetic runs on 7-bit bytes, so no
    /// borrow or carry crosses into a neighbour); a byte it does not flag may still be a token byte (`_`, `.`, ...)
    /// and is left to `isToken`.
    @inline(__always)
    static func nameBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let high = ones &* 0x80
        let ascii = ~word & high
        let low = word & ~high
        // x >= c: (x | 0x80) - c keeps bit 7; x <= c: (c | 0x80) - x keeps bit 7 (both for 7-bit x and c).
        @inline(__always) func atLeast(_ x: UInt64, _ c: UInt64) -> UInt64 { ((x | high) &- ones &* c) & high }
        @inline(__always) func atMost(_ x: UInt64, _ c: UInt64) -> UInt64 { ((high | ones &* c) &- x) & high }
        let folded = low | ones &* 0x20
        let letter = atLeast(folded, 0x61) & atMost(folded, 0x7A)
        let digit = atLeast(low, 0x30) & atMost(low, 0x39)
        let dashZero = low ^ ones &* 0x2D
        let dash = ~(((dashZero & ~high) &+ ones &* 0x7F) | dashZero | ones &* 0x7F)
        return (letter | digit | dash) & ascii
    }

    /// tchar: the characters allowed in a token (method, header name): ALPHA, DIGIT and !#$%&'*+-.^_`|~.
    @inline(__always)
    public static func isToken(_ byte: UInt8) -> Bool {
        // One bit per byte value, in two words (0-63 and 64-127): a shift and a test instead of a chain of
        // range checks (HTTPBytesTests checks every byte value against the RFC's list).
        let mask: UInt64 = byte < 64 ? 0x03FF_6CFA_0000_0000 : 0x57FF_FFFF_C7FF_FFFE
        return byte < 128 && (mask >> UInt64(byte & 63)) & 1 != 0
    }

    /// field-vchar, obs-text, SP and HTAB: what a header value may hold. CR, LF, NUL and other controls may not.
    @inline(__always)
    public static func isValueByte(_ byte: UInt8) -> Bool {
        byte >= 0x20 ? byte != 0x7F : byte == 0x09
    }

    /// What a request-target may hold: visible ASCII, no spaces or controls.
    @inline(__always)
    public static func isTargetByte(_ byte: UInt8) -> Bool {
        byte >= 0x21 && byte <= 0x7E
    }

    /// Compares bytes to a lowercase ASCII name, ignoring case. Only valid for token bytes. Inlinable: other
    /// modules (gwbench's response parser) call it per header field.
    @inlinable @inline(__always)
    public static func equalsLowercase(_ pointer: UnsafeRawPointer, _ count: Int, _ name: StaticString) -> Bool {
        guard count == name.utf8CodeUnitCount else { return false }
        let target = name.utf8Start
        for i in 0..<count where pointer.load(fromByteOffset: i, as: UInt8.self) | 0x20 != target[i] {
            return false
        }
        return true
    }

    @inline(__always)
    public static func hasLowercasePrefix(_ pointer: UnsafeRawPointer, _ count: Int, _ prefix: StaticString) -> Bool {
        guard count >= prefix.utf8CodeUnitCount else { return false }
        let target = prefix.utf8Start
        for i in 0..<prefix.utf8CodeUnitCount where pointer.load(fromByteOffset: i, as: UInt8.self) | 0x20 != target[i] {
            return false
        }
        return true
    }

    /// Folds ASCII capitals to lowercase in place, eight bytes at a time (header names for HTTP/2, which wants them
    /// lowercase). Bytes outside A-Z are left as they are.
    @inline(__always)
    public static func lowercaseInPlace(_ pointer: UnsafeMutableRawPointer, _ count: Int) {
        @inline(__always) func fold(_ offset: Int) {
            let chunk = pointer.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            // Per byte, with the top bit cleared first so that no addition carries into the next byte: the top bit
            // of (b + 0x3F) is set from 'A' up, that of (b + 0x25) from '[' up; a capital has the first and not the
            // second, and no top bit of its own.
            let low = chunk & 0x7F7F_7F7F_7F7F_7F7F
            let capital = ((low &+ 0x3F3F_3F3F_3F3F_3F3F) ^ (low &+ 0x2525_2525_2525_2525)) & ~chunk & 0x8080_8080_8080_8080
            if capital != 0 { pointer.storeBytes(of: chunk | (capital >> 2), toByteOffset: offset, as: UInt64.self) }
        }
        var offset = 0
        while offset + 8 <= count {
            fold(offset)
            offset += 8
        }
        // The last bytes of a name of eight or more: the last eight again (folding twice changes nothing).
        if offset < count && count >= 8 {
            fold(count - 8)
            return
        }
        while offset < count {
            let byte = pointer.load(fromByteOffset: offset, as: UInt8.self)
            if byte >= 0x41 && byte <= 0x5A { pointer.storeBytes(of: byte | 0x20, toByteOffset: offset, as: UInt8.self) }
            offset += 1
        }
    }

    /// Two header names equal, ignoring ASCII case.
    @inline(__always)
    public static func equalsIgnoringCase(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool {
        for i in 0..<count where a.load(fromByteOffset: i, as: UInt8.self) | 0x20 != b.load(fromByteOffset: i, as: UInt8.self) | 0x20 {
            return false
        }
        return true
    }

    /// Recognises the headers the gateway acts on.
    @inline(__always)
    static func classify(_ name: UnsafeRawPointer, _ count: Int) -> HeaderKind {
        switch count {
        case 2: if equalsLowercase(name, count, "te") { return .te }
        case 4: if equalsLowercase(name, count, "host") { return .host }
        case 6: if equalsLowercase(name, count, "expect") { return .expect }
        case 7:
            if equalsLowercase(name, count, "trailer") { return .trailer }
            if equalsLowercase(name, count, "upgrade") { return .upgrade }
        case 9: if equalsLowercase(name, count, "x-api-key") { return .xApiKey }
        case 10:
            if equalsLowercase(name, count, "connection") { return .connection }
            if equalsLowercase(name, count, "keep-alive") { return .keepAlive }
        case 12:
            if equalsLowercase(name, count, "x-request-id") { return .xRequestID }
            if equalsLowercase(name, count, "content-type") { return .contentType }
        case 13: if equalsLowercase(name, count, "authorization") { return .authorization }
        case 14: if equalsLowercase(name, count, "content-length") { return .contentLength }
        case 15: if equalsLowercase(name, count, "x-forwarded-for") { return .xForwardedFor }
        case 17: if equalsLowercase(name, count, "transfer-encoding") { return .transferEncoding }
        default: break
        }
        // Every length falls through to here: "Proxy-Foo" (9) or "X-Gateway-Key" (13) share a length with a known name.
        if hasLowercasePrefix(name, count, "proxy-") { return .proxyPrefixed }
        if hasLowercasePrefix(name, count, "x-gateway-") { return .xGatewayPrefixed }
        return .other
    }
}

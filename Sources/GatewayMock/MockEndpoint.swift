#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP

/// The paths gwmock answers (`/mock/stats` and the model APIs), with what gwmock does with each.
typealias MockEndpoint = APIPath

extension APIPath {
    /// The one method the endpoint takes.
    var method: HTTPMethod {
        switch self {
        case .models, .mockStats, .health: .get
        default: .post
        }
    }

    /// Errors on `/v1/messages` take Anthropic's shape.
    var anthropicErrors: Bool { self == .messages }
}

/// What the `x-mock-fault` header asks for.
enum MockFault {
    case none
    /// SO_LINGER 0 and close: the client sees a reset and no response.
    case reset
    /// Never answer; the connection stays open until the client gives up.
    case stall
    /// A head that promises more body than is sent, half the body, then close.
    case closeMidBody
}

/// Everything about the request in flight that decides its response: read from the head's `x-mock-*`
/// headers (over the server's defaults) and from the body. A plain value, so a new request costs no allocation.
struct RequestPlan {
    var endpoint = MockEndpoint.other
    var methodMatches = true
    /// A HEAD request gets the head of its response and no body.
    var isHead = false
    var keepAlive = true
    var minorVersion = 1
    /// CLOCK_MONOTONIC ns of the read that brought the head.
    var receivedNs: UInt64 = 0
    /// `x-mock-status`, or 0.
    var status = 0
    var latencyNs: UInt64 = 0
    var ttftNs: UInt64 = 0
    var itlNs: UInt64 = 0
    var chunks = 16
    /// `x-mock-usage: P,C`, or -1.
    var usagePrompt = -1
    var usageCompletion = -1
    var fault = MockFault.none
    /// `x-mock-tool-call`: answer with one call of `MockRender.toolName` instead of text.
    var toolCall = false
    /// Seconds for `retry-after` on an error response, or -1 for none (a profile's `retry-after`).
    var retryAfter = -1
    /// The profile the request came through (`/NAME/v1/...`), as an index into the thread's counts, or -1.
    var profile = -1
    // From the body.
    var bodyBytes = 0
    var stream = false
    var includeUsage = false
    var inputCount = 1
    /// The response id's number.
    var sequence = 0

    var promptTokens: Int { usagePrompt >= 0 ? usagePrompt : (bodyBytes + 3) / 4 }
    var completionTokens: Int { usageCompletion >= 0 ? usageCompletion : chunks }
    var streams: Bool {
        stream && (endpoint == .chatCompletions || endpoint == .completions || endpoint == .messages)
    }

    /// Applies the `x-mock-*` headers of a parsed head. Values that do not parse are ignored.
    mutating func readHeaders(_ parser: HTTPHeadParser) {
        for i in 0..<parser.fieldCount {
            let field = parser.fields[i]
            readHeader(name: parser.base + Int(field.name.start), nameCount: Int(field.name.count), value: parser.bytes(field.value))
        }
    }

    /// Applies one header if it is an `x-mock-*` one (an HTTP/1.1 head's, or an HTTP/2 header block's).
    mutating func readHeader(name: UnsafeRawPointer, nameCount: Int, value: UnsafeRawBufferPointer) {
        guard nameCount > 7, HTTPBytes.hasLowercasePrefix(name, nameCount, "x-mock-") else { return }
        if HTTPBytes.equalsLowercase(name, nameCount, "x-mock-status") {
            if let number = MockNumbers.parse(value), number >= 100, number <= 999 { status = number }
        } else if HTTPBytes.equalsLowercase(name, nameCount, "x-mock-latency-ms") {
            if let number = MockNumbers.parse(value) { latencyNs = UInt64(number) * 1_000_000 }
        } else if HTTPBytes.equalsLowercase(name, nameCount, "x-mock-ttft-ms") {
            if let number = MockNumbers.parse(value) { ttftNs = UInt64(number) * 1_000_000 }
        } else if HTTPBytes.equalsLowercase(name, nameCount, "x-mock-itl-ms") {
            if let number = MockNumbers.parse(value) { itlNs = UInt64(number) * 1_000_000 }
        } else if HTTPBytes.equalsLowercase(name, nameCount, "x-mock-tool-call") {
            toolCall = !(value.count == 1 && value[0] == UInt8(ascii: "0"))
        } else if HTTPBytes.equalsLowercase(name, nameCount, "x-mock-chunks") {
            if let number = MockNumbers.parse(value) { chunks = min(number, MockLimits.maxChunks) }
        } else if HTTPBytes.equalsLowercase(name, nameCount, "x-mock-usage") {
            guard let comma = value.firstIndex(of: UInt8(ascii: ",")),
                  let prompt = MockNumbers.parse(UnsafeRawBufferPointer(rebasing: value[..<comma])),
                  let completion = MockNumbers.parse(UnsafeRawBufferPointer(rebasing: value[(comma + 1)...]))
            else { return }
            usagePrompt = prompt
            usageCompletion = completion
        } else if HTTPBytes.equalsLowercase(name, nameCount, "x-mock-fault") {
            guard let base = value.baseAddress else { return }
            if HTTPBytes.equalsLowercase(base, value.count, "reset") {
                fault = .reset
            } else if HTTPBytes.equalsLowercase(base, value.count, "stall") {
                fault = .stall
            } else if HTTPBytes.equalsLowercase(base, value.count, "close-mid-body") {
                fault = .closeMidBody
            }
        }
    }
}

enum MockNumbers {
    /// A non-negative decimal of at most 12 digits, spaces around it allowed.
    static func parse(_ bytes: UnsafeRawBufferPointer) -> Int? {
        var start = 0
        var end = bytes.count
        while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
        while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
        guard end > start, end - start <= 12 else { return nil }
        var value = 0
        for i in start..<end {
            let digit = bytes[i] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }
}

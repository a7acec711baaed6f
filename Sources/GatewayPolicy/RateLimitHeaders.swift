// The OpenAI-style rate-limit headers every response carries.
import GatewayIO

/// Limit and remaining for requests and for tokens; nil when no such limit applies to the key.
public struct RateLimitHeaders: Sendable, Equatable {
    public var limitRequests: Int?
    public var remainingRequests: Int?
    public var limitTokens: Int?
    public var remainingTokens: Int?

    public init(limitRequests: Int? = nil, remainingRequests: Int? = nil, limitTokens: Int? = nil, remainingTokens: Int? = nil) {
        self.limitRequests = limitRequests
        self.remainingRequests = remainingRequests
        self.limitTokens = limitTokens
        self.remainingTokens = remainingTokens
    }

    /// The most bytes `write(into:)` appends: four header lines with 20-digit values.
    public static let maxEncodedBytes = 4 * 60

    public var isEmpty: Bool { limitRequests == nil && limitTokens == nil }

    /// Appends `x-ratelimit-limit-requests: N\r\n` and its siblings for the limits that apply,
    /// without allocating. The buffer needs `maxEncodedBytes` of room.
    public func write(into buffer: inout ByteBuffer) {
        if let limit = limitRequests, let remaining = remainingRequests {
            buffer.append("x-ratelimit-limit-requests: ")
            buffer.append(decimal: limit)
            buffer.append("\r\nx-ratelimit-remaining-requests: ")
            buffer.append(decimal: remaining)
            buffer.append("\r\n")
        }
        if let limit = limitTokens, let remaining = remainingTokens {
            buffer.append("x-ratelimit-limit-tokens: ")
            buffer.append(decimal: limit)
            buffer.append("\r\nx-ratelimit-remaining-tokens: ")
            buffer.append(decimal: remaining)
            buffer.append("\r\n")
        }
    }
}

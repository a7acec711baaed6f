/// A body that cannot be translated, with the field at fault, so that the proxy can answer 400 (or 502 for a response).
public struct TranslationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Where in the document the problem is, for example `messages[2].tool_calls[0].function.arguments`.
    public let field: String
    /// What is wrong with it.
    public let reason: String

    public init(field: String, _ reason: String) {
        self.field = field
        self.reason = reason
    }

    /// The message for the client: the field, then the reason.
    public var message: String { "\(field): \(reason)" }
    public var description: String { message }
}

import GatewayJSON

/// Reading a client's or an upstream's JSON with errors that name the field at fault.
enum JSONFields {
    /// Parses a whole body that must be a JSON object.
    static func object(_ body: UnsafeRawBufferPointer, name: String) throws(TranslationError) -> JSONValue {
        guard let value = JSONValue.parse(bytes: body), value.objectMembers != nil else {
            throw TranslationError(field: name, "is not a JSON object")
        }
        return value
    }

    /// A value that must be an object when present; nil when absent or null.
    static func optionalObject(_ value: JSONValue?, _ field: String) throws(TranslationError) -> JSONValue? {
        guard let value, !value.isNull else { return nil }
        guard value.objectMembers != nil else { throw TranslationError(field: field, "must be an object") }
        return value
    }

    static func object(_ value: JSONValue?, _ field: String) throws(TranslationError) -> JSONValue {
        guard let object = try optionalObject(value, field) else { throw TranslationError(field: field, "is required") }
        return object
    }

    static func optionalArray(_ value: JSONValue?, _ field: String) throws(TranslationError) -> [JSONValue]? {
        guard let value, !value.isNull else { return nil }
        guard let elements = value.arrayValue else { throw TranslationError(field: field, "must be an array") }
        return elements
    }

    static func optionalString(_ value: JSONValue?, _ field: String) throws(TranslationError) -> String? {
        guard let value, !value.isNull else { return nil }
        guard let text = value.stringValue else { throw TranslationError(field: field, "must be a string") }
        return text
    }

    static func string(_ value: JSONValue?, _ field: String) throws(TranslationError) -> String {
        guard let text = try optionalString(value, field) else { throw TranslationError(field: field, "is required") }
        return text
    }

    /// A number passed through as written (integer or not).
    static func optionalNumber(_ value: JSONValue?, _ field: String) throws(TranslationError) -> JSONValue? {
        guard let value, !value.isNull else { return nil }
        guard value.doubleValue != nil else { throw TranslationError(field: field, "must be a number") }
        return value
    }

    static func optionalPositiveInt(_ value: JSONValue?, _ field: String) throws(TranslationError) -> Int64? {
        guard let value, !value.isNull else { return nil }
        guard let number = value.int64Value, number > 0 else {
            throw TranslationError(field: field, "must be a positive integer")
        }
        return number
    }

    /// Content that is a string or an array of text parts (OpenAI) or text blocks (Anthropic), which share one
    /// shape. Empty texts are dropped, because Anthropic refuses empty text blocks.
    static func texts(_ content: JSONValue?, _ field: String) throws(TranslationError) -> [String] {
        guard let content, !content.isNull else { return [] }
        if let text = content.stringValue { return text.isEmpty ? [] : [text] }
        guard let parts = content.arrayValue else { throw TranslationError(field: field, "must be a string or an array") }
        var texts: [String] = []
        for (position, part) in parts.enumerated() {
            let partField = "\(field)[\(position)]"
            guard try string(part["type"], partField + ".type") == "text" else {
                throw TranslationError(field: partField + ".type", "only text is supported here")
            }
            let text = try string(part["text"], partField + ".text")
            if !text.isEmpty { texts.append(text) }
        }
        return texts
    }

    static func optionalBool(_ value: JSONValue?, _ field: String) throws(TranslationError) -> Bool? {
        guard let value, !value.isNull else { return nil }
        guard let flag = value.boolValue else { throw TranslationError(field: field, "must be true or false") }
        return flag
    }
}

/// Builds a JSON object member by member; an absent optional adds nothing.
struct ObjectBuilder {
    private(set) var members: [(String, JSONValue)] = []

    mutating func add(_ name: String, _ value: JSONValue?) {
        if let value { members.append((name, value)) }
    }

    var value: JSONValue { .object(members) }
}

extension JSONValue {
    /// `{"type":"text","text":…}`, the text block or part of both APIs.
    static func textBlock(_ text: String) -> JSONValue {
        .object([("type", .string("text")), ("text", .string(text))])
    }
}

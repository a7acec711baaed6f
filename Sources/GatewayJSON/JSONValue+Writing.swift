/// Writing a parsed (or built) `JSONValue` back out, members in the order they hold.

extension JSONWriter {
    /// Writes a finite double in its shortest round-trip form; JSON has no NaN or infinity, so those become null.
    public mutating func double(_ value: Double) {
        guard value.isFinite else { null(); return }
        raw(value.description)
    }

    /// Writes a whole JSON value, recursively.
    public mutating func value(_ value: JSONValue) {
        switch value {
        case .null: null()
        case let .bool(flag): bool(flag)
        case let .int(number): int(number)
        case let .double(number): double(number)
        case let .string(text): string(text)
        case let .array(elements):
            beginArray()
            for element in elements { self.value(element) }
            endArray()
        case let .object(members):
            beginObject()
            for (name, member) in members { key(name); self.value(member) }
            endObject()
        }
    }
}

extension JSONValue {
    /// The value as compact JSON text.
    public func serialized() -> [UInt8] {
        var writer = JSONWriter()
        writer.value(self)
        return writer.bytes
    }

    /// The members of an object in document order, or nil for any other value.
    public var objectMembers: [(String, JSONValue)]? { if case let .object(members) = self { return members }; return nil }

    /// A number as a double, whether it was written as an integer or not.
    public var doubleValue: Double? {
        switch self {
        case let .int(number): return Double(number)
        case let .double(number): return number
        default: return nil
        }
    }
}

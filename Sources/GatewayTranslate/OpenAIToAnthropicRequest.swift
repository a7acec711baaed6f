import GatewayJSON

/// From the OpenAI shape to the Anthropic shape: a client's chat completion request, an upstream's answer.
public enum OpenAIToAnthropic {
    /// Anthropic requires `max_tokens`; a client that sets neither `max_tokens` nor `max_completion_tokens` gets this.
    public static let defaultMaxTokens: Int64 = 4096

    /// Turns an OpenAI `/v1/chat/completions` request into an Anthropic `/v1/messages` request.
    ///
    /// System and developer messages, wherever they are, become the top-level `system` (a string when there is one
    /// text, text blocks otherwise). Consecutive messages of one role become one turn, because Anthropic wants user
    /// and assistant to alternate; tool results become user `tool_result` blocks. Parameters Anthropic lacks
    /// (`response_format`, `seed`, penalties, `logprobs`) are dropped; `n` above 1 is refused.
    /// - Parameters:
    ///   - body: the client's JSON body.
    ///   - upstreamModel: the model id the deployment knows, written as `model`.
    /// - Returns: the Anthropic JSON body.
    /// - Throws: `TranslationError` naming the field that cannot be translated.
    public static func request(_ body: UnsafeRawBufferPointer, upstreamModel: String) throws(TranslationError) -> [UInt8] {
        let request = try JSONFields.object(body, name: "body")
        guard let messages = try JSONFields.optionalArray(request["messages"], "messages"), !messages.isEmpty else {
            throw TranslationError(field: "messages", "must be a non-empty array")
        }
        if let n = request["n"]?.int64Value, n > 1 {
            throw TranslationError(field: "n", "Anthropic models return one choice; ask for n = 1")
        }

        var system: [String] = []
        var turns = AlternatingTurns()
        for (position, message) in messages.enumerated() {
            let field = "messages[\(position)]"
            _ = try JSONFields.object(message, field)
            switch try JSONFields.string(message["role"], field + ".role") {
            case "system", "developer":
                system += try JSONFields.texts(message["content"], field + ".content")
            case "user":
                turns.append(role: "user", blocks: try userBlocks(message["content"], field + ".content"))
            case "assistant":
                turns.append(role: "assistant", blocks: try assistantBlocks(message, field))
            case "tool":
                turns.append(role: "user", blocks: [try toolResult(message, field)])
            case let role:
                throw TranslationError(field: field + ".role", "unsupported role \"\(role)\"")
            }
        }
        guard !turns.isEmpty else {
            throw TranslationError(field: "messages", "has no user or assistant message with content")
        }

        var out = ObjectBuilder()
        out.add("model", .string(upstreamModel))
        let maxCompletionTokens = try JSONFields.optionalPositiveInt(request["max_completion_tokens"], "max_completion_tokens")
        let maxTokens = try JSONFields.optionalPositiveInt(request["max_tokens"], "max_tokens")
        out.add("max_tokens", .int(maxCompletionTokens ?? maxTokens ?? defaultMaxTokens))
        if !system.isEmpty { out.add("system", system.count == 1 ? .string(system[0]) : .array(system.map(JSONValue.textBlock))) }
        out.add("messages", turns.messages)
        out.add("temperature", try JSONFields.optionalNumber(request["temperature"], "temperature"))
        out.add("top_p", try JSONFields.optionalNumber(request["top_p"], "top_p"))
        out.add("stop_sequences", try stopSequences(request["stop"]))
        out.add("stream", try JSONFields.optionalBool(request["stream"], "stream").map(JSONValue.bool))
        if let tools = try JSONFields.optionalArray(request["tools"], "tools") {
            out.add("tools", .array(try tools.enumerated().map { (position, tool) throws(TranslationError) in
                try anthropicTool(tool, "tools[\(position)]")
            }))
        }
        let parallel = try JSONFields.optionalBool(request["parallel_tool_calls"], "parallel_tool_calls")
        out.add("tool_choice", try toolChoice(request["tool_choice"], parallelToolCalls: parallel))
        if let user = try JSONFields.optionalString(request["user"], "user") {
            out.add("metadata", .object([("user_id", .string(user))]))
        }
        return out.value.serialized()
    }

    /// A user message's content: text and images.
    private static func userBlocks(_ content: JSONValue?, _ field: String) throws(TranslationError) -> [JSONValue] {
        guard let parts = content?.arrayValue else { return try JSONFields.texts(content, field).map(JSONValue.textBlock) }
        var blocks: [JSONValue] = []
        for (position, part) in parts.enumerated() {
            let partField = "\(field)[\(position)]"
            switch try JSONFields.string(part["type"], partField + ".type") {
            case "text":
                let text = try JSONFields.string(part["text"], partField + ".text")
                if !text.isEmpty { blocks.append(.textBlock(text)) }
            case "image_url":
                blocks.append(try Images.anthropicBlock(fromOpenAIPart: part, partField))
            case let other:
                throw TranslationError(field: partField + ".type", "unsupported content part \"\(other)\"")
            }
        }
        return blocks
    }

    /// An assistant message's text, then its tool calls as `tool_use` blocks with their arguments parsed.
    private static func assistantBlocks(_ message: JSONValue, _ field: String) throws(TranslationError) -> [JSONValue] {
        var blocks = try JSONFields.texts(message["content"], field + ".content").map(JSONValue.textBlock)
        for (position, call) in (try JSONFields.optionalArray(message["tool_calls"], field + ".tool_calls") ?? []).enumerated() {
            let callField = "\(field).tool_calls[\(position)]"
            _ = try JSONFields.object(call, callField)
            let function = try JSONFields.object(call["function"], callField + ".function")
            blocks.append(.object([
                ("type", .string("tool_use")),
                ("id", .string(try JSONFields.string(call["id"], callField + ".id"))),
                ("name", .string(try JSONFields.string(function["name"], callField + ".function.name"))),
                ("input", try ToolArguments.object(function["arguments"], callField + ".function.arguments")),
            ]))
        }
        return blocks
    }

    /// A `tool` message as a `tool_result` block.
    private static func toolResult(_ message: JSONValue, _ field: String) throws(TranslationError) -> JSONValue {
        var block = ObjectBuilder()
        block.add("type", .string("tool_result"))
        block.add("tool_use_id", .string(try JSONFields.string(message["tool_call_id"], field + ".tool_call_id")))
        let texts = try JSONFields.texts(message["content"], field + ".content")
        if texts.count == 1 {
            block.add("content", .string(texts[0]))
        } else if !texts.isEmpty {
            block.add("content", .array(texts.map(JSONValue.textBlock)))
        }
        return block.value
    }

    private static func stopSequences(_ stop: JSONValue?) throws(TranslationError) -> JSONValue? {
        guard let stop, !stop.isNull else { return nil }
        if let single = stop.stringValue { return .array([.string(single)]) }
        guard let list = stop.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
            throw TranslationError(field: "stop", "must be a string or an array of strings")
        }
        return .array(list)
    }

    /// `{type: function, function: {name, description, parameters}}` as `{name, description, input_schema}`.
    private static func anthropicTool(_ tool: JSONValue, _ field: String) throws(TranslationError) -> JSONValue {
        _ = try JSONFields.object(tool, field)
        if let type = try JSONFields.optionalString(tool["type"], field + ".type"), type != "function" {
            throw TranslationError(field: field + ".type", "unsupported tool type \"\(type)\"")
        }
        let function = try JSONFields.object(tool["function"], field + ".function")
        var out = ObjectBuilder()
        out.add("name", .string(try JSONFields.string(function["name"], field + ".function.name")))
        out.add("description", try JSONFields.optionalString(function["description"], field + ".function.description").map(JSONValue.string))
        // Anthropic requires a schema; a function without parameters takes an empty object.
        out.add("input_schema", try JSONFields.optionalObject(function["parameters"], field + ".function.parameters")
            ?? .object([("type", .string("object")), ("properties", .object([]))]))
        return out.value
    }

    /// auto/none/required/a named function as auto/none/any/tool; `parallel_tool_calls: false` becomes
    /// `disable_parallel_tool_use`, which Anthropic keeps inside the tool choice.
    private static func toolChoice(_ choice: JSONValue?, parallelToolCalls: Bool?) throws(TranslationError) -> JSONValue? {
        var out = ObjectBuilder()
        switch choice {
        case nil, .null?:
            guard parallelToolCalls == false else { return nil }
            out.add("type", .string("auto"))
        case .string("auto")?: out.add("type", .string("auto"))
        case .string("none")?: return .object([("type", .string("none"))])
        case .string("required")?: out.add("type", .string("any"))
        case .object?:
            let function = try JSONFields.object(choice?["function"], "tool_choice.function")
            out.add("type", .string("tool"))
            out.add("name", .string(try JSONFields.string(function["name"], "tool_choice.function.name")))
        default:
            throw TranslationError(field: "tool_choice", "must be auto, none, required or a function")
        }
        if parallelToolCalls == false { out.add("disable_parallel_tool_use", .bool(true)) }
        return out.value
    }
}

/// Anthropic's turns: consecutive messages of one role merge into one, and empty ones are left out.
struct AlternatingTurns {
    private var turns: [(role: String, blocks: [JSONValue])] = []

    var isEmpty: Bool { turns.isEmpty }

    mutating func append(role: String, blocks: [JSONValue]) {
        guard !blocks.isEmpty else { return }
        if turns.last?.role == role {
            turns[turns.count - 1].blocks += blocks
        } else {
            turns.append((role, blocks))
        }
    }

    /// The turns as Anthropic messages.
    var messages: JSONValue {
        .array(turns.map { .object([("role", .string($0.role)), ("content", .array($0.blocks))]) })
    }
}

/// Tool call arguments: OpenAI carries them as JSON text, Anthropic as the object itself.
enum ToolArguments {
    /// Parses `arguments` into an object; empty text means no arguments. An object is accepted as it is.
    static func object(_ arguments: JSONValue?, _ field: String) throws(TranslationError) -> JSONValue {
        switch arguments {
        case nil, .null?: return .object([])
        case let .object(members)?: return .object(members)
        case let .string(text)?:
            if text.allSatisfy({ $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }) { return .object([]) }
            guard let parsed = JSONValue.parse(text), parsed.objectMembers != nil else {
                throw TranslationError(field: field, "must be a JSON object encoded as a string")
            }
            return parsed
        default:
            throw TranslationError(field: field, "must be a JSON object encoded as a string")
        }
    }
}

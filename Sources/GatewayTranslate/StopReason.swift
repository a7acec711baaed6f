/// Why generation stopped, in each API's words.
enum StopReason {
    /// Anthropic's `stop_reason` as OpenAI's `finish_reason`.
    static func openAI(fromAnthropic reason: String) -> String {
        switch reason {
        case "max_tokens": return "length"
        case "tool_use": return "tool_calls"
        case "refusal": return "content_filter"
        default: return "stop"   // end_turn, stop_sequence, pause_turn
        }
    }

    /// OpenAI's `finish_reason` as Anthropic's `stop_reason`. OpenAI does not say whether a stop sequence
    /// matched, so `stop` is always `end_turn`.
    static func anthropic(fromOpenAI reason: String) -> String {
        switch reason {
        case "length": return "max_tokens"
        case "tool_calls", "function_call": return "tool_use"
        case "content_filter": return "refusal"
        default: return "end_turn"
        }
    }
}

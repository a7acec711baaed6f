/// Durations written the way people write them on a command line: `5s`, `500ms`, `2m`, `250us`, `1.5s`;
/// a bare number means seconds.
public enum Durations {
    /// - Returns: nanoseconds, or nil when the text is not a duration.
    public static func parse(_ text: String) -> UInt64? {
        let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        var number = Substring(text)
        var scale = 1e9
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            let candidate = text.dropLast(suffix.count)
            // "ms" also ends with "s": take the longest suffix that leaves a number.
            if Double(candidate) != nil {
                number = candidate
                scale = factor
                break
            }
        }
        guard let value = Double(number), value >= 0, value.isFinite else { return nil }
        return UInt64((value * scale).rounded())
    }

    /// "5s", "500ms", "1.5s": for tables and messages.
    public static func describe(_ ns: UInt64) -> String {
        if ns == 0 { return "0s" }
        if ns % 1_000_000_000 == 0 { return "\(ns / 1_000_000_000)s" }
        if ns >= 1_000_000_000 { return Format.fixed(Double(ns) / 1e9, 2) + "s" }
        if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
        return Format.fixed(Double(ns) / 1e6, 3) + "ms"
    }
}

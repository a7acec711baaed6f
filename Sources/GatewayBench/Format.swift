#if canImport(Glibc)
import Glibc
#endif

/// Number formatting without Foundation (vsnprintf underneath).
public enum Format {
    /// `value` with `decimals` digits after the point.
    public static func fixed(_ value: Double, _ decimals: Int) -> String {
        printf("%.\(decimals)f", value)
    }

    public static func printf(_ format: String, _ arguments: any CVarArg...) -> String {
        withVaList(arguments) { list in
            var buffer = [CChar](repeating: 0, count: 256)
            let count = buffer.withUnsafeMutableBufferPointer { pointer in
                Int(vsnprintf(pointer.baseAddress, pointer.count, format, list))
            }
            let length = min(max(count, 0), buffer.count - 1)
            return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }

    /// A latency in nanoseconds, in the unit that reads best: "87µs", "1.23ms", "2.50s".
    public static func latency(_ ns: Double) -> String {
        if ns < 10_000 { return fixed(ns / 1e3, 1) + "µs" }
        if ns < 1_000_000 { return fixed(ns / 1e3, 0) + "µs" }
        if ns < 1_000_000_000 { return fixed(ns / 1e6, 2) + "ms" }
        return fixed(ns / 1e9, 2) + "s"
    }

    /// Right-aligns `text` in `width` columns (by characters, which is enough for our ASCII and "µ").
    public static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }

    public static func padRight(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
    }
}

/// The upper bounds of a histogram's buckets, in nanoseconds, fixed for the life of the process.
/// The `+Inf` bucket is implicit: it is the last bucket and holds what no bound does.
public struct HistogramBuckets: Sendable, Equatable {
    public let boundsNs: [UInt64]

    /// - Parameter boundsNs: strictly increasing upper bounds.
    public init(boundsNs: [UInt64]) {
        precondition(!boundsNs.isEmpty, "a histogram needs at least one bound")
        for i in 1..<boundsNs.count { precondition(boundsNs[i - 1] < boundsNs[i], "bucket bounds must increase") }
        self.boundsNs = boundsNs
    }

    /// The number of buckets, `+Inf` included.
    public var count: Int { boundsNs.count + 1 }

    /// Request and upstream durations: 50 µs to 60 s.
    public static let latency = HistogramBuckets(boundsNs: [
        50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 50_000_000, 100_000_000, 250_000_000, 500_000_000,
        1_000_000_000, 2_500_000_000, 5_000_000_000, 10_000_000_000, 30_000_000_000, 60_000_000_000,
    ])

    /// The gateway's own time per request, which is microseconds when all is well: 1 µs to 1 s.
    /// The budget is "at most 20 µs added to p99", so the microsecond buckets are the ones that matter.
    public static let overhead = HistogramBuckets(boundsNs: [
        1_000, 2_500, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000, 5_000_000, 10_000_000, 25_000_000, 100_000_000, 1_000_000_000,
    ])
}

enum DecimalText {
    /// Nanoseconds as decimal seconds, exactly and without an exponent: 50_000 → "0.00005", 2_500_000_000 → "2.5".
    static func seconds(_ ns: UInt64) -> String {
        let whole = ns / 1_000_000_000
        var fraction = ns % 1_000_000_000
        guard fraction != 0 else { return String(whole) }
        var digits = 9
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        let text = String(fraction)
        return "\(whole)." + String(repeating: "0", count: digits - text.count) + text
    }

    /// Nano-dollars as decimal dollars, the same way.
    static func dollars(nano: UInt64) -> String { seconds(nano) }
}

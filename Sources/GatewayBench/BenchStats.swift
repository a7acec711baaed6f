import Histogram

/// A latency or size histogram as this tool keeps it: HdrHistogram, 3 significant digits.
/// Times are in nanoseconds, up to an hour; larger values are clamped to the top.
public typealias BenchHistogram = Histogram<UInt64>

extension Histogram where Count == UInt64 {
    /// An empty histogram for nanosecond times (1 ns to 1 h) or for counts and sizes.
    public static func bench() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: BenchStats.highestTrackable,
                          numberOfSignificantValueDigits: .three)
    }

    /// Records a value, clamped into the trackable range so that nothing is silently dropped.
    @inline(__always)
    public mutating func recordClamped(_ value: UInt64) {
        record(Swift.min(value, BenchStats.highestTrackable))
    }
}

/// Plain counters of one thread, added up across threads at the end.
public struct BenchCounters: Sendable, Equatable {
    /// Requests written in the measured window, and responses to them fully received.
    public var requestsSent: UInt64 = 0
    public var responses: UInt64 = 0
    /// Measured responses that completed inside the window: the numerator of RPS.
    public var responsesInWindow: UInt64 = 0
    /// The same for the whole run, warm-up included: what the server saw.
    public var requestsSentTotal: UInt64 = 0
    public var responsesTotal: UInt64 = 0
    /// Requests of the whole run that got no complete response (reset, timeout, bad response).
    public var failuresTotal: UInt64 = 0
    public var connectionsOpened: UInt64 = 0
    public var connectErrors: UInt64 = 0
    /// A connection broke while a request was in flight (reset, or closed before the response ended).
    public var resets: UInt64 = 0
    public var timeouts: UInt64 = 0
    /// A new connection replaced one the server closed (Connection: close, or an idle close).
    public var reconnects: UInt64 = 0
    public var badResponses: UInt64 = 0
    /// Open loop: requests that were due while every connection was busy, sent late from the backlog.
    public var backlogged: UInt64 = 0
    /// Open loop: requests that were due but never sent before the run ended.
    public var missed: UInt64 = 0
    /// Open loop: the deepest the backlog got.
    public var maxBacklog: UInt64 = 0
    /// Requests still in flight when the run had to end.
    public var unfinished: UInt64 = 0
    public var bodyBytes: UInt64 = 0
    public var events: UInt64 = 0

    public init() {}

    public mutating func add(_ other: BenchCounters) {
        requestsSent += other.requestsSent
        responses += other.responses
        responsesInWindow += other.responsesInWindow
        requestsSentTotal += other.requestsSentTotal
        responsesTotal += other.responsesTotal
        failuresTotal += other.failuresTotal
        connectionsOpened += other.connectionsOpened
        connectErrors += other.connectErrors
        resets += other.resets
        timeouts += other.timeouts
        reconnects += other.reconnects
        badResponses += other.badResponses
        backlogged += other.backlogged
        missed += other.missed
        maxBacklog = max(maxBacklog, other.maxBacklog)
        unfinished += other.unfinished
        bodyBytes += other.bodyBytes
        events += other.events
    }

    /// Transport-level failures: no response at all.
    public var failures: UInt64 { connectErrors + resets + timeouts + badResponses }
}

/// What one thread measured. Touched only by its thread while the load runs; merged afterwards.
public final class BenchStats: @unchecked Sendable {
    public static let highestTrackable: UInt64 = 3_600_000_000_000

    /// From the intended send time to the last byte of the response (coordinated-omission corrected).
    public var latency = BenchHistogram.bench()
    /// From the actual send time to the last byte.
    public var latencyUncorrected = BenchHistogram.bench()
    /// Open loop: how late each request went out (actual − intended send time): pacer precision plus
    /// any wait for a free connection.
    public var sendDelay = BenchHistogram.bench()
    /// From the intended send time to the complete response head.
    public var ttfb = BenchHistogram.bench()
    /// Streaming: from the intended send time to the first complete SSE `data:` event.
    public var ttft = BenchHistogram.bench()
    /// Streaming: the gap between consecutive SSE events of one response.
    public var interEventGap = BenchHistogram.bench()
    /// gwmock's `x-mock-received-ns` minus the send time: client → [gateway] → mock.
    public var legToUpstream = BenchHistogram.bench()
    /// Response complete minus `x-mock-received-ns`: mock → [gateway] → client.
    public var legFromUpstream = BenchHistogram.bench()
    /// Streaming: SSE events per response.
    public var eventsPerResponse = BenchHistogram.bench()
    /// Body bytes per response.
    public var bytesPerResponse = BenchHistogram.bench()

    /// Responses by status code (index = code, 0...999).
    public var statuses = [UInt64](repeating: 0, count: 1000)
    public var counters = BenchCounters()
    /// When the last measured response completed (monotonic ns).
    public var lastCompletion: UInt64 = 0
    /// The end of the measured window (monotonic ns): responses after it do not count toward RPS.
    public var windowEnd: UInt64 = .max

    public init() {}

    /// Adds another thread's measurements to these.
    public func merge(_ other: BenchStats) {
        latency.add(other.latency)
        latencyUncorrected.add(other.latencyUncorrected)
        sendDelay.add(other.sendDelay)
        ttfb.add(other.ttfb)
        ttft.add(other.ttft)
        interEventGap.add(other.interEventGap)
        legToUpstream.add(other.legToUpstream)
        legFromUpstream.add(other.legFromUpstream)
        eventsPerResponse.add(other.eventsPerResponse)
        bytesPerResponse.add(other.bytesPerResponse)
        for i in 0..<statuses.count { statuses[i] += other.statuses[i] }
        counters.add(other.counters)
        lastCompletion = max(lastCompletion, other.lastCompletion)
    }

    /// Merges many threads' measurements into a new value.
    public static func merged(_ parts: [BenchStats]) -> BenchStats {
        let total = BenchStats()
        for part in parts { total.merge(part) }
        return total
    }

    /// Responses with a 2xx status.
    public var successes: UInt64 { statuses[200..<300].reduce(0, +) }

    /// Responses with a status of 400 and above.
    public var errorResponses: UInt64 { statuses[400...].reduce(0, +) }

    /// Counts per status class, "2xx" … "5xx", for classes that occurred.
    public var statusClasses: [(String, UInt64)] {
        (1...9).compactMap { cls in
            let count = statuses[(cls * 100)..<(cls * 100 + 100)].reduce(0, +)
            return count > 0 ? ("\(cls)xx", count) : nil
        }
    }

    /// Each status code that occurred, with its count.
    public var statusCodes: [(Int, UInt64)] {
        statuses.indices.compactMap { statuses[$0] > 0 ? ($0, statuses[$0]) : nil }
    }
}

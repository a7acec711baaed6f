/// The open-loop send schedule (wrk2 style), as a pure value: global request `k` is due at exactly
/// `start + k / rate` (floored to the nanosecond), whatever happened to the requests before it.
///
/// Each thread owns the indices `phase, phase + stride, phase + 2·stride, …` below `end`, so that the
/// threads together send on one schedule. A request that could not go out at its time (every connection
/// busy) stays due: `take(at:)` hands it out as soon as it is asked, and its latency still counts from
/// `intendedTime(of:)`. The schedule never hands out a request before its time, so catching up after a
/// stall cannot turn into a burst that runs ahead of the schedule.
public struct OpenLoopSchedule: Sendable, Equatable {
    public let start: UInt64
    public let rate: Double
    public let phase: Int
    public let stride: Int
    /// The first global index that is not sent.
    public let end: Int
    /// The next global index this thread hands out.
    public private(set) var next: Int
    /// The rate in requests per 1000 s, so that whole and most fractional rates give exact times.
    private let ratePerKilosecond: UInt64

    public init(start: UInt64, rate: Double, phase: Int = 0, stride: Int = 1, end: Int) {
        precondition(rate > 0 && stride >= 1 && phase >= 0)
        self.start = start
        self.rate = rate
        self.phase = phase
        self.stride = stride
        self.end = end
        self.next = phase
        self.ratePerKilosecond = max(1, UInt64((rate * 1000).rounded()))
    }

    /// The time at which global request `index` is due: `start + index / rate`.
    @inline(__always)
    public func intendedTime(of index: Int) -> UInt64 {
        // index · 10^12 / (rate · 1000), in 128 bits so that long runs at high rates stay exact.
        let product = UInt64(index).multipliedFullWidth(by: 1_000_000_000_000)
        let (quotient, _) = ratePerKilosecond.dividingFullWidth(product)
        return start &+ quotient
    }

    /// The largest global index due at `now` (any thread's), or -1 before the first.
    public func lastDueIndex(at now: UInt64) -> Int {
        guard now >= start else { return -1 }
        let elapsed = now - start
        let product = elapsed.multipliedFullWidth(by: ratePerKilosecond)
        var (candidate, _) = UInt64(1_000_000_000_000).dividingFullWidth(product)
        while intendedTime(of: Int(candidate) + 1) <= now { candidate += 1 }
        return Int(candidate)
    }

    /// The time at which the next request of this thread is due, or nil when all were handed out.
    @inline(__always)
    public var nextIntendedTime: UInt64? {
        next < end ? intendedTime(of: next) : nil
    }

    public var isExhausted: Bool { next >= end }

    /// How many of this thread's requests are due at `now` and not yet handed out: the backlog.
    public func dueCount(at now: UInt64) -> Int {
        guard next < end else { return 0 }
        let last = min(lastDueIndex(at: now), end - 1)
        return last < next ? 0 : (last - next) / stride + 1
    }

    /// How many of this thread's requests were never handed out.
    public var remaining: Int {
        next < end ? (end - 1 - next) / stride + 1 : 0
    }

    /// Hands out the next request if it is due at `now`.
    /// - Returns: its global index and intended send time, or nil when nothing is due yet.
    @inline(__always)
    public mutating func take(at now: UInt64) -> (index: Int, intended: UInt64)? {
        guard next < end else { return nil }
        let intended = intendedTime(of: next)
        guard intended <= now else { return nil }
        let index = next
        next += stride
        return (index, intended)
    }
}

/// The times of one request, and the latencies recorded from them.
///
/// `corrected` counts from the time the request was due (its intended send time), so that a server stall
/// shows in every request that queued behind it; `uncorrected` counts from the moment it was really sent,
/// which is what a closed-loop tool such as wrk reports.
public struct RequestTiming: Sendable, Equatable {
    public var intended: UInt64
    public var sent: UInt64
    public var completed: UInt64

    public init(intended: UInt64, sent: UInt64, completed: UInt64) {
        self.intended = intended
        self.sent = sent
        self.completed = completed
    }

    @inline(__always) public var corrected: UInt64 { completed &- min(intended, completed) }
    @inline(__always) public var uncorrected: UInt64 { completed &- min(sent, completed) }
}

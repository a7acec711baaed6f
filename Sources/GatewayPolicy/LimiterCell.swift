// The shared, mutable part of policy: one cell of atomics per key and per group.
//
// Rate limits: GCRA (the generic cell rate algorithm), one atomic word per limit.
//
//   A limit of N per window W (60 s) is a bucket of N units that refills continuously at N per W.
//   GCRA stores it as a single "theoretical arrival time" TAT in monotonic nanoseconds: each unit
//   admitted pushes TAT forward by T = W / N, and TAT - now (when positive) is the part of the
//   window in use. A request is admitted while max(TAT, now) + T - now <= W. The update is one
//   compare-and-swap on one word, so threads admitting for the same key never take a lock; they
//   only contend on that word's cache line.
//
//   Burst bound (requests): at any instant at most N requests are admitted back to back from an idle
//   key; over any span of W at most 2N (a full bucket plus one window of refill); in the long run
//   N per W. A rejected request waits TAT + T - W - now, which is what retry-after reports
//   (W / N for a drained bucket, not the rest of a fixed minute). With T = floor(W / N) in integer
//   nanoseconds the bucket may hold one unit more than N once N approaches sqrt(W) ~ 245k; for a TPM
//   of 10M that is 0.02%.
//
//   Tokens use the same word with a softer test: a request is admitted while the window still has
//   room (TAT - now < W) and is charged its estimate (prompt bytes / 4), which may take TAT past
//   now + W; later requests then wait until it drains. Completion corrects by the difference between
//   the real usage and the estimate, negative or positive. Bound: tokens admitted at any instant
//   are at most N plus one request's estimate, plus whatever the in-flight requests' real usage
//   exceeds their estimates by (known only when they finish).
//
// Concurrency: an atomic in-flight count; admission adds one and backs out if that passes the limit.
//
// Spend: one atomic word per scope holding the period's start day (16 bits) and the spend in micro-USD
// (48 bits, up to $281M). The period rolls over when a completion finds a different start day, in the
// same compare-and-swap that adds the cost, so a rollover never loses or double-counts a cost.
// Overspend bound: admission reads the spend, and a request's cost is added when it completes, so
// once the spend crosses the budget no further request is admitted; the overspend is at most the
// summed cost of the requests in flight at the moment of crossing (the crossing one included).
import Synchronization
import GatewayConfig

/// The counters of one key or one group. Shared by every snapshot, so a reload keeps its counts.
/// The atomics live in memory the cell owns (two cache lines, aligned), so that the request path
/// reaches them through a plain pointer: no reference count is touched per request, and two cells'
/// atomics never share a cache line.
final class LimiterCell: @unchecked Sendable {
    let counters: UnsafeMutablePointer<CellCounters>

    init() {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 64)
        counters = raw.bindMemory(to: CellCounters.self, capacity: 1)
        counters.initialize(to: CellCounters())
    }

    deinit {
        _ = counters.move()
        UnsafeMutableRawPointer(counters).deallocate()
    }
}

/// The atomics of one cell. Every operation is lock-free and may run on any thread.
struct CellCounters: ~Copyable {
    static let windowNs: Int64 = 60_000_000_000

    let requestTAT = Atomic<Int64>(0)
    let tokenTAT = Atomic<Int64>(0)
    let inFlight = Atomic<Int>(0)
    let spendWord = Atomic<UInt64>(0)

    init() {}

    // MARK: requests and tokens (GCRA)

    /// Takes one request of `costNs` (= W / rpm). Returns 0 when admitted, else the nanoseconds to wait.
    @inline(__always)
    func takeRequest(costNs: Int64, now: Int64) -> Int64 {
        var tat = requestTAT.load(ordering: .relaxed)
        while true {
            let next = max(tat, now) &+ costNs
            let excess = next &- now &- CellCounters.windowNs
            if excess > 0 { return excess }
            let (exchanged, original) = requestTAT.compareExchange(
                expected: tat, desired: next, successOrdering: .relaxed, failureOrdering: .relaxed)
            if exchanged { return 0 }
            tat = original
        }
    }

    /// Admits while the token window has room, charging `costNs` (= estimate × W / tpm).
    /// Returns 0 when admitted, else the nanoseconds until the window has room again.
    @inline(__always)
    func takeTokens(costNs: Int64, now: Int64) -> Int64 {
        var tat = tokenTAT.load(ordering: .relaxed)
        while true {
            let used = tat &- now
            // Room means fewer than N tokens in use; the wait is until the use drops below N.
            if used >= CellCounters.windowNs { return used &- CellCounters.windowNs &+ 1 }
            let next = CellCounters.advance(max(tat, now), by: costNs, now: now)
            let (exchanged, original) = tokenTAT.compareExchange(
                expected: tat, desired: next, successOrdering: .relaxed, failureOrdering: .relaxed)
            if exchanged { return 0 }
            tat = original
        }
    }

    /// Undoes a take (a partial admission that another limit rejected).
    @inline(__always)
    func giveBackRequest(costNs: Int64) { requestTAT.wrappingSubtract(costNs, ordering: .relaxed) }

    @inline(__always)
    func giveBackTokens(costNs: Int64) { tokenTAT.wrappingSubtract(costNs, ordering: .relaxed) }

    /// Corrects the token charge by `deltaNs` (real usage minus estimate, in window nanoseconds).
    /// A positive correction counts from now if the window had drained; a negative one gives time back.
    @inline(__always)
    func correctTokens(deltaNs: Int64, now: Int64) {
        if deltaNs < 0 {
            tokenTAT.wrappingAdd(deltaNs, ordering: .relaxed)
            return
        }
        guard deltaNs > 0 else { return }
        var tat = tokenTAT.load(ordering: .relaxed)
        while true {
            let next = CellCounters.advance(max(tat, now), by: deltaNs, now: now)
            let (exchanged, original) = tokenTAT.compareExchange(
                expected: tat, desired: next, successOrdering: .relaxed, failureOrdering: .relaxed)
            if exchanged { return }
            tat = original
        }
    }

    /// `base + ns`, capped at about a year past now: a huge token count (a 32 MiB prompt against a
    /// TPM of 1) blocks the key for a long time but never wraps the clock around.
    @inline(__always)
    static func advance(_ base: Int64, by ns: Int64, now: Int64) -> Int64 {
        let cap = now &+ (1 << 55)
        let (sum, overflow) = base.addingReportingOverflow(ns)
        return overflow || sum > cap ? cap : sum
    }

    /// Units left in the window for a limit of `limit` with unit cost `costNs`.
    @inline(__always)
    static func remaining(tat: Int64, now: Int64, costNs: Int64, limit: Int) -> Int {
        let used = max(0, tat &- now)
        guard used < windowNs, costNs > 0 else { return 0 }
        return min(limit, Int((windowNs - used) / costNs))
    }

    // MARK: concurrency

    @inline(__always)
    func acquire(limit: Int) -> Bool {
        let now = inFlight.wrappingAdd(1, ordering: .relaxed).newValue
        if now > limit {
            inFlight.wrappingSubtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    @inline(__always)
    func release() { inFlight.wrappingSubtract(1, ordering: .relaxed) }

    // MARK: spend

    static let spendBits: UInt64 = 48
    static let spendMask: UInt64 = (1 << 48) - 1

    /// The period's tag: its start day, modulo 2^16 (a tag repeats after 179 years).
    @inline(__always)
    static func tag(periodStart: Int64) -> UInt64 {
        UInt64(truncatingIfNeeded: floorDiv(periodStart, 86_400)) & 0xFFFF
    }

    /// Micro-USD spent in the period starting at `periodStart` (0 if the stored spend is of another period).
    @inline(__always)
    func spent(periodStart: Int64) -> Int64 {
        let word = spendWord.load(ordering: .relaxed)
        guard word >> CellCounters.spendBits == CellCounters.tag(periodStart: periodStart) else { return 0 }
        return Int64(word & CellCounters.spendMask)
    }

    /// Adds `microUSD` to the period's spend, resetting it first if the stored spend is of an earlier period.
    @inline(__always)
    func addSpend(_ microUSD: Int64, periodStart: Int64) {
        let tag = CellCounters.tag(periodStart: periodStart)
        let add = UInt64(max(0, microUSD))
        var word = spendWord.load(ordering: .relaxed)
        while true {
            let current = word >> CellCounters.spendBits == tag ? word & CellCounters.spendMask : 0
            let total = min(current &+ add, CellCounters.spendMask)
            let next = tag << CellCounters.spendBits | total
            let (exchanged, original) = spendWord.compareExchange(
                expected: word, desired: next, successOrdering: .relaxed, failureOrdering: .relaxed)
            if exchanged { return }
            word = original
        }
    }

    /// Replaces the spend (startup, from the store).
    func setSpend(_ microUSD: Int64, periodStart: Int64) {
        let total = min(UInt64(max(0, microUSD)), CellCounters.spendMask)
        spendWord.store(CellCounters.tag(periodStart: periodStart) << CellCounters.spendBits | total, ordering: .relaxed)
    }
}

@inline(__always)
func floorDiv(_ a: Int64, _ b: Int64) -> Int64 {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}

/// Budget periods in UTC.
public enum BudgetWindow {
    /// The start, in wall-clock seconds (UTC), of the period that contains `nowSeconds`:
    /// today's midnight for daily, the 1st of this month for monthly, 0 for total.
    /// The store sums spend from this instant to rebuild the counters (`PolicyCounters.seedSpend`).
    @inline(__always)
    public static func periodStart(_ period: BudgetPeriod, nowSeconds: Int64) -> Int64 {
        switch period {
        case .total:
            return 0
        case .daily:
            return floorDiv(nowSeconds, 86_400) * 86_400
        case .monthly:
            let day = floorDiv(nowSeconds, 86_400)
            // The calendar arithmetic costs more than the rest of an admission: remember the answer
            // for the current day in one word (day << 32 | month's first day), shared read-mostly.
            let cached = monthStartCache.load(ordering: .relaxed)
            if day > 0, day < 1 << 31, Int64(cached >> 32) == day { return Int64(cached & 0xFFFF_FFFF) * 86_400 }
            let date = CivilTime.civil(days: day)
            let first = CivilTime.days(year: date.year, month: date.month, day: 1)
            if day > 0, day < 1 << 31 { monthStartCache.store(UInt64(day) << 32 | UInt64(first), ordering: .relaxed) }
            return first * 86_400
        }
    }
}

private let monthStartCache = Atomic<UInt64>(0)

// Admission and accounting against the shared counters. The algorithms and their bounds are
// described at the top of LimiterCell.swift.
import Synchronization
import GatewayConfig

/// Why a request was refused.
public enum Rejection: Sendable, Equatable {
    /// 429 `rate_limit_exceeded`; `which` names the limit ("requests per minute of key 'alice' (10)").
    case rateLimit(retryAfterSeconds: Int, which: String)
    /// 402 `budget_exceeded`; `which` names the budget.
    case budget(which: String)
}

/// What a request holds from admission to completion. Hand it to `complete` exactly once.
public struct Ticket: Sendable {
    public let key: KeyPolicy
    public let estimatedTokens: Int
    /// Bit i: scope i's concurrency slot was taken.
    let concurrencyMask: UInt64
    /// Bit i: scope i was charged the token estimate.
    let tokenMask: UInt64
}

public enum Admission: Sendable {
    case admitted(Ticket)
    case rejected(reason: Rejection)
}

/// The live counters of every key and group: rate limits, concurrency and spend. One instance for
/// the process, shared by every snapshot, so a reload keeps its counts. Every method is thread-safe
/// and lock-free on the request path; the one lock guards the table of cells, which only snapshot
/// builds and seeding touch.
public final class PolicyCounters: Sendable {
    private let cells = Mutex<[String: LimiterCell]>([:])

    public init() {}

    func cell(keyID: String) -> LimiterCell { cell(named: "key\u{0}" + keyID) }
    func cell(group: String) -> LimiterCell { cell(named: "group\u{0}" + group) }

    private func cell(named name: String) -> LimiterCell {
        cells.withLock { table in
            if let cell = table[name] { return cell }
            let cell = LimiterCell()
            table[name] = cell
            return cell
        }
    }

    // MARK: admission

    /// Admits a request for `key` if every limit that applies (the key's own and each of its groups')
    /// has room and no budget is spent; otherwise takes nothing.
    /// - Parameters:
    ///   - estimatedTokens: the prompt estimate, request body bytes / 4; corrected in `complete`.
    ///   - nowNs: monotonic nanoseconds (the reactor's clock).
    ///   - nowSeconds: wall-clock seconds, for the budget period.
    public func admit(_ key: KeyPolicy, estimatedTokens: Int, nowNs: UInt64, nowSeconds: Int64) -> Admission {
        let scopes = key.scopes
        var periods = PeriodStarts(nowSeconds: nowSeconds)
        for i in scopes.indices where scopes[i].budgetMicroUSD >= 0 {
            let scope = scopes[i]
            if scope.cell.pointee.spent(periodStart: periods.start(scope.period)) >= scope.budgetMicroUSD {
                return .rejected(reason: .budget(which: key.labels[i].budget))
            }
        }
        let now = Int64(truncatingIfNeeded: nowNs)
        let estimate = max(0, estimatedTokens)
        var concurrencyMask: UInt64 = 0
        var tokenMask: UInt64 = 0
        var requestsTaken = 0
        for i in scopes.indices {
            let scope = scopes[i]
            let bit: UInt64 = 1 << UInt64(i)
            if scope.concurrency > 0 {
                guard scope.cell.pointee.acquire(limit: scope.concurrency) else {
                    rollback(scopes, requests: requestsTaken, concurrency: concurrencyMask, tokens: tokenMask, estimate: estimate)
                    return .rejected(reason: .rateLimit(retryAfterSeconds: 1, which: key.labels[i].concurrency))
                }
                concurrencyMask |= bit
            }
            if scope.rpm > 0 {
                let wait = scope.cell.pointee.takeRequest(costNs: scope.requestCostNs, now: now)
                guard wait == 0 else {
                    rollback(scopes, requests: requestsTaken, concurrency: concurrencyMask, tokens: tokenMask, estimate: estimate)
                    return .rejected(reason: .rateLimit(retryAfterSeconds: PolicyCounters.seconds(wait), which: key.labels[i].rpm))
                }
            }
            requestsTaken = i + 1
            if scope.tpm > 0 {
                let wait = scope.cell.pointee.takeTokens(costNs: scope.tokenNs(estimate), now: now)
                guard wait == 0 else {
                    rollback(scopes, requests: requestsTaken, concurrency: concurrencyMask, tokens: tokenMask, estimate: estimate)
                    return .rejected(reason: .rateLimit(retryAfterSeconds: PolicyCounters.seconds(wait), which: key.labels[i].tpm))
                }
                tokenMask |= bit
            }
        }
        return .admitted(Ticket(key: key, estimatedTokens: estimate, concurrencyMask: concurrencyMask, tokenMask: tokenMask))
    }

    /// Gives back what a refused admission took: requests of scopes 0..<requests, and the slots and
    /// token charges whose bits are set.
    private func rollback(_ scopes: UnsafeBufferPointer<LimitScope>, requests: Int, concurrency: UInt64, tokens: UInt64, estimate: Int) {
        for i in scopes.indices {
            let scope = scopes[i]
            let bit: UInt64 = 1 << UInt64(i)
            if i < requests, scope.rpm > 0 { scope.cell.pointee.giveBackRequest(costNs: scope.requestCostNs) }
            if concurrency & bit != 0 { scope.cell.pointee.release() }
            if tokens & bit != 0 { scope.cell.pointee.giveBackTokens(costNs: scope.tokenNs(estimate)) }
        }
    }

    /// Whole seconds to wait, rounded up, at least 1 (retry-after).
    @inline(__always)
    static func seconds(_ ns: Int64) -> Int { max(1, Int((ns + 999_999_999) / 1_000_000_000)) }

    // MARK: completion

    /// Ends an admitted request: frees its concurrency slots, corrects the token charge with the real
    /// usage (left at the estimate when `usage` is nil), and adds the cost to the key's and every
    /// group's spend in the current budget period.
    /// - Parameters:
    ///   - usage: the real usage from the response, or nil when unknown.
    ///   - costMicroUSD: `costMicroUSD(usage:price:)`.
    ///   - nowNs: monotonic nanoseconds.
    ///   - nowSeconds: wall-clock seconds, for the budget period.
    public func complete(_ ticket: Ticket, usage: Usage?, costMicroUSD: Int64, nowNs: UInt64, nowSeconds: Int64) {
        let scopes = ticket.key.scopes
        let now = Int64(truncatingIfNeeded: nowNs)
        let delta = usage.map { $0.totalTokens - ticket.estimatedTokens } ?? 0
        var periods = PeriodStarts(nowSeconds: nowSeconds)
        for i in scopes.indices {
            let scope = scopes[i]
            let bit: UInt64 = 1 << UInt64(i)
            if ticket.concurrencyMask & bit != 0 { scope.cell.pointee.release() }
            if ticket.tokenMask & bit != 0, delta != 0 {
                scope.cell.pointee.correctTokens(deltaNs: scope.tokenNs(delta), now: now)
            }
            if scope.budgetMicroUSD >= 0, costMicroUSD > 0 {
                scope.cell.pointee.addSpend(costMicroUSD, periodStart: periods.start(scope.period))
            }
        }
    }

    // MARK: headers and views

    /// The `x-ratelimit-*` values: for requests and for tokens, the applicable limit with the fewest
    /// units left (the one that will bite first). nil fields mean no such limit applies.
    public func headers(_ key: KeyPolicy, nowNs: UInt64) -> RateLimitHeaders {
        let now = Int64(truncatingIfNeeded: nowNs)
        var headers = RateLimitHeaders()
        for scope in key.scopes {
            if scope.rpm > 0 {
                let left = CellCounters.remaining(
                    tat: scope.cell.pointee.requestTAT.load(ordering: .relaxed), now: now, costNs: scope.requestCostNs, limit: scope.rpm)
                if headers.remainingRequests.map({ left < $0 }) ?? true {
                    headers.limitRequests = scope.rpm
                    headers.remainingRequests = left
                }
            }
            if scope.tpm > 0 {
                let left = CellCounters.remaining(
                    tat: scope.cell.pointee.tokenTAT.load(ordering: .relaxed), now: now, costNs: scope.tokenCostNs, limit: scope.tpm)
                if headers.remainingTokens.map({ left < $0 }) ?? true {
                    headers.limitTokens = scope.tpm
                    headers.remainingTokens = left
                }
            }
        }
        return headers
    }

    /// Requests in flight for a key or group (counted only where a concurrency limit applies).
    public func inFlight(keyID: String) -> Int { existing("key\u{0}" + keyID)?.counters.pointee.inFlight.load(ordering: .relaxed) ?? 0 }
    public func inFlight(group: String) -> Int { existing("group\u{0}" + group)?.counters.pointee.inFlight.load(ordering: .relaxed) ?? 0 }

    /// Micro-USD spent by a key or group in the period that contains `nowSeconds`.
    public func spend(keyID: String, period: BudgetPeriod, nowSeconds: Int64) -> Int64 {
        existing("key\u{0}" + keyID)?.counters.pointee.spent(periodStart: BudgetWindow.periodStart(period, nowSeconds: nowSeconds)) ?? 0
    }

    public func spend(group: String, period: BudgetPeriod, nowSeconds: Int64) -> Int64 {
        existing("group\u{0}" + group)?.counters.pointee.spent(periodStart: BudgetWindow.periodStart(period, nowSeconds: nowSeconds)) ?? 0
    }

    // MARK: seeding

    /// Sets a key's spend for the period that starts at `periodStart` (`BudgetWindow.periodStart`),
    /// as summed from the store at startup. Replaces, not adds.
    public func seedSpend(keyID: String, microUSD: Int64, periodStart: Int64) {
        cell(keyID: keyID).counters.pointee.setSpend(microUSD, periodStart: periodStart)
    }

    /// Sets a group's spend for the period that starts at `periodStart`.
    public func seedSpend(group: String, microUSD: Int64, periodStart: Int64) {
        cell(group: group).counters.pointee.setSpend(microUSD, periodStart: periodStart)
    }

    private func existing(_ name: String) -> LimiterCell? { cells.withLock { $0[name] } }
}

/// The period starts for one instant, each computed at most once (monthly needs calendar arithmetic).
struct PeriodStarts {
    let nowSeconds: Int64
    private var daily: Int64?
    private var monthly: Int64?

    init(nowSeconds: Int64) { self.nowSeconds = nowSeconds }

    @inline(__always)
    mutating func start(_ period: BudgetPeriod) -> Int64 {
        switch period {
        case .total:
            return 0
        case .daily:
            if let daily { return daily }
            let start = BudgetWindow.periodStart(.daily, nowSeconds: nowSeconds)
            daily = start
            return start
        case .monthly:
            if let monthly { return monthly }
            let start = BudgetWindow.periodStart(.monthly, nowSeconds: nowSeconds)
            monthly = start
            return start
        }
    }
}

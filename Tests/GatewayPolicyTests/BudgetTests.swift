import Foundation
import GatewayConfig
import GatewayPolicy
import Synchronization
import Testing

@Suite struct BudgetTests {
    @Test func costArithmetic() {
        let price = Price(inputPerMTok: 0.15, outputPerMTok: 0.60)
        #expect(costMicroUSD(usage: Usage(promptTokens: 1000, completionTokens: 500), price: price) == 450)
        #expect(costMicroUSD(usage: Usage(promptTokens: 1_000_000, completionTokens: 1_000_000), price: price) == 750_000)
        #expect(costMicroUSD(usage: Usage(promptTokens: 0, completionTokens: 0), price: price) == 0)
        // gwmock's default: a 400-byte body is 100 prompt tokens, 16 chunks are 16 completion tokens.
        #expect(costMicroUSD(usage: Usage(promptTokens: 100, completionTokens: 16), price: price) == 25) // 15 + 9.6
        #expect(costMicroUSD(usage: Usage(promptTokens: 3, completionTokens: 1), price: Price(inputPerMTok: 3, outputPerMTok: 15)) == 24)
        #expect(costMicroUSD(usage: Usage(promptTokens: 1000, completionTokens: 500), price: nil) == 0)
        #expect(costMicroUSD(usage: nil, price: price) == 0)
    }

    func snapshot(
        keyBudget: Budget? = nil, groupBudget: Budget? = nil, counters: PolicyCounters, keys: [String] = ["a"]
    ) -> PolicySnapshot {
        Fixture.snapshot(
            groups: [GroupSettings(name: "team", models: ["*"], budget: groupBudget)],
            keys: keys.map { KeySettings(name: $0, source: .plain("sk-" + $0), groups: ["team"], budget: keyBudget) },
            counters: counters)
    }

    /// Admits at `now` and completes at once with `cost`; returns the refusal if any.
    @discardableResult
    func call(_ counters: PolicyCounters, _ key: KeyPolicy, cost: Int64, now: Int64) -> Rejection? {
        switch counters.admit(key, estimatedTokens: 10, nowNs: Fixture.t0, nowSeconds: now) {
        case .rejected(let reason):
            return reason
        case .admitted(let ticket):
            counters.complete(ticket, usage: nil, costMicroUSD: cost, nowNs: Fixture.t0, nowSeconds: now)
            return nil
        }
    }

    @Test func crossingTheBudgetRefusesTheNext() throws {
        let counters = PolicyCounters()
        let s = snapshot(keyBudget: Budget(usd: 0.001, period: .daily), counters: counters)
        let key = try #require(s.authenticate("sk-a"))
        let now = Fixture.noon
        #expect(call(counters, key, cost: 450, now: now) == nil)
        #expect(call(counters, key, cost: 450, now: now) == nil)
        // 900 < 1000 micro-USD: still admitted, and this one crosses.
        #expect(call(counters, key, cost: 450, now: now) == nil)
        #expect(counters.spend(keyID: "cfg-a", period: .daily, nowSeconds: now) == 1350)
        let refused = try #require(call(counters, key, cost: 450, now: now))
        #expect(refused.isBudget)
        #expect(refused.which.contains("daily budget of key 'a'"))
        // Exactly at the budget is over it.
        let exact = PolicyCounters()
        let e = snapshot(keyBudget: Budget(usd: 0.0009, period: .daily), counters: exact)
        let ek = try #require(e.authenticate("sk-a"))
        #expect(call(exact, ek, cost: 450, now: now) == nil)
        #expect(call(exact, ek, cost: 450, now: now) == nil)
        #expect(call(exact, ek, cost: 450, now: now)?.isBudget == true)
    }

    @Test func aGroupBudgetIsSharedAndChecked() throws {
        let counters = PolicyCounters()
        let s = snapshot(groupBudget: Budget(usd: 0.001, period: .monthly), counters: counters, keys: ["a", "b"])
        let a = try #require(s.authenticate("sk-a"))
        let b = try #require(s.authenticate("sk-b"))
        #expect(call(counters, a, cost: 1000, now: Fixture.noon) == nil)
        let refused = try #require(call(counters, b, cost: 1, now: Fixture.noon))
        #expect(refused.which.contains("monthly budget of group 'team'"))
        #expect(counters.spend(group: "team", period: .monthly, nowSeconds: Fixture.noon) == 1000)
    }

    @Test func dailyRollsOverAtMidnightUTC() throws {
        let counters = PolicyCounters()
        let s = snapshot(keyBudget: Budget(usd: 0.001, period: .daily), counters: counters)
        let key = try #require(s.authenticate("sk-a"))
        let midnight = Fixture.noon - 12 * 3600 + 86_400
        #expect(call(counters, key, cost: 5000, now: midnight - 1) == nil)
        #expect(call(counters, key, cost: 1, now: midnight - 1)?.isBudget == true)
        #expect(call(counters, key, cost: 700, now: midnight) == nil)
        #expect(counters.spend(keyID: "cfg-a", period: .daily, nowSeconds: midnight) == 700)
        #expect(call(counters, key, cost: 700, now: midnight + 60) == nil)
        #expect(call(counters, key, cost: 1, now: midnight + 120)?.isBudget == true)
    }

    @Test func monthlyRollsOverOnTheFirst() throws {
        let counters = PolicyCounters()
        let s = snapshot(keyBudget: Budget(usd: 0.001, period: .monthly), counters: counters)
        let key = try #require(s.authenticate("sk-a"))
        let march31 = CivilTime.days(year: 2026, month: 3, day: 31) * 86_400 + 23 * 3600
        let april1 = CivilTime.days(year: 2026, month: 4, day: 1) * 86_400
        #expect(call(counters, key, cost: 2000, now: Fixture.noon) == nil)
        #expect(call(counters, key, cost: 1, now: march31)?.isBudget == true, "a new day is not a new month")
        #expect(call(counters, key, cost: 1, now: april1) == nil)
        #expect(BudgetWindow.periodStart(.monthly, nowSeconds: march31) == CivilTime.days(year: 2026, month: 3, day: 1) * 86_400)
        #expect(BudgetWindow.periodStart(.monthly, nowSeconds: april1) == april1)
        #expect(BudgetWindow.periodStart(.daily, nowSeconds: march31) == march31 - 23 * 3600)
        #expect(BudgetWindow.periodStart(.total, nowSeconds: march31) == 0)
    }

    @Test func totalNeverRollsOver() throws {
        let counters = PolicyCounters()
        let s = snapshot(keyBudget: Budget(usd: 0.001, period: .total), counters: counters)
        let key = try #require(s.authenticate("sk-a"))
        #expect(call(counters, key, cost: 1000, now: Fixture.noon) == nil)
        #expect(call(counters, key, cost: 1, now: Fixture.noon + 86_400 * 400)?.isBudget == true)
    }

    @Test func spendIsSeededFromTheStore() throws {
        let counters = PolicyCounters()
        let now = Fixture.noon
        // Seeded before the snapshot exists, as at startup.
        counters.seedSpend(keyID: "cfg-a", microUSD: 999, periodStart: BudgetWindow.periodStart(.daily, nowSeconds: now))
        counters.seedSpend(group: "team", microUSD: 4_000_000, periodStart: BudgetWindow.periodStart(.monthly, nowSeconds: now))
        let s = snapshot(keyBudget: Budget(usd: 0.001, period: .daily), groupBudget: Budget(usd: 5, period: .monthly), counters: counters)
        let key = try #require(s.authenticate("sk-a"))
        #expect(call(counters, key, cost: 1, now: now) == nil)
        #expect(call(counters, key, cost: 1, now: now)?.which.contains("key 'a'") == true)
        #expect(counters.spend(group: "team", period: .monthly, nowSeconds: now) == 4_000_001)
        // A seed for yesterday does not count today.
        let other = PolicyCounters()
        other.seedSpend(keyID: "cfg-a", microUSD: 1_000_000, periodStart: BudgetWindow.periodStart(.daily, nowSeconds: now - 86_400))
        let o = snapshot(keyBudget: Budget(usd: 0.001, period: .daily), counters: other)
        #expect(call(other, try #require(o.authenticate("sk-a")), cost: 1, now: now) == nil)
    }

    @Test func noBudgetNeverRefuses() throws {
        let counters = PolicyCounters()
        let s = snapshot(counters: counters)
        let key = try #require(s.authenticate("sk-a"))
        for _ in 0..<100 { #expect(call(counters, key, cost: 1_000_000_000, now: Fixture.noon) == nil) }
    }

    /// 64 threads admit against a small budget; each admitted request holds its slot a moment, then
    /// completes with a fixed cost. The spend may pass the budget only by the requests in flight
    /// when it was crossed: at most 64 × cost.
    @Test func overspendIsBoundedByTheRequestsInFlight() throws {
        let counters = PolicyCounters()
        let budget: Int64 = 20_000
        let cost: Int64 = 450
        let threads = 64
        let s = snapshot(keyBudget: Budget(usd: Double(budget) / 1_000_000, period: .daily), groupBudget: Budget(usd: 1, period: .daily), counters: counters)
        let key = try #require(s.authenticate("sk-a"))
        let shared = Shared()
        let done = DispatchSemaphore(value: 0)
        for _ in 0..<threads {
            let thread = Thread {
                while !shared.start.load(ordering: .acquiring) { sched_yield() }
                while true {
                    let ticket: Ticket
                    switch counters.admit(key, estimatedTokens: 100, nowNs: Fixture.t0, nowSeconds: Fixture.noon) {
                    case .rejected: done.signal(); return
                    case .admitted(let t): ticket = t
                    }
                    shared.admitted.wrappingAdd(1, ordering: .relaxed)
                    let now = shared.inFlight.wrappingAdd(1, ordering: .relaxed).newValue
                    _ = shared.peakInFlight.max(now, ordering: .relaxed)
                    usleep(200)
                    shared.inFlight.wrappingSubtract(1, ordering: .relaxed)
                    counters.complete(ticket, usage: nil, costMicroUSD: cost, nowNs: Fixture.t0, nowSeconds: Fixture.noon)
                }
            }
            thread.start()
        }
        shared.start.store(true, ordering: .releasing)
        for _ in 0..<threads { done.wait() }
        let spent = counters.spend(keyID: "cfg-a", period: .daily, nowSeconds: Fixture.noon)
        let count = shared.admitted.load(ordering: .relaxed)
        let peak = shared.peakInFlight.load(ordering: .relaxed)
        print("budget \(budget) µUSD, cost \(cost): \(count) admitted, spent \(spent), overspend \(spent - budget), peak in flight \(peak)")
        #expect(spent == Int64(count) * cost, "every completion counted once")
        #expect(spent >= budget)
        #expect(spent <= budget + Int64(threads) * cost)
        #expect(counters.spend(group: "team", period: .daily, nowSeconds: Fixture.noon) == spent)
    }
}

private final class Shared: Sendable {
    let admitted = Atomic<Int>(0)
    let peakInFlight = Atomic<Int>(0)
    let inFlight = Atomic<Int>(0)
    let start = Atomic<Bool>(false)
}

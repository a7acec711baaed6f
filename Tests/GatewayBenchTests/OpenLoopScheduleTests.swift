import Testing
@testable import GatewayBench

@Suite struct OpenLoopScheduleTests {
    @Test func intendedTimesAreExactlyStartPlusKOverR() {
        let start: UInt64 = 5_000_000_000
        let schedule = OpenLoopSchedule(start: start, rate: 1000, end: 1_000_000)
        for k in [0, 1, 2, 999, 1000, 123_457, 999_999] {
            #expect(schedule.intendedTime(of: k) == start + UInt64(k) * 1_000_000)
        }
        // A rate that does not divide a second: floor(k · 10^9 / 3).
        let third = OpenLoopSchedule(start: start, rate: 3, end: 100)
        #expect(third.intendedTime(of: 1) == start + 333_333_333)
        #expect(third.intendedTime(of: 2) == start + 666_666_666)
        #expect(third.intendedTime(of: 3) == start + 1_000_000_000)
        // Long runs at high rates stay exact (no accumulated rounding).
        let fast = OpenLoopSchedule(start: 0, rate: 250_000, end: .max)
        #expect(fast.intendedTime(of: 90_000_000_000) == 360_000_000_000_000)
        // A fractional rate: 2.5 req/s is one request every 400 ms.
        let slow = OpenLoopSchedule(start: 0, rate: 2.5, end: 10)
        #expect(slow.intendedTime(of: 5) == 2_000_000_000)
    }

    @Test func threadsShareOneSchedule() {
        // Three threads with phases 0, 1, 2 together hand out every index once, each at start + k/R.
        var schedules = (0..<3).map { OpenLoopSchedule(start: 100, rate: 1000, phase: $0, stride: 3, end: 30) }
        var seen: [Int: UInt64] = [:]
        for i in schedules.indices {
            while let (index, intended) = schedules[i].take(at: .max) {
                #expect(index % 3 == i)
                #expect(seen[index] == nil)
                seen[index] = intended
            }
        }
        #expect(seen.count == 30)
        for (index, intended) in seen { #expect(intended == 100 + UInt64(index) * 1_000_000) }
    }

    @Test func nothingIsHandedOutBeforeItsTime() {
        var schedule = OpenLoopSchedule(start: 1_000, rate: 1000, end: 10)
        #expect(schedule.take(at: 999) == nil)
        #expect(schedule.take(at: 1_000)?.index == 0)
        #expect(schedule.take(at: 1_000_999) == nil)
        #expect(schedule.dueCount(at: 1_000_999) == 0)
        #expect(schedule.dueCount(at: 1_001_000) == 1)
        #expect(schedule.dueCount(at: 5_001_000) == 5)
        #expect(schedule.lastDueIndex(at: 5_001_000) == 5)
        #expect(schedule.lastDueIndex(at: 5_000_999) == 4)
        #expect(schedule.remaining == 9)
    }

    /// A single connection to a server that takes 100 µs per request, except one 50 ms stall.
    /// The catch-up after the stall sends each backlogged request the moment the connection is free
    /// (never earlier than its time), and every latency counts from the request's intended time.
    @Test func catchUpAfterAStallKeepsLatencyFromTheIntendedTime() {
        let rate = 1000.0
        let service: UInt64 = 100_000
        let stallIndex = 200
        let stall: UInt64 = 50_000_000
        var schedule = OpenLoopSchedule(start: 0, rate: rate, end: 1000)
        var connectionFree: UInt64 = 0
        var stats = BenchHistogram.bench()
        var uncorrected = BenchHistogram.bench()
        var backlogSends = 0
        while let next = schedule.nextIntendedTime {
            // The client acts when the request is due or the connection frees, whichever is later.
            let now = max(next, connectionFree)
            guard let (index, intended) = schedule.take(at: now) else {
                Issue.record("a due request was not handed out")
                return
            }
            #expect(intended == next)
            #expect(intended <= now, "a request went out before its intended time")
            if now > intended {
                backlogSends += 1
                #expect(now == connectionFree, "a backlogged request waited for more than a free connection")
            }
            let completed = now + service + (index == stallIndex ? stall : 0)
            let timing = RequestTiming(intended: intended, sent: now, completed: completed)
            #expect(timing.corrected >= completed - intended)
            #expect(timing.corrected >= timing.uncorrected)
            stats.record(timing.corrected)
            uncorrected.record(timing.uncorrected)
            connectionFree = completed
        }
        // The stall held back about 55 requests (50 ms at 1000/s, then catching up at 100 µs each).
        #expect(backlogSends >= 50 && backlogSends <= 60)
        #expect(stats.totalCount == 1000)
        // About 5% of requests waited behind the stall: the corrected p99 shows it, the uncorrected does not.
        #expect(stats.valueAtPercentile(99) > 30_000_000)
        #expect(uncorrected.valueAtPercentile(99) < 1_000_000)
        #expect(stats.max >= stall)
    }

    @Test func timingNeverUnderflows() {
        let timing = RequestTiming(intended: 10, sent: 20, completed: 5)
        #expect(timing.corrected == 0)
        #expect(timing.uncorrected == 0)
        #expect(RequestTiming(intended: 10, sent: 20, completed: 50).corrected == 40)
        #expect(RequestTiming(intended: 10, sent: 20, completed: 50).uncorrected == 30)
    }
}

import GatewayConfig
import GatewayIO
import GatewayPolicy
import Testing

@Suite struct RateLimitTests {
    let counters = PolicyCounters()

    func snapshot(keyLimits: [String: Limits], groupLimits: Limits? = nil, keyGroups: [String: [String]] = [:]) -> PolicySnapshot {
        Fixture.snapshot(
            groups: [GroupSettings(name: "team", models: ["*"], limits: groupLimits)],
            keys: keyLimits.keys.sorted().map { name in
                KeySettings(name: name, source: .plain("sk-" + name), groups: keyGroups[name] ?? ["team"], limits: keyLimits[name])
            },
            counters: counters)
    }

    func admit(_ key: KeyPolicy, at t: UInt64, tokens: Int = 0) -> Admission {
        counters.admit(key, estimatedTokens: tokens, nowNs: t, nowSeconds: Fixture.noon)
    }

    func complete(_ ticket: Ticket, at t: UInt64, usage: Usage? = nil) {
        counters.complete(ticket, usage: usage, costMicroUSD: 0, nowNs: t, nowSeconds: Fixture.noon)
    }

    @Test func requestsPerMinute() throws {
        let s = snapshot(keyLimits: ["a": Limits(rpm: 3)])
        let key = try #require(s.authenticate("sk-a"))
        let t0 = Fixture.t0
        for _ in 0..<3 { #expect(admit(key, at: t0).ticket != nil) }
        let rejected = try #require(admit(key, at: t0).rejection)
        // One request drains every 60 / 3 = 20 s.
        #expect(rejected.retryAfter == 20)
        #expect(rejected.which.contains("requests per minute of key 'a'"))
        #expect(admit(key, at: t0 + 19 * Fixture.second).rejection?.retryAfter == 1)
        #expect(admit(key, at: t0 + 20 * Fixture.second).ticket != nil)
        #expect(admit(key, at: t0 + 20 * Fixture.second).rejection != nil)
        // A minute of quiet refills the whole bucket, and no more.
        let later = t0 + 200 * Fixture.second
        for _ in 0..<3 { #expect(admit(key, at: later).ticket != nil) }
        #expect(admit(key, at: later).rejection != nil)
    }

    @Test func theWindowSlides() throws {
        // 6 per minute (one per 10 s), offered one request every 5 s for two minutes.
        let s = snapshot(keyLimits: ["a": Limits(rpm: 6)])
        let key = try #require(s.authenticate("sk-a"))
        var admittedAt: [Int] = []
        for i in 0..<24 where admit(key, at: Fixture.t0 + UInt64(i * 5) * Fixture.second).ticket != nil {
            admittedAt.append(i * 5)
        }
        // The full bucket drains at one per 5 s while refilling at one per 10 s, so the first 11 pass
        // (t = 0...50); from then on exactly every other one, at the refill rate.
        #expect(admittedAt == Array(stride(from: 0, through: 50, by: 5)) + [60, 70, 80, 90, 100, 110])
        // The documented bound: at most 2 × 6 in any 60-s span.
        for start in stride(from: 0, through: 60, by: 5) {
            #expect(admittedAt.filter { $0 >= start && $0 < start + 60 }.count <= 12)
        }
    }

    @Test func aGroupLimitIsSharedByItsKeys() throws {
        let s = snapshot(keyLimits: ["a": Limits(rpm: 3), "b": Limits(rpm: 2)], groupLimits: Limits(rpm: 4))
        let a = try #require(s.authenticate("sk-a"))
        let b = try #require(s.authenticate("sk-b"))
        let t = Fixture.t0
        for _ in 0..<3 { #expect(admit(a, at: t).ticket != nil) }
        let keyLimit = try #require(admit(a, at: t).rejection)
        #expect(keyLimit.which.contains("key 'a'"))
        #expect(admit(b, at: t).ticket != nil)
        let groupLimit = try #require(admit(b, at: t).rejection)
        #expect(groupLimit.which.contains("group 'team'"))
        #expect(groupLimit.retryAfter == 15)
        // b's own request (one of its 2 per minute) was given back when the group refused it: after the
        // group refills one slot at 15 s, b gets it. Had b kept it, b would wait until 30 s.
        #expect(admit(b, at: t + 15 * Fixture.second).ticket != nil)
    }

    @Test func aRefusalGivesBackWhatTheOtherLimitsTook() throws {
        // Key: concurrency 1 and rpm 2. Group: concurrency 1, so a second key's request refuses the first's.
        let s = snapshot(
            keyLimits: ["a": Limits(rpm: 2, concurrency: 5), "b": Limits()], groupLimits: Limits(concurrency: 1))
        let a = try #require(s.authenticate("sk-a"))
        let b = try #require(s.authenticate("sk-b"))
        let t = Fixture.t0
        let held = try #require(admit(b, at: t).ticket)
        // a takes its own concurrency slot and one of its 2 requests, then the group refuses: both given back.
        let refused = try #require(admit(a, at: t).rejection)
        #expect(refused.which.contains("concurrent requests of group 'team'"))
        #expect(refused.retryAfter == 1)
        #expect(counters.inFlight(keyID: "cfg-a") == 0)
        #expect(counters.inFlight(group: "team") == 1)
        #expect(admit(a, at: t).rejection != nil)
        complete(held, at: t)
        #expect(counters.inFlight(group: "team") == 0)
        // Had the refusals kept a's requests, a would be out of its 2 per minute now.
        let first = try #require(admit(a, at: t).ticket)
        complete(first, at: t)
        let second = try #require(admit(a, at: t).ticket)
        complete(second, at: t)
        #expect(admit(a, at: t).rejection?.which.contains("requests per minute of key 'a'") == true)
    }

    @Test func concurrency() throws {
        let s = snapshot(keyLimits: ["a": Limits(concurrency: 2)])
        let key = try #require(s.authenticate("sk-a"))
        let t = Fixture.t0
        let one = try #require(admit(key, at: t).ticket)
        let two = try #require(admit(key, at: t).ticket)
        #expect(counters.inFlight(keyID: "cfg-a") == 2)
        #expect(admit(key, at: t).rejection?.which.contains("concurrent requests of key 'a' (2)") == true)
        complete(one, at: t)
        let three = try #require(admit(key, at: t).ticket)
        complete(two, at: t)
        complete(three, at: t)
        #expect(counters.inFlight(keyID: "cfg-a") == 0)
    }

    @Test func tokensPerMinuteWithEstimatesAndCorrections() throws {
        let s = snapshot(keyLimits: ["a": Limits(tpm: 1000)])
        let key = try #require(s.authenticate("sk-a"))
        let t = Fixture.t0
        let first = try #require(admit(key, at: t, tokens: 600).ticket)
        // The window still has room (600 < 1000), so the next one is admitted and takes it past the limit.
        let second = try #require(admit(key, at: t, tokens: 600).ticket)
        let full = try #require(admit(key, at: t, tokens: 1).rejection)
        // 1200 used of 1000: the use must drop below 1000, 200 tokens × 60 ms = 12 s and a nanosecond.
        #expect(full.retryAfter == 13)
        #expect(admit(key, at: t + 12 * Fixture.second, tokens: 1).rejection != nil)
        #expect(full.which.contains("tokens per minute of key 'a' (1000)"))
        // The first really used 100 tokens: 500 come back at once.
        complete(first, at: t, usage: Usage(promptTokens: 80, completionTokens: 20))
        let third = try #require(admit(key, at: t, tokens: 100).ticket)
        // The second used far more than estimated: the window is full for the next 60+ s.
        complete(second, at: t, usage: Usage(promptTokens: 600, completionTokens: 1400))
        let over = try #require(admit(key, at: t, tokens: 1).rejection)
        // used = 100 + 2000 + 100 = 2200: 1200 over → 72 s (and a nanosecond).
        #expect(over.retryAfter == 73)
        // Unknown usage leaves the estimate in place.
        complete(third, at: t, usage: nil)
        #expect(admit(key, at: t + 72 * Fixture.second, tokens: 1).rejection != nil)
        #expect(admit(key, at: t + 73 * Fixture.second, tokens: 1).ticket != nil)
    }

    @Test func aHugeEstimateBlocksButNeverWraps() throws {
        let s = snapshot(keyLimits: ["a": Limits(tpm: 1)])
        let key = try #require(s.authenticate("sk-a"))
        let t = Fixture.t0
        let ticket = try #require(admit(key, at: t, tokens: 8_000_000).ticket)
        complete(ticket, at: t, usage: Usage(promptTokens: Int.max / 4, completionTokens: 1))
        let refused = try #require(admit(key, at: t, tokens: 1).rejection)
        #expect(refused.retryAfter.map { $0 > 86_400 * 300 } == true)
        #expect(counters.headers(key, nowNs: t).remainingTokens == 0)
    }

    @Test func tokensPerGroupAndPerKeyInteract() throws {
        let s = snapshot(keyLimits: ["a": Limits(tpm: 10_000), "b": Limits(tpm: 10_000)], groupLimits: Limits(tpm: 1500))
        let a = try #require(s.authenticate("sk-a"))
        let b = try #require(s.authenticate("sk-b"))
        let t = Fixture.t0
        let ta = try #require(admit(a, at: t, tokens: 1000).ticket)
        let tb = try #require(admit(b, at: t, tokens: 1000).ticket)
        let refused = try #require(admit(a, at: t, tokens: 10).rejection)
        #expect(refused.which.contains("group 'team'"))
        complete(ta, at: t, usage: Usage(promptTokens: 100, completionTokens: 0))
        complete(tb, at: t, usage: Usage(promptTokens: 100, completionTokens: 0))
        // Both corrections reach the group: 200 of 1500 used.
        #expect(counters.headers(a, nowNs: t).remainingTokens == 1300)
        #expect(admit(a, at: t, tokens: 10).ticket != nil)
    }

    @Test func headersShowTheTightestLimit() throws {
        let s = snapshot(keyLimits: ["a": Limits(rpm: 10, tpm: 100_000), "b": Limits()], groupLimits: Limits(rpm: 5, tpm: 1_000_000))
        let a = try #require(s.authenticate("sk-a"))
        let t = Fixture.t0
        #expect(counters.headers(a, nowNs: t) == RateLimitHeaders(
            limitRequests: 5, remainingRequests: 5, limitTokens: 100_000, remainingTokens: 100_000))
        for _ in 0..<3 { _ = admit(a, at: t, tokens: 1000) }
        let h = counters.headers(a, nowNs: t)
        #expect(h.limitRequests == 5)
        #expect(h.remainingRequests == 2)
        #expect(h.limitTokens == 100_000)
        #expect(h.remainingTokens == 97_000)
        // The group's bucket refills one request per 12 s.
        #expect(counters.headers(a, nowNs: t + 12 * Fixture.second).remainingRequests == 3)

        let noLimits = Fixture.snapshot(keys: [KeySettings(name: "free", source: .plain("sk-free"))], counters: counters)
        let free = try #require(noLimits.authenticate("sk-free"))
        #expect(counters.headers(free, nowNs: t).isEmpty)
    }

    @Test func headersAreWrittenAsLines() {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: RateLimitHeaders.maxEncodedBytes, alignment: 16)
        defer { memory.deallocate() }
        var buffer = ByteBuffer()
        buffer.attach(memory, capacity: RateLimitHeaders.maxEncodedBytes, origin: 0)
        RateLimitHeaders(limitRequests: 60, remainingRequests: 59, limitTokens: 100_000, remainingTokens: 99_750)
            .write(into: &buffer)
        var text = String(decoding: UnsafeRawBufferPointer(start: buffer.readPointer, count: buffer.readableBytes), as: UTF8.self)
        #expect(text == """
            x-ratelimit-limit-requests: 60\r
            x-ratelimit-remaining-requests: 59\r
            x-ratelimit-limit-tokens: 100000\r
            x-ratelimit-remaining-tokens: 99750\r

            """)
        buffer.clear()
        RateLimitHeaders(limitRequests: 1, remainingRequests: 0).write(into: &buffer)
        text = String(decoding: UnsafeRawBufferPointer(start: buffer.readPointer, count: buffer.readableBytes), as: UTF8.self)
        #expect(text == "x-ratelimit-limit-requests: 1\r\nx-ratelimit-remaining-requests: 0\r\n")
        buffer.clear()
        RateLimitHeaders(limitRequests: .max, remainingRequests: .max, limitTokens: .max, remainingTokens: .max).write(into: &buffer)
        #expect(buffer.readableBytes <= RateLimitHeaders.maxEncodedBytes)
        _ = buffer.detach()
    }

    @Test func countsSurviveANewSnapshot() throws {
        let first = snapshot(keyLimits: ["a": Limits(rpm: 2, concurrency: 1)])
        let key = try #require(first.authenticate("sk-a"))
        let held = try #require(admit(key, at: Fixture.t0).ticket)
        let second = snapshot(keyLimits: ["a": Limits(rpm: 2, concurrency: 1)])
        let reloaded = try #require(second.authenticate("sk-a"))
        #expect(admit(reloaded, at: Fixture.t0).rejection?.which.contains("concurrent") == true)
        // The old ticket releases the same counter.
        complete(held, at: Fixture.t0)
        #expect(admit(reloaded, at: Fixture.t0).ticket != nil)
        #expect(admit(reloaded, at: Fixture.t0).rejection != nil)
    }
}

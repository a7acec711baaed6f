import GatewayConfig
import GatewayPolicy
import Testing

@Suite struct KeyCacheTests {
    private func lookup(_ cache: KeyCache, _ key: String, now: Int64 = Fixture.noon) -> KeyPolicy? {
        var key = key
        return key.withUTF8 { cache.lookup(UnsafeRawBufferPointer($0), nowSeconds: now) }
    }

    private func insert(_ cache: KeyCache, _ key: String, _ policy: KeyPolicy) {
        var key = key
        key.withUTF8 { cache.insert(UnsafeRawBufferPointer($0), policy) }
    }

    private let snapshot = Fixture.snapshot(apiKeys: [
        KeyRecord(id: "k_1", name: "one", hash: KeyHash(of: "sk-one")),
        KeyRecord(id: "k_2", name: "two", expires: Fixture.noon + 60, hash: KeyHash(of: "sk-two")),
    ])

    @Test func aCachedKeyIsFoundOnlyByItsExactBytes() throws {
        let cache = KeyCache()
        let one = try #require(snapshot.key(id: "k_1"))
        #expect(lookup(cache, "sk-one") == nil)
        insert(cache, "sk-one", one)
        #expect(lookup(cache, "sk-one") === one)
        for other in ["sk-on", "sk-one ", "sk-onf", "SK-ONE", "sk-one\u{0}", ""] {
            #expect(lookup(cache, other) == nil, "\(other)")
        }
    }

    @Test func expiryIsCheckedOnEveryHit() throws {
        let cache = KeyCache()
        let two = try #require(snapshot.key(id: "k_2"))
        insert(cache, "sk-two", two)
        #expect(lookup(cache, "sk-two", now: Fixture.noon + 59) === two)
        #expect(lookup(cache, "sk-two", now: Fixture.noon + 60) == nil)
    }

    @Test func removeAllForgetsEveryKeyAndTheOldestEntryMakesRoom() throws {
        let cache = KeyCache()
        let one = try #require(snapshot.key(id: "k_1"))
        let names = (0...KeyCache.slotCount).map { "sk-\($0)" }
        for name in names { insert(cache, name, one) }
        #expect(lookup(cache, names[0]) == nil, "the oldest entry made room for the newest")
        for name in names.dropFirst() { #expect(lookup(cache, name) === one) }
        cache.removeAll()
        for name in names { #expect(lookup(cache, name) == nil) }
    }

    @Test func keysLongerThanTheSlotAreNotCached() throws {
        let cache = KeyCache()
        let one = try #require(snapshot.key(id: "k_1"))
        let long = String(repeating: "k", count: KeyCache.maxKeyBytes + 1)
        insert(cache, long, one)
        #expect(lookup(cache, long) == nil)
        let longest = String(repeating: "k", count: KeyCache.maxKeyBytes)
        insert(cache, longest, one)
        #expect(lookup(cache, longest) === one)
    }
}

import GatewayConfig
import GatewayPolicy
import Testing

@Suite struct KeyTests {
    @Test func digestOfKnownVector() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        #expect(KeyHash(of: "abc").hex == expected)
        #expect(KeyHash(hex: expected) == KeyHash(of: "abc"))
        #expect(KeyHash(hex: expected.uppercased()) == KeyHash(of: "abc"))
        #expect(KeyHash(of: "").hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func malformedHexIsRejected() {
        #expect(KeyHash(hex: "abc") == nil)
        #expect(KeyHash(hex: String(repeating: "g", count: 64)) == nil)
        #expect(KeyHash(hex: String(repeating: "0", count: 66)) == nil)
    }

    @Test func constantTimeCompareSeesEveryByte() {
        let a = KeyHash(of: "key-a")
        #expect(KeyHash.constantTimeEquals(a, a))
        for word in 0..<4 {
            var b = a
            switch word {
            case 0: b.w0 ^= 1 << 63
            case 1: b.w1 ^= 1
            case 2: b.w2 ^= 1 << 8
            default: b.w3 ^= 1 << 56
            }
            #expect(!KeyHash.constantTimeEquals(a, b))
            #expect(a != b)
        }
    }

    @Test func configKeysBySHA256EnvAndPlain() throws {
        let snapshot = Fixture.snapshot(
            groups: [GroupSettings(name: "all", models: ["*"])],
            keys: [
                KeySettings(name: "hashed", source: .sha256Hex(KeyHash(of: "sk-hashed").hex), groups: ["all"]),
                KeySettings(name: "upper", source: .sha256Hex(KeyHash(of: "sk-upper").hex.uppercased()), groups: ["all"]),
                KeySettings(name: "env", source: .environment("ALICE_KEY"), groups: ["all"]),
                KeySettings(name: "unset", source: .environment("NOT_SET")),
                KeySettings(name: "plain", source: .plain("sk-plain")),
            ],
            environment: ["ALICE_KEY": "sk-from-env"])
        #expect(snapshot.authenticate("sk-hashed")?.id == "cfg-hashed")
        #expect(snapshot.authenticate("sk-upper")?.name == "upper")
        #expect(snapshot.authenticate("sk-from-env")?.id == "cfg-env")
        #expect(snapshot.authenticate("ALICE_KEY") == nil)
        #expect(snapshot.authenticate("sk-plain")?.id == "cfg-plain")
        #expect(snapshot.authenticate("sk-plain")?.source == .config)
        #expect(snapshot.authenticate("sk-plainx") == nil)
        #expect(snapshot.authenticate("") == nil)
        #expect(snapshot.authenticate(KeyHash(of: "sk-hashed").hex) == nil, "the hash itself is not a key")
        // The unset variable's key is simply absent.
        #expect(snapshot.keys.map(\.name) == ["hashed", "upper", "env", "plain"])
        let key = try #require(snapshot.authenticate("sk-hashed"))
        #expect(key.groups == ["all"])
    }

    @Test func expiredKeysAreRefused() {
        let snapshot = Fixture.snapshot(keys: [KeySettings(name: "temp", source: .plain("sk-temp"), expires: "2027-01-01")])
        let expiry = CivilTime.days(year: 2027, month: 1, day: 1) * 86_400
        #expect(snapshot.authenticate("sk-temp", now: expiry - 1) != nil)
        #expect(snapshot.authenticate("sk-temp", now: expiry) == nil)
        #expect(snapshot.authenticate("sk-temp", now: expiry + 86_400 * 400) == nil)
    }

    @Test func apiKeysRevokedAndExpired() {
        let snapshot = Fixture.snapshot(apiKeys: [
            KeyRecord(id: "k_1", name: "live", hash: KeyHash(of: "sk-live")),
            KeyRecord(id: "k_2", name: "gone", revoked: true, hash: KeyHash(of: "sk-gone")),
            KeyRecord(id: "k_3", name: "old", expires: Fixture.noon - 1, hash: KeyHash(of: "sk-old")),
        ])
        #expect(snapshot.authenticate("sk-live")?.id == "k_1")
        #expect(snapshot.authenticate("sk-live")?.source == .api)
        #expect(snapshot.authenticate("sk-gone") == nil)
        #expect(snapshot.authenticate("sk-old") == nil)
        #expect(snapshot.key(id: "k_1")?.name == "live")
        #expect(snapshot.key(id: "k_2") == nil)
    }

    @Test func aRevokedKeyStopsAtOnceInTheNextSnapshot() {
        let counters = PolicyCounters()
        var record = KeyRecord(id: "k_9", name: "bob", hash: KeyHash(of: "sk-bob"))
        let before = Fixture.snapshot(apiKeys: [record], counters: counters)
        record.revoked = true
        let after = Fixture.snapshot(apiKeys: [record], counters: counters)
        #expect(before.authenticate("sk-bob") != nil)
        #expect(after.authenticate("sk-bob") == nil)
    }

    @Test func civilDates() {
        #expect(CivilTime.secondsOfDate("1970-01-01") == 0)
        #expect(CivilTime.secondsOfDate("2000-03-01") == 951_868_800)
        #expect(CivilTime.secondsOfDate("2024-02-29") == 1_709_164_800)
        #expect(CivilTime.secondsOfDate("2026-02-29") == nil)
        #expect(CivilTime.secondsOfDate("2026-13-01") == nil)
        #expect(CivilTime.secondsOfDate("26-01-01") == nil)
        for day in stride(from: Int64(-800), to: 80_000, by: 37) {
            let date = CivilTime.civil(days: day)
            #expect(CivilTime.days(year: date.year, month: date.month, day: date.day) == day)
        }
    }
}

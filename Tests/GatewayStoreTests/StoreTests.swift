import Foundation
import Testing
@testable import GatewayStore

@Suite struct StoreTests {
    @Test func keysCreateListRevokeAndSurviveReopen() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/store.db"
        let id: String
        do {
            let store = try Store(path: path)
            let alice = StoredKey(name: "alice", keySHA256: String(repeating: "AB", count: 32), groups: ["interns", "eng"],
                                  limitsJSON: "{\"rpm\":10}", budgetJSON: "{\"usd\":5,\"period\":\"daily\"}",
                                  expires: "2027-01-01")
            id = alice.id
            try store.insertKey(alice)
            try store.insertKey(StoredKey(name: "bob", keySHA256: String(repeating: "cd", count: 32), groups: []))
            // The same secret twice is refused.
            #expect {
                try store.insertKey(StoredKey(name: "eve", keySHA256: String(repeating: "ab", count: 32), groups: []))
            } throws: { ($0 as? SQLiteError)?.isConstraint == true }
            #expect(throws: StoreError.self) {
                try store.insertKey(StoredKey(name: "x", keySHA256: "00", groups: [], limitsJSON: "{rpm"))
            }
            #expect(try store.revokeKey(id: id))
            #expect(try store.revokeKey(id: id) == false)
            #expect(try store.revokeKey(id: "key_doesnotexist") == false)
        }
        let store = try Store(path: path)
        let keys = try store.listKeys()
        #expect(keys.map(\.name) == ["alice", "bob"] || keys.map(\.name) == ["bob", "alice"])
        let alice = try #require(keys.first { $0.id == id })
        #expect(alice.groups == ["interns", "eng"])
        #expect(alice.keySHA256 == String(repeating: "ab", count: 32))
        #expect(alice.limitsJSON == "{\"rpm\":10}")
        #expect(alice.budgetJSON == "{\"usd\":5,\"period\":\"daily\"}")
        #expect(alice.expires == "2027-01-01")
        #expect(alice.isRevoked)
        #expect(try store.listKeys(includeRevoked: false).map(\.name) == ["bob"])
        // The listing for the admin API never carries the hash.
        let json = renderKeysJSON(keys)
        #expect(!json.contains("abab"))
        let parsed = try #require(JSONValue.parse(json))
        #expect(parsed["data"]?.arrayValue?.count == 2)
    }

    @Test func keyIDsAreKeyPrefixedSixteenHex() {
        var seen = Set<String>()
        for _ in 0..<1000 {
            let id = StoredKey.newID()
            #expect(id.hasPrefix("key_") && id.count == 20)
            #expect(id.dropFirst(4).allSatisfy { $0.isHexDigit && !$0.isUppercase })
            seen.insert(id)
        }
        #expect(seen.count == 1000)
    }

    @Test func groupsUpsertListDelete() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let store = try Store(path: dir + "/store.db")
        try store.upsertGroup(name: "interns", json: "{\"models\":[\"gpt-4o-mini\"],\"budget\":{\"usd\":15}}")
        try store.upsertGroup(name: "eng", json: "{\"models\":[\"*\"]}")
        try store.upsertGroup(name: "interns", json: "{\"models\":[\"embed-*\"]}")
        #expect(throws: StoreError.self) { try store.upsertGroup(name: "bad", json: "{") }
        var groups = try store.listGroups()
        #expect(groups.map(\.name) == ["eng", "interns"])
        #expect(groups[1].json == "{\"models\":[\"embed-*\"]}")
        #expect(try store.deleteGroup(name: "eng"))
        #expect(try store.deleteGroup(name: "eng") == false)
        groups = try Store(path: dir + "/store.db").listGroups()
        #expect(groups.map(\.name) == ["interns"])
    }

    @Test func spendSinceSumsPerKeyAndPerGroup() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let path = dir + "/audit.db"
        let log = try AuditLog(path: path)
        let day = Int64(1_750_000_000) / 86_400 * 86_400  // a midnight
        func record(_ key: String?, _ groups: [String], cost: Int64, at seconds: Int64) -> AuditRecord {
            AuditRecord(requestID: "r", keyID: key, keyName: key, groups: groups, startNs: seconds * 1_000_000_000,
                        endNs: seconds * 1_000_000_000 + 1, status: 200, costMicroUSD: cost)
        }
        log.enqueue(record("k1", ["a", "b"], cost: 100, at: day - 1))        // before the window
        log.enqueue(record("k1", ["a", "b"], cost: 1_000, at: day))          // at the boundary: in
        log.enqueue(record("k1", ["a"], cost: 2_000, at: day + 3600))
        log.enqueue(record("k2", ["b"], cost: 30_000, at: day + 7200))
        log.enqueue(record(nil, [], cost: 0, at: day + 7300))                // a rejected, keyless request
        log.close()
        let store = try Store(path: path)
        let spend = try store.spendSince(unixSeconds: day)
        #expect(spend.byKey == ["k1": 3_000, "k2": 30_000])
        #expect(spend.byGroup == ["a": 3_000, "b": 31_000])
        let all = try store.spendSince(unixSeconds: 0)
        #expect(all.byKey["k1"] == 3_100)
        #expect(all.byGroup["a"] == 3_100)
        let none = try store.spendSince(unixSeconds: day + 86_400)
        #expect(none.byKey.isEmpty && none.byGroup.isEmpty)
    }
}

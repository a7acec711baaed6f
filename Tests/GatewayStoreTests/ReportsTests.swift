import Foundation
import Testing
@testable import GatewayStore

/// A small known data set: three keys, groups, tags, models, one error, over two days.
private func fixture(_ dir: String) throws -> (Store, Int64) {
    let path = dir + "/audit.db"
    let log = try AuditLog(path: path)
    let day1 = UTCTime.days(year: 2025, month: 3, day: 1) * 86_400
    let day2 = day1 + 86_400
    func add(_ id: String, key: String?, groups: [String], tags: String, model: String, status: Int,
             prompt: Int, completion: Int, cost: Int64, at: Int64) {
        log.enqueue(AuditRecord(
            requestID: id, keyID: key.map { "key_\($0)" }, keyName: key, groups: groups, tags: tags,
            startNs: at * 1_000_000_000, endNs: at * 1_000_000_000 + 10, requestedModel: model,
            deployment: "mock/\(model)", attempts: 1, status: status,
            errorCode: status == 200 ? nil : "rate_limit_exceeded", promptTokens: prompt,
            completionTokens: completion, costMicroUSD: cost))
    }
    add("r1", key: "alice", groups: ["interns"], tags: "project=x,env=prod", model: "gpt-4o-mini", status: 200,
        prompt: 10, completion: 5, cost: 100, at: day1 + 10)
    add("r2", key: "alice", groups: ["interns"], tags: "project=y", model: "gpt-4o-mini", status: 200,
        prompt: 20, completion: 5, cost: 200, at: day1 + 20)
    add("r3", key: "bob", groups: ["eng", "interns"], tags: "project=x", model: "claude-haiku", status: 200,
        prompt: 100, completion: 50, cost: 5_000, at: day1 + 30)
    add("r4", key: "bob", groups: ["eng", "interns"], tags: "", model: "claude-haiku", status: 429,
        prompt: 0, completion: 0, cost: 0, at: day2 + 10)
    add("r5", key: "carol", groups: ["eng"], tags: "project=x", model: "gpt-4o-mini", status: 200,
        prompt: 1, completion: 1, cost: 1_000_000, at: day2 + 20)
    add("r6", key: nil, groups: [], tags: "", model: "gpt-4o-mini", status: 401, prompt: 0, completion: 0, cost: 0,
        at: day2 + 30)
    log.close()
    return (try Store(path: path), day1)
}

@Suite struct ReportsTests {
    @Test func usageByEveryDimension() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let (store, _) = try fixture(dir)

        let groups = try store.usage(by: .group)
        #expect(groups.map(\.value) == ["eng", "interns", ""])
        let eng = groups[0]
        #expect(eng.requests == 3 && eng.promptTokens == 101 && eng.completionTokens == 51)
        #expect(eng.costMicroUSD == 1_005_000 && eng.errors == 1)
        #expect(groups[1] == UsageRow(value: "interns", requests: 4, promptTokens: 130, completionTokens: 60,
                                      costMicroUSD: 5_300, errors: 1))
        #expect(groups[2].requests == 1 && groups[2].errors == 1)  // the keyless 401

        let keys = try store.usage(by: .key)
        #expect(keys.map(\.value) == ["key_carol", "key_bob", "key_alice", ""])
        #expect(keys[1].name == "bob" && keys[1].requests == 2 && keys[1].costMicroUSD == 5_000)

        let models = try store.usage(by: .model)
        #expect(models.map(\.value) == ["gpt-4o-mini", "claude-haiku"])
        #expect(models[0].requests == 4 && models[0].costMicroUSD == 1_000_300 && models[0].errors == 1)

        let tags = try store.usage(by: .tag)
        let byTag = Dictionary(uniqueKeysWithValues: tags.map { ($0.value, $0) })
        #expect(byTag["project=x"]?.requests == 3)
        #expect(byTag["project=x"]?.costMicroUSD == 1_005_100)
        #expect(byTag["env=prod"]?.requests == 1)
        #expect(byTag["project=y"]?.costMicroUSD == 200)
        #expect(byTag[""]?.requests == 2)

        let deployments = try store.usage(by: .deployment)
        #expect(deployments.first?.value == "mock/gpt-4o-mini")
    }

    @Test func singleGroupRowsInAuditGroupsFromEarlierWritersCountOnce() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let (store, day1) = try fixture(dir)
        let groupsBefore = try store.usage(by: .group)
        let spendBefore = try store.spendSince(unixSeconds: day1)
        #expect(spendBefore.byGroup == ["interns": 5_300, "eng": 1_005_000])
        // Writers before this one also put a record's only group in audit_groups.
        try store.withConnection { db in
            try db.exec("INSERT INTO audit_groups (audit_id, grp) SELECT id, groups FROM audit WHERE groups <> '' AND instr(groups, ',') = 0")
            #expect(try db.scalarInt("SELECT COUNT(*) FROM audit_groups") == 7)
        }
        #expect(try store.usage(by: .group) == groupsBefore)
        #expect(try store.spendSince(unixSeconds: day1).byGroup == spendBefore.byGroup)
    }

    @Test func usageSinceUntilIsHalfOpen() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let (store, day1) = try fixture(dir)
        let day2 = day1 + 86_400
        let first = try store.usage(by: .model, since: day1, until: day2)
        #expect(first.reduce(0) { $0 + $1.requests } == 3)
        let second = try store.usage(by: .model, since: day2)
        #expect(second.reduce(0) { $0 + $1.requests } == 3)
        let untilOnly = try store.usage(by: .key, until: day1 + 20)  // r1 only: r2 starts exactly at until
        #expect(untilOnly.map(\.value) == ["key_alice"] && untilOnly[0].requests == 1)
        #expect(try store.usage(by: .group, since: day2 + 86_400).isEmpty)
    }

    @Test func logsFilterAndOrderNewestFirst() throws {
        let dir = temporaryDirectory()
        defer { removeDirectory(dir) }
        let (store, day1) = try fixture(dir)
        #expect(try store.logs().map(\.requestID) == ["r6", "r5", "r4", "r3", "r2", "r1"])
        #expect(try store.logs(limit: 2).map(\.requestID) == ["r6", "r5"])
        #expect(try store.logs(key: "bob").map(\.requestID) == ["r4", "r3"])
        #expect(try store.logs(key: "key_alice").map(\.requestID) == ["r2", "r1"])
        #expect(try store.logs(model: "claude-haiku").map(\.requestID) == ["r4", "r3"])
        #expect(try store.logs(model: "mock/gpt-4o-mini").count == 4)
        #expect(try store.logs(status: .exact(429)).map(\.requestID) == ["r4"])
        #expect(try store.logs(status: StatusFilter("4xx")).map(\.requestID) == ["r6", "r4"])
        #expect(try store.logs(status: .errors).count == 2)
        #expect(try store.logs(key: "bob", status: .exact(200)).map(\.requestID) == ["r3"])
        #expect(try store.logs(since: day1 + 86_400).count == 3)
        #expect(try store.logs(key: "nobody").isEmpty)
        let rows = try store.logs(limit: 1)
        let json = renderLogsJSON(rows)
        let parsed = try #require(JSONValue.parse(json))
        let first = try #require(parsed["data"]?.arrayValue?.first)
        #expect(first["request_id"] == .string("r6"))
        #expect(first["key_id"] == .null)
        #expect(first["status"] == .int(401))
        #expect(first["request_body"] == nil)
        #expect(AuditRecord(json: first) == rows[0])
    }

    @Test func statusFilterParsing() {
        #expect(StatusFilter("429") == .exact(429))
        #expect(StatusFilter("5xx") == .range(500, 599))
        #expect(StatusFilter("4XX") == .range(400, 499))
        #expect(StatusFilter("error") == .errors)
        #expect(StatusFilter("abc") == nil)
        #expect(StatusFilter("42") == nil)
    }

    @Test func renderTableCSVAndJSON() throws {
        let rows = [
            UsageRow(value: "eng", requests: 3, promptTokens: 101, completionTokens: 51, costMicroUSD: 1_005_000, errors: 1),
            UsageRow(value: "a,\"b\"", requests: 1, promptTokens: 1, completionTokens: 2, costMicroUSD: 7, errors: 0),
            UsageRow(value: "", requests: 1, promptTokens: 0, completionTokens: 0, costMicroUSD: 0, errors: 1),
        ]
        let table = renderUsage(rows, format: .table, by: .group)
        print(table)
        let lines = table.split(separator: "\n")
        #expect(lines.count == 6)
        #expect(lines[0].hasPrefix("GROUP"))
        #expect(lines[1].hasPrefix("eng ") && lines[1].contains("1.005000"))
        #expect(lines[3].hasPrefix("(none)"))
        #expect(lines[5].hasPrefix("TOTAL") && lines[5].contains("1.005007") && lines[5].hasSuffix("2"))

        let csv = renderUsage(rows, format: .csv, by: .group)
        let expectedCSV = [
            "group,requests,prompt_tokens,completion_tokens,total_tokens,cost_usd,errors",
            "eng,3,101,51,152,1.005000,1",
            "\"a,\"\"b\"\"\",1,1,2,3,0.000007,0",
            ",1,0,0,0,0.000000,1",
        ].joined(separator: "\n") + "\n"
        #expect(csv == expectedCSV)

        let json = renderUsage(rows, format: .json, by: .group, since: 100, until: nil)
        let parsed = try #require(JSONValue.parse(json))
        #expect(parsed["by"] == .string("group"))
        #expect(parsed["since"] == .int(100))
        #expect(parsed["until"] == .null)
        let first = try #require(parsed["rows"]?.arrayValue?.first)
        #expect(first["group"] == .string("eng"))
        #expect(first["cost_usd"] == .double(1.005))
        #expect(first["cost_micro_usd"] == .int(1_005_000))
        #expect(parsed["total"]?["requests"] == .int(5))

        let keyed = renderUsage([UsageRow(value: "key_1", name: "alice", requests: 1, promptTokens: 0,
                                          completionTokens: 0, costMicroUSD: 0, errors: 0)], format: .csv, by: .key)
        #expect(keyed.hasPrefix("key,name,requests") && keyed.contains("key_1,alice,1"))
    }
}

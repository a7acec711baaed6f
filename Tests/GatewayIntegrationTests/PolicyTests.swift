// The control layer through a real gateway: audit records and their fields, bodies for groups that ask,
// forced stream usage, and the admin API over its own listener. (The SDK-level policy tests are in
// Tests/python.)
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

private let policyYAML = """
    admin: {listen: "127.0.0.1:0", key_env: TEST_ADMIN_KEY}
    store: {sqlite: DIR/gateway.db}
    groups:
      - {name: interns, models: ["gpt-4o-mini"], limits: {rpm: 1000}}
      - {name: auditors, models: ["gpt-4o-mini"], log_bodies: true}
    keys:
      - {name: alice, key: sk-alice, groups: [interns]}
      - {name: bob, key: sk-bob, groups: [auditors]}
    """

@Suite("Policy", .serialized)
struct PolicyTests {
    func start() throws -> GatewayFixture {
        try GatewayFixture.start(policy: policyYAML, environment: ["TEST_ADMIN_KEY": "admin-secret"])
    }

    func logs(_ fixture: GatewayFixture, query: String = "limit=50") throws -> [[String: Any]] {
        let response = try fixture.adminClient().send(
            HTTPRequest.get("/admin/logs?\(query)", headers: [("Authorization", "Bearer admin-secret")]))
        #expect(response.status == 200, "\(response.text)")
        return (json(response)["data"] as? [[String: Any]]) ?? []
    }

    @Test("every model request leaves one audit record with its fields, rejected ones too")
    func auditRecords() throws {
        let fixture = try start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let ok = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [
            ("Authorization", "Bearer sk-alice"), ("x-request-id", "req-ok"), ("x-gateway-tags", "team=search,env=dev"),
            ("x-mock-usage", "1000,500"),
        ]))
        #expect(ok.status == 200)
        #expect(ok.header("x-ratelimit-limit-requests") == "1000")
        let denied = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(model: "gpt-4o"), headers: [
            ("Authorization", "Bearer sk-alice"), ("x-request-id", "req-403"),
        ]))
        #expect(denied.status == 403)
        #expect(errorCode(denied) == "model_not_allowed")
        let anonymous = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("x-request-id", "req-401")]))
        #expect(anonymous.status == 401)
        let records = try logs(fixture)
        #expect(records.count == 3)
        let byID = Dictionary(records.map { ($0["request_id"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        let record = try #require(byID["req-ok"])
        #expect(record["key_name"] as? String == "alice")
        #expect(record["groups"] as? [String] == ["interns"])
        #expect(record["tags"] as? String == "team=search,env=dev")
        #expect(record["deployment"] as? String == "mock/gpt-4o-mini")
        #expect(record["requested_model"] as? String == "gpt-4o-mini")
        #expect(record["status"] as? Int == 200)
        #expect(record["prompt_tokens"] as? Int == 1000)
        #expect(record["completion_tokens"] as? Int == 500)
        #expect(record["attempts"] as? Int == 1)
        #expect(record["client_address"] as? String == "127.0.0.1")
        let total = record["total_latency_us"] as? Int ?? -1
        let upstream = record["upstream_latency_us"] as? Int ?? -1
        let overhead = record["overhead_us"] as? Int ?? -1
        #expect(total > 0 && upstream > 0 && overhead >= 0 && upstream <= total)
        #expect((record["bytes_in"] as? Int ?? 0) > 300)
        #expect((record["bytes_out"] as? Int ?? 0) > 300)
        #expect(byID["req-403"]?["error_code"] as? String == "model_not_allowed")
        #expect(byID["req-401"]?["error_code"] as? String == "invalid_api_key")
        #expect(byID["req-401"]?["key_id"] is NSNull)
    }

    @Test("GET /v1/models leaves an audit record too, with its key, and a refused one without")
    func modelListIsAudited() throws {
        let fixture = try start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let listed = try client.send(HTTPRequest.get("/v1/models", headers: [
            ("Authorization", "Bearer sk-alice"), ("x-request-id", "req-models"),
        ]))
        #expect(listed.status == 200)
        let refused = try client.send(HTTPRequest.get("/v1/models", headers: [("x-request-id", "req-models-401")]))
        #expect(refused.status == 401)
        let records = try logs(fixture)
        #expect(records.count == 2)
        let byID = Dictionary(records.map { ($0["request_id"] as? String ?? "", $0) }, uniquingKeysWith: { a, _ in a })
        let record = try #require(byID["req-models"])
        #expect(record["key_name"] as? String == "alice")
        #expect(record["groups"] as? [String] == ["interns"])
        #expect(record["status"] as? Int == 200)
        #expect(record["deployment"] as? String == "")
        #expect((record["bytes_out"] as? Int ?? 0) > 0)
        #expect(byID["req-models-401"]?["status"] as? Int == 401)
        #expect(byID["req-models-401"]?["error_code"] as? String == "invalid_api_key")
    }

    @Test("every answer to a key with limits carries the x-ratelimit headers, errors and local answers included")
    func rateLimitHeadersOnEveryAnswer() throws {
        let fixture = try start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let alice = ("Authorization", "Bearer sk-alice")
        let answers: [(String, Int, HTTPResponse)] = [
            ("proxied", 200, try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [alice]))),
            ("upstream status", 500, try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [
                alice, ("x-mock-status", "500"),
            ]))),
            ("model not allowed", 403, try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(model: "gpt-4o"), headers: [alice]))),
            ("no model", 400, try client.send(HTTPRequest.post("/v1/chat/completions", body: #"{"messages":[]}"#, headers: [alice]))),
            ("model list", 200, try client.send(HTTPRequest.get("/v1/models", headers: [alice]))),
            ("upstream reset", 502, try fixture.client().send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [
                alice, ("x-mock-fault", "reset"),
            ]))),
        ]
        for (what, status, response) in answers {
            #expect(response.status == status, "\(what): \(response.text)")
            #expect(response.header("x-ratelimit-limit-requests") == "1000", "\(what)")
            #expect(response.header("x-ratelimit-remaining-requests") != nil, "\(what)")
        }
        // A key whose groups set no limit gets none of them.
        let bob = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("Authorization", "Bearer sk-bob")]))
        #expect(bob.status == 200)
        #expect(bob.header("x-ratelimit-limit-requests") == nil)
    }

    @Test("streamed requests are made to end with usage, and are billed")
    func forcedStreamUsage() throws {
        let fixture = try start()
        defer { fixture.stop() }
        let client = try fixture.client()
        let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(stream: true), headers: [
            ("Authorization", "Bearer sk-alice"), ("x-request-id", "req-stream"),
        ]))
        #expect(response.status == 200)
        #expect(response.text.contains("\"usage\":{"))
        // The client has the last byte a moment before the gateway closes the books on the request.
        var found: [String: Any]?
        for _ in 0..<50 where found == nil {
            found = try logs(fixture).first { $0["request_id"] as? String == "req-stream" }
            if found == nil { usleep(50_000) }
        }
        let record = try #require(found)
        #expect(record["streamed"] as? Bool == true)
        #expect(record["completion_tokens"] as? Int == 16)
    }

    @Test("a group with log_bodies keeps the bodies; others do not")
    func logBodies() throws {
        let fixture = try start()
        defer { fixture.stop() }
        let client = try fixture.client()
        for (key, id) in [("sk-bob", "req-bob"), ("sk-alice", "req-alice")] {
            let response = try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [
                ("Authorization", "Bearer \(key)"), ("x-request-id", id),
            ]))
            #expect(response.status == 200)
        }
        // Bodies are read from the store directly (the logs API leaves them out), once the writer's batch
        // (50 ms) is in; WAL lets a reader in while the gateway runs.
        let database = fixture.directory + "/gateway.db"
        var output = ""
        for _ in 0..<50 where !output.contains("req-alice") {
            usleep(100_000)
            output = try runSQLite(database, "SELECT request_id, length(request_body), length(response_body) FROM audit ORDER BY request_id;")
        }
        #expect(output.contains("req-bob|\(chatBody().utf8.count)|"))
        #expect(output.contains("req-alice||"))
    }

    @Test("keys made through the admin API work at once, and revoking one takes effect at once")
    func adminKeys() throws {
        let fixture = try start()
        defer { fixture.stop() }
        let admin = try fixture.adminClient()
        let auth = [("Authorization", "Bearer admin-secret")]
        #expect(try admin.send(HTTPRequest.get("/admin/keys")).status == 401)
        let created = try admin.send(HTTPRequest.post("/admin/keys", body: #"{"name":"carol","groups":["interns"]}"#, headers: auth))
        #expect(created.status == 201, "\(created.text)")
        let secret = try #require(json(created)["key"] as? String)
        let id = try #require(json(created)["id"] as? String)
        let client = try fixture.client()
        let use = { try client.send(HTTPRequest.post("/v1/chat/completions", body: chatBody(), headers: [("Authorization", "Bearer \(secret)")])) }
        #expect(try use().status == 200)
        let listing = try admin.send(HTTPRequest.get("/admin/keys", headers: auth))
        #expect(listing.text.contains("carol"))
        #expect(!listing.text.contains(secret))
        #expect(try admin.send("DELETE /admin/keys/\(id) HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer admin-secret\r\n\r\n").status == 204)
        #expect(try use().status == 401)
        #expect(try fixture.adminClient().send(HTTPRequest.get("/ready")).status == 200)
    }
}

/// Runs a query with the sqlite3 command-line shell (Debian's `sqlite3`).
func runSQLite(_ database: String, _ sql: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    process.arguments = [database, sql]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

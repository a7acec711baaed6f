import Foundation
import GatewayAdmin
import GatewayConfig
import GatewayIO
import Testing

/// A running admin server on 127.0.0.1:0 with a fake backend.
final class AdminFixture {
    static let key = "admin-secret-0123456789"
    let backend: FakeBackend
    let server: AdminServer
    let port: Int

    init(adminKey: String? = AdminFixture.key, backend: FakeBackend = FakeBackend(), options: AdminServer.Options = .init()) throws {
        self.backend = backend
        server = AdminServer(listen: "127.0.0.1:0", adminKey: adminKey, keyEnv: "GATEWAY_ADMIN_KEY", backend: backend, options: options)
        port = Int(try server.start().port)
    }

    deinit { server.shutdown() }

    func client() throws -> AdminTestClient { try AdminTestClient(port: port) }

    /// One request on a new connection.
    func send(_ request: String) throws -> TestResponse { try client().send(request) }

    func get(_ path: String, key: String? = AdminFixture.key) throws -> TestResponse {
        try send(Request.get(path, key: key))
    }

    func call(_ method: String, _ path: String, body: String? = nil, key: String? = AdminFixture.key) throws -> TestResponse {
        try send(Request.make(method, path, key: key, body: body))
    }
}

/// The body as a JSON object.
func json(_ response: TestResponse) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
        throw TestError("not a JSON object: \(response.text)")
    }
    return object
}

/// The `error` member of an error response.
func errorOf(_ response: TestResponse) throws -> [String: Any] {
    guard let error = try json(response)["error"] as? [String: Any] else { throw TestError("no error member: \(response.text)") }
    return error
}

@Suite("Admin server: probes and metrics")
struct AdminProbeTests {
    @Test func healthNeedsNoKey() throws {
        let fixture = try AdminFixture()
        let response = try fixture.get("/health", key: nil)
        #expect(response.status == 200)
        #expect(response.text == #"{"status":"ok"}"#)
        #expect(response.header("content-type") == "application/json")
    }

    @Test func healthRefusesOtherMethods() throws {
        let fixture = try AdminFixture()
        let response = try fixture.call("POST", "/health", body: "{}", key: nil)
        #expect(response.status == 405)
        #expect(response.header("allow") == "GET, HEAD")
        #expect(try errorOf(response)["code"] as? String == "method_not_allowed")
    }

    @Test func headHasLengthButNoBody() throws {
        let fixture = try AdminFixture()
        let client = try fixture.client()
        try client.write("HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
        let head = try client.readResponse(head: true)
        #expect(head.status == 200)
        #expect(head.header("content-length") == "15")
        // The connection is still in step: the next response comes right after the head.
        let next = try client.send(Request.get("/health"))
        #expect(next.text == #"{"status":"ok"}"#)
    }

    @Test func readyFollowsTheBackend() throws {
        let fixture = try AdminFixture()
        #expect(try fixture.get("/ready", key: nil).status == 200)
        fixture.backend.state.withLock { $0.ready = false }
        let response = try fixture.get("/ready", key: nil)
        #expect(response.status == 503)
        #expect(response.text == #"{"status":"not_ready"}"#)
    }

    @Test func metricsNeedNoKey() throws {
        let fixture = try AdminFixture()
        let response = try fixture.get("/metrics", key: nil)
        #expect(response.status == 200)
        #expect(response.header("content-type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(response.text.hasPrefix("# HELP x y\n"))
    }

    @Test func unknownPathIs404() throws {
        let fixture = try AdminFixture()
        let response = try fixture.get("/nope", key: nil)
        #expect(response.status == 404)
        #expect(try errorOf(response)["code"] as? String == "not_found")
    }

    @Test func probesAreNotBlockedByASlowAdminCall() throws {
        let fixture = try AdminFixture()
        fixture.backend.state.withLock { $0.usageDelayMs = 1500 }
        let slow = try fixture.client()
        try slow.write(Request.get("/admin/usage", key: AdminFixture.key))
        usleep(100_000)
        let start = Clock.monotonicNs()
        #expect(try fixture.get("/health", key: nil).status == 200)
        #expect(try fixture.get("/ready", key: nil).status == 200)
        #expect(Clock.monotonicNs() - start < 700_000_000)
        #expect(try slow.readResponse().status == 200)
    }
}

@Suite("Admin server: authentication")
struct AdminAuthTests {
    @Test func missingKeyIs401() throws {
        let fixture = try AdminFixture()
        let response = try fixture.get("/admin/keys", key: nil)
        #expect(response.status == 401)
        let error = try errorOf(response)
        #expect(error["code"] as? String == "invalid_api_key")
        #expect(error["type"] as? String == "authentication_error")
        #expect((error["message"] as? String)?.contains("Authorization: Bearer") == true)
        #expect(response.header("www-authenticate")?.hasPrefix("Bearer") == true)
    }

    @Test(arguments: [
        "admin-secret-0123456788",  // same length, last byte differs
        "xdmin-secret-0123456789",  // same length, first byte differs
        "admin-secret",  // a prefix of the key
        "admin-secret-0123456789-and-more",  // the key as a prefix
        "x",
    ])
    func wrongKeyIs401(key: String) throws {
        let fixture = try AdminFixture()
        let response = try fixture.get("/admin/keys", key: key)
        #expect(response.status == 401)
        #expect(try errorOf(response)["message"] as? String == "invalid admin key")
    }

    @Test func otherSchemesAreRefused() throws {
        let fixture = try AdminFixture()
        let response = try fixture.send(Request.get("/admin/keys", headers: [("Authorization", "Basic \(AdminFixture.key)")]))
        #expect(response.status == 401)
    }

    @Test func schemeIsCaseInsensitive() throws {
        let fixture = try AdminFixture()
        let response = try fixture.send(Request.get("/admin/keys", headers: [("Authorization", "bearer   \(AdminFixture.key) ")]))
        #expect(response.status == 200)
    }

    @Test func authComesBeforeRouting() throws {
        let fixture = try AdminFixture()
        #expect(try fixture.get("/admin/nope", key: nil).status == 401)
        #expect(try fixture.get("/admin/nope").status == 404)
    }

    @Test func noConfiguredKeyDisablesAdminRoutes() throws {
        for key in [nil, ""] as [String?] {
            let fixture = try AdminFixture(adminKey: key)
            for path in ["/admin/keys", "/admin/groups", "/admin/usage", "/admin/anything"] {
                let response = try fixture.get(path, key: "whatever")
                #expect(response.status == 503)
                let error = try errorOf(response)
                #expect(error["code"] as? String == "admin_disabled")
                #expect((error["message"] as? String)?.hasPrefix("admin API disabled: set admin.key_env") == true)
            }
            #expect(try fixture.call("POST", "/admin/reload").status == 503)
            #expect(try fixture.get("/health", key: nil).status == 200)
            #expect(try fixture.get("/metrics", key: nil).status == 200)
        }
    }

    @Test func keyCanBeReplaced() throws {
        let fixture = try AdminFixture()
        fixture.server.setAdminKey("new-key")
        #expect(try fixture.get("/admin/keys").status == 401)
        #expect(try fixture.get("/admin/keys", key: "new-key").status == 200)
        fixture.server.setAdminKey(nil)
        #expect(try fixture.get("/admin/keys", key: "new-key").status == 503)
    }
}

@Suite("Admin server: keys")
struct AdminKeyTests {
    @Test func createListGetRevoke() throws {
        let fixture = try AdminFixture()
        let created = try fixture.call("POST", "/admin/keys", body: """
            {"name":"alice","groups":["interns"],"limits":{"rpm":10,"tpm":1000},"budget":{"usd":5,"period":"daily"},"expires":"2099-01-01"}
            """)
        #expect(created.status == 201)
        let body = try json(created)
        let id = try #require(body["id"] as? String)
        #expect(body["key"] as? String == "sk-secret-\(id)")
        #expect(body["name"] as? String == "alice")
        #expect(body["groups"] as? [String] == ["interns"])
        #expect((body["limits"] as? [String: Any])?["rpm"] as? Int == 10)
        #expect((body["budget"] as? [String: Any])?["period"] as? String == "daily")
        #expect(body["expires"] as? String == "2099-01-01")
        #expect(body["created_at"] as? String == "2026-01-01T00:00:00Z")
        #expect(created.header("location") == "/admin/keys/\(id)")
        #expect(created.header("cache-control") == "no-store")

        let request = try #require(fixture.backend.state.withLock { $0.keyRequests.first })
        #expect(request.limits == Limits(rpm: 10, tpm: 1000))
        #expect(request.budget == Budget(usd: 5, period: .daily))
        #expect(request.expires?.unixSeconds == 4_070_908_800)

        let list = try fixture.get("/admin/keys")
        #expect(list.status == 200)
        #expect(!list.text.contains("sk-secret"), "the key is shown once only")
        let data = try #require(try json(list)["data"] as? [[String: Any]])
        #expect(data.count == 1)
        #expect(data.first?["id"] as? String == id)
        #expect(data.first?["key"] == nil)
        #expect(data.first?["revoked"] as? Bool == false)

        let one = try fixture.get("/admin/keys/\(id)")
        #expect(one.status == 200)
        #expect(try json(one)["name"] as? String == "alice")
        #expect(!one.text.contains("sk-secret"))

        let revoked = try fixture.call("DELETE", "/admin/keys/\(id)")
        #expect(revoked.status == 204)
        #expect(revoked.body.isEmpty)
        #expect(try fixture.call("DELETE", "/admin/keys/\(id)").status == 404)
        #expect(try fixture.call("DELETE", "/admin/keys/key_999").status == 404)
        #expect(try fixture.get("/admin/keys/key_999").status == 404)
        let after = try #require(try json(try fixture.get("/admin/keys"))["data"] as? [[String: Any]])
        #expect(after.first?["revoked"] as? Bool == true)
    }

    @Test(arguments: [
        (#"{"groups":["interns"]}"#, "name"),
        (#"{"name":"","groups":["interns"]}"#, "name"),
        (#"{"name":"a/b","groups":["interns"]}"#, "name"),
        (#"{"name":42,"groups":["interns"]}"#, "name"),
        (#"{"name":"a"}"#, "groups"),
        (#"{"name":"a","groups":"interns"}"#, "groups"),
        (#"{"name":"a","groups":[]}"#, "groups"),
        (#"{"name":"a","groups":[1]}"#, "groups[0]"),
        (#"{"name":"a","groups":["interns"],"limits":{"rpm":0}}"#, "limits.rpm"),
        (#"{"name":"a","groups":["interns"],"limits":{"rpm":true}}"#, "limits.rpm"),
        (#"{"name":"a","groups":["interns"],"limits":{"rpm":1.5}}"#, "limits.rpm"),
        (#"{"name":"a","groups":["interns"],"limits":{"rps":1}}"#, "limits.rps"),
        (#"{"name":"a","groups":["interns"],"limits":[1]}"#, "limits"),
        (#"{"name":"a","groups":["interns"],"budget":{"usd":-1,"period":"daily"}}"#, "budget.usd"),
        (#"{"name":"a","groups":["interns"],"budget":{"usd":5}}"#, "budget.period"),
        (#"{"name":"a","groups":["interns"],"budget":{"usd":5,"period":"weekly"}}"#, "budget.period"),
        (#"{"name":"a","groups":["interns"],"expires":"2020-01-01"}"#, "expires"),
        (#"{"name":"a","groups":["interns"],"expires":"2099-02-30"}"#, "expires"),
        (#"{"name":"a","groups":["interns"],"expires":20990101}"#, "expires"),
        (#"{"name":"a","groups":["interns"],"group":"x"}"#, "group"),
        (#"{"name":"a","groups":["nobody"]}"#, "groups"),
    ])
    func invalidCreationNamesTheField(body: String, field: String) throws {
        let fixture = try AdminFixture()
        let response = try fixture.call("POST", "/admin/keys", body: body)
        #expect(response.status == 400, "\(body)")
        let error = try errorOf(response)
        #expect(error["code"] as? String == "invalid_request")
        #expect(error["type"] as? String == "invalid_request_error")
        #expect(error["param"] as? String == field, "\(body): \(response.text)")
        #expect((error["message"] as? String)?.contains(field) == true, "\(response.text)")
    }

    @Test(arguments: ["", "not json", "[1,2]", #"{"name":"a""#, #"{"name":"a","name":"b","groups":["interns"]}"#])
    func badBodiesAre400(body: String) throws {
        let fixture = try AdminFixture()
        let response = try fixture.call("POST", "/admin/keys", body: body)
        #expect(response.status == 400)
        #expect(try errorOf(response)["code"] as? String == "invalid_request")
    }

    @Test func otherMethodsAre405() throws {
        let fixture = try AdminFixture()
        let response = try fixture.call("PUT", "/admin/keys", body: "{}")
        #expect(response.status == 405)
        #expect(response.header("allow") == "GET, POST")
        #expect(try fixture.call("POST", "/admin/keys/key_1", body: "{}").header("allow") == "GET, DELETE")
    }
}

@Suite("Admin server: groups")
struct AdminGroupTests {
    @Test func lifecycle() throws {
        let fixture = try AdminFixture()
        let list = try #require(try json(try fixture.get("/admin/groups"))["data"] as? [[String: Any]])
        #expect(list.map { $0["name"] as? String } == ["interns"])
        #expect(list.first?["source"] as? String == "config")

        let created = try fixture.call("POST", "/admin/groups", body: """
            {"name":"research team","models":["gpt-*","claude-haiku"],"limits":{"concurrency":4},"budget":{"usd":15.5,"period":"monthly"},"log_bodies":true,"retention_days":30}
            """)
        #expect(created.status == 201, "\(created.text)")
        #expect(created.header("location") == "/admin/groups/research%20team")
        let body = try json(created)
        #expect(body["models"] as? [String] == ["gpt-*", "claude-haiku"])
        #expect((body["budget"] as? [String: Any])?["usd"] as? Double == 15.5)
        #expect(body["log_bodies"] as? Bool == true)
        #expect(body["retention_days"] as? Int == 30)

        let duplicate = try fixture.call("POST", "/admin/groups", body: #"{"name":"research team","models":[]}"#)
        #expect(duplicate.status == 409)
        #expect(try errorOf(duplicate)["code"] as? String == "conflict")

        let one = try fixture.get("/admin/groups/research%20team")
        #expect(one.status == 200)
        #expect(try json(one)["name"] as? String == "research team")

        let replaced = try fixture.call("PUT", "/admin/groups/research%20team", body: #"{"models":["o1"]}"#)
        #expect(replaced.status == 200)
        #expect(try json(replaced)["models"] as? [String] == ["o1"])
        #expect(try json(replaced)["budget"] is NSNull)

        let made = try fixture.call("PUT", "/admin/groups/new", body: #"{"name":"new","models":["*"]}"#)
        #expect(made.status == 201)

        // What GET returns can be PUT back as it is.
        let roundTrip = try fixture.call("PUT", "/admin/groups/new", body: try fixture.get("/admin/groups/new").text)
        #expect(roundTrip.status == 200, "\(roundTrip.text)")

        #expect(try fixture.call("DELETE", "/admin/groups/new").status == 204)
        #expect(try fixture.call("DELETE", "/admin/groups/new").status == 404)
        #expect(try fixture.get("/admin/groups/new").status == 404)
    }

    @Test(arguments: [
        ("POST", "/admin/groups", #"{"models":["a"]}"#, "name"),
        ("POST", "/admin/groups", #"{"name":"g"}"#, "models"),
        ("POST", "/admin/groups", #"{"name":"g","models":"a"}"#, "models"),
        ("POST", "/admin/groups", #"{"name":"g","models":[""]}"#, "models[0]"),
        ("POST", "/admin/groups", #"{"name":"g","models":[],"log_bodies":"yes"}"#, "log_bodies"),
        ("POST", "/admin/groups", #"{"name":"g","models":[],"retention_days":0}"#, "retention_days"),
        ("POST", "/admin/groups", #"{"name":"g","models":[],"limits":{"tpm":-5}}"#, "limits.tpm"),
        ("PUT", "/admin/groups/g", #"{"name":"h","models":[]}"#, "name"),
    ])
    func invalidGroupsNameTheField(method: String, path: String, body: String, field: String) throws {
        let fixture = try AdminFixture()
        let response = try fixture.call(method, path, body: body)
        #expect(response.status == 400, "\(body)")
        #expect(try errorOf(response)["param"] as? String == field, "\(response.text)")
    }

    @Test func methods() throws {
        let fixture = try AdminFixture()
        #expect(try fixture.call("DELETE", "/admin/groups").header("allow") == "GET, POST")
        let patch = try fixture.call("PATCH", "/admin/groups/interns", body: "{}")
        #expect(patch.status == 405)
        #expect(patch.header("allow") == "GET, PUT, DELETE")
        #expect(try fixture.get("/admin/groups/a/b").status == 404)
    }
}

@Suite("Admin server: usage, logs and reload")
struct AdminReportTests {
    @Test func usagePassesTheQuery() throws {
        let fixture = try AdminFixture()
        let response = try fixture.get("/admin/usage?by=model&since=2026-01-01&until=2026-02-01T00:00:00Z")
        #expect(response.status == 200)
        #expect(response.text == #"{"by":"model","data":[]}"#)
        let query = try #require(fixture.backend.state.withLock { $0.usageQueries.last })
        #expect(query.by == .model)
        #expect(query.since?.unixSeconds == 1_767_225_600)
        #expect(query.until?.unixSeconds == 1_769_904_000)
        #expect(query.since?.text == "2026-01-01")

        #expect(try fixture.get("/admin/usage").status == 200)
        #expect(fixture.backend.state.withLock { $0.usageQueries.last?.by } == .group)
        #expect(try fixture.get("/admin/usage?by=tag&since=1767225600").status == 200)
        #expect(fixture.backend.state.withLock { $0.usageQueries.last?.since?.unixSeconds } == 1_767_225_600)
    }

    @Test(arguments: [
        ("/admin/usage?by=team", "by"),
        ("/admin/usage?since=yesterday", "since"),
        ("/admin/usage?since=2026-02-01&until=2026-01-01", "since"),
        ("/admin/usage?group=x", "group"),
        ("/admin/logs?limit=0", "limit"),
        ("/admin/logs?limit=5000", "limit"),
        ("/admin/logs?limit=ten", "limit"),
        ("/admin/logs?status=99", "status"),
        ("/admin/logs?key=", "key"),
        ("/admin/logs?until=2026-13-01", "until"),
    ])
    func invalidQueriesNameTheParameter(path: String, parameter: String) throws {
        let fixture = try AdminFixture()
        let response = try fixture.get(path)
        #expect(response.status == 400, "\(path)")
        #expect(try errorOf(response)["param"] as? String == parameter, "\(response.text)")
    }

    @Test func logsPassTheFilters() throws {
        let fixture = try AdminFixture()
        let response = try fixture.get("/admin/logs?limit=5&key=alice&model=gpt-4o%2Dmini&status=429&since=2026-01-01T12:00:00%2B02:00")
        #expect(response.status == 200)
        #expect(response.text == #"{"data":[{"request_id":"r1"}]}"#)
        let query = try #require(fixture.backend.state.withLock { $0.logQueries.last })
        #expect(query == AdminLogQuery(
            limit: 5, key: "alice", model: "gpt-4o-mini", status: 429,
            since: AdminInstant(text: "2026-01-01T12:00:00+02:00", unixSeconds: 1_767_261_600)))
        #expect(try fixture.get("/admin/logs").status == 200)
        #expect(fixture.backend.state.withLock { $0.logQueries.last } == AdminLogQuery())
    }

    @Test func reload() throws {
        let fixture = try AdminFixture()
        let ok = try fixture.call("POST", "/admin/reload")
        #expect(ok.status == 200)
        #expect(ok.text == #"{"status":"reloaded","generation":1}"#)
        fixture.backend.state.withLock { $0.reloadError = .invalidConfig("models[0].price: expected a number") }
        let refused = try fixture.call("POST", "/admin/reload")
        #expect(refused.status == 400)
        #expect(try errorOf(refused)["code"] as? String == "invalid_config")
        #expect(try errorOf(refused)["message"] as? String == "models[0].price: expected a number")
        #expect(try fixture.get("/admin/reload").status == 405)
    }

    @Test func otherBackendErrorsAre500() throws {
        let fixture = try AdminFixture()
        fixture.backend.state.withLock { $0.failNextWith = "database is locked" }
        let response = try fixture.get("/admin/usage")
        #expect(response.status == 500)
        #expect(try errorOf(response)["code"] as? String == "internal_error")
        #expect(try errorOf(response)["message"] as? String == "database is locked")
    }
}

@Suite("Admin server: HTTP/1.1")
struct AdminHTTPTests {
    @Test func keepAliveServesManyRequests() throws {
        let fixture = try AdminFixture()
        let client = try fixture.client()
        for i in 0..<5 {
            #expect(try client.send(Request.get("/health")).status == 200)
            let created = try client.send(Request.make("POST", "/admin/groups", key: AdminFixture.key, body: #"{"name":"g\#(i)","models":[]}"#))
            #expect(created.status == 201)
            #expect(created.header("connection") == nil)
        }
        #expect(try client.send(Request.get("/admin/groups", key: AdminFixture.key)).status == 200)
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() throws {
        let fixture = try AdminFixture()
        let client = try fixture.client()
        try client.write(Request.get("/admin/groups/interns", key: AdminFixture.key) + Request.get("/health")
            + Request.make("POST", "/admin/reload", key: AdminFixture.key, body: "") + Request.get("/ready"))
        #expect(try client.readResponse().text.contains("\"interns\""))
        #expect(try client.readResponse().text == #"{"status":"ok"}"#)
        #expect(try client.readResponse().text.contains("reloaded"))
        #expect(try client.readResponse().text == #"{"status":"ready"}"#)
    }

    @Test func chunkedBodies() throws {
        let fixture = try AdminFixture()
        let client = try fixture.client()
        let body = #"{"name":"chunky","models":["a"]}"#
        let split = body.index(body.startIndex, offsetBy: 10)
        let first = String(body[..<split])
        let second = String(body[split...])
        try client.write("POST /admin/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(AdminFixture.key)\r\nTransfer-Encoding: chunked\r\n\r\n"
            + String(first.utf8.count, radix: 16) + "\r\n" + first + "\r\n")
        usleep(20_000)
        try client.write(String(second.utf8.count, radix: 16) + ";ext=1\r\n" + second + "\r\n0\r\n\r\n")
        let response = try client.readResponse()
        #expect(response.status == 201, "\(response.text)")
        #expect(try client.send(Request.get("/admin/groups/chunky", key: AdminFixture.key)).status == 200)
    }

    @Test func expectContinue() throws {
        let fixture = try AdminFixture()
        let client = try fixture.client()
        let body = #"{"name":"waiting","models":[]}"#
        try client.write("POST /admin/groups HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(AdminFixture.key)\r\nExpect: 100-continue\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
        #expect(try client.readResponse().status == 100)
        try client.write(body)
        #expect(try client.readResponse().status == 201)
    }

    @Test(arguments: [
        "GET /health HTTP/1.1\r\n\r\n",  // no Host
        "GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        "GET /health HTTP/2.0\r\nHost: x\r\n\r\n",
        "GET  /health HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        "GET /health HTTP/1.1\nHost: x\n\n",
        "POST /admin/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "POST /admin/keys HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ])
    func malformedRequestsGet400AndClose(request: String) throws {
        let fixture = try AdminFixture()
        let client = try fixture.client()
        try client.write(request)
        let response = try client.readResponse()
        #expect(response.status == 400, "\(request.debugDescription): \(response.text)")
        #expect(response.header("connection") == "close")
        #expect(try errorOf(response)["code"] as? String == "invalid_request")
        #expect(client.nextOutcome() == .closed)
    }

    @Test func declaredBodyTooLargeIs413() throws {
        let fixture = try AdminFixture()
        let client = try fixture.client()
        try client.write("POST /admin/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(AdminFixture.key)\r\nContent-Length: 2000000\r\n\r\n")
        try client.write([UInt8](repeating: UInt8(ascii: "a"), count: 100_000))
        let response = try client.readResponse()
        #expect(response.status == 413)
        #expect(response.header("connection") == "close")
        #expect(try errorOf(response)["code"] as? String == "request_too_large")
        #expect(client.nextOutcome() == .closed)
    }

    @Test func chunkedBodyTooLargeIs413() throws {
        let fixture = try AdminFixture(options: .init(maxBodyBytes: 64 * 1024))
        let client = try fixture.client()
        try client.write("POST /admin/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \(AdminFixture.key)\r\nTransfer-Encoding: chunked\r\n\r\n")
        let chunk = [UInt8]("8000\r\n".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 0x8000) + [13, 10]
        for _ in 0..<3 { try client.write(chunk) }
        let response = try client.readResponse()
        #expect(response.status == 413)
        #expect(client.nextOutcome() == .closed)
    }

    @Test func bodyAtTheCapIsRead() throws {
        let fixture = try AdminFixture()
        // A 1 MiB body is accepted and parsed: the name is too long, which is a 400 for the field, not a 413.
        let padding = String(repeating: "n", count: (1 << 20) - 32)
        let body = #"{"name":"\#(padding)","groups":[]}"#
        let response = try fixture.call("POST", "/admin/keys", body: body + String(repeating: " ", count: (1 << 20) - body.utf8.count))
        #expect(response.status == 400)
        #expect(try errorOf(response)["param"] as? String == "name")
    }

    @Test func http10ClosesAfterTheResponse() throws {
        let fixture = try AdminFixture()
        let client = try fixture.client()
        let response = try client.send("GET /health HTTP/1.0\r\n\r\n")
        #expect(response.status == 200)
        #expect(response.header("connection") == "close")
        #expect(client.nextOutcome() == .closed)
    }

    @Test func connectionCloseIsHonoured() throws {
        let fixture = try AdminFixture()
        let client = try fixture.client()
        let response = try client.send(Request.get("/admin/keys", key: AdminFixture.key, headers: [("Connection", "close")]))
        #expect(response.status == 200)
        #expect(response.header("connection") == "close")
        #expect(client.nextOutcome() == .closed)
    }

    @Test func idleConnectionsTimeOut() throws {
        let fixture = try AdminFixture(options: .init(headerTimeoutMs: 100, idleTimeoutMs: 100))
        let idle = try fixture.client()
        #expect(try idle.send(Request.get("/health")).status == 200)
        #expect(idle.nextOutcome() == .closed)
        let partial = try fixture.client()
        try partial.write("GET /health HTTP/1.1\r\n")
        let response = try partial.readResponse()
        #expect(response.status == 408)
    }

    @Test func shutdownClosesConnections() throws {
        let backend = FakeBackend()
        let server = AdminServer(listen: "127.0.0.1:0", adminKey: "k", backend: backend)
        let port = Int(try server.start().port)
        let client = try AdminTestClient(port: port)
        #expect(try client.send(Request.get("/health")).status == 200)
        server.shutdown()
        #expect(client.nextOutcome() == .closed)
        #expect(throws: TestError.self) { try AdminTestClient(port: port) }
        server.shutdown()
    }

    @Test func badListenAddressIsAStartupError() {
        let server = AdminServer(listen: "nonsense", adminKey: nil, backend: FakeBackend())
        #expect(throws: AdminServer.StartupError.self) { _ = try server.start() }
    }
}

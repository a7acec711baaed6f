import Testing

@testable import GatewayAdmin

@Suite("Constant-time compare")
struct ConstantTimeTests {
    @Test func equalKeysMatch() {
        #expect(ConstantTime.equals(Array("secret-key".utf8), Array("secret-key".utf8)))
    }

    @Test(arguments: ["secret-kez", "xecret-key", "secret-ke", "secret-key!", "", "secret-keysecret-key"])
    func anyDifferenceFails(candidate: String) {
        #expect(!ConstantTime.equals(Array(candidate.utf8), Array("secret-key".utf8)))
    }

    @Test func emptySecretNeverMatches() {
        #expect(!ConstantTime.equals([], []))
        #expect(!ConstantTime.equals(Array("x".utf8), []))
    }

    @Test func bearerTokens() {
        #expect(AdminRouter.bearerToken("Bearer abc") == "abc")
        #expect(AdminRouter.bearerToken("BEARER  abc  ") == "abc")
        #expect(AdminRouter.bearerToken("Bearer ") == nil)
        #expect(AdminRouter.bearerToken("Basic abc") == nil)
        #expect(AdminRouter.bearerToken("Bearerabc") == nil)
    }
}

@Suite("Admin JSON")
struct AdminJSONTests {
    @Test func parsesDocuments() throws {
        let value = try JSONParser.parse(Array(#" {"a":[1,-2.5e3,true,false,null],"b":{"c":"d\"\\\/\n\u00e9\ud83d\ude80"}} "#.utf8))
        #expect(value["a"] == .array([.number("1"), .number("-2.5e3"), .bool(true), .bool(false), .null]))
        #expect(value["b"]?["c"] == .string("d\"\\/\né🚀"))
        if case .array(let items)? = value["a"] { #expect(items[0].integer == 1) } else { Issue.record("a is not an array") }
        #expect(JSONValue.number("1.0").integer == nil)
        #expect(JSONValue.number("1e2").integer == nil)
        #expect(JSONValue.number("12").double == 12)
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "01", "1.", "-", "\"abc", "\"a\u{01}\"", "\"\\x\"", "\"\\ud800\"",
        "\"\\udc00\"", "tru", "nul", "{\"a\":1}x", "{\"a\":1,\"a\":2}", "[" + String(repeating: "[", count: 70) + "]",
        "{1:2}", "'a'", "NaN",
    ])
    func refusesInvalidDocuments(text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(text.utf8)) }
    }

    @Test func writerEscapesAndRoundTrips() throws {
        var writer = JSONWriter()
        writer.beginObject()
        writer.field("text", "q\"b\\n\nt\tc\u{01}\u{2028}é")
        writer.field("n", 42)
        writer.field("whole", 15.0)
        writer.field("fraction", 0.25)
        writer.field("flag", true)
        writer.key("none")
        writer.null()
        writer.field("list", strings: ["a", "b"])
        writer.key("empty")
        writer.beginArray()
        writer.endArray()
        writer.endObject()
        #expect(writer.text == #"{"text":"q\"b\\n\nt\tc\u0001\u2028é","n":42,"whole":15,"fraction":0.25,"flag":true,"none":null,"list":["a","b"],"empty":[]}"#)
        let parsed = try JSONParser.parse(Array(writer.text.utf8))
        #expect(parsed["text"] == .string("q\"b\\n\nt\tc\u{01}\u{2028}é"))
    }
}

@Suite("Admin times")
struct AdminTimeTests {
    @Test(arguments: [
        ("1970-01-01", Int64(0)),
        ("2026-01-01", 1_767_225_600),
        ("2024-02-29", 1_709_164_800),
        ("2026-01-01T00:00:01Z", 1_767_225_601),
        ("2026-01-01t10:30:00.123z", 1_767_263_400),
        ("2026-01-01 10:30:00Z", 1_767_263_400),
        ("2026-01-01T12:00:00+02:00", 1_767_261_600),
        ("2026-01-01T00:00:00-05:30", 1_767_245_400),
        ("1767225600", 1_767_225_600),
    ])
    func parses(text: String, seconds: Int64) {
        #expect(AdminInstant.parse(text)?.unixSeconds == seconds)
    }

    @Test(arguments: ["", "2026-1-01", "2023-02-29", "2026-13-01", "2026-04-31", "2026-01-01T25:00:00Z", "2026-01-01T10:00:00",
                      "2026-01-01T10:00Z", "2026-01-01T10:00:00+0200", "yesterday", "-5", "2026-01-01Z"])
    func refuses(text: String) {
        #expect(AdminInstant.parse(text) == nil)
    }

    @Test func formats() {
        #expect(UTC.format(unixSeconds: 0) == "1970-01-01T00:00:00Z")
        #expect(UTC.format(unixSeconds: 1_767_263_405) == "2026-01-01T10:30:05Z")
        #expect(UTC.format(unixSeconds: 951_782_400) == "2000-02-29T00:00:00Z")
        #expect(UTC.format(unixSeconds: -1) == "1969-12-31T23:59:59Z")
    }
}

@Suite("Admin routing")
struct AdminRoutingTests {
    @Test func queryParameters() throws {
        let parameters = try AdminRouter.query(of: "/admin/logs?model=a%20b&key=x+y&empty=&flag&a=%2B")()
        #expect(parameters.map(\.0) == ["model", "key", "empty", "flag", "a"])
        #expect(parameters.map(\.1) == ["a b", "x y", "", "", "+"])
        #expect(throws: AdminError.self) { try AdminRouter.query(of: "/x?a=%zz")() }
        #expect(throws: AdminError.self) { try AdminRouter.query(of: "/x?a=%ff")() }
    }

    @Test func paths() {
        #expect(AdminRouter.path(of: "/admin/keys/?x=1") == "/admin/keys")
        #expect(AdminRouter.path(of: "/") == "/")
        #expect(AdminRouter.percentEncode("a b/é") == "a%20b%2F%C3%A9")
    }
}

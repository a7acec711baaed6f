import GatewayIO
import Testing

@testable import GatewayHTTP

/// One hostile or malformed request head and the status the gateway must answer it with.
struct MalformedCase: Sendable, CustomTestStringConvertible {
    let name: String
    let bytes: [UInt8]
    let status: Int
    var testDescription: String { "\(name) → \(status)" }

    init(_ name: String, _ text: String, _ status: Int) {
        self.name = name
        self.bytes = text.bytes
        self.status = status
    }

    init(_ name: String, bytes: [UInt8], _ status: Int) {
        self.name = name
        self.bytes = bytes
        self.status = status
    }
}

enum MalformedRequests {
    /// "POST / HTTP/1.1", a Host, then `fields`, then the blank line.
    static func post(_ fields: String) -> String {
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n" + fields + "\r\n"
    }

    static func get(_ requestLine: String) -> String {
        requestLine + "\r\nHost: gw\r\n\r\n"
    }

    /// A head whose total length is `total` bytes, padded by one large header value.
    static func headOfLength(_ total: Int) -> String {
        let prefix = "GET / HTTP/1.1\r\nHost: gw\r\nX-Big: "
        let suffix = "\r\n\r\n"
        return prefix + String(repeating: "a", count: total - prefix.utf8.count - suffix.utf8.count) + suffix
    }

    /// A request with `count` header fields in all, Host included.
    static func headWithFields(_ count: Int) -> String {
        var text = "GET / HTTP/1.1\r\nHost: gw\r\n"
        for i in 1..<count { text += "X-F\(i): v\r\n" }
        return text + "\r\n"
    }

    static let cases: [MalformedCase] = [
        // Framing conflicts: the classic request-smuggling vectors (RFC 9112 6.1, 6.3).
        MalformedCase("TE chunked + Content-Length", post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400),
        MalformedCase("Content-Length + TE chunked", post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400),
        MalformedCase("TE chunked + Content-Length 0", post("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"), 400),
        MalformedCase("TE xchunked", post("Transfer-Encoding: xchunked\r\n"), 501),
        MalformedCase("TE chunkedx", post("Transfer-Encoding: chunkedx\r\n"), 501),
        MalformedCase("TE quoted \"chunked\"", post("Transfer-Encoding: \"chunked\"\r\n"), 501),
        MalformedCase("TE chunked, identity", post("Transfer-Encoding: chunked, identity\r\n"), 501),
        MalformedCase("TE gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n"), 501),
        MalformedCase("TE identity", post("Transfer-Encoding: identity\r\n"), 501),
        MalformedCase("TE empty value", post("Transfer-Encoding:\r\n"), 501),
        MalformedCase("TE space before colon", post("Transfer-Encoding : chunked\r\n"), 400),
        MalformedCase("TE tab before colon", post("Transfer-Encoding\t: chunked\r\n"), 400),
        // The empty first line is rejected as a coding before the fold is even reached.
        MalformedCase("TE value on obs-fold line", post("Transfer-Encoding:\r\n chunked\r\n"), 501),
        MalformedCase("TE chunked + obs-fold identity", post("Transfer-Encoding: chunked\r\n identity\r\n"), 400),
        MalformedCase("TE repeated chunked", post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400),
        MalformedCase("TE repeated, differing case", post("transfer-encoding: chunked\r\nTRANSFER-ENCODING: chunked\r\n"), 400),
        MalformedCase("TE with NUL", post("Transfer-Encoding: chunked\u{00}\r\n"), 400),
        MalformedCase("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        MalformedCase("CL +5", post("Content-Length: +5\r\n"), 400),
        MalformedCase("CL list 5, 5", post("Content-Length: 5, 5\r\n"), 400),
        MalformedCase("CL list 5,5", post("Content-Length: 5,5\r\n"), 400),
        MalformedCase("CL -1", post("Content-Length: -1\r\n"), 400),
        MalformedCase("CL 16 digits", post("Content-Length: 1000000000000000\r\n"), 400),
        MalformedCase("CL 20 digits (Int64 overflow)", post("Content-Length: 99999999999999999999\r\n"), 400),
        MalformedCase("CL with NUL", post("Content-Length: 5\u{00}\r\n"), 400),
        MalformedCase("CL empty", post("Content-Length:\r\n"), 400),
        MalformedCase("CL hex 0x10", post("Content-Length: 0x10\r\n"), 400),
        MalformedCase("CL inner space 1 0", post("Content-Length: 1 0\r\n"), 400),
        MalformedCase("CL 1e3", post("Content-Length: 1e3\r\n"), 400),
        MalformedCase("CL differing duplicates", post("Content-Length: 5\r\nContent-Length: 6\r\n"), 400),
        MalformedCase("CL space before colon", post("Content-Length : 5\r\n"), 400),
        // Header names: tchar only (RFC 9110 5.1).
        MalformedCase("name with NUL", post("X-\u{00}Evil: a\r\n"), 400),
        MalformedCase("name with @", post("X-@Evil: a\r\n"), 400),
        MalformedCase("name with (", post("X-(Evil: a\r\n"), 400),
        MalformedCase("name with UTF-8", post("Nämé: a\r\n"), 400),
        MalformedCase("name with raw 0x80", bytes: post("X-\u{01}: a\r\n").bytes.map { $0 == 0x01 ? 0x80 : $0 }, 400),
        MalformedCase("name with slash", post("X/Y: a\r\n"), 400),
        MalformedCase("empty name", post(": a\r\n"), 400),
        MalformedCase("name without colon", post("X-No-Colon\r\n"), 400),
        // Header values: no CR, LF, NUL, DEL or other controls.
        MalformedCase("value with bare CR", post("X-A: a\rb\r\n"), 400),
        MalformedCase("value ends CR CR LF", post("X-A: a\r\r\n"), 400),
        MalformedCase("value with DEL", post("X-A: a\u{7F}b\r\n"), 400),
        MalformedCase("value with NUL", post("X-A: a\u{00}b\r\n"), 400),
        MalformedCase("value with 0x01", post("X-A: a\u{01}b\r\n"), 400),
        MalformedCase("value with ESC", post("X-A: \u{1B}[31m\r\n"), 400),
        // Line endings: CRLF only (RFC 9112 2.2).
        MalformedCase("request line ends in bare LF", "GET / HTTP/1.1\nHost: gw\r\n\r\n", 400),
        MalformedCase("header line ends in bare LF", "GET / HTTP/1.1\r\nHost: gw\nX-A: b\r\n\r\n", 400),
        MalformedCase("all bare LF", "GET / HTTP/1.1\nHost: gw\n\n", 400),
        MalformedCase("head ends CRLF LF", "GET / HTTP/1.1\r\nHost: gw\r\n\n", 400),
        MalformedCase("head ends LF CRLF", "GET / HTTP/1.1\r\nHost: gw\n\r\n", 400),
        // Obsolete line folding and whitespace after the start line (RFC 9112 2.2, 5.2).
        MalformedCase("obs-fold with space", post("X-A: a\r\n b\r\n"), 400),
        MalformedCase("obs-fold with tab", post("X-A: a\r\n\tb\r\n"), 400),
        MalformedCase("whitespace before first field", "GET / HTTP/1.1\r\n Host: gw\r\n\r\n", 400),
        // Request line.
        MalformedCase("double space after method", get("GET  / HTTP/1.1"), 400),
        MalformedCase("double space before version", get("GET /  HTTP/1.1"), 400),
        MalformedCase("tab after method", get("GET\t/ HTTP/1.1"), 400),
        MalformedCase("tab in target", get("GET /a\tb HTTP/1.1"), 400),
        MalformedCase("space in target", get("GET /a b HTTP/1.1"), 400),
        MalformedCase("control in target", get("GET /a\u{01}b HTTP/1.1"), 400),
        MalformedCase("DEL in target", get("GET /a\u{7F} HTTP/1.1"), 400),
        MalformedCase("UTF-8 in target", get("GET /é HTTP/1.1"), 400),
        MalformedCase("missing target", get("GET HTTP/1.1"), 400),
        MalformedCase("missing version", get("GET /"), 400),
        MalformedCase("HTTP/1.2", get("GET / HTTP/1.2"), 400),
        MalformedCase("HTTP/2.0", get("GET / HTTP/2.0"), 400),
        MalformedCase("HTTP/0.9", get("GET / HTTP/0.9"), 400),
        MalformedCase("HTTP/1.10", get("GET / HTTP/1.10"), 400),
        MalformedCase("lowercase http/1.1", get("GET / http/1.1"), 400),
        MalformedCase("trailing space after version", get("GET / HTTP/1.1 "), 400),
        MalformedCase("method with @", get("G@T / HTTP/1.1"), 400),
        MalformedCase("empty method", get(" / HTTP/1.1"), 400),
        MalformedCase("leading space before request line", get(" GET / HTTP/1.1"), 400),
        MalformedCase("leading bare LF before request line", "\n" + get("GET / HTTP/1.1"), 400),
        // Host (RFC 9112 3.2).
        MalformedCase("HTTP/1.1 without Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400),
        MalformedCase("HTTP/1.1 without any field", "GET / HTTP/1.1\r\n\r\n", 400),
        MalformedCase("two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        MalformedCase("two identical Host headers, differing case", "GET / HTTP/1.1\r\nHost: a\r\nhOST: a\r\n\r\n", 400),
        MalformedCase("two Host headers in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        // Size limits.
        MalformedCase("head of 64 KiB + 1", headOfLength(HTTPHeadParser.maxHeadBytes + 1), 431),
        MalformedCase("head of 100 KiB", headOfLength(100 * 1024), 431),
        MalformedCase("no end of head within 64 KiB",
                      "GET / HTTP/1.1\r\nHost: gw\r\nX-Big: " + String(repeating: "b", count: 70_000), 431),
        MalformedCase("201 fields", headWithFields(HTTPHeadParser.maxFields + 1), 431),
        MalformedCase("1000 fields", headWithFields(1000), 431),
    ]
}

@Suite("Malformed and hostile requests")
struct MalformedRequestTableTests {
    @Test("the table is large enough")
    func tableSize() {
        #expect(MalformedRequests.cases.count >= 45)
        #expect(Set(MalformedRequests.cases.map(\.name)).count == MalformedRequests.cases.count, "names are unique")
    }

    @Test("rejected when parsed as one buffer", arguments: MalformedRequests.cases)
    func wholeBuffer(_ testCase: MalformedCase) throws {
        let parse = Parse.whole(testCase.bytes)
        let error = try #require(parse.outcome.failure, "expected .failed, got \(parse.outcome)")
        #expect(error.status == testCase.status)
        #expect(error.code == expectedCode(forStatus: testCase.status))
    }

    @Test("rejected the same way when fed byte by byte", arguments: MalformedRequests.cases)
    func byteByByte(_ testCase: MalformedCase) throws {
        let whole = Parse.whole(testCase.bytes)
        let incremental = Parse.byteByByte(testCase.bytes)
        let error = try #require(incremental.outcome.failure, "expected .failed, got \(incremental.outcome)")
        #expect(error.status == testCase.status)
        #expect(error.code == expectedCode(forStatus: testCase.status))
        #expect(incremental.outcome == whole.outcome)
    }
}

// MARK: - Accepted requests

/// A valid request head and what the parser must make of it.
struct AcceptedCase: Sendable, CustomTestStringConvertible {
    let name: String
    let text: String
    var method: HTTPMethod = .get
    var methodText = "GET"
    var target = "/"
    var minorVersion = 1
    var keepAlive = true
    var contentLength: Int64 = -1
    var chunked = false
    var expectContinue = false
    var fieldCount = 1
    var hostCount = 1
    var nominated: Set<String> = []
    /// Field values to look up by name (after OWS trimming).
    var values: [String: String] = [:]
    var testDescription: String { name }

    init(_ name: String, _ text: String) {
        self.name = name
        self.text = text
    }

    func with(_ change: (inout AcceptedCase) -> Void) -> AcceptedCase {
        var copy = self
        change(&copy)
        return copy
    }
}

enum AcceptedRequests {
    static let cases: [AcceptedCase] = [
        AcceptedCase("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n").with {
            $0.minorVersion = 0; $0.keepAlive = false; $0.fieldCount = 0; $0.hostCount = 0
        },
        AcceptedCase("HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").with {
            $0.minorVersion = 0; $0.keepAlive = true; $0.fieldCount = 1; $0.hostCount = 0
        },
        AcceptedCase("HTTP/1.0 keep-alive then close", "GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n").with {
            $0.minorVersion = 0; $0.keepAlive = false; $0.fieldCount = 1; $0.hostCount = 0
        },
        AcceptedCase("HTTP/1.1 persistent by default", "GET / HTTP/1.1\r\nHost: gw\r\n\r\n").with {
            $0.values = ["host": "gw"]
        },
        AcceptedCase("HTTP/1.1 Connection: close", "GET / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").with {
            $0.keepAlive = false; $0.fieldCount = 2
        },
        AcceptedCase("HTTP/1.1 Connection: CLOSE, any case", "GET / HTTP/1.1\r\nHost: gw\r\nConnection: CLOSE\r\n\r\n").with {
            $0.keepAlive = false; $0.fieldCount = 2
        },
        AcceptedCase("HTTP/1.1 keep-alive, close", "GET / HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, close\r\n\r\n").with {
            $0.keepAlive = false; $0.fieldCount = 2
        },
        AcceptedCase("leading CRLF before request line", "\r\nGET / HTTP/1.1\r\nHost: gw\r\n\r\n"),
        AcceptedCase("two leading CRLFs before request line", "\r\n\r\nGET / HTTP/1.1\r\nHost: gw\r\n\r\n"),
        AcceptedCase("empty header value", "GET / HTTP/1.1\r\nHost: gw\r\nX-Empty:\r\n\r\n").with {
            $0.fieldCount = 2; $0.values = ["x-empty": ""]
        },
        AcceptedCase("whitespace-only header value", "GET / HTTP/1.1\r\nHost: gw\r\nX-Blank: \t \r\n\r\n").with {
            $0.fieldCount = 2; $0.values = ["x-blank": ""]
        },
        AcceptedCase("OWS trimmed, inner space kept", "GET / HTTP/1.1\r\nHost:\tgw \r\nX-Pad:  \t a  b \t \r\n\r\n").with {
            $0.fieldCount = 2; $0.values = ["host": "gw", "x-pad": "a  b"]
        },
        AcceptedCase("empty Host value", "GET / HTTP/1.1\r\nHost:\r\n\r\n").with { $0.values = ["host": ""] },
        AcceptedCase("obs-text in value", "GET / HTTP/1.1\r\nHost: gw\r\nX-Name: café ☕\r\n\r\n").with {
            $0.fieldCount = 2; $0.values = ["x-name": "café ☕"]
        },
        AcceptedCase("Connection nominates headers",
                     "GET / HTTP/1.1\r\nHost: gw\r\nConnection: X-Hop, foo\r\nx-hop: 1\r\nFoo: 2\r\nX-Keep: 3\r\n\r\n").with {
            $0.fieldCount = 5; $0.nominated = ["x-hop", "foo"]; $0.values = ["x-keep": "3"]
        },
        AcceptedCase("Connection nominates with keep-alive",
                     "GET / HTTP/1.0\r\nConnection: keep-alive,\tX-Trace\r\nX-Trace: t\r\n\r\n").with {
            $0.minorVersion = 0; $0.hostCount = 0; $0.fieldCount = 2; $0.nominated = ["x-trace"]
        },
        AcceptedCase("Expect: 100-continue", "POST / HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n").with {
            $0.method = .post; $0.methodText = "POST"; $0.expectContinue = true; $0.contentLength = 2; $0.fieldCount = 3
        },
        AcceptedCase("Expect: 100-Continue, any case", "POST / HTTP/1.1\r\nHost: gw\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n").with {
            $0.method = .post; $0.methodText = "POST"; $0.expectContinue = true; $0.contentLength = 2; $0.fieldCount = 3
        },
        AcceptedCase("Expect: something else", "GET / HTTP/1.1\r\nHost: gw\r\nExpect: 200-ok\r\n\r\n").with {
            $0.fieldCount = 2
        },
        AcceptedCase("Content-Length 0", "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n").with {
            $0.method = .post; $0.methodText = "POST"; $0.contentLength = 0; $0.fieldCount = 2
        },
        AcceptedCase("Content-Length repeated, same value", "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n").with {
            $0.method = .post; $0.methodText = "POST"; $0.contentLength = 5; $0.fieldCount = 3
        },
        AcceptedCase("Content-Length with leading zeros", "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 007\r\n\r\n").with {
            $0.method = .post; $0.methodText = "POST"; $0.contentLength = 7; $0.fieldCount = 2
        },
        AcceptedCase("Content-Length of 15 digits", "POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 999999999999999\r\n\r\n").with {
            $0.method = .post; $0.methodText = "POST"; $0.contentLength = 999_999_999_999_999; $0.fieldCount = 2
        },
        AcceptedCase("Transfer-Encoding: chunked", "POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n").with {
            $0.method = .post; $0.methodText = "POST"; $0.chunked = true; $0.fieldCount = 2
        },
        AcceptedCase("Transfer-Encoding: Chunked, any case, OWS", "POST / HTTP/1.1\r\nHost: gw\r\ntransfer-encoding:  CHUNKED \t\r\n\r\n").with {
            $0.method = .post; $0.methodText = "POST"; $0.chunked = true; $0.fieldCount = 2
        },
        AcceptedCase("absolute-form target", "GET http://gw.example/v1/models?x=1 HTTP/1.1\r\nHost: gw.example\r\n\r\n").with {
            $0.target = "http://gw.example/v1/models?x=1"
        },
        AcceptedCase("asterisk-form OPTIONS", "OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n").with {
            $0.method = .options; $0.methodText = "OPTIONS"; $0.target = "*"
        },
        AcceptedCase("POST chat completions", "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 17\r\nAuthorization: Bearer sk\r\n\r\n").with {
            $0.method = .post; $0.methodText = "POST"; $0.target = "/v1/chat/completions"; $0.contentLength = 17; $0.fieldCount = 3
            $0.values = ["authorization": "Bearer sk"]
        },
        AcceptedCase("unknown method", "BREW /pot HTTP/1.1\r\nHost: gw\r\n\r\n").with {
            $0.method = .other; $0.methodText = "BREW"; $0.target = "/pot"
        },
        AcceptedCase("lowercase method is a token, not GET", "get / HTTP/1.1\r\nHost: gw\r\n\r\n").with {
            $0.method = .other; $0.methodText = "get"
        },
        AcceptedCase("percent-encoded target", "DELETE /v1/files/a%20b?q=%22x%22 HTTP/1.1\r\nHost: gw\r\n\r\n").with {
            $0.method = .delete; $0.methodText = "DELETE"; $0.target = "/v1/files/a%20b?q=%22x%22"
        },
        AcceptedCase("exactly 200 fields", MalformedRequests.headWithFields(HTTPHeadParser.maxFields)).with {
            $0.fieldCount = HTTPHeadParser.maxFields; $0.values = ["x-f199": "v"]
        },
        AcceptedCase("head of exactly 64 KiB", MalformedRequests.headOfLength(HTTPHeadParser.maxHeadBytes)).with {
            $0.fieldCount = 2
        },
    ]
}

@Suite("Accepted requests")
struct AcceptedRequestTests {
    static func check(_ parse: HeadParse, _ expected: AcceptedCase) {
        let parser = parse.parser
        #expect(parse.outcome == .complete)
        guard parse.outcome == .complete else { return }
        #expect(parser.headLength == expected.text.utf8.count)
        #expect(parser.method == expected.method)
        #expect(parse.text(parser.methodRange) == expected.methodText)
        #expect(parse.text(parser.target) == expected.target)
        #expect(parser.minorVersion == expected.minorVersion)
        #expect(parser.keepAlive == expected.keepAlive)
        #expect(parser.contentLength == expected.contentLength)
        #expect(parser.chunked == expected.chunked)
        #expect(parser.expectContinue == expected.expectContinue)
        #expect(parser.fieldCount == expected.fieldCount)
        #expect(parser.hostCount == expected.hostCount)
        #expect(parse.nominatedNames == expected.nominated)
        for (name, value) in expected.values {
            #expect(parse.value(name) == value, "field \(name)")
        }
    }

    @Test("accepted as one buffer", arguments: AcceptedRequests.cases)
    func wholeBuffer(_ testCase: AcceptedCase) {
        Self.check(Parse.whole(testCase.text.bytes), testCase)
    }

    @Test("accepted byte by byte, completing exactly at the last byte of the head", arguments: AcceptedRequests.cases)
    func byteByByte(_ testCase: AcceptedCase) {
        let parse = Parse.byteByByte(testCase.text.bytes)
        Self.check(parse, testCase)
        #expect(parse.verdictAt == testCase.text.utf8.count)
    }

    @Test("body bytes after the head are not part of it", arguments: AcceptedRequests.cases)
    func withBodyAfter(_ testCase: AcceptedCase) {
        // Bytes that would end a head early if the parser read past the blank line.
        let parse = Parse.whole((testCase.text + "\r\n\r\nGET / HTTP/1.1\r\n\r\n").bytes)
        Self.check(parse, testCase)
    }
}

@Suite("Request parser details")
struct RequestParserDetailTests {
    @Test("header kinds are classified case-insensitively")
    func classification() {
        let parse = Parse.whole("""
            POST /v1/chat/completions HTTP/1.1\r
            HOST: gw\r
            content-LENGTH: 2\r
            Authorization: Bearer k\r
            X-Api-Key: k\r
            X-Request-ID: r\r
            x-forwarded-for: 10.0.0.1\r
            Content-Type: application/json\r
            Keep-Alive: timeout=5\r
            TE: trailers\r
            Trailer: X\r
            Upgrade: h2c\r
            Proxy-Authorization: p\r
            X-Gateway-Debug: 1\r
            Connection: keep-alive\r
            Expect: 100-continue\r
            X-Other: o\r
            \r

            """.bytes)
        #expect(parse.outcome == .complete)
        let kinds = (0..<parse.parser.fieldCount).map { parse.parser.fields[$0].kind }
        #expect(kinds == [
            .host, .contentLength, .authorization, .xApiKey, .xRequestID, .xForwardedFor, .contentType,
            .keepAlive, .te, .trailer, .upgrade, .proxyPrefixed, .xGatewayPrefixed, .connection, .expect, .other,
        ])
        #expect(parse.parser.value(of: .xApiKey).map(parse.text) == "k")
        #expect(parse.parser.value(named: "x-other").map(parse.text) == "o")
        #expect(parse.parser.value(named: "x-missing") == nil)
        #expect(parse.parser.value(of: .xGatewayPrefixed).map(parse.text) == "1")
    }

    @Test("a reused parser forgets the previous message")
    func reuse() {
        let parser = HTTPHeadParser()
        let first = RawBuffer("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n".bytes)
        #expect(parser.parseRequest(first.pointer, first.count) == .complete)
        #expect(parser.chunked && parser.expectContinue && !parser.keepAlive)
        #expect(parser.fields[4].nominatedByConnection)
        parser.reset()
        let second = RawBuffer("GET /b HTTP/1.1\r\nHost: b\r\nX-A: 2\r\n\r\n".bytes)
        #expect(parser.parseRequest(second.pointer, second.count) == .complete)
        #expect(!parser.chunked && !parser.expectContinue && parser.keepAlive)
        #expect(parser.contentLength == -1)
        #expect(parser.fieldCount == 2)
        #expect(parser.method == .get)
        #expect(!parser.fields[1].nominatedByConnection)
        #expect(parser.hostCount == 1)
    }

    @Test("pipelined requests parse one after another from the same buffer")
    func pipelined() {
        let text = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
        let buffer = RawBuffer(text.bytes)
        let parser = HTTPHeadParser()
        var offset = 0
        var targets: [String] = []
        while offset < buffer.count {
            let start = buffer.pointer + offset
            guard parser.parseRequest(start, buffer.count - offset) == .complete else { break }
            targets.append(String(decoding: parser.bytes(parser.target), as: UTF8.self))
            offset += parser.headLength + max(0, Int(parser.contentLength))
            parser.reset()
        }
        #expect(targets == ["/1", "/2", "/3"])
        #expect(offset == buffer.count)
    }

    @Test("rebase moves the ranges to a copy of the head")
    func rebase() {
        let text = "GET /x HTTP/1.1\r\nHost: gw\r\n\r\n"
        let first = RawBuffer(text.bytes)
        let copy = RawBuffer(text.bytes)
        let parser = HTTPHeadParser()
        #expect(parser.parseRequest(first.pointer, first.count) == .complete)
        parser.rebase(to: copy.pointer)
        #expect(parser.base == UnsafeRawPointer(copy.pointer))
        #expect(String(decoding: parser.bytes(parser.target), as: UTF8.self) == "/x")
    }

    @Test("every split into two reads gives the same head")
    func twoReadSplits() {
        let text = "\r\nPOST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 12\r\nConnection: X-A\r\nX-A: 1\r\n\r\n"
        let bytes = text.bytes
        for split in 1..<bytes.count {
            let buffer = RawBuffer(fillerOfCount: bytes.count)
            let parser = HTTPHeadParser()
            bytes.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: split) }
            #expect(parser.parseRequest(buffer.pointer, split) == .incomplete, "split \(split)")
            bytes.withUnsafeBytes { (buffer.pointer + split).copyMemory(from: $0.baseAddress! + split, byteCount: bytes.count - split) }
            #expect(parser.parseRequest(buffer.pointer, bytes.count) == .complete, "split \(split)")
            #expect(parser.headLength == bytes.count)
            #expect(parser.contentLength == 12)
            #expect(parser.fields[3].nominatedByConnection)
        }
    }

    @Test("an endless stream of empty lines is cut off at 64 KiB")
    func endlessEmptyLines() {
        let bytes = String(repeating: "\r\n", count: 40_000).bytes
        let parse = Parse.whole(bytes)
        #expect(parse.outcome.failure?.status == 431)
        #expect(Parse.whole(Array(bytes.prefix(1000))).outcome == .incomplete)
    }

    @Test("parse errors carry a message")
    func errorMessages() throws {
        let error = try #require(Parse.whole(MalformedRequests.post("Transfer-Encoding: gzip\r\n").bytes).outcome.failure)
        #expect("\(error.message)".contains("chunked"))
        #expect(error.code.type == "invalid_request_error")
    }
}

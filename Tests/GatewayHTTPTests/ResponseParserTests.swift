import Testing

@testable import GatewayHTTP

struct ResponseCase: Sendable, CustomTestStringConvertible {
    let name: String
    let text: String
    var status = 200
    var minorVersion = 1
    var keepAlive = true
    var contentLength: Int64 = -1
    var chunked = false
    var fieldCount = 0
    var statusLine = ""
    var testDescription: String { name }

    init(_ name: String, _ text: String) {
        self.name = name
        self.text = text
    }

    func with(_ change: (inout ResponseCase) -> Void) -> ResponseCase {
        var copy = self
        change(&copy)
        return copy
    }

    /// How the body is delimited, as the proxy decides it.
    enum Framing: Equatable { case chunked, length(Int64), untilClose }
    var framing: Framing { chunked ? .chunked : (contentLength >= 0 ? .length(contentLength) : .untilClose) }
}

enum Responses {
    static let valid: [ResponseCase] = [
        ResponseCase("200 with Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\n").with {
            $0.contentLength = 5; $0.fieldCount = 2; $0.statusLine = "HTTP/1.1 200 OK"
        },
        ResponseCase("200 chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").with {
            $0.chunked = true; $0.fieldCount = 1; $0.statusLine = "HTTP/1.1 200 OK"
        },
        ResponseCase("200 chunked, any case", "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n").with {
            $0.chunked = true; $0.fieldCount = 1; $0.statusLine = "HTTP/1.1 200 OK"
        },
        ResponseCase("200 delimited by close", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").with {
            $0.keepAlive = false; $0.fieldCount = 1; $0.statusLine = "HTTP/1.1 200 OK"
        },
        ResponseCase("200 with no framing at all", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n").with {
            $0.fieldCount = 1; $0.statusLine = "HTTP/1.1 200 OK"
        },
        ResponseCase("HTTP/1.0 is not persistent", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").with {
            $0.minorVersion = 0; $0.keepAlive = false; $0.contentLength = 0; $0.fieldCount = 1; $0.statusLine = "HTTP/1.0 200 OK"
        },
        ResponseCase("HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\n").with {
            $0.minorVersion = 0; $0.contentLength = 3; $0.fieldCount = 2; $0.statusLine = "HTTP/1.0 200 OK"
        },
        ResponseCase("100 Continue", "HTTP/1.1 100 Continue\r\n\r\n").with {
            $0.status = 100; $0.statusLine = "HTTP/1.1 100 Continue"
        },
        ResponseCase("103 Early Hints", "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n").with {
            $0.status = 103; $0.fieldCount = 1; $0.statusLine = "HTTP/1.1 103 Early Hints"
        },
        ResponseCase("204 without reason phrase", "HTTP/1.1 204\r\n\r\n").with {
            $0.status = 204; $0.statusLine = "HTTP/1.1 204"
        },
        ResponseCase("empty reason phrase", "HTTP/1.1 404 \r\nContent-Length: 9\r\n\r\n").with {
            $0.status = 404; $0.contentLength = 9; $0.fieldCount = 1; $0.statusLine = "HTTP/1.1 404 "
        },
        ResponseCase("reason with tab and obs-text", "HTTP/1.1 429 Too\tMany Requêsts\r\nRetry-After: 1\r\n\r\n").with {
            $0.status = 429; $0.fieldCount = 1; $0.statusLine = "HTTP/1.1 429 Too\tMany Requêsts"
        },
        ResponseCase("500 with same Content-Length twice", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n").with {
            $0.status = 500; $0.contentLength = 2; $0.fieldCount = 2; $0.statusLine = "HTTP/1.1 500 Internal Server Error"
        },
        ResponseCase("999 is three digits", "HTTP/1.1 999 Odd\r\n\r\n").with { $0.status = 999; $0.statusLine = "HTTP/1.1 999 Odd" },
        ResponseCase("no Host needed in a response", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").with {
            $0.contentLength = 0; $0.fieldCount = 1; $0.statusLine = "HTTP/1.1 200 OK"
        },
    ]

    /// Broken upstream heads: each must fail with 502, never with a status that blames the client.
    static let malformed: [MalformedCase] = [
        MalformedCase("HTTP/2 status line", "HTTP/2 200 OK\r\n\r\n", 502),
        MalformedCase("lowercase http", "http/1.1 200 OK\r\n\r\n", 502),
        MalformedCase("ICY status line", "ICY 200 OK\r\n\r\n", 502),
        MalformedCase("empty head", "\r\n\r\n", 502),
        MalformedCase("no space after version", "HTTP/1.1200 OK\r\n\r\n", 502),
        MalformedCase("two-digit status", "HTTP/1.1 20 OK\r\n\r\n", 502),
        MalformedCase("non-digit status", "HTTP/1.1 2x0 OK\r\n\r\n", 502),
        MalformedCase("four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", 502),
        MalformedCase("status line ends in bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", 502),
        MalformedCase("NUL in reason", "HTTP/1.1 200 O\u{00}K\r\n\r\n", 502),
        MalformedCase("DEL in reason", "HTTP/1.1 200 O\u{7F}K\r\n\r\n", 502),
        MalformedCase("bare CR in reason", "HTTP/1.1 200 O\rK\r\n\r\n", 502),
        MalformedCase("TE and Content-Length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 502),
        MalformedCase("TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 502),
        MalformedCase("TE chunked, identity", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 502),
        MalformedCase("repeated TE", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 502),
        MalformedCase("differing Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 502),
        MalformedCase("Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n", 502),
        MalformedCase("negative Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 502),
        MalformedCase("obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n", 502),
        MalformedCase("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", 502),
        MalformedCase("bare LF between fields", "HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\n\r\n", 502),
        MalformedCase("control byte in value", "HTTP/1.1 200 OK\r\nX-A: a\u{01}\r\n\r\n", 502),
        MalformedCase("invalid header name", "HTTP/1.1 200 OK\r\nX(A): a\r\n\r\n", 502),
        MalformedCase("201 fields", "HTTP/1.1 200 OK\r\n" + (0...HTTPHeadParser.maxFields).map { "X-F\($0): v\r\n" }.joined() + "\r\n", 502),
        MalformedCase("head over 64 KiB without end", "HTTP/1.1 200 OK\r\nX-Big: " + String(repeating: "z", count: 70_000), 502),
    ]
}

@Suite("Response parser")
struct ResponseParserTests {
    static func check(_ parse: HeadParse, _ expected: ResponseCase) {
        #expect(parse.outcome == .complete)
        guard parse.outcome == .complete else { return }
        let parser = parse.parser
        #expect(parser.status == expected.status)
        #expect(parser.minorVersion == expected.minorVersion)
        #expect(parser.keepAlive == expected.keepAlive)
        #expect(parser.contentLength == expected.contentLength)
        #expect(parser.chunked == expected.chunked)
        #expect(parser.fieldCount == expected.fieldCount)
        #expect(parser.headLength == expected.text.utf8.count)
        #expect(parser.startLineLength == expected.statusLine.utf8.count)
        let framing: ResponseCase.Framing = parser.chunked ? .chunked : (parser.contentLength >= 0 ? .length(parser.contentLength) : .untilClose)
        #expect(framing == expected.framing)
    }

    @Test("valid heads, whole", arguments: Responses.valid)
    func validWhole(_ testCase: ResponseCase) {
        Self.check(Parse.whole(testCase.text.bytes, response: true), testCase)
    }

    @Test("valid heads, byte by byte", arguments: Responses.valid)
    func validByteByByte(_ testCase: ResponseCase) {
        let parse = Parse.byteByByte(testCase.text.bytes, response: true)
        Self.check(parse, testCase)
        #expect(parse.verdictAt == testCase.text.utf8.count)
    }

    @Test("valid heads followed by body bytes", arguments: Responses.valid)
    func validWithBody(_ testCase: ResponseCase) {
        Self.check(Parse.whole((testCase.text + "HTTP/1.1 500 X\r\n\r\n\n\n").bytes, response: true), testCase)
    }

    @Test("broken upstream heads fail with 502", arguments: Responses.malformed)
    func malformed(_ testCase: MalformedCase) throws {
        let whole = Parse.whole(testCase.bytes, response: true)
        let error = try #require(whole.outcome.failure, "expected .failed, got \(whole.outcome)")
        #expect(error.status == 502)
        #expect(error.code == .upstreamError)
        let incremental = Parse.byteByByte(testCase.bytes, response: true)
        #expect(incremental.outcome == whole.outcome)
    }

    @Test("a head without its blank line yet is waited for")
    func incomplete() {
        for text in ["HTTP/1.1 200", "HTTP/1.1 200 OK\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", "HTTP/1.1 200 OK\r\n\r"] {
            #expect(Parse.whole(text.bytes, response: true).outcome == .incomplete, "\(text.debugDescription)")
        }
    }

    @Test("interim responses are parsed one after another, then the final one")
    func interimThenFinal() {
        let text = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        let buffer = RawBuffer(text.bytes)
        let parser = HTTPHeadParser()
        var offset = 0
        var statuses: [Int] = []
        while true {
            guard parser.parseResponse(buffer.pointer + offset, buffer.count - offset) == .complete else { break }
            parser.reset()
            statuses.append(parser.status)
            offset += parser.headLength
            if parser.status >= 200 { break }
        }
        #expect(statuses == [100, 103, 200])
        #expect(parser.contentLength == 2)
        #expect(String(decoding: UnsafeRawBufferPointer(start: buffer.pointer + offset, count: buffer.count - offset), as: UTF8.self) == "ok")
    }

    @Test("a response parse forgets the request before it")
    func sharedParser() {
        let parser = HTTPHeadParser()
        let request = RawBuffer("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".bytes)
        #expect(parser.parseRequest(request.pointer, request.count) == .complete)
        parser.reset()
        let response = RawBuffer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n".bytes)
        #expect(parser.parseResponse(response.pointer, response.count) == .complete)
        #expect(!parser.chunked && !parser.connectionClose && parser.keepAlive)
        #expect(parser.contentLength == 1)
        #expect(parser.hostCount == 0)
    }
}

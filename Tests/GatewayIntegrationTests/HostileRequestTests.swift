// Malformed and hostile requests sent to a real gateway: each gets its status and an OpenAI-style error,
// the connection is closed (framing can no longer be trusted), and gwmock never sees the request.
#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing

struct HostileCase: CustomTestStringConvertible, Sendable {
    let name: String
    let bytes: String
    let status: Int

    var testDescription: String { name }

    init(_ name: String, _ status: Int, _ bytes: String) {
        self.name = name
        self.status = status
        self.bytes = bytes
    }
}

private let body = #"{"model":"gpt-4o-mini","messages":[]}"#
private let chat = "POST /v1/chat/completions HTTP/1.1\r\n"

let hostileCases: [HostileCase] = [
    // Request line.
    .init("empty method", 400, " /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"),
    .init("double space after method", 400, "GET  /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"),
    .init("tab as separator", 400, "GET\t/v1/models HTTP/1.1\r\nHost: x\r\n\r\n"),
    .init("no version", 400, "GET /v1/models\r\nHost: x\r\n\r\n"),
    .init("HTTP/1.2", 400, "GET /v1/models HTTP/1.2\r\nHost: x\r\n\r\n"),
    .init("HTTP/2.0 on an HTTP/1 connection", 400, "GET /v1/models HTTP/2.0\r\nHost: x\r\n\r\n"),
    .init("lowercase version", 400, "GET /v1/models http/1.1\r\nHost: x\r\n\r\n"),
    .init("version with trailing junk", 400, "GET /v1/models HTTP/1.1x\r\nHost: x\r\n\r\n"),
    .init("control byte in target", 400, "GET /v1/mo\u{01}dels HTTP/1.1\r\nHost: x\r\n\r\n"),
    .init("DEL in target", 400, "GET /v1/models\u{7F} HTTP/1.1\r\nHost: x\r\n\r\n"),
    .init("non-ASCII in target", 400, "GET /v1/modèls HTTP/1.1\r\nHost: x\r\n\r\n"),
    .init("bare LF ends the request line", 400, "GET /v1/models HTTP/1.1\nHost: x\r\n\r\n"),
    .init("non-token in method", 400, "GE(T /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"),
    // Header names and values.
    .init("space before colon", 400, chat + "Host: x\r\nContent-Length : 2\r\n\r\n{}"),
    .init("empty header name", 400, chat + "Host: x\r\n: value\r\n\r\n"),
    .init("NUL in header name", 400, chat + "Host: x\r\nX-A\u{0}b: 1\r\n\r\n"),
    .init("@ in header name", 400, chat + "Host: x\r\nX@Y: 1\r\n\r\n"),
    .init("UTF-8 in header name", 400, chat + "Host: x\r\nX-Ünï: 1\r\n\r\n"),
    .init("no colon", 400, chat + "Host: x\r\nJust-A-Name\r\n\r\n"),
    .init("bare CR in value", 400, chat + "Host: x\r\nX-A: a\rb\r\n\r\n"),
    .init("bare LF in value", 400, chat + "Host: x\r\nX-A: a\nb\r\n\r\n"),
    .init("NUL in value", 400, chat + "Host: x\r\nX-A: a\u{0}b\r\n\r\n"),
    .init("DEL in value", 400, chat + "Host: x\r\nX-A: a\u{7F}b\r\n\r\n"),
    .init("obs-fold with space", 400, chat + "Host: x\r\nX-A: a\r\n b\r\n\r\n"),
    .init("obs-fold with tab", 400, chat + "Host: x\r\nX-A: a\r\n\tb\r\n\r\n"),
    .init("header line ends in bare LF", 400, chat + "Host: x\r\nX-A: b\n\r\n"),
    .init("head ends in bare LFs", 400, chat + "Host: x\n\n"),
    // Host.
    .init("HTTP/1.1 without Host", 400, "GET /v1/models HTTP/1.1\r\n\r\n"),
    .init("two Host headers", 400, "GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    // Framing: the smuggling vectors.
    .init("Content-Length and Transfer-Encoding", 400,
          chat + "Host: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    .init("Transfer-Encoding before Content-Length", 400,
          chat + "Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
    .init("differing Content-Lengths", 400, chat + "Host: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
    .init("Content-Length list", 400, chat + "Host: x\r\nContent-Length: 2, 2\r\n\r\n{}"),
    .init("signed Content-Length", 400, chat + "Host: x\r\nContent-Length: +2\r\n\r\n{}"),
    .init("negative Content-Length", 400, chat + "Host: x\r\nContent-Length: -1\r\n\r\n"),
    .init("hex Content-Length", 400, chat + "Host: x\r\nContent-Length: 0x2\r\n\r\n{}"),
    .init("empty Content-Length", 400, chat + "Host: x\r\nContent-Length:\r\n\r\n"),
    .init("overflowing Content-Length", 400, chat + "Host: x\r\nContent-Length: 99999999999999999999\r\n\r\n"),
    .init("Transfer-Encoding xchunked", 501, chat + "Host: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    .init("Transfer-Encoding gzip, chunked", 501, chat + "Host: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
    .init("Transfer-Encoding chunked, identity", 501, chat + "Host: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    .init("repeated Transfer-Encoding", 400,
          chat + "Host: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    .init("Transfer-Encoding in HTTP/1.0", 400,
          "POST /v1/chat/completions HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    .init("Transfer-Encoding with space before colon", 400,
          chat + "Host: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
    // Chunked bodies.
    .init("chunk size not hex", 400, chat + "Host: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\(body)\r\n0\r\n\r\n"),
    .init("chunk size overflow", 400,
          chat + "Host: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nab\r\n0\r\n\r\n"),
    .init("chunk data without CRLF", 400, chat + "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n"),
    .init("chunk size line ends in bare LF", 400, chat + "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n2\n{}\r\n0\r\n\r\n"),
    .init("negative chunk size", 400, chat + "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n"),
    // Limits.
    .init("header section over 64 KiB", 431,
          chat + "Host: x\r\nX-Big: " + String(repeating: "a", count: 70_000) + "\r\n\r\n"),
    .init("more than 200 header fields", 431,
          chat + "Host: x\r\n" + (0..<210).map { "X-\($0): v\r\n" }.joined() + "\r\n"),
    .init("body over max_body_bytes", 413, chat + "Host: x\r\nContent-Length: 2000000\r\n\r\n"),
]

@Suite("Hostile requests", .serialized)
struct HostileRequestTests {
    @Test("each malformed request: its status, an OpenAI error, a closed connection, nothing upstream")
    func malformedRequests() throws {
        #expect(hostileCases.count >= 45)
        let fixture = try GatewayFixture.start(server: "  max_body_bytes: 1000000")
        defer { fixture.stop() }
        for hostile in hostileCases {
            let client = try fixture.client(timeout: 5)
            try client.write(hostile.bytes)
            let response: HTTPResponse
            do {
                response = try client.readResponse()
            } catch {
                Issue.record("\(hostile.name): no response: \(error)")
                continue
            }
            #expect(response.status == hostile.status, "\(hostile.name)")
            #expect(errorCode(response) != nil, "\(hostile.name): not an OpenAI-style error: \(response.text)")
            #expect(response.header("connection") == "close", "\(hostile.name)")
            let fate = client.nextOutcome()
            #expect(fate == .closed || fate == .reset, "\(hostile.name): connection not closed (\(fate))")
        }
        let stats = try fixture.mockStats()
        // Only the stats request itself reached the mock.
        #expect(stats["requests"] as? Int == 1, "gwmock saw requests: \(stats)")
    }

    @Test("the same bytes trickled one at a time get the same verdicts")
    func trickledRequests() throws {
        let fixture = try GatewayFixture.start(server: "  max_body_bytes: 1000000")
        defer { fixture.stop() }
        for hostile in hostileCases where hostile.bytes.utf8.count < 400 {
            let client = try fixture.client(timeout: 5)
            var response: HTTPResponse?
            for byte in Array(hostile.bytes.utf8) {
                // The gateway may answer and close before the last byte: stop writing then.
                if (try? client.write([byte])) == nil { break }
            }
            response = try? client.readResponse()
            #expect(response?.status == hostile.status, "\(hostile.name)")
        }
    }

    @Test("valid but unusual requests are accepted")
    func unusualButValid() throws {
        let fixture = try GatewayFixture.start()
        defer { fixture.stop() }
        let cases: [String] = [
            "\r\nGET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /v1/models HTTP/1.0\r\n\r\n",
            "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Spaces:    padded   \r\n\r\n",
            "GET /v1/models?limit=5 HTTP/1.1\r\nhOsT: x\r\n\r\n",
            chat + "Host: x\r\nContent-Length: \(body.utf8.count)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)",
            chat + "Host: x\r\nTransfer-Encoding: chunked\r\n\r\n\(String(body.utf8.count, radix: 16));ext=1\r\n\(body)\r\n0\r\nX-Trailer: t\r\n\r\n",
        ]
        for request in cases {
            let client = try fixture.client()
            let response = try client.send(request)
            #expect(response.status == 200, "\(request.debugDescription)")
        }
    }
}

import Testing
@testable import GatewayBench

/// A response head and the fields the parser should read from it.
struct ExpectedResponseHead: Sendable, CustomTestStringConvertible {
    let text: String
    var status = 200
    var contentLength: Int64 = -1
    var chunked = false
    var keepAlive = true
    var mockReceivedNs: UInt64 = 0
    var testDescription: String { text.split(separator: "\r\n").dropFirst().joined(separator: " | ") }
}

@Suite struct ResponseHeadTests {
    static let valid: [ExpectedResponseHead] = [
        ExpectedResponseHead(text: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\n", contentLength: 5),
        ExpectedResponseHead(text: "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 543\r\nx-mock-received-ns: 1234567890123\r\n\r\n",
                 contentLength: 543, mockReceivedNs: 1_234_567_890_123),
        ExpectedResponseHead(text: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunked: true),
        ExpectedResponseHead(text: "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n", chunked: true),
        ExpectedResponseHead(text: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", keepAlive: false),
        ExpectedResponseHead(text: "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\n", contentLength: 1, keepAlive: false),
        ExpectedResponseHead(text: "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n"),
        ExpectedResponseHead(text: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", contentLength: 0, keepAlive: false),
        ExpectedResponseHead(text: "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\n", contentLength: 3),
        ExpectedResponseHead(text: "HTTP/1.1 100 Continue\r\n\r\n", status: 100),
        ExpectedResponseHead(text: "HTTP/1.1 204\r\n\r\n", status: 204),
        ExpectedResponseHead(text: "HTTP/1.1 404 \r\nContent-Length:9\t\r\n\r\n", status: 404, contentLength: 9),
        ExpectedResponseHead(text: "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n", status: 500, contentLength: 2),
        ExpectedResponseHead(text: "HTTP/1.1 200 OK\r\nX-Mock-Received-NS: 42\r\n\r\n", mockReceivedNs: 42),
    ]

    static let malformedHeads = [
        "HTTP/2 200 OK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "\r\n\r\n",
        "HTTP/1.1200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: a\nX-B: b\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
    ]

    private static func parse(_ bytes: [UInt8], upTo count: Int, into head: inout ResponseHead) -> ResponseHead.Outcome {
        bytes.withUnsafeBytes { head.parse($0.baseAddress!, count) }
    }

    private static func check(_ head: ResponseHead, _ expected: ExpectedResponseHead) {
        #expect(head.status == expected.status)
        #expect(head.contentLength == expected.contentLength)
        #expect(head.chunked == expected.chunked)
        #expect(head.keepAlive == expected.keepAlive)
        #expect(head.mockReceivedNs == expected.mockReceivedNs)
        #expect(head.headLength == expected.text.utf8.count)
    }

    @Test("valid heads, whole and followed by body bytes", arguments: valid)
    func whole(_ expected: ExpectedResponseHead) {
        let bytes = Array((expected.text + "body").utf8)
        var head = ResponseHead()
        #expect(ResponseHeadTests.parse(bytes, upTo: bytes.count, into: &head) == .complete)
        ResponseHeadTests.check(head, expected)
    }

    @Test("valid heads, byte by byte", arguments: valid)
    func pieces(_ expected: ExpectedResponseHead) {
        let bytes = Array(expected.text.utf8)
        var head = ResponseHead()
        for count in 1..<bytes.count {
            #expect(ResponseHeadTests.parse(bytes, upTo: count, into: &head) == .incomplete)
        }
        #expect(ResponseHeadTests.parse(bytes, upTo: bytes.count, into: &head) == .complete)
        ResponseHeadTests.check(head, expected)
    }

    @Test("malformed heads fail", arguments: malformedHeads)
    func malformedFails(_ text: String) {
        let bytes = Array(text.utf8)
        var head = ResponseHead()
        #expect(ResponseHeadTests.parse(bytes, upTo: bytes.count, into: &head) == .failed)
    }

    @Test func aHeadOver64KiBFails() {
        let bytes = Array(("HTTP/1.1 200 OK\r\nX-Big: " + String(repeating: "z", count: 70_000)).utf8)
        var head = ResponseHead()
        #expect(ResponseHeadTests.parse(bytes, upTo: bytes.count, into: &head) == .failed)
    }

    @Test func resetForgetsTheLastHead() {
        var head = ResponseHead()
        let first = Array("HTTP/1.0 503 Busy\r\nContent-Length: 7\r\nx-mock-received-ns: 9\r\n\r\n".utf8)
        #expect(ResponseHeadTests.parse(first, upTo: first.count, into: &head) == .complete)
        head.reset()
        let second = Array("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)
        #expect(ResponseHeadTests.parse(second, upTo: second.count, into: &head) == .complete)
        ResponseHeadTests.check(head, ExpectedResponseHead(text: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunked: true))
    }
}

// HTTP2Session in memory: a client session and a server session joined by byte copies, no sockets. What goes
// between them are real HTTP/2 frames, so flow control, concurrency limits and the rapid-reset guard are nghttp2's own.
import GatewayIO
import Testing

@testable import GatewayHTTP

/// One end of an in-memory connection, recording what its session reports.
final class H2Peer: HTTP2SessionDelegate {
    struct Stream {
        var id: Int32 = 0
        var headers: [(String, String)] = []
        var body: [UInt8] = []
        var headersDone = false
        var ended = false
        var closed = false
        var errorCode: UInt32 = 0
        var oversized = false
        var dataFrames = 0
        var queuedUntil: UInt64 = 0

        func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
    }

    let buffers = Buffers()
    var session: HTTP2Session!
    var streams: [Int: Stream] = [:]
    private var nextTag = 1
    /// Consume body bytes as they arrive; otherwise they wait in `unconsumed` until `consumeAll()`.
    var autoConsume = true
    var unconsumed: [(Int32, Int)] = []
    /// Server: streams whose request ended, not answered yet.
    var requestsEnded: [Int] = []
    var open = 0
    var peakOpen = 0
    var opened = 0
    var closed = 0
    var goAway: (lastStreamID: Int32, errorCode: UInt32)?
    var bodies: [Int: HTTP2Body] = [:]
    let headerBlock = HTTP2HeaderBlock()

    init(_ role: HTTP2Session.Role, settings: HTTP2Session.Settings = .init()) {
        session = HTTP2Session(role: role, settings: settings, buffers: buffers, delegate: self)
    }

    func http2StreamOpened(_ stream: Int32) -> Int {
        let tag = nextTag
        nextTag += 1
        streams[tag] = Stream(id: stream)
        opened += 1
        open += 1
        peakOpen = max(peakOpen, open)
        return tag
    }

    func http2HeadersComplete(_ stream: Int32, tag: Int, fields: HTTP2HeaderList, endStream: Bool, oversized: Bool) {
        for index in 0..<fields.count {
            streams[tag]?.headers.append((String(decoding: fields.name(index), as: UTF8.self),
                                          String(decoding: fields.value(index), as: UTF8.self)))
        }
        streams[tag]?.headersDone = true
        streams[tag]?.oversized = oversized
        if endStream { ended(tag) }
    }

    func http2Data(_ stream: Int32, tag: Int, _ bytes: UnsafeRawBufferPointer) {
        streams[tag]?.body.append(contentsOf: bytes)
        streams[tag]?.dataFrames += 1
        if autoConsume { session.consume(stream, bytes.count) } else { unconsumed.append((stream, bytes.count)) }
    }

    func http2DataComplete(_ stream: Int32, tag: Int) { ended(tag) }

    private func ended(_ tag: Int) {
        streams[tag]?.ended = true
        if session.role == .server { requestsEnded.append(tag) }
    }

    func http2StreamClosed(_ stream: Int32, tag: Int, errorCode: UInt32) {
        streams[tag]?.closed = true
        streams[tag]?.errorCode = errorCode
        if let body = bodies.removeValue(forKey: tag) { session.release(body) }
        closed += 1
        open -= 1
    }

    func http2HeadersQueued(_ stream: Int32, tag: Int, until offset: UInt64) {
        streams[tag]?.queuedUntil = offset
    }

    func http2GoAway(lastStreamID: Int32, errorCode: UInt32) {
        goAway = (lastStreamID, errorCode)
    }

    func consumeAll() {
        for (stream, count) in unconsumed { session.consume(stream, count) }
        unconsumed.removeAll()
    }

    /// Client: a request; the body, if any, is external memory the caller keeps alive.
    @discardableResult
    func request(_ method: StaticString, _ path: StaticString, body: UnsafeRawBufferPointer? = nil,
                 extra: [(String, String)] = []) -> Int {
        let tag = nextTag
        nextTag += 1
        headerBlock.removeAll()
        headerBlock.add(":method", method)
        headerBlock.add(":scheme", "http")
        headerBlock.add(":authority", "127.0.0.1")
        headerBlock.add(":path", path)
        // Copies that live until nghttp2 has copied them in submitRequest.
        var copies: [UnsafeMutableRawBufferPointer] = []
        defer { for copy in copies { copy.deallocate() } }
        func bytes(_ text: String) -> UnsafeRawBufferPointer {
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(text.utf8.count, 1), alignment: 1)
            copy.copyBytes(from: text.utf8)
            copies.append(copy)
            return UnsafeRawBufferPointer(rebasing: copy[0..<text.utf8.count])
        }
        for (name, value) in extra { headerBlock.add(name: bytes(name), value: bytes(value), stable: false) }
        var provider: HTTP2Body?
        if let body {
            let source = HTTP2Body()
            source.setExternal(body.baseAddress!, count: body.count)
            bodies[tag] = source
            provider = source
        }
        let stream = session.submitRequest(headers: headerBlock, body: provider, tag: tag)
        precondition(stream > 0)
        streams[tag] = Stream(id: stream)
        open += 1
        opened += 1
        peakOpen = max(peakOpen, open)
        return tag
    }

    /// Server: answers a stream with `status` and a body of `bytes` (owned by the body object), cut into DATA
    /// frames at `cuts` (offsets).
    func respond(_ tag: Int, status: Int = 200, bytes: [UInt8] = Array("hello".utf8), cuts: [Int] = []) {
        let stream = streams[tag]!.id
        headerBlock.removeAll()
        headerBlock.add(":status", decimal: status)
        headerBlock.add("content-type", "text/plain")
        headerBlock.add("content-length", decimal: bytes.count)
        let body = HTTP2Body()
        bodies[tag] = body
        session.reserve(body, max(bytes.count, 1))
        var offset = 0
        for cut in cuts + [bytes.count] where cut > offset {
            bytes[offset..<cut].withUnsafeBytes { body.buffer.append($0.baseAddress!, $0.count) }
            body.cut()
            offset = cut
        }
        session.end(body)
        #expect(session.submitResponse(stream, headers: headerBlock, body: body))
    }

    func respondToEnded() {
        let tags = requestsEnded
        requestsEnded.removeAll()
        for tag in tags { respond(tag) }
    }

    var outstandingChunks: Int { buffers.heads.outstanding + buffers.small.outstanding + buffers.large.outstanding }
}

enum H2Wire {
    /// Moves everything `from` has to send into `to`, as one byte stream (frames may straddle the iovecs).
    /// - Returns: the bytes moved.
    @discardableResult
    static func move(_ from: H2Peer, _ to: H2Peer) -> Int {
        var moved = 0
        while true {
            #expect(from.session.send() >= 0)
            guard !from.session.outbound.isEmpty else { return moved }
            var bytes: [UInt8] = []
            let (iov, count) = from.session.outbound.vectors
            for i in 0..<Int(count) {
                bytes.append(contentsOf: UnsafeRawBufferPointer(start: iov[i].iov_base, count: iov[i].iov_len))
            }
            from.session.outbound.advance(by: bytes.count)
            moved += bytes.count
            bytes.withUnsafeBytes { #expect(to.session.receive($0.baseAddress!, $0.count)) }
        }
    }

    /// Runs both directions until neither side has anything to send.
    static func settle(_ client: H2Peer, _ server: H2Peer, answer: Bool = false) {
        for _ in 0..<10_000 {
            var moved = move(client, server)
            if answer { server.respondToEnded() }
            moved += move(server, client)
            if moved == 0 { return }
        }
        Issue.record("the sessions never went quiet")
    }
}

@Suite("HTTP/2 session")
struct HTTP2SessionTests {
    @Test func headersAndBodyRoundTrip() {
        let client = H2Peer(.client)
        let server = H2Peer(.server)
        let tag = client.request("GET", "/v1/models", extra: [("x-mock-chunks", "4"), ("user-agent", "test")])
        H2Wire.settle(client, server)
        let request = server.streams[1]!
        #expect(request.header(":method") == "GET")
        #expect(request.header(":path") == "/v1/models")
        #expect(request.header(":authority") == "127.0.0.1")
        #expect(request.header("x-mock-chunks") == "4")
        #expect(Array(request.headers.map(\.0).prefix(4)).allSatisfy { $0.hasPrefix(":") })
        #expect(request.ended && request.body.isEmpty)
        // The client learnt where its HEADERS frame ends in its output.
        #expect(client.streams[tag]!.queuedUntil > 24)
        #expect(client.streams[tag]!.queuedUntil <= client.session.outbound.flushedTotal)

        server.respondToEnded()
        H2Wire.settle(client, server)
        let response = client.streams[tag]!
        #expect(response.header(":status") == "200")
        #expect(response.header("content-type") == "text/plain")
        #expect(response.header("content-length") == "5")
        #expect(String(decoding: response.body, as: UTF8.self) == "hello")
        #expect(response.ended && response.closed && response.errorCode == 0)
        #expect(server.streams[1]!.closed && server.open == 0 && client.open == 0)
        server.session.outbound.releaseIdle()
        client.session.outbound.releaseIdle()
        #expect(server.outstandingChunks == 0)
        #expect(client.outstandingChunks == 0)
    }

    /// 1 MB each way through 16 KiB stream windows. Nothing is consumed automatically: each side stalls at the
    /// window until it consumes, and the transfer completes only because `consume` reopens the window.
    @Test func aMegabyteEachWayThroughSmallWindowsMovesOnlyAsItIsConsumed() {
        var settings = HTTP2Session.Settings()
        settings.initialWindowSize = 16_384
        let client = H2Peer(.client, settings: settings)
        let server = H2Peer(.server, settings: settings)
        client.autoConsume = false
        server.autoConsume = false
        let size = 1 << 20
        let upload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 11) }
        let download = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 17 &+ 5) }

        // SETTINGS first: until the server's arrive, the client may send 65,535 bytes per stream.
        H2Wire.settle(client, server)
        let tag = upload.withUnsafeBytes { body -> Int in
            let tag = client.request("POST", "/v1/chat/completions", body: body)
            H2Wire.settle(client, server)
            // Stalled at the stream window: exactly 16 KiB arrived.
            #expect(server.streams[1]!.body.count == 16_384)
            H2Wire.settle(client, server)
            #expect(server.streams[1]!.body.count == 16_384)
            var rounds = 0
            while !server.streams[1]!.ended && rounds < 1000 {
                server.consumeAll()
                H2Wire.settle(client, server)
                rounds += 1
            }
            #expect(rounds >= 60, "the window opened \(rounds) times for 1 MiB in 16 KiB windows")
            return tag
        }
        #expect(server.streams[1]!.body == upload)

        server.respond(1, bytes: download)
        H2Wire.settle(client, server)
        #expect(client.streams[tag]!.body.count == 16_384)
        var rounds = 0
        while !client.streams[tag]!.ended && rounds < 1000 {
            client.consumeAll()
            H2Wire.settle(client, server)
            rounds += 1
        }
        #expect(rounds >= 60)
        #expect(client.streams[tag]!.body == download)
        #expect(client.streams[tag]!.header(":status") == "200")
        #expect(client.streams[tag]!.closed && server.streams[1]!.closed)
        server.session.outbound.releaseIdle()
        #expect(server.outstandingChunks == 0, "the 1 MiB body went back to the pool once written")
    }

    @Test func twoHundredConcurrentStreamsOnOneConnection() {
        var settings = HTTP2Session.Settings()
        settings.maxConcurrentStreams = 256
        let client = H2Peer(.client)
        let server = H2Peer(.server, settings: settings)
        for _ in 0..<200 { client.request("GET", "/v1/models") }
        H2Wire.settle(client, server)
        #expect(server.open == 200)
        #expect(server.requestsEnded.count == 200)
        server.respondToEnded()
        H2Wire.settle(client, server)
        #expect(client.streams.values.filter { $0.closed && $0.errorCode == 0 && $0.header(":status") == "200" }.count == 200)
        #expect(server.open == 0 && client.open == 0)
    }

    /// With the default SETTINGS_MAX_CONCURRENT_STREAMS of 100, a client that submits 200 requests gets the
    /// second hundred out only as the first close: the server never has more than 100 open.
    @Test func theConcurrencyLimitHoldsRequestsBackUntilStreamsClose() {
        let client = H2Peer(.client)
        let server = H2Peer(.server)
        #expect(server.session.settings.maxConcurrentStreams == 100)
        for _ in 0..<200 { client.request("GET", "/v1/models") }
        H2Wire.settle(client, server)
        #expect(server.open == 100)
        #expect(client.session.peerMaxConcurrentStreams == 100)
        H2Wire.settle(client, server, answer: true)
        #expect(server.peakOpen == 100)
        #expect(server.opened == 200)
        #expect(client.streams.values.filter { $0.closed && $0.errorCode == 0 && $0.body == Array("hello".utf8) }.count == 200)
    }

    /// Rapid reset (CVE-2023-44487): open a stream, reset it, again and again. Past the token bucket the server
    /// sends GOAWAY and finishes, and every stream it opened was also closed.
    @Test func rapidResetEndsTheConnectionWithGoAwayAndLeaksNoStream() {
        var settings = HTTP2Session.Settings()
        settings.resetBurst = 50
        settings.resetRate = 1
        let client = H2Peer(.client)
        let server = H2Peer(.server, settings: settings)
        var loops = 0
        while client.goAway == nil && loops < 1000 {
            let tag = client.request("GET", "/v1/models")
            H2Wire.move(client, server)
            client.session.resetStream(client.streams[tag]!.id, errorCode: HTTP2ErrorCode.cancel)
            H2Wire.settle(client, server)
            loops += 1
        }
        let goAway = client.goAway
        #expect(goAway != nil, "no GOAWAY after \(loops) resets")
        #expect(loops >= 50 && loops <= 60, "GOAWAY after \(loops) resets with a burst of 50")
        #expect(goAway?.errorCode == HTTP2ErrorCode.internalError)
        #expect(server.session.isFinished)
        #expect(server.opened == server.closed && server.open == 0, "opened \(server.opened), closed \(server.closed)")
        server.session.outbound.releaseIdle()
        #expect(server.outstandingChunks == 0)
    }

    @Test func aHeaderListPastTheLimitIsFlaggedAndCut() {
        var settings = HTTP2Session.Settings()
        settings.maxHeaderListSize = 1024
        let client = H2Peer(.client)
        let server = H2Peer(.server, settings: settings)
        client.request("GET", "/v1/models", extra: [("x-small", "1"), ("x-big", String(repeating: "a", count: 2000)), ("x-after", "2")])
        H2Wire.settle(client, server)
        let request = server.streams[1]!
        #expect(request.headersDone && request.oversized)
        #expect(request.header("x-small") == "1")
        #expect(request.header("x-big") == nil && request.header("x-after") == nil)
        client.request("GET", "/v1/models", extra: [("x-small", "1")])
        H2Wire.settle(client, server)
        #expect(server.streams[2]!.headersDone && !server.streams[2]!.oversized)
    }

    /// `cut()` ends a DATA frame: three events, three frames, however much window there is.
    @Test func cutsSendSeparateDataFrames() {
        let client = H2Peer(.client)
        let server = H2Peer(.server)
        let tag = client.request("GET", "/v1/models")
        H2Wire.settle(client, server)
        let text = Array("data: one\n\ndata: two\n\ndata: three\n\n".utf8)
        server.respond(1, bytes: text, cuts: [11, 22])
        H2Wire.settle(client, server)
        #expect(client.streams[tag]!.body == text)
        #expect(client.streams[tag]!.dataFrames == 3)
    }

    /// A body that grows while earlier bytes are still queued by reference: `reserve` moves the unsent bytes and
    /// keeps the old memory for the socket, so what arrives is exactly what was written.
    @Test func aBodyGrowingWhileItsBytesAreQueuedArrivesIntact() {
        let client = H2Peer(.client)
        let server = H2Peer(.server)
        let tag = client.request("GET", "/v1/models")
        H2Wire.settle(client, server)
        let headers = server.headerBlock
        headers.removeAll()
        headers.add(":status", decimal: 200)
        let body = HTTP2Body()
        server.bodies[1] = body
        #expect(server.session.submitResponse(server.streams[1]!.id, headers: headers, body: body))
        var expected: [UInt8] = []
        for round in 0..<40 {
            let piece = [UInt8](repeating: UInt8(round), count: 3000 + round * 97)
            server.session.reserve(body, piece.count)
            piece.withUnsafeBytes { body.buffer.append($0.baseAddress!, $0.count) }
            expected += piece
            server.session.appended(body)
            // Queue it, but let the socket take only part of the output before the next piece is written.
            _ = server.session.send()
            if round % 3 == 0 { H2Wire.move(server, client) }
        }
        server.session.end(body)
        H2Wire.settle(client, server)
        #expect(client.streams[tag]!.body == expected)
        #expect(client.streams[tag]!.ended)
        server.session.outbound.releaseIdle()
        #expect(server.outstandingChunks == 0)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP
import GatewayIO

/// One HTTP/2 connection to a provider (`protocol: h2`, chosen by ALPN over TLS, or `h2c` with prior knowledge)
/// carrying many requests at once, one per stream, never more than the peer's SETTINGS_MAX_CONCURRENT_STREAMS. The
/// pool fills a connection before it opens another (`UpstreamPool`).
///
/// Each stream (`UpstreamH2Stream`) looks to its exchange like an HTTP/1.1 connection: the exchange writes an HTTP/1.1
/// request into `out` and hears the response as a parsed HTTP/1.1 head and body bytes. The stream turns the one into
/// HEADERS and DATA frames and the frames back into the other, so failover, translation and the usage tap work the same
/// over both upstream protocols.
///
/// Flow control: automatic window updates are off, and a stream's DATA is consumed only once its exchange has taken
/// the bytes. A slow client so holds back its own stream at the provider, and only that stream.
///
/// nghttp2's callbacks only record what happened on a stream (`touched`); the exchanges hear about it once
/// `receive` or `send` has returned, so an exchange never re-enters the session from inside it.
final class UpstreamH2Connection: EventHandler, HTTP2SessionDelegate, TimerTarget {
    static let settings: HTTP2Session.Settings = {
        var settings = HTTP2Session.Settings()
        settings.initialWindowSize = 65_535
        // Many streams share the connection window: it must not be what limits them.
        settings.connectionWindowSize = 1 << 24
        settings.maxHeaderListSize = 64 * 1024
        return settings
    }()

    /// The streams the pool may queue on a connection before its SETTINGS arrive, and the most it ever carries.
    static let defaultStreamLimit = 100
    static let maxStreamLimit = 1000

    enum State { case connecting, handshaking, open, closed }

    // Strong: after a reload, a connection with streams in flight keeps its old pool alive until it closes.
    let pool: UpstreamPool
    let loop: EventLoop
    /// The loop's buffer pools, held by a strong `let` of its own: a call through `loop.buffers` (or an unowned
    /// reference) retained and released them around every use; a `let` of this object needs neither.
    let buffers: Buffers
    private(set) var state = State.connecting
    private var dialer = UpstreamDialer()
    private var fd: Int32 { dialer.fd }
    private var tls: TLSStream? { dialer.tls }
    private var registration: Registration { dialer.registration }
    private(set) var session: HTTP2Session?
    private var input = ByteBuffer()
    private var streams: [UpstreamH2Stream?] = []
    private var freeSlots: [Int] = []
    private var spare: [UpstreamH2Stream] = []
    /// Exchanges given to this connection before its session opened: they start once it does.
    private var waiting: [any UpstreamExchange] = []
    /// Slots whose stream changed inside nghttp2: processed once it returns.
    private var touched: [Int] = []
    /// Slots whose exchange waits until its request body has gone into frames.
    private var writers: [Int] = []
    /// Streams in use plus exchanges waiting for the session: what counts against the stream limit.
    private(set) var load = 0
    /// The peer's SETTINGS arrived: streams start only then, since a stream past its limit would be refused.
    private var peerSettingsKnown = false
    private var settingsArrived = false
    /// The peer sent GOAWAY, or the pool retired this connection: no new streams.
    private(set) var goingAway = false
    private(set) var streamsServed = 0
    private var deadline: UInt64 = 0
    private var idleDeadline: UInt64 = 0
    private var wantsWrite = false
    private var inDrive = false
    private var inSession = false
    private var driveScheduled = false
    /// The header block of the request being submitted (nghttp2 copies it at submit time).
    let headers = HTTP2HeaderBlock()
    /// Which request fields HPACK indexes: not the ones whose value changes with every request (`x-request-id`).
    let indexPolicy = HPACKIndexPolicy()
    let requestParser = HTTPHeadParser()
    let responseParser = HTTPHeadParser()

    init(pool: UpstreamPool, loop: EventLoop) {
        self.pool = pool
        self.loop = loop
        self.buffers = loop.buffers
    }

    var isIdle: Bool { load == 0 }

    var responseTimeoutNs: UInt64 { pool.context.config.responseTimeoutNs }

    /// How many streams this connection may carry at once now.
    var streamLimit: Int {
        guard let session, peerSettingsKnown else { return UpstreamH2Connection.defaultStreamLimit }
        return min(Int(session.peerMaxConcurrentStreams), UpstreamH2Connection.maxStreamLimit)
    }

    var hasRoom: Bool { state != .closed && !goingAway && load < streamLimit }

    // MARK: Connecting

    func connect() {
        state = .connecting
        deadline = loop.now + pool.context.config.connectTimeoutNs
        dialed(dialer.start(pool, handler: self))
    }

    /// Takes a request: at once when the peer's SETTINGS are known, else when they arrive.
    func add(_ exchange: any UpstreamExchange) {
        load += 1
        if state == .open && peerSettingsKnown {
            start(exchange)
        } else {
            waiting.append(exchange)
        }
    }

    /// Takes back an exchange that gave up waiting for the session to open. - Returns: whether it was here.
    func cancelWaiting(_ exchange: any UpstreamExchange) -> Bool {
        guard let index = waiting.firstIndex(where: { $0 === exchange }) else { return false }
        waiting.remove(at: index)
        load -= 1
        return true
    }

    private func dialed(_ progress: UpstreamDialer.Progress) {
        switch progress {
        case .waiting:
            if dialer.handshaking { state = .handshaking }
        case .failed(let failure):
            fail(failure)
        case .open:
            if let tls, tls.negotiatedProtocol != .h2 {
                let chosen = tls.negotiatedProtocol.map { "it chose \($0.rawValue)" } ?? "it chose no protocol"
                fail(.tlsFailed("the upstream did not agree to HTTP/2 by ALPN (\(chosen)); use protocol: h1 for it"))
                return
            }
            opened()
        }
    }

    private func opened() {
        state = .open
        loop.setInterest(registration, Interest.read)
        session = HTTP2Session(role: .client, settings: UpstreamH2Connection.settings, buffers: loop.buffers, delegate: self)
        idleDeadline = loop.now + pool.context.config.idleTimeoutNs
        // The waiting requests start when the peer's SETTINGS arrive (`startWaiting`); the connect deadline holds.
        drive()
    }

    /// The peer's limits are known: as many waiting requests start as it allows, the rest go back to the pool.
    private func startWaiting() {
        let room = max(0, streamLimit - (load - waiting.count))
        let list = waiting
        waiting.removeAll()
        for exchange in list.prefix(room) { start(exchange) }
        let rest = list.dropFirst(room)
        load -= rest.count
        for exchange in rest { pool.acquire(for: exchange) }
        pool.roomAvailable(on: self)
    }

    private func start(_ exchange: any UpstreamExchange) {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = streams.count
            streams.append(nil)
        }
        let stream = spare.popLast() ?? UpstreamH2Stream(connection: self)
        streams[slot] = stream
        stream.begin(slot: slot, exchange: exchange, reused: streamsServed > 0)
        exchange.upstreamReady(stream)
    }

    /// The connection is gone before its session opened: every waiting exchange hears `failure`.
    private func fail(_ failure: UpstreamFailure) {
        let list = waiting
        waiting.removeAll()
        load -= list.count
        close()
        for exchange in list { exchange.upstreamFailed(failure) }
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        switch state {
        case .connecting, .handshaking:
            dialed(dialer.advance(pool, events: events))
            return
        case .closed:
            return
        case .open:
            break
        }
        if events & EventBits.writable != 0 && (wantsWrite || tls?.readWantsWrite == true) {
            if wantsWrite { drive() }
            guard state == .open else { return }
            if tls?.readWantsWrite == true { onReadable() }
        }
        if events & (EventBits.readable | EventBits.readHangup | EventBits.error | EventBits.hangup) != 0 {
            onReadable()
        }
    }

    func tick(now: UInt64) {
        switch state {
        case .connecting, .handshaking:
            if now > deadline { fail(.connectTimeout) }
        case .open where !peerSettingsKnown:
            if now > deadline { fail(.connectTimeout) }
        case .open:
            if wantsWrite && now > deadline {
                broken(errno: ETIMEDOUT)
                return
            }
            for stream in streams { stream?.tick(now: now) }
            processTouched()
            if load == 0 && (now > idleDeadline || goingAway) { closeGracefully() }
        case .closed:
            break
        }
    }

    private func onReadable() {
        repeat {
            guard state == .open, let session else { return }
            if !input.isAllocated { buffers.attachSmall(&input) }
            let result: IOResult<Int>
            do {
                if let tls {
                    result = try tls.read(input.writePointer, input.writableBytes)
                    if tls.readWantsWrite { loop.setInterest(registration, Interest.readWrite) }
                } else {
                    result = try Posix.read(fd, input.writePointer, input.writableBytes)
                }
            } catch {
                broken(errno: error.errno)
                return
            }
            guard case .processed(let count) = result else {
                buffers.release(&input)
                return
            }
            if count == 0 {
                broken(errno: 0)
                return
            }
            inSession = true
            let ok = session.receive(input.writePointer, count)
            inSession = false
            buffers.release(&input)
            guard ok else {
                broken(errno: EPROTO)
                return
            }
            processTouched()
            if settingsArrived {
                settingsArrived = false
                startWaiting()
            }
            drive()
        } while tls?.hasBufferedInput == true
    }

    /// Sends what nghttp2 has, writes it, then wakes exchanges waiting for their request body to go out.
    func drive() {
        guard state == .open, let session, !inDrive, !inSession else { return }
        inDrive = true
        while true {
            inSession = true
            let produced = session.send()
            inSession = false
            guard produced >= 0 else {
                inDrive = false
                broken(errno: EPROTO)
                return
            }
            guard flush(session.outbound) else { break }
            if produced == 0 { break }
        }
        inDrive = false
        guard state == .open else { return }
        processTouched()
        if !writers.isEmpty {
            let list = writers
            writers.removeAll(keepingCapacity: true)
            for slot in list {
                // An exchange woken here may have closed the connection (its lists are empty then).
                guard slot < streams.count, let stream = streams[slot] else { continue }
                if stream.hasPendingOutput { writers.append(slot) } else { stream.exchange?.upstreamWritable() }
            }
        }
        if session.isFinished && load == 0 {
            close()
            return
        }
        session.outbound.releaseIdle()
    }

    private func flush(_ outbound: HTTP2Outbound) -> Bool {
        switch outbound.write(to: fd, tls: tls) {
        case .done:
            if wantsWrite {
                wantsWrite = false
                loop.setInterest(registration, Interest.read)
            }
            return true
        case .wouldBlock:
            if !wantsWrite {
                wantsWrite = true
                deadline = loop.now + pool.context.config.responseTimeoutNs
                loop.setInterest(registration, Interest.readWrite)
            }
            return false
        case .failed(let error):
            broken(errno: error.errno)
            return false
        }
    }

    static let driveToken = UInt64.max

    /// Drives on the loop's next turn. Streams call this from inside their exchange's calls, where driving could
    /// finish the very exchange that is calling.
    func scheduleDrive() {
        guard !driveScheduled, state == .open else { return }
        driveScheduled = true
        loop.schedule(at: 0, target: self, token: UpstreamH2Connection.driveToken)
    }

    func timerFired(token: UInt64) {
        driveScheduled = false
        drive()
    }

    // MARK: Streams

    func touch(_ slot: Int) {
        touched.append(slot)
    }

    func waitForWritable(_ slot: Int) {
        if !writers.contains(slot) { writers.append(slot) }
    }

    /// Lets the exchanges hear what happened to their streams, outside nghttp2.
    private func processTouched() {
        while !touched.isEmpty {
            let list = touched
            touched.removeAll(keepingCapacity: true)
            for slot in list where slot >= 0 && slot < streams.count { streams[slot]?.process() }
        }
    }

    /// A stream is done with its exchange and with nghttp2: its slot and object serve the next request.
    func streamFinished(_ stream: UpstreamH2Stream, slot: Int) {
        guard slot >= 0, slot < streams.count, streams[slot] === stream else { return }
        if let session { stream.releaseBody(to: session) }
        streams[slot] = nil
        freeSlots.append(slot)
        spare.append(stream)
        load -= 1
        streamsServed += 1
        if load == 0 { idleDeadline = loop.now + pool.context.config.idleTimeoutNs }
        pool.roomAvailable(on: self)
    }

    /// Opens the stream of `stream` with its request (see `UpstreamH2Stream.sendQueued`).
    func submit(_ stream: UpstreamH2Stream, body: HTTP2Body?) -> Int32 {
        guard let session, state == .open else { return -1 }
        let id = session.submitRequest(headers: headers, body: body, tag: stream.slot + 1)
        if id < 0 { goingAway = true }
        return id
    }

    /// Stops a stream the exchange no longer wants (RST_STREAM CANCEL).
    func reset(_ stream: Int32) {
        guard let session, state == .open, stream > 0 else { return }
        session.resetStream(stream, errorCode: HTTP2ErrorCode.cancel)
        scheduleDrive()
    }

    // MARK: HTTP2SessionDelegate

    private func stream(_ tag: Int) -> UpstreamH2Stream? {
        guard tag > 0, tag <= streams.count else { return nil }
        return streams[tag - 1]
    }

    func http2HeadersComplete(_ id: Int32, tag: Int, fields: HTTP2HeaderList, endStream: Bool, oversized: Bool) {
        guard let stream = stream(tag) else { return }
        for index in 0..<fields.count { stream.header(name: fields.name(index), value: fields.value(index)) }
        stream.headersComplete(endStream: endStream, oversized: oversized)
        touched.append(tag - 1)
    }

    func http2Data(_ id: Int32, tag: Int, _ bytes: UnsafeRawBufferPointer) {
        guard let stream = stream(tag) else {
            session?.consume(id, bytes.count)
            return
        }
        stream.data(bytes)
        touched.append(tag - 1)
    }

    func http2DataComplete(_ id: Int32, tag: Int) {
        guard let stream = stream(tag) else { return }
        stream.remoteEnded()
        touched.append(tag - 1)
    }

    func http2StreamClosed(_ id: Int32, tag: Int, errorCode: UInt32) {
        guard let stream = stream(tag) else { return }
        stream.sessionClosed(errorCode: errorCode)
        touched.append(tag - 1)
    }

    func http2SettingsReceived() {
        // A later SETTINGS may raise the limit: waiting requests may take the room.
        if !peerSettingsKnown { peerSettingsKnown = true }
        settingsArrived = true
    }

    func http2GoAway(lastStreamID: Int32, errorCode: UInt32) {
        // Streams past lastStreamID are closed by nghttp2 as refused (safe to retry); the others finish here.
        // A graceful GOAWAY is routine (providers recycle connections); an error code is worth a line.
        if !goingAway && errorCode != HTTP2ErrorCode.noError {
            Log.warning("upstream \(pool.route.name): the provider sent GOAWAY with error \(errorCode); "
                + "new requests go to a new connection")
        }
        goingAway = true
        pool.connectionGoingAway(self)
    }

    // MARK: Closing

    /// The socket broke: streams without a response head fail (to be retried when nothing arrived yet),
    /// the others are aborted.
    private func broken(errno code: Int32) {
        guard state != .closed else { return }
        let list = streams
        close()
        for stream in list { stream?.connectionBroken(errno: code) }
    }

    /// Idle or retired: GOAWAY, then close.
    func closeGracefully() {
        guard state == .open, let session else {
            if load == 0 { close() }
            return
        }
        session.terminate(errorCode: HTTP2ErrorCode.noError)
        drive()
        close()
    }

    /// Stops new streams; the connection closes once its streams are done (a reload retires the old pool).
    func retire() {
        goingAway = true
        if load == 0 { closeGracefully() }
    }

    func close() {
        guard state != .closed else { return }
        state = .closed
        dialer.close(loop)
        dialer.tls = nil
        buffers.release(&input)
        if let session {
            for stream in streams { stream?.releaseBody(to: session) }
            session.outbound.releaseAll()
        }
        session = nil
        // The streams hold this connection strongly: without them it can go.
        streams.removeAll()
        freeSlots.removeAll()
        spare.removeAll()
        pool.connectionClosed(self)
    }
}

/// One request on an `UpstreamH2Connection`, presented to its exchange as an `UpstreamChannel`.
final class UpstreamH2Stream: UpstreamChannel {
    /// Strong, as a `let`: each use of an unowned reference cost a checked retain and a release. The connection
    /// keeps its streams (in use and spare) and tells every exchange before it goes; `close` empties its lists,
    /// which ends the cycle.
    let connection: UpstreamH2Connection
    /// The connection's loop and buffer pools, held here: each use through the unowned `connection` cost a checked
    /// retain and a release.
    let loop: EventLoop
    let buffers: Buffers
    private(set) var slot = -1
    private(set) var exchange: (any UpstreamExchange)?
    private var streamID: Int32 = 0
    private var reused = false

    var out = OutboundQueue()
    var passRawChunks = true
    var requestBodyComplete = true {
        didSet {
            if requestBodyComplete && !oldValue && streamID > 0, let session = connection.session, !body.ended {
                session.end(body)
                connection.scheduleDrive()
            }
        }
    }

    /// The request body, owned (the exchange's bytes are copied once, with the head, at `sendQueued`).
    private var body = HTTP2Body()
    /// The response head as HTTP/1.1 text, built from the HEADERS fields, and its status.
    private var head = ByteBuffer()
    /// The fields' ranges in `head`, so that the parser adopts the head instead of parsing it again.
    private var headFields: [HeaderField] = []
    private var status = 0
    private var headReady = false
    private var headDelivered = false
    private var hasContentLength = false
    /// Body bytes not yet given to the exchange, and the DATA bytes among them (chunk framing is not DATA).
    private var pending = ByteBuffer()
    private var pendingData = 0
    /// Bytes given to the exchange that it has not taken yet (it answered `upstreamBody` with false).
    private var given = ByteBuffer()
    private var givenData = 0
    private var paused = false
    /// The exchange reads the body with HTTP/1.1 chunked framing (the provider sent no content-length).
    private var chunkedToExchange = false
    private var ended = false
    private var resetSent = false
    private var finalChunkQueued = false
    private var discarding = false
    /// nghttp2 closed the stream; its error code (0: both sides ended).
    private var closedCode: UInt32?
    private var failure: UpstreamFailure?
    private var receivedAny = false
    private var deadline: UInt64 = 0

    init(connection: UpstreamH2Connection) {
        self.connection = connection
        self.loop = connection.loop
        self.buffers = connection.buffers
    }

    deinit {
        out.deallocate()
    }

    var route: ProviderRoute { connection.pool.route }

    var hasPendingOutput: Bool { streamID > 0 && body.readable > 0 }

    func begin(slot: Int, exchange: any UpstreamExchange, reused: Bool) {
        self.slot = slot
        self.exchange = exchange
        self.reused = reused
        streamID = 0
        out.removeAll()
        passRawChunks = true
        requestBodyComplete = true
        status = 0
        headReady = false
        headDelivered = false
        hasContentLength = false
        pendingData = 0
        givenData = 0
        paused = false
        chunkedToExchange = false
        ended = false
        finalChunkQueued = false
        discarding = false
        resetSent = false
        closedCode = nil
        failure = nil
        receivedAny = false
        headFields.removeAll(keepingCapacity: true)
        deadline = loop.now + connection.responseTimeoutNs
    }

    // MARK: The request (called by the exchange)

    /// Turns the HTTP/1.1 request in `out` into HEADERS and the body it carries into DATA.
    func sendQueued(layout: RequestHeadLayout?) {
        let connection = self.connection
        guard streamID == 0, exchange != nil, let session = connection.session else { return }
        let total = out.pendingBytes
        session.reserve(body, total)
        out.withSegments { vectors, count in
            for i in 0..<count { body.buffer.append(vectors[i].iov_base!, vectors[i].iov_len) }
        }
        out.removeAll()
        let start = body.buffer.readPointer
        let headLength: Int
        if let layout {
            buildHeaders(layout, start)
            headLength = layout.headLength
            #if DEBUG
            checkLayout(layout, start)
            #endif
        } else {
            let parser = connection.requestParser
            parser.reset()
            guard case .complete = parser.parseRequest(start, body.buffer.readableBytes) else {
                failSoon(.badResponse("the request could not be framed for HTTP/2"))
                return
            }
            buildHeaders(parser, start)
            headLength = parser.headLength
        }
        body.buffer.readerIndex += headLength
        let hasBody = body.buffer.readableBytes > 0 || !requestBodyComplete
        if requestBodyComplete { session.end(body) }
        let id = connection.submit(self, body: hasBody ? body : nil)
        guard id > 0 else {
            // No stream could be opened here (the peer is going away): another connection may take it.
            failSoon(.failed(errno: 0, retryable: true))
            return
        }
        streamID = id
        deadline = loop.now + connection.responseTimeoutNs
        if hasPendingOutput { connection.waitForWritable(slot) }
        connection.scheduleDrive()
    }

    /// The request's pseudo-headers and fields: names lowercased, hop-by-hop fields and Host dropped (Host is
    /// `:authority`).
    private func buildHeaders(_ parser: HTTPHeadParser, _ start: UnsafeMutableRawPointer) {
        let connection = self.connection
        let headers = connection.headers
        headers.removeAll()
        func add(_ name: StaticString, _ range: ByteRange) {
            headers.add(name: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount),
                        value: parser.bytes(range), stable: false)
        }
        add(":method", parser.methodRange)
        headers.add(":scheme", connection.pool.route.tls == nil ? "http" : "https")
        if let host = parser.value(of: .host) { add(":authority", host) }
        add(":path", parser.target)
        for i in 0..<parser.fieldCount {
            let field = parser.fields[i]
            switch field.kind {
            case .host, .connection, .keepAlive, .transferEncoding, .upgrade, .proxyPrefixed, .te:
                continue
            default:
                if field.nominatedByConnection { continue }
            }
            HTTPBytes.lowercaseInPlace(start + Int(field.name.start), Int(field.name.count))
            let name = parser.bytes(field.name), value = parser.bytes(field.value)
            headers.add(name: name, value: value, stable: false,
                        indexed: connection.indexPolicy.shouldIndex(name: name, value: value))
        }
    }

    /// The request's pseudo-headers and fields from where the exchange said it put them: the fields are the ones it
    /// forwards (no Host, no hop-by-hop field); their names are lowercased in place.
    private func buildHeaders(_ layout: RequestHeadLayout, _ start: UnsafeMutableRawPointer) {
        let connection = self.connection
        let headers = connection.headers
        headers.removeAll()
        func bytes(_ range: ByteRange) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(start: start + Int(range.start), count: Int(range.count))
        }
        func add(_ name: StaticString, _ range: ByteRange) {
            headers.add(name: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount),
                        value: bytes(range), stable: false)
        }
        add(":method", layout.method)
        headers.add(":scheme", connection.pool.route.tls == nil ? "http" : "https")
        add(":authority", layout.authority)
        add(":path", layout.target)
        let policy = connection.indexPolicy
        for field in layout.fields {
            HTTPBytes.lowercaseInPlace(start + Int(field.name.start), Int(field.name.count))
            let name = bytes(field.name), value = bytes(field.value)
            headers.add(name: name, value: value, stable: false, indexed: policy.shouldIndex(name: name, value: value))
        }
    }

    #if DEBUG
    /// Debug builds (the test suite) check every layout against the parsed head: the same fields, in order.
    private func checkLayout(_ layout: RequestHeadLayout, _ start: UnsafeMutableRawPointer) {
        let fromLayout = connection.headers.snapshot()
        let parser = HTTPHeadParser()
        guard case .complete = parser.parseRequest(start, body.buffer.readableBytes) else {
            preconditionFailure("a request head with a layout does not parse")
        }
        precondition(parser.headLength == layout.headLength, "layout head length \(layout.headLength), parsed \(parser.headLength)")
        // The index policy learns from these fields a second time: the same values, so the same answers.
        buildHeaders(parser, start)
        let fromParse = connection.headers.snapshot()
        precondition(fromLayout.map { [$0.0, $0.1] } == fromParse.map { [$0.0, $0.1] },
                     "layout fields \(fromLayout.map { String(decoding: $0.0, as: UTF8.self) + ": " + String(decoding: $0.1, as: UTF8.self) }) "
                     + "differ from the parsed head's \(fromParse.map { String(decoding: $0.0, as: UTF8.self) + ": " + String(decoding: $0.1, as: UTF8.self) })")
        // Back to the fields as submitted (the parse path wrote over the block).
        buildHeaders(layout, start)
    }
    #endif

    /// More request body (a body streaming in from the client).
    func sendMore(_ bytes: UnsafeRawPointer, _ count: Int) {
        guard streamID > 0, exchange != nil, let session = connection.session, count > 0 else { return }
        session.reserve(body, count)
        body.buffer.append(bytes, count)
        session.appended(body)
        connection.waitForWritable(slot)
        connection.scheduleDrive()
    }

    /// The exchange took the bytes it was last given: they are consumed (the provider may send more), and delivery
    /// goes on.
    func resume() {
        guard paused, exchange != nil else { return }
        paused = false
        takeGiven()
        deliver()
        finishIfClosed()
        connection.scheduleDrive()
    }

    func discardResponse() {
        exchange = nil
        discarding = true
    }

    func keepResponse(for exchange: any UpstreamExchange) {
        self.exchange = exchange
        discarding = false
    }

    /// The exchange is gone: the stream is reset, and finishes when nghttp2 reports it closed.
    func cancel() {
        exchange = nil
        stop()
    }

    // MARK: The response (called by the connection)

    func header(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        receivedAny = true
        if name.count == 7, HTTPBytes.equalsLowercase(name.baseAddress!, 7, ":status") {
            var code = 0
            for byte in value where byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") { code = code * 10 + Int(byte &- 0x30) }
            status = code
            return
        }
        guard !headDelivered, name.first != UInt8(ascii: ":") else { return }
        if name.count == 14, HTTPBytes.equalsLowercase(name.baseAddress!, 14, "content-length") { hasContentLength = true }
        reserve(&head, name.count + value.count + 4)
        let nameStart = head.readableBytes
        head.append(name.baseAddress!, name.count)
        head.append(": ")
        if value.count > 0 { head.append(value.baseAddress!, value.count) }
        head.append("\r\n")
        headFields.append(HeaderField(name: ByteRange(start: Int32(nameStart), count: Int32(name.count)),
                                      value: ByteRange(start: Int32(nameStart + name.count + 2), count: Int32(value.count))))
    }

    func headersComplete(endStream: Bool, oversized: Bool) {
        if headDelivered || headReady {
            // Trailers: their fields are dropped, their END_STREAM ends the body.
            if endStream { ended = true }
            return
        }
        if oversized {
            failure = .badResponse("the response headers are larger than the limit")
            return
        }
        if status >= 100 && status < 200 {
            // Interim responses (103 Early Hints) are not forwarded.
            head.clear()
            headFields.removeAll(keepingCapacity: true)
            status = 0
            return
        }
        headReady = true
        if endStream { ended = true }
        deadline = loop.now + connection.responseTimeoutNs
    }

    func data(_ bytes: UnsafeRawBufferPointer) {
        receivedAny = true
        deadline = loop.now + connection.responseTimeoutNs
        guard bytes.count > 0 else { return }
        if exchange == nil || !headReady {
            // Nobody reads it (cancelled, or a body before any head): the window reopens at once.
            connection.session?.consume(streamID, bytes.count)
            return
        }
        if passRawChunks && !hasContentLength {
            reserve(&pending, bytes.count + 20)
            pending.append(hex: bytes.count)
            pending.append("\r\n")
            pending.append(bytes.baseAddress!, bytes.count)
            pending.append("\r\n")
        } else {
            reserve(&pending, bytes.count)
            pending.append(bytes.baseAddress!, bytes.count)
        }
        pendingData += bytes.count
    }

    func remoteEnded() {
        ended = true
    }

    func sessionClosed(errorCode: UInt32) {
        closedCode = errorCode
    }

    /// Tells the exchange what nghttp2 reported: the head, body bytes, the end, or a failure.
    func process() {
        guard slot >= 0 else { return }
        if let failure {
            self.failure = nil
            let failed = exchange
            exchange = nil
            stop()
            failed?.upstreamFailed(failure)
            finishIfClosed()
            return
        }
        if exchange == nil {
            if discarding || closedCode == nil { stop() }
            finishIfClosed()
            return
        }
        if !headDelivered {
            if headReady {
                deliverHead()
            } else if let code = closedCode {
                // Reset or refused before any response head. REFUSED_STREAM (or a GOAWAY that left the stream out)
                // means the provider did not act on it: safe to send elsewhere.
                let failed = exchange
                exchange = nil
                failed?.upstreamFailed(.failed(
                    errno: 0, retryable: code == HTTP2ErrorCode.refusedStream || (code == 0 && !receivedAny)))
                finishIfClosed()
                return
            } else {
                return
            }
        }
        guard exchange != nil else {
            finishIfClosed()
            return
        }
        deliver()
        if exchange != nil, let code = closedCode, !(ended && code == 0) {
            abort()
        }
        finishIfClosed()
    }

    private func deliverHead() {
        let connection = self.connection
        headDelivered = true
        // Frame the body for the exchange as HTTP/1.1 would: by content-length, or chunked when the length is unknown.
        var text = ByteBuffer()
        buffers.attach(&text, capacity: head.readableBytes + 96)
        text.append("HTTP/1.1 ")
        text.append(decimal: status)
        text.append(byte: UInt8(ascii: " "))
        text.append(HTTPStatus.reason(status))
        text.append("\r\n")
        // The fields' ranges move by the status line's length; the framing field, when added, is one more.
        let shift = Int32(text.readableBytes)
        for i in headFields.indices {
            headFields[i].name.start += shift
            headFields[i].value.start += shift
        }
        if head.readableBytes > 0 { text.append(head.readPointer, head.readableBytes) }
        var framing = ResponseFraming.none
        func addFraming(_ name: StaticString, _ value: StaticString) {
            let nameStart = Int32(text.readableBytes)
            text.append(UnsafeRawPointer(name.utf8Start), name.utf8CodeUnitCount)
            text.append(": ")
            text.append(UnsafeRawPointer(value.utf8Start), value.utf8CodeUnitCount)
            text.append("\r\n")
            headFields.append(HeaderField(name: ByteRange(start: nameStart, count: Int32(name.utf8CodeUnitCount)),
                                          value: ByteRange(start: nameStart + Int32(name.utf8CodeUnitCount) + 2,
                                                           count: Int32(value.utf8CodeUnitCount))))
        }
        if status == 204 || status == 304 || hasContentLength {
            // 204 and 304 have no body; a content-length is read from the adopted head below.
        } else if ended && pending.readableBytes == 0 {
            addFraming("content-length", "0")
            framing = .length(0)
        } else {
            addFraming("transfer-encoding", "chunked")
            framing = .chunked
        }
        text.append("\r\n")
        buffers.release(&head)
        let parser = connection.responseParser
        parser.reset()
        let outcome = headFields.withUnsafeBufferPointer {
            parser.adoptResponse(text.readPointer, headLength: text.readableBytes, status: status, fields: $0)
        }
        headFields.removeAll(keepingCapacity: true)
        guard case .complete = outcome else {
            buffers.release(&text)
            let failed = exchange
            exchange = nil
            stop()
            failed?.upstreamFailed(.badResponse("the HTTP/2 response head has invalid fields"))
            return
        }
        if hasContentLength && status != 204 && status != 304 { framing = .length(parser.contentLength) }
        chunkedToExchange = framing == .chunked && passRawChunks
        exchange?.upstreamResponseHead(parser, framing: framing)
        buffers.release(&text)
        if exchange == nil && discarding {
            stop()
        }
    }

    /// Gives the exchange what is pending, unless it still holds bytes it has not taken; ends the response once
    /// everything is delivered.
    private func deliver() {
        while let exchange, !paused {
            if ended && chunkedToExchange && !finalChunkQueued {
                reserve(&pending, 5)
                pending.append("0\r\n\r\n")
                finalChunkQueued = true
            }
            if pending.readableBytes > 0 {
                swap(&pending, &given)
                givenData = pendingData
                pendingData = 0
                pending.clear()
                if exchange.upstreamBody(given.readPointer, given.readableBytes) {
                    takeGiven()
                } else {
                    paused = true
                    return
                }
                continue
            }
            if ended {
                self.exchange = nil
                stopIfOpen()
                exchange.upstreamResponseComplete()
            }
            return
        }
    }

    /// The exchange took what it was given: the provider's window reopens by the DATA bytes among them.
    private func takeGiven() {
        if givenData > 0 { connection.session?.consume(streamID, givenData) }
        givenData = 0
        given.clear()
    }

    func tick(now: UInt64) {
        guard exchange != nil, now > deadline, !paused else { return }
        if !headDelivered {
            failure = .responseTimeout
            connection.touch(slot)
        } else {
            abort()
            connection.touch(slot)
        }
    }

    /// The response broke after its head went to the exchange.
    private func abort() {
        let aborted = exchange
        exchange = nil
        stop()
        aborted?.upstreamAborted()
    }

    /// Failed before the stream opened (inside the exchange's `sendQueued`): reported on the next drive.
    private func failSoon(_ failure: UpstreamFailure) {
        self.failure = failure
        connection.touch(slot)
        connection.scheduleDrive()
    }

    /// Resets the stream if nghttp2 still has it open; the stream finishes once it reports it closed.
    private func stop() {
        guard streamID > 0, closedCode == nil else {
            finishIfClosed()
            return
        }
        if !resetSent {
            resetSent = true
            connection.reset(streamID)
        }
    }

    /// The response is complete; the request may still be sending (the provider answered early): stop it.
    private func stopIfOpen() {
        if closedCode == nil && !body.ended && streamID > 0 { stop() }
    }

    private func finishIfClosed() {
        let connection = self.connection
        guard exchange == nil, slot >= 0, streamID == 0 || closedCode != nil else { return }
        buffers.release(&pending)
        buffers.release(&given)
        buffers.release(&head)
        let finished = slot
        // Before telling the connection: it may hand this very object the next request at once.
        slot = -1
        connection.streamFinished(self, slot: finished)
    }

    /// The connection broke under the stream.
    func connectionBroken(errno code: Int32) {
        closedCode = HTTP2ErrorCode.internalError
        guard let exchange else {
            finishIfClosed()
            return
        }
        self.exchange = nil
        if headDelivered {
            exchange.upstreamAborted()
        } else {
            exchange.upstreamFailed(.failed(errno: code, retryable: reused && !receivedAny))
        }
        finishIfClosed()
    }

    func releaseBody(to session: HTTP2Session) {
        if body.buffer.isAllocated || body.streamID != 0 { session.release(body) }
    }

    /// Room for `count` more bytes in a buffer the exchange does not hold.
    private func reserve(_ buffer: inout ByteBuffer, _ count: Int) {
        if !buffer.isAllocated {
            buffers.attach(&buffer, capacity: max(count, Buffers.headSize))
            return
        }
        if buffer.writableBytes >= count { return }
        var bigger = ByteBuffer()
        buffers.attach(&bigger, capacity: max(buffer.readableBytes + count, buffer.capacity * 2))
        bigger.append(buffer.readPointer, buffer.readableBytes)
        buffers.release(&buffer)
        buffer = bigger
    }
}

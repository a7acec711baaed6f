#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP
import GatewayIO

/// One client's HTTP/2 connection: h2c with prior knowledge on a plain listener, or h2 chosen by ALPN on a tls://
/// one. nghttp2 does the framing (`HTTP2Session`); each stream is served by its own `ClientConnection` over an
/// `H2Stream`, which hands it the request as HTTP/1.1 bytes and turns the HTTP/1.1 response it writes back into
/// HEADERS and DATA frames. So a stream gets exactly what an HTTP/1.1 request gets: keys, limits, routing, failover,
/// translation, accounting and the audit record.
///
/// Flow control: automatic window updates are off. Request DATA is consumed (`nghttp2_session_consume`) only when
/// the stream's exchange has read it, and a response body waits in a bounded buffer until nghttp2 sends it; past the
/// bound the exchange stops, and so does its upstream.
final class H2ClientConnection: EventHandler, HTTP2SessionDelegate, TimerTarget {
    static let settings: HTTP2Session.Settings = {
        var settings = HTTP2Session.Settings()
        settings.maxConcurrentStreams = 100
        // Each stream may send 64 KiB ahead of its exchange; the connection as a whole 1 MiB.
        settings.initialWindowSize = 65_535
        settings.connectionWindowSize = 1 << 20
        settings.maxHeaderListSize = 64 * 1024
        return settings
    }()

    /// A response body buffered past this stops its exchange until nghttp2 has sent some of it.
    static let bodyHighWater = 64 * 1024

    /// Strong, as in ClientConnection: no reference counting on use, and no cycle.
    private let context: LoopContext
    let loop: EventLoop
    /// The loop's buffer pools, held by a strong `let` of its own: a call through `loop.buffers` (or an unowned
    /// reference) retained and released them around every use; a `let` of this object needs neither.
    private let buffers: Buffers
    private let fd: Int32
    private let registration: Registration
    private let tls: TLSStream?
    let peer: SocketAddress
    private(set) var session: HTTP2Session!
    private var input: ByteBuffer
    private var streams: [H2Stream?] = []
    private var freeSlots: [Int] = []
    /// Stream objects (each with the exchange it last ran) whose streams closed, kept for the next streams: a
    /// stream then costs no allocation. At most `spareLimit`, so that a connection that once ran many streams at
    /// once does not keep them all.
    private var spareStreams: [H2Stream] = []
    static let spareLimit = 32
    /// Streams whose request head completed during `receive`: started once it returns.
    private var started: [Int] = []
    /// Streams with new request bytes (or a new end) during `receive`.
    private var readable: [Int] = []
    /// Streams whose exchange waits for room in its response buffer.
    private var blocked: [Int] = []
    /// Header fields of the response being submitted.
    let headers = HTTP2HeaderBlock()
    /// Which response fields HPACK indexes: not the ones whose value changes with every response.
    let indexPolicy = HPACKIndexPolicy()
    /// One response head parser for every stream: a head is parsed and converted in one go.
    let responseParser = HTTPHeadParser()
    private var wantsWrite = false
    private var closed = false
    private var draining = false
    private var inDrive = false
    private var driveScheduled = false
    /// Inside nghttp2 (receive or send): its callbacks may submit frames but not drive the session.
    private var inSession = false
    private var activeStreams = 0
    private var idleDeadline: UInt64 = 0
    private var writeDeadline: UInt64 = 0

    /// - Parameter input: the bytes read so far, the preface first; the connection takes the buffer over.
    init(fd: Int32, registration: Registration, tls: TLSStream?, peer: SocketAddress, context: LoopContext, input: ByteBuffer) {
        self.fd = fd
        self.registration = registration
        self.tls = tls
        self.peer = peer
        self.context = context
        self.loop = context.loop
        self.buffers = context.loop.buffers
        self.input = input
    }

    func start() {
        session = HTTP2Session(role: .server, settings: H2ClientConnection.settings, buffers: loop.buffers, delegate: self)
        idleDeadline = loop.now + context.config.idleTimeoutNs
        loop.setInterest(registration, Interest.read)
        receiveInput()
        drive()
        if tls?.hasBufferedInput == true { onReadable() }
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        guard !closed else { return }
        if events & (EventBits.error | EventBits.hangup) != 0 {
            closeNow()
            return
        }
        if events & EventBits.writable != 0 && (wantsWrite || tls?.readWantsWrite == true) {
            if wantsWrite { drive() }
            guard !closed else { return }
            if tls?.readWantsWrite == true { onReadable() }
        }
        if events & (EventBits.readable | EventBits.readHangup) != 0 {
            onReadable()
        }
    }

    func tick(now: UInt64) {
        guard !closed else { return }
        if wantsWrite && now > writeDeadline {
            closeNow()
            return
        }
        for stream in streams { stream?.exchange?.tick(now: now) }
        if activeStreams == 0 && now > idleDeadline && !draining {
            // Idle: say goodbye properly, then close once the GOAWAY is out.
            draining = true
            session.goAwayGracefully()
            drive()
        }
    }

    /// Shutdown: a graceful GOAWAY; the streams in flight finish, then the connection closes.
    func drain() {
        guard !closed, !draining else { return }
        draining = true
        session.goAwayGracefully()
        drive()
    }

    private func onReadable() {
        repeat {
            guard !closed else { return }
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
                closeNow()
                return
            }
            guard case .processed(let count) = result else {
                if input.readableBytes == 0 { buffers.release(&input) }
                return
            }
            if count == 0 {
                // An HTTP/2 client does not half-close and wait: it is gone.
                closeNow()
                return
            }
            input.writerIndex += count
            receiveInput()
            drive()
        } while tls?.hasBufferedInput == true
    }

    /// Feeds the read bytes to nghttp2, then starts and feeds the streams they concerned.
    private func receiveInput() {
        guard !closed else { return }
        if input.readableBytes > 0 {
            inSession = true
            let ok = session.receive(input.readPointer, input.readableBytes)
            inSession = false
            guard ok else {
                closeNow()
                return
            }
        }
        buffers.release(&input)
        if !started.isEmpty {
            let list = started
            started.removeAll(keepingCapacity: true)
            for slot in list { streams[slot]?.startExchange() }
        }
        if !readable.isEmpty {
            let list = readable
            readable.removeAll(keepingCapacity: true)
            for slot in list { streams[slot]?.requestBytesArrived() }
        }
    }

    /// Makes all the progress possible now: frames out, writes, blocked exchanges woken; closes a finished session.
    func drive() {
        guard !closed, !inDrive, !inSession else { return }
        inDrive = true
        defer { inDrive = false }
        while true {
            inSession = true
            let produced = session.send()
            inSession = false
            guard produced >= 0 else {
                closeNow()
                return
            }
            guard flush() else { return }
            // Bodies drained into frames: exchanges waiting for room may write again.
            var woke = false
            if !blocked.isEmpty {
                let list = blocked
                blocked.removeAll(keepingCapacity: true)
                for slot in list {
                    if let stream = streams[slot], stream.hasRoom {
                        stream.exchange?.streamWritable()
                        woke = true
                    } else if streams[slot] != nil {
                        blocked.append(slot)
                    }
                }
            }
            if produced == 0 && !woke { break }
        }
        if session.isFinished {
            closeNow()
            return
        }
        session.outbound.releaseIdle()
    }

    /// Writes what is queued. False when the socket is full (writability is awaited) or the connection closed.
    private func flush() -> Bool {
        switch session.outbound.write(to: fd, tls: tls) {
        case .done:
            if wantsWrite {
                wantsWrite = false
                loop.setInterest(registration, Interest.read)
            }
            return true
        case .wouldBlock:
            awaitWritable()
            return false
        case .failed:
            closeNow()
            return false
        }
    }

    private func awaitWritable() {
        guard !wantsWrite else { return }
        wantsWrite = true
        writeDeadline = loop.now + context.config.idleTimeoutNs
        loop.setInterest(registration, Interest.readWrite)
    }

    static let driveToken = UInt64.max

    /// A stream's exchange reads again (see `H2Stream.readInterestChanged`), or a deferred `drive`.
    func timerFired(token: UInt64) {
        guard !closed else { return }
        if token == H2ClientConnection.driveToken {
            driveScheduled = false
            drive()
            return
        }
        guard Int(token) < streams.count else { return }
        streams[Int(token)]?.exchange?.streamReadable()
    }

    /// Drives the session on the loop's next turn. Exchanges call this, never `drive` itself: they are inside their
    /// own write or read, and `drive` may close a stream and with it the very exchange that is writing.
    func scheduleDrive() {
        guard !driveScheduled, !closed else { return }
        driveScheduled = true
        loop.schedule(at: 0, target: self, token: H2ClientConnection.driveToken)
    }

    // MARK: Streams (called by H2Stream)

    /// The exchange of `slot` waits for room in its response buffer.
    func waitForRoom(_ slot: Int) {
        if !blocked.contains(slot) { blocked.append(slot) }
    }

    /// The exchange of `slot` has closed: the stream, if still open, gets no more from it.
    func exchangeEnded(_ slot: Int) {
        // The stream's slot is freed when nghttp2 reports it closed; the drive sends what the exchange left.
        scheduleDrive()
    }

    // MARK: HTTP2SessionDelegate

    func http2StreamOpened(_ id: Int32) -> Int {
        guard !draining, !closed else { return 0 }
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = streams.count
            streams.append(nil)
        }
        let stream = spareStreams.popLast() ?? H2Stream(connection: self, context: context)
        stream.open(id: id, slot: slot)
        streams[slot] = stream
        activeStreams += 1
        return slot + 1
    }

    private func stream(_ tag: Int) -> H2Stream? {
        guard tag > 0, tag <= streams.count else { return nil }
        return streams[tag - 1]
    }

    func http2HeadersComplete(_ id: Int32, tag: Int, fields: HTTP2HeaderList, endStream: Bool, oversized: Bool) {
        guard let stream = stream(tag) else { return }
        if oversized {
            stream.refuse(status: 431, "the request headers are larger than the limit")
            return
        }
        if stream.exchange == nil && !stream.headComplete {
            stream.headComplete(fields, endStream: endStream)
            started.append(tag - 1)
        } else if endStream {
            // Trailers: their fields are dropped, their END_STREAM ends the body.
            stream.requestEnded()
            readable.append(tag - 1)
        }
    }

    func http2Data(_ id: Int32, tag: Int, _ bytes: UnsafeRawBufferPointer) {
        guard let stream = stream(tag) else {
            session.consume(id, bytes.count)
            return
        }
        stream.data(bytes)
        if stream.exchange != nil && !readable.contains(tag - 1) { readable.append(tag - 1) }
    }

    func http2DataComplete(_ id: Int32, tag: Int) {
        guard let stream = stream(tag) else { return }
        stream.requestEnded()
        if stream.exchange != nil && !readable.contains(tag - 1) { readable.append(tag - 1) }
    }

    func http2StreamClosed(_ id: Int32, tag: Int, errorCode: UInt32) {
        guard let stream = stream(tag) else { return }
        streams[tag - 1] = nil
        freeSlots.append(tag - 1)
        activeStreams -= 1
        if activeStreams == 0 { idleDeadline = loop.now + context.config.idleTimeoutNs }
        stream.closed(errorCode: errorCode)
        if spareStreams.count < H2ClientConnection.spareLimit { spareStreams.append(stream) }
    }

    // MARK: Closing

    private func closeNow() {
        guard !closed else { return }
        closed = true
        let open = streams
        streams.removeAll()
        spareStreams.removeAll()
        for stream in open { stream?.closed(errorCode: HTTP2ErrorCode.cancel) }
        loop.deregisterAndClose(registration)
        buffers.release(&input)
        session?.outbound.releaseAll()
        context.clientClosed()
    }
}

/// One stream of an `H2ClientConnection` and the `ClientConnection` that serves it: the request goes in as HTTP/1.1
/// bytes, and the HTTP/1.1 response that comes out is turned into frames.
///
/// The object serves one stream after another (`open`), and keeps its exchange for the next one once the last
/// has closed: all per-stream state is set in `open`, so nothing carries over.
final class H2Stream: ClientStreamTransport {
    /// Strong, as a `let`: each use of an unowned(unsafe) reference was retained and released around it. The cycle
    /// with the connection's stream lists ends in `closeNow`, which empties them (30,000 h2c connections opened and
    /// closed leave the RSS where 10,000 left it).
    private let connection: H2ClientConnection
    private let context: LoopContext
    /// The loop's buffer pools (a strong `let`: no reference counting on use, see H2ClientConnection.buffers).
    private let buffers: Buffers
    private(set) var id: Int32 = 0
    private(set) var slot = 0
    private(set) var exchange: ClientConnection?
    /// The exchange of an earlier stream, closed, ready to serve the next one.
    private var spareExchange: ClientConnection?

    // The request: the synthesized head, then the body as it arrives.
    private var request = ByteBuffer()
    /// The synthesized head's parts, as offsets from its first byte (`adoptRequestHead`).
    private var headLength = 0
    private var headMethod = ByteRange.empty
    private var headTarget = ByteRange.empty
    private var headFields: [HeaderField] = []
    private(set) var headComplete = false
    /// No content-length from the client: the body is re-framed as chunked.
    private var chunked = false
    private var requestDone = false
    private var exchangeStarted = false
    /// Request bytes handed to the exchange so far, and the DATA payload bytes not yet consumed that they cover.
    private var requestRead = 0
    /// Where the body starts in the request bytes (the synthesized head's length).
    private var bodyStart = 0
    /// Body bytes handed back to nghttp2 with `consume` (content-length bodies).
    private var bodyConsumed = 0
    /// Chunked bodies: where each DATA frame's re-framed bytes end, and its payload, for `consume`.
    private var consumeMarks: [(end: Int, payload: Int)] = []

    // The response.
    private var head = ByteBuffer()
    private var headDone = false
    private var decoder = ChunkedDecoder()
    private var remaining: Int64 = 0
    private var bodyFraming = ResponseFraming.none
    private let body = HTTP2Body()
    private var responseSubmitted = false
    private(set) var responseComplete = false
    private var streamClosed = false

    init(connection: H2ClientConnection, context: LoopContext) {
        self.connection = connection
        self.context = context
        self.buffers = context.loop.buffers
    }

    /// Starts serving stream `id` in `slot`, from a clean state. (`closed` gave the buffers back.)
    func open(id: Int32, slot: Int) {
        precondition(exchange == nil && !request.isAllocated && !head.isAllocated)
        self.id = id
        self.slot = slot
        headComplete = false
        chunked = false
        requestDone = false
        exchangeStarted = false
        requestRead = 0
        bodyStart = 0
        bodyConsumed = 0
        consumeMarks.removeAll(keepingCapacity: true)
        headDone = false
        decoder.reset()
        remaining = 0
        bodyFraming = .none
        responseSubmitted = false
        responseComplete = false
        streamClosed = false
    }

    private var loop: EventLoop { connection.loop }
    private var session: HTTP2Session { connection.session }

    /// Room in the response buffer for the exchange to write more.
    var hasRoom: Bool { body.readable < H2ClientConnection.bodyHighWater }

    // MARK: Request

    /// HTTP/2 field names arrive lowercase (nghttp2 refuses others): compared as they are, length first.
    @inline(__always)
    static func isName(_ name: UnsafeRawBufferPointer, _ text: StaticString) -> Bool {
        name.count == text.utf8CodeUnitCount && memcmp(name.baseAddress!, text.utf8Start, name.count) == 0
    }

    /// The request head arrived: it becomes an HTTP/1.1 head, written in one pass into one reservation.
    func headComplete(_ fields: HTTP2HeaderList, endStream: Bool) {
        let empty = UnsafeRawBufferPointer(start: nil, count: 0)
        let method = fields.method ?? empty
        let path = fields.path ?? empty
        let authority = fields.authority ?? empty
        // Room for everything that can be written: the request line, each field, host, the framing line and the end.
        var size = method.count + path.count + 12 + authority.count + 8 + 32 + 2
        for index in fields.pseudoCount..<fields.count { size += fields.name(index).count + fields.value(index).count + 4 }
        reserveRequest(size)
        // Where each part lands, from the head's first byte: the exchange adopts these ranges instead of parsing.
        let origin = request.readableBytes
        headMethod = ByteRange(start: 0, count: Int32(truncatingIfNeeded: method.count))
        append(method)
        request.append(" ")
        headTarget = ByteRange(start: Int32(truncatingIfNeeded: request.readableBytes - origin), count: Int32(truncatingIfNeeded: path.count))
        append(path)
        request.append(" HTTP/1.1\r\n")
        headFields.removeAll(keepingCapacity: true)
        var hasHost = false
        var hasContentLength = false
        for index in fields.pseudoCount..<fields.count {
            let name = fields.name(index)
            // te (only "trailers" is allowed in HTTP/2) is hop-by-hop: not forwarded.
            if H2Stream.isName(name, "te") { continue }
            if H2Stream.isName(name, "host") { hasHost = true }
            if H2Stream.isName(name, "content-length") { hasContentLength = true }
            appendField(name, fields.value(index), origin)
        }
        if !hasHost && authority.count > 0 {
            appendField(H2Stream.bytes("host"), authority, origin)
        }
        if endStream {
            requestDone = true
            let bodiless = H2Stream.isName(method, "GET") || H2Stream.isName(method, "HEAD")
            if !hasContentLength && !bodiless {
                appendField(H2Stream.bytes("content-length"), H2Stream.bytes("0"), origin)
            }
        } else if !hasContentLength {
            chunked = true
            appendField(H2Stream.bytes("transfer-encoding"), H2Stream.bytes("chunked"), origin)
        }
        request.append("\r\n")
        headLength = request.readableBytes - origin
        headComplete = true
        bodyStart = requestRead + request.readableBytes
    }

    @inline(__always)
    private static func bytes(_ text: StaticString) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
    }

    /// "name: value\r\n" into room that `reserveRequest` made, and its ranges into `headFields`.
    @inline(__always)
    private func appendField(_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer, _ origin: Int) {
        let nameStart = request.readableBytes - origin
        append(name)
        request.append(": ")
        append(value)
        request.append("\r\n")
        headFields.append(HeaderField(
            name: ByteRange(start: Int32(truncatingIfNeeded: nameStart), count: Int32(truncatingIfNeeded: name.count)),
            value: ByteRange(start: Int32(truncatingIfNeeded: nameStart + name.count + 2), count: Int32(truncatingIfNeeded: value.count))))
    }

    /// The exchange's parser takes the head rendered in `headComplete` once all its bytes are at `start`.
    func adoptRequestHead(_ parser: HTTPHeadParser, _ start: UnsafeRawPointer, _ available: Int) -> HTTPHeadParser.Outcome {
        guard headComplete, available >= headLength else { return .incomplete }
        return headFields.withUnsafeBufferPointer {
            parser.adoptRequest(start, headLength: headLength, method: headMethod, target: headTarget, fields: $0)
        }
    }

    /// Appends bytes that `reserveRequest` made room for.
    @inline(__always)
    private func append(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count > 0 { request.append(bytes.baseAddress!, bytes.count) }
    }

    func data(_ bytes: UnsafeRawBufferPointer) {
        // After the end, once the exchange is over (an early answer), or on a refused stream, the bytes have no
        // reader: dropped.
        guard !requestDone, bytes.count > 0, exchange != nil || !exchangeStarted && !responseComplete else {
            session.consume(id, bytes.count)
            return
        }
        if chunked {
            // "<hex size>\r\n": at most 16 digits.
            reserveRequest(18)
            request.append(hex: bytes.count)
            request.append("\r\n")
            appendRequest(bytes)
            appendRequest("\r\n")
        } else {
            appendRequest(bytes)
        }
        if chunked { consumeMarks.append((requestRead + request.readableBytes, bytes.count)) }
    }

    func requestEnded() {
        guard !requestDone else { return }
        requestDone = true
        if chunked { appendRequest("0\r\n\r\n") }
    }

    /// The head is complete: a `ClientConnection` takes the request from here.
    func startExchange() {
        guard exchange == nil, headComplete, !exchangeStarted, !streamClosed else { return }
        context.clientCount += 1
        exchangeStarted = true
        let exchange: ClientConnection
        if let spare = spareExchange {
            spareExchange = nil
            spare.reopen(stream: self)
            exchange = spare
        } else {
            exchange = ClientConnection(stream: self, peer: connection.peer, context: context)
        }
        self.exchange = exchange
        exchange.start()
        exchange.streamReadable()
    }

    func requestBytesArrived() {
        exchange?.streamReadable()
    }

    func readRequest(_ buffer: UnsafeMutableRawPointer, _ count: Int) -> IOResult<Int> {
        let available = request.readableBytes
        guard available > 0, count > 0 else { return .wouldBlock }
        let taken = min(available, count)
        buffer.copyMemory(from: request.readPointer, byteCount: taken)
        request.readerIndex += taken
        requestRead += taken
        if request.readableBytes == 0 { request.clear() }
        // The peer's window reopens for the DATA payload the exchange has now taken.
        var consumed = 0
        if chunked {
            while let first = consumeMarks.first, first.end <= requestRead {
                consumed += first.payload
                consumeMarks.removeFirst()
            }
        } else if requestRead > bodyStart {
            consumed = requestRead - bodyStart - bodyConsumed
            bodyConsumed += consumed
        }
        if consumed > 0 {
            session.consume(id, consumed)
            connection.scheduleDrive()
        }
        return .processed(taken)
    }

    /// The exchange reads again after a pause: the bytes already here raise no event of their own, so a timer due
    /// now delivers them on the loop's next turn.
    func readInterestChanged(_ wantsRead: Bool) {
        guard wantsRead, request.readableBytes > 0, !streamClosed else { return }
        loop.schedule(at: 0, target: connection, token: UInt64(slot))
    }

    private func appendRequest(_ text: StaticString) {
        appendRequest(H2Stream.bytes(text))
    }

    private func appendRequest(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserveRequest(bytes.count)
        request.append(bytes.baseAddress!, bytes.count)
    }

    /// Room for `count` more request bytes: a pool chunk, grown, then the heap.
    private func reserveRequest(_ count: Int) {
        if !request.isAllocated { buffers.attachSmall(&request) }
        if request.writableBytes < count {
            request.compact()
            while request.writableBytes < count {
                if request.capacity < Buffers.largeSize {
                    buffers.grow(&request)
                } else {
                    var bigger = ByteBuffer()
                    buffers.attachHeap(&bigger, capacity: max(request.capacity * 2, request.readableBytes + count))
                    bigger.append(request.readPointer, request.readableBytes)
                    buffers.release(&request)
                    request = bigger
                }
            }
        }
    }

    // MARK: Response

    func writeResponse(_ out: inout OutboundQueue) -> OutboundQueue.FlushResult {
        if streamClosed || responseComplete {
            // Nobody to send to (reset), or bytes past the end: dropped.
            out.removeAll()
            return .done
        }
        while !out.isEmpty {
            let taken = out.withSegments { iov, count -> Int in
                guard count > 0 else { return 0 }
                let segment = UnsafeRawBufferPointer(start: iov[0].iov_base, count: iov[0].iov_len)
                return headDone ? bodyBytes(segment) : headBytes(segment)
            }
            if taken < 0 {
                out.removeAll()
                return .failed(IOError(errno: EPROTO, function: "h2 response"))
            }
            if taken == 0 {
                connection.waitForRoom(slot)
                connection.scheduleDrive()
                return .wouldBlock
            }
            out.consume(taken)
        }
        connection.scheduleDrive()
        return .done
    }

    /// A proxied response's head, given as fields (see `ProxiedResponseHead`): submitted as HEADERS at once.
    func writeResponseHead(_ response: ProxiedResponseHead, upstream parser: HTTPHeadParser) -> Bool {
        // A head already begun as bytes, or after a head: the bytes path keeps its own order.
        guard !headDone, !head.isAllocated || head.readableBytes == 0 else { return false }
        if streamClosed || responseComplete { return true }  // nobody to send to: dropped, as its bytes would be
        let block = connection.headers
        block.removeAll()
        block.add(":status", decimal: parser.status)
        // Room is kept for the gateway's own fields.
        let upstreamRoom = HTTP2HeaderBlock.capacity - 8
        for index in 0..<parser.fieldCount where block.count < upstreamRoom {
            let field = parser.fields[index]
            guard ClientConnection.forwardsResponseField(field) else { continue }
            addField(parser, field, block)
        }
        if response.addRetryAfter { block.add("retry-after", "1") }
        if let limits = response.rateLimits {
            if let limit = limits.limitRequests, let remaining = limits.remainingRequests {
                block.add("x-ratelimit-limit-requests", decimal: limit)
                block.add("x-ratelimit-remaining-requests", decimal: remaining, indexed: false)
            }
            if let limit = limits.limitTokens, let remaining = limits.remainingTokens {
                block.add("x-ratelimit-limit-tokens", decimal: limit)
                block.add("x-ratelimit-remaining-tokens", decimal: remaining, indexed: false)
            }
        }
        // A fresh id with every response: never worth a place in the HPACK table.
        block.add("x-request-id", value: response.requestID, indexed: false)
        let status = parser.status
        let framing = response.framing
        let attempts = response.attempts
        // The label's bytes stay valid until nghttp2 has copied them, in startResponse (the caller holds them).
        if let label = response.deploymentLabel { block.add("x-gateway-deployment", value: label) }
        block.add("x-gateway-attempts", decimal: attempts)
        startResponse(status: status, framing: framing, block)
        headDone = true
        return true
    }

    /// An upstream field into the header block, its name folded to lowercase in place (HTTP/2 names are lowercase;
    /// the head is not read again).
    private func addField(_ parser: HTTPHeadParser, _ field: HeaderField, _ block: HTTP2HeaderBlock) {
        HTTPBytes.lowercaseInPlace(UnsafeMutableRawPointer(mutating: parser.base) + Int(field.name.start), Int(field.name.count))
        let name = parser.bytes(field.name), value = parser.bytes(field.value)
        block.add(name: name, value: value, stable: false, indexed: connection.indexPolicy.shouldIndex(name: name, value: value))
    }

    /// Submits the head in `block` with the body framing that follows it.
    private func startResponse(status: Int, framing: ResponseFraming, _ block: HTTP2HeaderBlock) {
        switch framing {
        case _ where status == 204 || status == 304, .none, .length(0):
            bodyFraming = .none
            responseComplete = true
            responseSubmitted = session.submitResponse(id, headers: block, body: nil)
            return
        case .chunked:
            decoder.reset()
        case .length(let length):
            remaining = length
        case .untilClose:
            break
        }
        bodyFraming = framing
        responseSubmitted = session.submitResponse(id, headers: block, body: body)
    }

    /// Response head bytes: gathered until the head is complete, then submitted as HEADERS. Returns the bytes taken,
    /// or -1 when the exchange wrote something that is not an HTTP/1.1 response.
    private func headBytes(_ segment: UnsafeRawBufferPointer) -> Int {
        if !head.isAllocated { buffers.attach(&head, capacity: Buffers.headSize) }
        let before = head.readableBytes
        let room = HTTPHeadParser.maxHeadBytes - before
        guard room > 0 else { return -1 }
        let copy = min(segment.count, room)
        if head.writableBytes < copy {
            var bigger = ByteBuffer()
            buffers.attachHeap(&bigger, capacity: before + copy)
            bigger.append(head.readPointer, before)
            buffers.release(&head)
            head = bigger
        }
        head.append(segment.baseAddress!, copy)
        let parser = connection.responseParser
        parser.reset()
        switch parser.parseResponse(head.readPointer, head.readableBytes) {
        case .incomplete:
            return copy
        case .failed:
            return -1
        case .complete:
            let headLength = parser.headLength
            if parser.status < 200 {
                // An interim response (100 Continue): not forwarded.
                head.clear()
                return headLength - before
            }
            submitHead(parser)
            head.clear()
            buffers.release(&head)
            headDone = true
            return headLength - before
        }
    }

    /// A head that came as HTTP/1.1 bytes (a response the gateway wrote itself), parsed, submitted.
    private func submitHead(_ parser: HTTPHeadParser) {
        let block = connection.headers
        block.removeAll()
        block.add(":status", decimal: parser.status)
        for index in 0..<parser.fieldCount where block.count < HTTP2HeaderBlock.capacity {
            let field = parser.fields[index]
            switch field.kind {
            case .connection, .keepAlive, .transferEncoding, .upgrade, .te, .proxyPrefixed:
                continue  // hop-by-hop: none of these exist in HTTP/2
            default:
                if field.nominatedByConnection { continue }
            }
            addField(parser, field, block)
        }
        let framing: ResponseFraming
        if parser.chunked {
            framing = .chunked
        } else if parser.contentLength >= 0 {
            framing = .length(parser.contentLength)
        } else {
            framing = .untilClose
        }
        startResponse(status: parser.status, framing: framing, block)
    }

    /// Response body bytes into the stream's buffer, unframed. Returns the bytes taken (0: no room now).
    private func bodyBytes(_ segment: UnsafeRawBufferPointer) -> Int {
        guard hasRoom else { return 0 }
        let room = H2ClientConnection.bodyHighWater - body.readable
        var take = min(segment.count, max(room, 0))
        guard take > 0 else { return 0 }
        switch bodyFraming {
        case .length:
            take = Int(min(Int64(take), remaining))
            append(segment.baseAddress!, take)
            remaining -= Int64(take)
            if remaining == 0 { finishBody() }
            return take == 0 ? segment.count : take
        case .chunked:
            session.reserve(body, take)
            var written = 0
            let feed = decoder.feed(segment.baseAddress!, take) { data, count in
                self.body.buffer.append(data, count)
                written += count
            }
            if feed.error != nil { return -1 }
            if written > 0 { session.appended(body) }
            if feed.done { finishBody() }
            return feed.consumed
        case .untilClose:
            append(segment.baseAddress!, take)
            return take
        case .none:
            return segment.count
        }
    }

    private func append(_ bytes: UnsafeRawPointer, _ count: Int) {
        guard count > 0 else { return }
        session.reserve(body, count)
        body.buffer.append(bytes, count)
        body.cut()
        session.appended(body)
    }

    private func finishBody() {
        responseComplete = true
        session.end(body)
    }

    func exchangeClosed() {
        if let exchange {
            // Closed by itself (its response is out, or it failed): kept for the next stream.
            spareExchange = exchange
            self.exchange = nil
        }
        if !streamClosed {
            if bodyFraming == .untilClose && headDone && !responseComplete {
                finishBody()
            }
            if !responseComplete {
                // The exchange ended before its response did (the upstream broke mid-body, or it never answered).
                session.resetStream(id, errorCode: HTTP2ErrorCode.internalError)
            }
            // Answered before the request ended (an early error): the rest of the body is consumed and dropped as
            // it comes (see `data`). A RST_STREAM here could overtake the response's own DATA frames.
        }
        connection.exchangeEnded(slot)
    }

    /// The request is refused before any exchange: an error answered by the connection itself.
    func refuse(status: Int, _ message: StaticString) {
        let block = connection.headers
        block.removeAll()
        block.add(":status", decimal: status)
        responseComplete = true
        session.submitResponse(id, headers: block, body: nil)
    }

    /// nghttp2 is done with the stream: ended both ways, or reset. An exchange still running is abandoned.
    func closed(errorCode: UInt32) {
        streamClosed = true
        if let exchange {
            self.exchange = nil
            exchange.streamReset()
            spareExchange = exchange
        }
        buffers.release(&request)
        buffers.release(&head)
        session.release(body)
    }
}

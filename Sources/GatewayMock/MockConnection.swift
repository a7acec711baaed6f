#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP
import GatewayIO

/// One client connection of gwmock. It parses requests in place, reads the few body fields it needs, and
/// answers from static templates written into a pooled buffer, one `send` for everything that is ready.
///
/// Pipelined requests are answered in order: the responses of requests that need no delay are batched
/// into one write; a delayed or streamed request holds the ones behind it until it is done.
///
/// Memory: the read and write buffers are pool chunks, taken while a request is active and given back when
/// the connection is idle. A body that fits in a large chunk (80 KiB) is scanned where it lies; a longer
/// one is counted as it passes and only its first 64 KiB are kept for the `model` and `stream` lookup.
/// Nothing is allocated per request.
///
/// A connection whose first bytes are the HTTP/2 client preface (h2c with prior knowledge) is handed to a
/// `MockH2Connection`, and this object only forwards its events.
final class MockConnection: EventHandler, TimerTarget, MockStatsWaiter, MockEventWriter {
    enum State {
        case idle, readingHead, readingBody
        /// A timer (latency) or the stats gather will start the response.
        case waiting
        /// Writing stream events, perhaps waiting on a timer (ttft, itl) or the socket.
        case streaming
        /// `x-mock-fault: stall`: never answers.
        case stalled
        case closed
    }

    enum BodyMode {
        case none
        /// The whole body will fit in the read buffer: wait for it and scan it in place.
        case inInput
        /// Too long for the buffer: count it as it passes, keep the first 64 KiB.
        case counted
        /// Chunked: decode as it passes, keep the first 64 KiB of data.
        case chunked
    }

    private unowned let context: MockLoopContext
    private let loop: EventLoop
    private let fd: Int32
    /// Set on a TLS listener; the handshake runs before the first request is read.
    private let tls: TLSStream?
    private var tlsFailed = false
    private var registration = Registration.none
    private var state = State.idle

    private var input = ByteBuffer()
    private var out = ByteBuffer()
    /// The kept prefix of a body that is not scanned in `input`.
    private var kept = ByteBuffer()
    private let parser = HTTPHeadParser()
    private var decoder = ChunkedDecoder()
    /// The request's model name, copied out of the body so that it outlives the read buffer.
    private let model: UnsafeMutableRawPointer
    private var modelCount = 0

    /// The loop's clock at the last read: when the bytes arrived, to a wakeup.
    private var readNs: UInt64 = 0
    private var wantsWrite = false
    private var readPaused = false
    private var peerClosedInput = false
    private var closeAfterFlush = false
    private var processing = false
    private var timerArmed = false
    /// The timer or stats gather this connection waits for; bumped to ignore older ones.
    private var token: UInt64 = 0

    // The request in flight.
    private var plan = RequestPlan()
    /// `POST /mock/profiles/NAME?key=value&...`: the profile to set, or why it cannot be.
    private var profileUpdate: Result<MockProfile, MockProfile.ParseError>?
    private var bodyMode = BodyMode.none
    /// `inInput`: the Content-Length; `counted`: the bytes still to come.
    private var bodyLength = 0
    /// Body bytes seen so far (`counted`, `chunked`).
    private var bodyTotal = 0

    // The stream in flight: groups of events written together (see `emitGroup`).
    private var chunkedOut = true
    private var group = 0
    private var groups = 0
    private var stopAfter = Int.max

    /// No request has been parsed yet: the first bytes may still be the HTTP/2 client preface.
    private var mayBeH2 = true
    /// The HTTP/2 connection this socket was handed to; every event goes to it.
    private var h2: MockH2Connection?

    init(fd: Int32, context: MockLoopContext, tls: TLSContext? = nil) {
        self.fd = fd
        self.tls = tls.flatMap { try? TLSStream(server: $0, fd: fd) }
        tlsFailed = tls != nil && self.tls == nil
        self.context = context
        self.loop = context.loop
        model = .allocate(byteCount: MockLimits.maxModelBytes, alignment: 1)
    }

    deinit {
        model.deallocate()
    }

    func start() {
        registration = loop.register(fd: fd, interest: Interest.read, handler: self)
        if tlsFailed { closeNow() }
    }

    /// One handshake step; true once it is done and requests may be read.
    private func handshake(_ tls: TLSStream) -> Bool {
        switch tls.handshake() {
        case .done:
            context.stats.tlsHandshakes += 1
            if tls.sessionReused { context.stats.tlsResumed += 1 }
            loop.setInterest(registration, Interest.read)
            return true
        case .wantRead:
            loop.setInterest(registration, Interest.read)
        case .wantWrite:
            loop.setInterest(registration, Interest.write)
        case .failed:
            closeNow()
        }
        return false
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        if let h2 {
            h2.handleEvent(events)
            return
        }
        if events & (EventBits.error | EventBits.hangup) != 0 {
            // Reset, or both directions shut: nothing more can be written.
            closeNow()
            return
        }
        if let tls, !tls.handshakeComplete {
            guard handshake(tls) else { return }
            if tls.negotiatedProtocol == .h2 {
                // Level-triggered: the h2 connection hears of what is still readable on the next wait.
                handOffToH2()
                return
            }
            if tls.hasBufferedInput { onReadable() }
        }
        if events & EventBits.writable != 0 && tls?.readWantsWrite == true {
            onReadable()
            guard state != .closed else { return }
        }
        if events & EventBits.writable != 0 && wantsWrite {
            onWritable()
            guard state != .closed else { return }
        }
        if events & (EventBits.readable | EventBits.readHangup) != 0 {
            onReadable()
        }
    }

    func tick(now: UInt64) { h2?.tick(now: now) }

    func timerFired(token: UInt64) {
        guard token == self.token, timerArmed, state != .closed else { return }
        timerArmed = false
        if state == .waiting { startResponse() }
        drive()
    }

    /// The summed counters for a `/mock/stats` request, back on this connection's loop.
    func statsReady(token: UInt64, body: [UInt8]) {
        guard token == self.token, state == .waiting, !timerArmed else { return }
        writeResponse(200, contentType: "application/json", estimate: body.count) { out in out.append(body) }
        finishRequest()
        drive()
    }

    private func onReadable() {
        // OpenSSL may hold decrypted bytes the socket no longer signals: read until it holds none.
        repeat {
            readOnce()
        } while tls?.hasBufferedInput == true && state != .closed && !readPaused && !peerClosedInput
    }

    private func readOnce() {
        if peerClosedInput { return }
        if !input.isAllocated { loop.buffers.attachSmall(&input) }
        if input.writableBytes == 0 && !makeRoom() {
            // Busy with a request while the next ones fill the buffer: stop reading (backpressure).
            readPaused = true
            updateInterest()
            return
        }
        let result: IOResult<Int>
        do {
            if let tls {
                result = try tls.read(input.writePointer, input.writableBytes)
                if tls.readWantsWrite { updateInterest() }
            } else {
                result = try Posix.read(fd, input.writePointer, input.writableBytes)
            }
        } catch {
            closeNow()
            return
        }
        guard case .processed(let count) = result else { return }
        if count == 0 {
            peerClosedInput = true
            if state == .stalled {
                closeNow()
                return
            }
            // Answer what is complete, then close (see `process`).
            updateInterest()
            drive()
            return
        }
        input.writerIndex += count
        readNs = loop.now
        if mayBeH2 && tls == nil {  // over TLS, HTTP/2 comes by ALPN (see `handleEvent`)
            switch HTTP2Session.matchPreface(input.readPointer, input.readableBytes) {
            case .match:
                handOffToH2()
                return
            case .partial:
                return
            case .mismatch:
                mayBeH2 = false
            }
        }
        drive()
    }

    /// HTTP/2 with prior knowledge, or h2 chosen by ALPN: the socket, its registration, the TLS stream and the bytes
    /// read so far go to a `MockH2Connection`. This object stays registered only to forward the events.
    private func handOffToH2() {
        let connection = MockH2Connection(
            fd: fd, registration: registration, tls: tls, context: context, input: input,
            readNs: tls == nil ? readNs : loop.now)
        input = ByteBuffer()
        parser.reset()
        state = .closed
        h2 = connection
        connection.start()
    }

    /// Frees space at the end of the read buffer. False when there is none to free.
    private func makeRoom() -> Bool {
        if state == .stalled {
            // Nothing will be answered: drop what arrives, but keep reading to see the client leave.
            input.clear()
            return true
        }
        if input.readerIndex > 0 {
            input.compact()
            parser.reset()
            return true
        }
        if input.capacity == Buffers.smallSize && (state == .idle || state == .readingHead) {
            // A head longer than a small chunk.
            loop.buffers.grow(&input)
            parser.reset()
            return true
        }
        return false
    }

    private func onWritable() {
        flushOut()
        guard state != .closed, !wantsWrite else { return }
        drive()
    }

    private func updateInterest() {
        var interest = Interest.none
        if !peerClosedInput && !readPaused { interest |= Interest.read }
        if wantsWrite || tls?.readWantsWrite == true { interest |= Interest.write }
        loop.setInterest(registration, interest)
    }

    /// Makes all the progress possible now: requests from the read buffer, stream events, then one write.
    private func drive() {
        while state != .closed {
            process()
            guard state == .streaming, !timerArmed else { break }
            pump()
            // Still streaming: waiting for a timer or for the socket.
            if state == .streaming { break }
        }
        flushOut()
    }

    // MARK: Writing

    /// Sends what is queued. False when the socket is full or the connection closed.
    private func sendOut() -> Bool {
        while out.readableBytes > 0 {
            do {
                let result = if let tls {
                    try tls.write(out.readPointer, out.readableBytes)
                } else {
                    try Posix.send(fd, out.readPointer, out.readableBytes)
                }
                switch result {
                case .processed(let count): out.readerIndex += count
                case .wouldBlock: return false
                }
            } catch {
                closeNow()
                return false
            }
        }
        return true
    }

    /// Sends what is queued, waits for writability if needed, and gives back the buffers of an idle connection.
    private func flushOut() {
        guard state != .closed else { return }
        if out.isAllocated {
            guard sendOut() else {
                if state != .closed && !wantsWrite {
                    wantsWrite = true
                    updateInterest()
                }
                return
            }
            loop.buffers.release(&out)
        }
        if wantsWrite {
            wantsWrite = false
            updateInterest()
        }
        if closeAfterFlush {
            closeNow()
            return
        }
        if state == .idle && input.isAllocated && input.readableBytes == 0 {
            loop.buffers.release(&input)
            parser.reset()
        }
    }

    /// Makes room for `count` more bytes in the write buffer (a pool chunk, or the heap past 80 KiB).
    private func reserveOut(_ count: Int) {
        if !out.isAllocated {
            attach(&out, atLeast: count)
            return
        }
        guard out.writableBytes < count else { return }
        if out.readerIndex > 0 {
            out.compact()
            if out.writableBytes >= count { return }
        }
        var bigger = ByteBuffer()
        attach(&bigger, atLeast: max(out.readableBytes + count, out.capacity * 2))
        if out.readableBytes > 0 { bigger.append(out.readPointer, out.readableBytes) }
        loop.buffers.release(&out)
        out = bigger
    }

    private func attach(_ buffer: inout ByteBuffer, atLeast count: Int) {
        if count <= Buffers.smallSize {
            loop.buffers.attachSmall(&buffer)
        } else if count <= Buffers.largeSize {
            buffer.attach(loop.buffers.large.acquire(), capacity: Buffers.largeSize, origin: 2)
        } else {
            loop.buffers.attachHeap(&buffer, capacity: count)
        }
    }

    /// Appends a whole response. The body is rendered first, behind room left for the head, and then moved
    /// up against the head once its length is known: one contiguous response, no length precomputation.
    private func writeResponse(
        _ status: Int, contentType: StaticString, estimate: Int, body: (inout ByteBuffer) -> Void
    ) {
        reserveOut(estimate + MockRender.maxHeadBytes)
        let headStart = out.writerIndex
        let bodyStart = headStart + MockRender.maxHeadBytes
        out.writerIndex = bodyStart
        body(&out)
        let bodyCount = out.writerIndex - bodyStart
        out.writerIndex = headStart
        MockRender.head(
            &out, status: status, contentType: contentType, framing: .length(bodyCount), receivedNs: plan.receivedNs,
            connection: connectionHeader, retryAfter: status >= 400 ? plan.retryAfter : -1)
        memmove(out.writePointer, out.base! + bodyStart, bodyCount)
        out.writerIndex += bodyCount
        if plan.isHead {
            out.writerIndex -= bodyCount
        } else if plan.fault == .closeMidBody {
            // Promise the whole body, send half of it, then close.
            out.writerIndex -= bodyCount - bodyCount / 2
            closeAfterFlush = true
        }
    }

    private var connectionHeader: MockRender.Connection {
        if !plan.keepAlive { return .close }
        return plan.minorVersion == 0 ? .keepAlive : .persistent
    }

    private func writeError(_ status: Int, _ message: StaticString) {
        let anthropic = plan.endpoint.anthropicErrors
        writeResponse(status, contentType: "application/json", estimate: 512) { out in
            MockRender.error(&out, status: status, anthropic: anthropic, message: message)
        }
    }

    // MARK: Requests

    /// Parses and answers requests from the read buffer until it needs more bytes, a request must wait,
    /// or enough output is queued.
    private func process() {
        guard !processing else { return }
        processing = true
        defer { processing = false }
        while true {
            switch state {
            case .idle, .readingHead:
                guard !closeAfterFlush, out.readableBytes < MockLimits.outputHighWater else { return }
                guard input.readableBytes > 0 else {
                    if peerClosedInput { closeAfterFlush = true }
                    return
                }
                switch parser.parseRequest(input.readPointer, input.readableBytes) {
                case .incomplete:
                    state = .readingHead
                    if peerClosedInput { closeAfterFlush = true }
                    return
                case .failed(let error):
                    respondMalformed(error)
                    return
                case .complete:
                    beginRequest()
                }
            case .readingBody:
                guard bodyComplete() else {
                    if peerClosedInput && state == .readingBody { closeAfterFlush = true }
                    return
                }
                dispatch()
            case .waiting, .streaming, .stalled, .closed:
                return
            }
        }
    }

    /// The head is parsed: count it, read the `x-mock-*` headers, and get ready for the body.
    private func beginRequest() {
        mayBeH2 = false
        (plan, profileUpdate) = context.beginRequest(method: parser.method, target: parser.bytes(parser.target), receivedNs: readNs)
        plan.keepAlive = parser.keepAlive
        plan.minorVersion = parser.minorVersion
        plan.readHeaders(parser)
        let expectContinue = parser.expectContinue && parser.minorVersion >= 1
        let length = Int(max(0, parser.contentLength))
        let chunked = parser.chunked
        input.readerIndex += parser.headLength
        bodyTotal = 0
        if chunked {
            bodyMode = .chunked
            decoder.reset()
        } else if length == 0 {
            bodyMode = .none
        } else if length <= Buffers.largeSize {
            bodyMode = .inInput
            bodyLength = length
            if length > input.capacity {
                loop.buffers.grow(&input)
            } else if input.readerIndex + length > input.capacity {
                input.compact()
            }
            parser.reset()
        } else {
            bodyMode = .counted
            bodyLength = length
        }
        state = .readingBody
        if expectContinue && (chunked ? input.readableBytes == 0 : input.readableBytes < length) {
            reserveOut(32)
            out.append("HTTP/1.1 100 Continue\r\n\r\n")
        }
    }

    /// True when the whole body is here. Counts and decodes the body on the way when it is not kept whole.
    private func bodyComplete() -> Bool {
        switch bodyMode {
        case .none:
            return true
        case .inInput:
            return input.readableBytes >= bodyLength
        case .counted:
            let take = min(bodyLength, input.readableBytes)
            keep(input.readPointer, take)
            input.readerIndex += take
            bodyLength -= take
            bodyTotal += take
            if input.readableBytes == 0 { input.clear() }
            return bodyLength == 0
        case .chunked:
            let feed = decoder.feed(input.readPointer, input.readableBytes) { data, count in
                self.keep(data, count)
                self.bodyTotal += count
            }
            if let error = feed.error {
                respondMalformed(HTTPParseError(status: 400, code: .invalidRequest, message: error))
                return false
            }
            input.readerIndex += feed.consumed
            if input.readableBytes == 0 { input.clear() }
            return feed.done
        }
    }

    /// Keeps body bytes up to `MockLimits.scanBytes`, for the model lookup.
    private func keep(_ data: UnsafeRawPointer, _ count: Int) {
        guard kept.writerIndex < MockLimits.scanBytes, count > 0 else { return }
        if !kept.isAllocated { attach(&kept, atLeast: MockLimits.scanBytes) }
        kept.append(data, min(count, MockLimits.scanBytes - kept.writerIndex))
    }

    /// The body is complete: read `model`, `stream` and friends from it, then answer.
    private func dispatch() {
        var body = UnsafeRawBufferPointer(start: nil, count: 0)
        switch bodyMode {
        case .inInput:
            body = UnsafeRawBufferPointer(start: input.readPointer, count: bodyLength)
            plan.bodyBytes = bodyLength
        case .counted, .chunked:
            if kept.isAllocated { body = UnsafeRawBufferPointer(start: kept.base, count: kept.writerIndex) }
            plan.bodyBytes = bodyTotal
        case .none:
            plan.bodyBytes = 0
        }
        modelCount = MockRequestBody.scan(body, plan: &plan, model: model, stats: context.stats)
        if bodyMode == .inInput { input.readerIndex += bodyLength }
        if input.readableBytes == 0 { input.clear() }
        loop.buffers.release(&kept)
        bodyMode = .none
        respond()
    }

    /// Answers as `MockLoopContext.decide` says.
    private func respond() {
        let update = profileUpdate
        profileUpdate = nil
        switch context.decide(&plan, profileUpdate: update) {
        case .profileUpdate(let update):
            answerProfileUpdate(update)
        case .error(let status, let message):
            writeError(status, message)
            finishRequest()
        case .stats:
            startStats()
        case .reset:
            resetNow()
        case .stall:
            state = .stalled
        case .wait(let latencyNs):
            state = .waiting
            arm(at: loop.now + latencyNs)
        case .respond:
            startResponse()
        }
    }

    /// Writes the response now that any latency has passed.
    private func startResponse() {
        let status = plan.responseStatus
        if status >= 400 {
            writeError(status, "mock error")
            finishRequest()
            return
        }
        if plan.streams {
            startStream(status)
            return
        }
        if MockRender.hasBody(plan.endpoint) {
            let plan = self.plan
            let echo = self.echo
            writeResponse(status, contentType: "application/json", estimate: MockRender.bodyEstimate(plan, modelCount: modelCount)) { out in
                MockRender.body(&out, plan, echo)
            }
        }
        finishRequest()
    }

    private var echo: Echo {
        plan.echo(model: model, modelCount: modelCount, created: context.createdSeconds)
    }

    /// The response is queued: get ready for the next request.
    private func finishRequest() {
        state = .idle
        bodyMode = .none
        if !plan.keepAlive { closeAfterFlush = true }
        if readPaused {
            readPaused = false
            updateInterest()
        }
    }

    /// A head or chunked body that does not parse: answer its status and close.
    private func respondMalformed(_ error: HTTPParseError) {
        plan = context.defaults
        plan.receivedNs = readNs
        plan.keepAlive = false
        writeResponse(error.status, contentType: "application/json", estimate: 512) { out in
            MockRender.error(&out, status: error.status, anthropic: false, message: error.message)
        }
        input.readerIndex = input.writerIndex
        loop.buffers.release(&kept)
        state = .idle
        bodyMode = .none
        closeAfterFlush = true
    }

    // MARK: Streams

    private func startStream(_ status: Int) {
        chunkedOut = plan.minorVersion >= 1
        if !chunkedOut { plan.keepAlive = false }
        reserveOut(MockRender.maxHeadBytes)
        MockRender.head(
            &out, status: status, contentType: "text/event-stream", framing: chunkedOut ? .chunked : .untilClose,
            receivedNs: plan.receivedNs, connection: connectionHeader)
        group = 0
        groups = MockStream.groupCount(plan)
        stopAfter = plan.fault == .closeMidBody ? max(1, groups / 2) : Int.max
        state = .streaming
        if plan.ttftNs > 0 { arm(at: loop.now + plan.ttftNs) }
    }

    /// Writes stream events until the stream ends, a timer must pass (itl), or the socket is full.
    private func pump() {
        while state == .streaming && !timerArmed {
            if out.readableBytes >= MockLimits.outputHighWater {
                guard sendOut() else { return }
            }
            emitGroup(group)
            group += 1
            if group >= stopAfter {
                // close-mid-body: the stream stops without its end.
                finishRequest()
                closeAfterFlush = true
                return
            }
            if group == groups {
                finishRequest()
                return
            }
            if plan.itlNs > 0 {
                arm(at: loop.now + plan.itlNs)
                return
            }
        }
    }

    /// Writes the events of group `index` (see `MockStream`). Each event is one HTTP chunk.
    private func emitGroup(_ index: Int) {
        reserveOut(MockStream.groupBytes(modelCount: modelCount))
        MockStream.emitGroup(index, of: groups, plan: plan, echo: echo, into: self)
        if index == groups - 1 && chunkedOut && stopAfter > groups { out.append("0\r\n\r\n") }
    }

    /// Appends one SSE event, framed as its own HTTP chunk when the response is chunked.
    @inline(__always)
    func event(_ render: (inout ByteBuffer) -> Void) {
        if chunkedOut {
            let start = out.beginChunk()
            render(&out)
            out.endChunk(start)
        } else {
            render(&out)
        }
    }

    // MARK: Stats

    /// Sets the profile for every thread and answers with it, or answers 400 naming the bad setting.
    private func answerProfileUpdate(_ update: Result<MockProfile, MockProfile.ParseError>) {
        let status = context.applyProfileUpdate(update)
        writeResponse(status, contentType: "application/json", estimate: MockRender.profileUpdateEstimate(update)) { out in
            MockRender.profileUpdate(&out, update)
        }
        finishRequest()
    }

    /// `/mock/stats`: gathers every thread's counters; `statsReady` answers.
    private func startStats() {
        state = .waiting
        token &+= 1
        guard let shared = context.shared else {
            writeError(503, "shutting down")
            finishRequest()
            return
        }
        StatsGather(loops: shared.contexts.count, origin: loop, waiter: self, token: token).start(shared)
    }

    // MARK: Timers and ends

    private func arm(at deadline: UInt64) {
        token &+= 1
        timerArmed = true
        loop.schedule(at: deadline, target: self, token: token)
    }

    /// `x-mock-fault: reset`: SO_LINGER 0 makes close send a RST instead of a FIN.
    private func resetNow() {
        _ = sendOut()
        guard state != .closed else { return }
        var option = linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        closeNow(notifyPeer: false)
    }

    /// `notifyPeer`: a TLS connection sends close_notify first (not when faking a reset).
    private func closeNow(notifyPeer: Bool = true) {
        guard state != .closed else { return }
        if notifyPeer { tls?.shutdown() }
        state = .closed
        timerArmed = false
        token &+= 1
        loop.deregisterAndClose(registration)
        loop.buffers.release(&input)
        loop.buffers.release(&out)
        loop.buffers.release(&kept)
    }
}

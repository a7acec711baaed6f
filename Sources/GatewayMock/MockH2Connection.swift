#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP
import GatewayIO

/// One request of an HTTP/2 connection and its answer. A slot of the connection, reused by stream after stream.
final class MockH2Stream: MockEventWriter {
    enum Phase {
        case free
        /// The header block is arriving.
        case head
        /// The head is in; body bytes may follow.
        case body
        /// A latency timer or the stats gather will start the answer.
        case waiting
        /// Writing events, perhaps waiting for a timer (ttft, itl) or for the window.
        case streaming
        /// Never answered (`x-mock-fault: stall`).
        case stalled
        /// The answer is submitted; the stream closes once it is sent.
        case answered
    }

    let slot: Int
    var id: Int32 = 0
    var phase = Phase.free
    /// Bumped each time the slot changes hands: timer tokens carry it.
    var generation: UInt32 = 0
    var timerArmed = false
    var method = HTTPMethod.other
    /// `:path`, kept until the plan is made (pooled; a target past the chunk is counted as `other`).
    var target = ByteBuffer()
    var targetTooLong = false
    /// `MockLoopContext.beginRequest` has run.
    var planned = false
    var plan = RequestPlan()
    var profileUpdate: Result<MockProfile, MockProfile.ParseError>?
    /// The header list passed the limit: answered with 431.
    var oversized = false
    /// The body's first bytes (as many as an HTTP/1.1 request keeps), and its length.
    var kept = ByteBuffer()
    var bodyTotal = 0
    let model: UnsafeMutableRawPointer
    var modelCount = 0
    let body = HTTP2Body()
    var group = 0
    var groups = 0
    var stopAfter = Int.max
    /// `close-mid-body`: reset the stream once what was written of the body has been queued.
    var resetWhenQueued = false

    init(slot: Int) {
        self.slot = slot
        model = .allocate(byteCount: MockLimits.maxModelBytes, alignment: 1)
    }

    deinit { model.deallocate() }

    var token: UInt64 { UInt64(generation) << 32 | UInt64(slot) }

    /// One SSE event: appended to the body and cut off, so that it goes out as its own DATA frame.
    @inline(__always)
    func event(_ render: (inout ByteBuffer) -> Void) {
        render(&body.buffer)
        body.cut()
    }
}

/// One HTTP/2 client connection of gwmock: h2c with prior knowledge (`MockConnection` hands the socket over when the
/// first bytes are the client preface), or h2 over TLS (handed over when ALPN chose h2 in the handshake). Each stream
/// gets the answer an HTTP/1.1 request would get, counted the same way (MockExchange.swift): the same plan, bodies
/// and events, `x-mock-received-ns`, latency, profiles and stats. Faults map to streams: `reset` resets the stream
/// (RST_STREAM, INTERNAL_ERROR), `close-mid-body` resets it after half the body, `stall` leaves it unanswered.
///
/// Output: answers are written into each stream's `HTTP2Body` and go out with NGHTTP2_DATA_FLAG_NO_COPY; a
/// streamed answer is cut into one DATA frame per SSE event, sent as the events are produced. Socket I/O goes through
/// `readBytes` and `flush` only: over TLS they read and write through the `TLSStream` (which `MockConnection` owns
/// and has finished the handshake on).
final class MockH2Connection: HTTP2SessionDelegate, TimerTarget, MockStatsWaiter {
    static let settings: HTTP2Session.Settings = {
        var settings = HTTP2Session.Settings()
        // Request bodies are consumed as they arrive: the windows only need to be wide enough not to stall a sender.
        settings.initialWindowSize = 1 << 20
        settings.connectionWindowSize = 1 << 24
        return settings
    }()

    /// Past this much unsent body (window-bound) or queued output, a stream stops producing events for a while.
    static let highWater = MockLimits.outputHighWater
    /// `:path` bytes kept.
    static let maxTargetBytes = Buffers.headSize

    private unowned let context: MockLoopContext
    private let loop: EventLoop
    private let fd: Int32
    private let registration: Registration
    /// h2 over TLS: every byte goes through it. Nil for h2c.
    private let tls: TLSStream?
    private var session: HTTP2Session!
    private var input: ByteBuffer
    private var streams: [MockH2Stream] = []
    private var freeSlots: [Int] = []
    /// Streams whose request ended during `receive`: answered once it returns.
    private var ended: [Int] = []
    /// Streams producing events; a stream leaves when it waits for a timer or is done.
    private var pumping: [Int] = []
    /// `close-mid-body` streams to reset once their body is queued.
    private var pendingResets: [Int] = []
    private let headers = HTTP2HeaderBlock()
    /// The loop's clock at the last read: when the bytes arrived, to a wakeup.
    private var readNs: UInt64 = 0
    private var wantsWrite = false
    private var closed = false
    /// After a GOAWAY: the write side is shut, and what the client still sends is read and dropped until it closes
    /// or this deadline passes. Closing at once could reset the connection and lose the GOAWAY on the way.
    private var lingerUntil: UInt64 = 0
    /// Streams opened so far, and open now (for `--h2-goaway-after` and the stats).
    private var streamsOpened = 0
    private var openStreams = 0
    private var goAwaySent = false
    static let lingerNs: UInt64 = 2_000_000_000

    /// - Parameters:
    ///   - tls: the TLS stream whose handshake chose h2, or nil for h2c.
    ///   - input: the bytes read so far, preface first; the connection takes the buffer over.
    init(
        fd: Int32, registration: Registration, tls: TLSStream? = nil, context: MockLoopContext, input: ByteBuffer, readNs: UInt64
    ) {
        self.fd = fd
        self.registration = registration
        self.tls = tls
        self.context = context
        self.loop = context.loop
        self.input = input
        self.readNs = readNs
    }

    func start() {
        session = HTTP2Session(role: .server, settings: context.h2Settings, buffers: loop.buffers, delegate: self)
        context.stats.h2Connections += 1
        receiveInput()
        drive()
        // The handshake's last read may have brought the client preface along: OpenSSL holds it decrypted.
        if tls?.hasBufferedInput == true { onReadable() }
    }

    // MARK: Socket

    /// Reads from the socket, or through TLS: the one place bytes come in.
    private func readBytes(_ destination: UnsafeMutableRawPointer, _ count: Int) throws(IOError) -> IOResult<Int> {
        guard let tls else { return try Posix.read(fd, destination, count) }
        let wantedWrite = tls.readWantsWrite
        let result = try tls.read(destination, count)
        // Writability is watched only while OpenSSL needs it: level-triggered, it would fire on every wait.
        if tls.readWantsWrite != wantedWrite { updateInterest() }
        return result
    }

    /// Read always (until the GOAWAY linger ends), write when output waits or OpenSSL must write to read.
    private func updateInterest() {
        loop.setInterest(registration, wantsWrite || tls?.readWantsWrite == true ? Interest.readWrite : Interest.read)
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        guard !closed else { return }
        if events & (EventBits.error | EventBits.hangup) != 0 {
            closeNow()
            return
        }
        if events & EventBits.writable != 0 && wantsWrite {
            drive()
            guard !closed else { return }
        }
        if events & EventBits.writable != 0 && tls?.readWantsWrite == true {
            onReadable()
            guard !closed else { return }
        }
        if events & (EventBits.readable | EventBits.readHangup) != 0 {
            onReadable()
        }
    }

    func tick(now: UInt64) {
        if lingerUntil != 0 && now >= lingerUntil { closeNow() }
    }

    private func onReadable() {
        // OpenSSL may hold decrypted bytes the socket no longer signals: read until it holds none.
        repeat {
            readOnce()
        } while !closed && tls?.hasBufferedInput == true
    }

    private func readOnce() {
        if !input.isAllocated { loop.buffers.attachSmall(&input) }
        if lingerUntil != 0 {
            linger()
            return
        }
        let result: IOResult<Int>
        do {
            result = try readBytes(input.writePointer, input.writableBytes)
        } catch {
            closeNow()
            return
        }
        guard case .processed(let count) = result else {
            if input.readableBytes == 0 { loop.buffers.release(&input) }
            return
        }
        if count == 0 {
            // The client is gone (an HTTP/2 client does not half-close and wait).
            closeNow()
            return
        }
        input.writerIndex += count
        readNs = loop.now
        receiveInput()
        drive()
    }

    /// Feeds the read bytes to nghttp2, then answers the requests that ended in them.
    private func receiveInput() {
        guard !closed else { return }
        if input.readableBytes > 0 {
            guard session.receive(input.readPointer, input.readableBytes) else {
                closeNow()
                return
            }
        }
        loop.buffers.release(&input)
        if context.h2GoAwayAfter > 0 && streamsOpened >= context.h2GoAwayAfter && !goAwaySent {
            // The streams received so far are answered; the client opens new ones on a new connection.
            goAwaySent = true
            session.goAwayGracefully()
        }
        if !ended.isEmpty {
            for slot in ended where streams[slot].phase == .body { dispatch(streams[slot]) }
            ended.removeAll(keepingCapacity: true)
        }
    }

    /// Makes all the progress possible now: stream events, frames, writes; closes a finished session.
    private func drive() {
        guard !closed, lingerUntil == 0 else { return }
        while true {
            let pumped = pumpStreams()
            var produced = session.send()
            if produced > 0 && !pendingResets.isEmpty && resetDrainedStreams() {
                let more = session.send()
                produced = more < 0 ? more : produced + more
            }
            guard produced >= 0 else {
                closeNow()
                return
            }
            guard flush() else { return }
            if produced == 0 && !pumped { break }
        }
        if session.isFinished {
            // Everything is written, the GOAWAY included.
            lingerUntil = loop.now + MockH2Connection.lingerNs
            tls?.shutdown()
            Posix.shutdownWrite(fd)
            linger()
            return
        }
        session.outbound.releaseIdle()
    }

    /// Reads and drops what the client still sends after the GOAWAY; closes once it has closed too.
    private func linger() {
        guard !closed else { return }
        if !input.isAllocated { loop.buffers.attachSmall(&input) }
        while true {
            let result: IOResult<Int>
            do {
                result = try readBytes(input.base!, input.capacity)
            } catch {
                closeNow()
                return
            }
            switch result {
            case .processed(0):
                closeNow()
                return
            case .processed:
                continue
            case .wouldBlock:
                loop.buffers.release(&input)
                return
            }
        }
    }

    /// Writes what is queued. False when the socket is full (writability is awaited) or the connection closed.
    private func flush() -> Bool {
        switch session.outbound.write(to: fd, tls: tls) {
        case .done:
            if wantsWrite {
                wantsWrite = false
                updateInterest()
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
        updateInterest()
    }

    func timerFired(token: UInt64) {
        guard !closed, let stream = stream(for: token), stream.timerArmed else { return }
        stream.timerArmed = false
        switch stream.phase {
        case .waiting: startResponse(stream)
        case .streaming: pumping.append(stream.slot)
        default: break
        }
        drive()
    }

    /// The summed counters for a `/mock/stats` request, back on this connection's loop.
    func statsReady(token: UInt64, body: [UInt8]) {
        guard !closed, let stream = stream(for: token), stream.phase == .waiting, !stream.timerArmed else { return }
        writeWhole(stream, 200, contentType: "application/json", estimate: body.count) { out in out.append(body) }
        drive()
    }

    private func stream(for token: UInt64) -> MockH2Stream? {
        let slot = Int(token & 0xFFFF_FFFF)
        guard slot < streams.count, streams[slot].generation == UInt32(token >> 32) else { return nil }
        return streams[slot]
    }

    // MARK: HTTP2SessionDelegate

    func http2StreamOpened(_ id: Int32) -> Int {
        streamsOpened += 1
        openStreams += 1
        context.stats.h2Streams += 1
        if openStreams > context.stats.h2MaxConcurrent { context.stats.h2MaxConcurrent = openStreams }
        let stream: MockH2Stream
        if let slot = freeSlots.popLast() {
            stream = streams[slot]
        } else {
            stream = MockH2Stream(slot: streams.count)
            streams.append(stream)
        }
        stream.id = id
        stream.phase = .head
        stream.method = .other
        stream.targetTooLong = false
        stream.planned = false
        stream.profileUpdate = nil
        stream.oversized = false
        stream.bodyTotal = 0
        stream.modelCount = 0
        stream.resetWhenQueued = false
        return stream.slot + 1
    }

    @inline(__always)
    private func stream(_ id: Int32, _ tag: Int) -> MockH2Stream? {
        guard tag > 0, tag <= streams.count, streams[tag - 1].id == id, streams[tag - 1].phase != .free else { return nil }
        return streams[tag - 1]
    }

    private func header(_ stream: MockH2Stream, name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        guard let nameBase = name.baseAddress, name.count > 0 else { return }
        if nameBase.load(as: UInt8.self) == UInt8(ascii: ":") {
            // Pseudo-headers come first (nghttp2 enforces it).
            if HTTPBytes.equalsLowercase(nameBase, name.count, ":method") {
                if let base = value.baseAddress { stream.method = HTTPHeadParser.classifyMethod(base, value.count) }
            } else if HTTPBytes.equalsLowercase(nameBase, name.count, ":path") {
                if value.count > MockH2Connection.maxTargetBytes {
                    stream.targetTooLong = true
                } else if value.count > 0 {
                    if !stream.target.isAllocated { loop.buffers.attach(&stream.target, capacity: MockH2Connection.maxTargetBytes) }
                    stream.target.clear()
                    stream.target.append(value.baseAddress!, value.count)
                }
            }
            return
        }
        plan(stream)
        stream.plan.readHeader(name: nameBase, nameCount: name.count, value: value)
    }

    func http2HeadersComplete(_ id: Int32, tag: Int, fields: HTTP2HeaderList, endStream: Bool, oversized: Bool) {
        guard let stream = stream(id, tag) else { return }
        if stream.phase == .head {
            for index in 0..<fields.count { header(stream, name: fields.name(index), value: fields.value(index)) }
            plan(stream)
            stream.oversized = oversized
            stream.phase = .body
        }
        if endStream && stream.phase == .body { ended.append(stream.slot) }
    }

    func http2Data(_ id: Int32, tag: Int, _ bytes: UnsafeRawBufferPointer) {
        // Taken at once: the bytes are kept (up to a limit) or counted.
        session.consume(id, bytes.count)
        guard let stream = stream(id, tag), stream.phase == .body, let base = bytes.baseAddress else { return }
        stream.bodyTotal += bytes.count
        let room = Buffers.largeSize - stream.kept.writerIndex
        guard room > 0 else { return }
        let take = min(room, bytes.count)
        if !stream.kept.isAllocated { loop.buffers.attachSmall(&stream.kept) }
        if stream.kept.writableBytes < take { loop.buffers.grow(&stream.kept) }
        stream.kept.append(base, take)
    }

    func http2DataComplete(_ id: Int32, tag: Int) {
        guard let stream = stream(id, tag), stream.phase == .body else { return }
        ended.append(stream.slot)
    }

    func http2StreamClosed(_ id: Int32, tag: Int, errorCode: UInt32) {
        guard let stream = stream(id, tag) else { return }
        free(stream)
    }

    private func free(_ stream: MockH2Stream) {
        openStreams -= 1
        stream.generation &+= 1
        stream.timerArmed = false
        stream.phase = .free
        stream.id = 0
        session.release(stream.body)
        loop.buffers.release(&stream.target)
        loop.buffers.release(&stream.kept)
        freeSlots.append(stream.slot)
    }

    // MARK: Requests

    /// Counts the request and starts its plan, once: at the first regular header or the end of the head.
    private func plan(_ stream: MockH2Stream) {
        guard !stream.planned else { return }
        stream.planned = true
        let target = stream.targetTooLong || !stream.target.isAllocated
            ? UnsafeRawBufferPointer(start: nil, count: 0)
            : UnsafeRawBufferPointer(start: stream.target.readPointer, count: stream.target.readableBytes)
        (stream.plan, stream.profileUpdate) = context.beginRequest(method: stream.method, target: target, receivedNs: readNs)
        loop.buffers.release(&stream.target)
    }

    /// The request is complete: read its body, then answer as `MockLoopContext.decide` says.
    private func dispatch(_ stream: MockH2Stream) {
        stream.phase = .waiting
        if stream.oversized {
            writeError(stream, 431, "request header fields too large")
            return
        }
        stream.plan.bodyBytes = stream.bodyTotal
        if stream.kept.isAllocated {
            // What an HTTP/1.1 request scans: a body that fits a large chunk whole, else its first 64 KiB.
            let scanned = stream.bodyTotal <= Buffers.largeSize ? stream.kept.readableBytes : MockLimits.scanBytes
            let body = UnsafeRawBufferPointer(start: stream.kept.readPointer, count: min(scanned, stream.kept.readableBytes))
            stream.modelCount = MockRequestBody.scan(body, plan: &stream.plan, model: stream.model, stats: context.stats)
            loop.buffers.release(&stream.kept)
        }
        let update = stream.profileUpdate
        stream.profileUpdate = nil
        switch context.decide(&stream.plan, profileUpdate: update) {
        case .profileUpdate(let update):
            let status = context.applyProfileUpdate(update)
            writeWhole(stream, status, contentType: "application/json", estimate: MockRender.profileUpdateEstimate(update)) { out in
                MockRender.profileUpdate(&out, update)
            }
        case .error(let status, let message):
            writeError(stream, status, message)
        case .stats:
            startStats(stream)
        case .reset:
            stream.phase = .answered
            session.resetStream(stream.id, errorCode: HTTP2ErrorCode.internalError)
        case .stall:
            stream.phase = .stalled
        case .wait(let latencyNs):
            arm(stream, at: loop.now + latencyNs)
        case .respond:
            startResponse(stream)
        }
    }

    /// Answers now that any latency has passed.
    private func startResponse(_ stream: MockH2Stream) {
        let plan = stream.plan
        let status = plan.responseStatus
        if status >= 400 {
            writeError(stream, status, "mock error")
            return
        }
        if plan.streams {
            startStream(stream, status)
            return
        }
        guard MockRender.hasBody(plan.endpoint) else {
            // Not reached (see hasBody); never left without an answer.
            writeError(stream, 500, "no answer for this endpoint")
            return
        }
        let echo = self.echo(stream)
        writeWhole(stream, status, contentType: "application/json", estimate: MockRender.bodyEstimate(plan, modelCount: stream.modelCount)) { out in
            MockRender.body(&out, plan, echo)
        }
    }

    private func echo(_ stream: MockH2Stream) -> Echo {
        stream.plan.echo(model: stream.model, modelCount: stream.modelCount, created: context.createdSeconds)
    }

    private func writeError(_ stream: MockH2Stream, _ status: Int, _ message: StaticString) {
        let anthropic = stream.plan.endpoint.anthropicErrors
        writeWhole(stream, status, contentType: "application/json", estimate: 512) { out in
            MockRender.error(&out, status: status, anthropic: anthropic, message: message)
        }
    }

    /// The head fields every answer starts with.
    private func head(_ stream: MockH2Stream, _ status: Int, contentType: StaticString) {
        headers.removeAll()
        headers.add(":status", decimal: status)
        headers.add("content-type", contentType)
    }

    /// Submits a whole answer: head and body, rendered into the stream's body.
    private func writeWhole(
        _ stream: MockH2Stream, _ status: Int, contentType: StaticString, estimate: Int, render: (inout ByteBuffer) -> Void
    ) {
        let body = stream.body
        session.reserve(body, max(estimate, 1))
        let start = body.buffer.writerIndex
        render(&body.buffer)
        let count = body.buffer.writerIndex - start
        head(stream, status, contentType: contentType)
        headers.add("content-length", decimal: count)
        headers.add("x-mock-received-ns", decimal: Int(truncatingIfNeeded: stream.plan.receivedNs), indexed: false)
        if status >= 400 && stream.plan.retryAfter >= 0 { headers.add("retry-after", decimal: stream.plan.retryAfter) }
        stream.phase = .answered
        if stream.plan.isHead {
            body.buffer.writerIndex = start
            session.submitResponse(stream.id, headers: headers, body: nil)
            return
        }
        if stream.plan.fault == .closeMidBody {
            // Promise the whole body, send half of it, then reset the stream.
            body.buffer.writerIndex -= count - count / 2
            session.submitResponse(stream.id, headers: headers, body: body)
            stream.resetWhenQueued = true
            pendingResets.append(stream.slot)
            return
        }
        session.submitResponse(stream.id, headers: headers, body: body)
        session.end(body)
    }

    // MARK: Streams

    private func startStream(_ stream: MockH2Stream, _ status: Int) {
        head(stream, status, contentType: "text/event-stream")
        headers.add("cache-control", "no-cache")
        headers.add("x-mock-received-ns", decimal: Int(truncatingIfNeeded: stream.plan.receivedNs), indexed: false)
        session.submitResponse(stream.id, headers: headers, body: stream.body)
        stream.group = 0
        stream.groups = MockStream.groupCount(stream.plan)
        stream.stopAfter = stream.plan.fault == .closeMidBody ? max(1, stream.groups / 2) : Int.max
        stream.phase = .streaming
        if stream.plan.ttftNs > 0 {
            arm(stream, at: loop.now + stream.plan.ttftNs)
        } else {
            pumping.append(stream.slot)
        }
    }

    /// Lets every producing stream write events. - Returns: whether any did.
    private func pumpStreams() -> Bool {
        var progress = false
        var index = 0
        while index < pumping.count {
            let stream = streams[pumping[index]]
            if stream.phase == .streaming && !stream.timerArmed && pump(stream) { progress = true }
            if stream.phase == .streaming && !stream.timerArmed {
                index += 1
            } else {
                pumping.swapAt(index, pumping.count - 1)
                pumping.removeLast()
            }
        }
        return progress
    }

    /// Writes a stream's events until it ends, waits for a timer (itl), or has enough unsent.
    /// - Returns: whether it wrote any.
    private func pump(_ stream: MockH2Stream) -> Bool {
        let body = stream.body
        var wrote = false
        let echo = self.echo(stream)
        while stream.phase == .streaming && !stream.timerArmed {
            guard body.readable < MockH2Connection.highWater,
                  session.outbound.pendingBytes < MockH2Connection.highWater else { break }
            session.reserve(body, MockStream.groupBytes(modelCount: stream.modelCount))
            MockStream.emitGroup(stream.group, of: stream.groups, plan: stream.plan, echo: echo, into: stream)
            session.appended(body)
            wrote = true
            stream.group += 1
            if stream.group >= stopAfterOrEnd(stream) {
                stream.phase = .answered
                if stream.group >= stream.stopAfter {
                    // close-mid-body: the stream stops without its end.
                    stream.resetWhenQueued = true
                    pendingResets.append(stream.slot)
                } else {
                    session.end(body)
                }
                break
            }
            if stream.plan.itlNs > 0 { arm(stream, at: loop.now + stream.plan.itlNs) }
        }
        return wrote
    }

    @inline(__always)
    private func stopAfterOrEnd(_ stream: MockH2Stream) -> Int { min(stream.groups, stream.stopAfter) }

    /// Resets the `close-mid-body` streams whose written bytes are all queued. - Returns: whether any was reset.
    private func resetDrainedStreams() -> Bool {
        var any = false
        var index = 0
        while index < pendingResets.count {
            let stream = streams[pendingResets[index]]
            if !stream.resetWhenQueued || stream.phase == .free {
                pendingResets.swapAt(index, pendingResets.count - 1)
                pendingResets.removeLast()
            } else if stream.body.readable == 0 {
                stream.resetWhenQueued = false
                session.resetStream(stream.id, errorCode: HTTP2ErrorCode.internalError)
                any = true
                pendingResets.swapAt(index, pendingResets.count - 1)
                pendingResets.removeLast()
            } else {
                index += 1
            }
        }
        return any
    }

    // MARK: Stats, timers, the end

    private func startStats(_ stream: MockH2Stream) {
        stream.phase = .waiting
        guard let shared = context.shared else {
            writeError(stream, 503, "shutting down")
            return
        }
        StatsGather(loops: shared.contexts.count, origin: loop, waiter: self, token: stream.token).start(shared)
    }

    private func arm(_ stream: MockH2Stream, at deadline: UInt64) {
        if stream.phase != .streaming { stream.phase = .waiting }
        stream.timerArmed = true
        loop.schedule(at: deadline, target: self, token: stream.token)
    }

    private func closeNow() {
        guard !closed else { return }
        closed = true
        loop.deregisterAndClose(registration)
        loop.buffers.release(&input)
        for stream in streams where stream.phase != .free { free(stream) }
        session?.outbound.releaseAll()
    }
}

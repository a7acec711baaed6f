#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP
import GatewayIO
import Synchronization

/// Whether a connection has said that the server did not choose h2: said once per process, whatever the threads.
private let reportedNoH2 = Atomic<Bool>(false)

/// One HTTP/2 client connection of the load generator, with up to `streams` requests in flight, each on its own
/// stream: h2c with prior knowledge, or h2 over TLS (`--h2`, the handshake runs while `state` is `.connecting` and
/// must choose h2 by ALPN).
///
/// It takes the same measurements as `BenchConnection`, per stream: a request counts as sent when the writev that
/// carries its HEADERS frame is made (over TLS: the write of the record that carries it; the closed loop measures
/// its latency from then), the head when its HEADERS
/// arrive, SSE events as their DATA arrives, and the response when END_STREAM does. RST_STREAM (or a GOAWAY that
/// refuses the stream) counts as a reset. A stream past the timeout is cancelled (RST_STREAM CANCEL) and counted as
/// a timeout; the connection carries on.
///
/// Each free stream is a ticket with the worker (`connectionReady`), so an open-loop request that finds no free
/// stream on any connection waits, or is counted as missed, as over HTTP/1.1. A request sent while the connection
/// is down (after a reset or a GOAWAY) is queued in its slot and goes out on the next connection.
final class BenchH2Connection: BenchClient, EventHandler, TimerTarget, HTTP2SessionDelegate {
    enum State { case disconnected, connecting, open, closed }

    private enum Phase {
        case free
        /// Sent by the worker while the connection was down: submitted once it is up.
        case queued
        /// Submitted to the session.
        case active
    }

    /// One stream's request and what was measured of it so far.
    private struct Slot {
        var phase = Phase.free
        var stream: Int32 = 0
        var measured = false
        var intended: UInt64 = 0
        /// When the writev carrying the HEADERS frame returned; 0 until then.
        var sentAt: UInt64 = 0
        var deadline: UInt64 = 0
        var status = 0
        var headDone = false
        var firstEventAt: UInt64 = 0
        var lastEventAt: UInt64 = 0
        var eventCount: UInt64 = 0
        var bodyCount: UInt64 = 0
        var mockReceived: UInt64 = 0
        var sse = SSEScanner()
    }

    static let settings: HTTP2Session.Settings = {
        var settings = HTTP2Session.Settings()
        // Response bytes are consumed as they arrive; wide windows keep WINDOW_UPDATEs rare.
        settings.initialWindowSize = 1 << 20
        settings.connectionWindowSize = 1 << 24
        return settings
    }()

    private unowned let worker: BenchWorker
    private unowned let loop: EventLoop
    private let request: RequestTemplate
    private let address: SocketAddress
    private let timeoutNs: UInt64
    private let scanEvents: Bool
    private let openLoop: Bool
    private let stats: BenchStats

    private(set) var state = State.disconnected
    private var fd: Int32 = -1
    private let tlsSettings: BenchTLS?
    /// The TLS session of the current socket (`--h2`); nil for h2c.
    private var tls: TLSStream?
    /// Over TLS: the output offset just past the bytes staged for OpenSSL, stamped once the stage is written.
    private var stagedThrough: UInt64 = 0
    private var registration = Registration.none
    private var session: HTTP2Session?
    private var input = ByteBuffer()
    private var deadline: UInt64 = 0
    private var wantsWrite = false
    /// Inside `handleEvent`: output waits until the event's input is all processed, then goes out in one write.
    private var inEvent = false
    /// Inside `output`: nghttp2 may call back, and must not be re-entered.
    private var inOutput = false
    private var outputPending = false
    /// The peer sent GOAWAY: no new streams here; the connection is replaced once its streams are done.
    private var draining = false
    /// The time of the read being processed.
    private var readAt: UInt64 = 0

    private var slots: [Slot]
    private var bodies: [HTTP2Body]
    private var freeSlots: [Int]
    /// Tickets given to the worker and not spent yet.
    private var tickets = 0
    /// HEADERS frames queued in the output, oldest first: (end offset, slot, stream). Stamped once written.
    private var unsent: [(offset: UInt64, slot: Int, stream: Int32)] = []
    private var unsentHead = 0
    private let headers = HTTP2HeaderBlock()

    /// - Parameter tls: the client context (ALPN offering h2) and the name to verify, for `--h2`; nil for h2c.
    init(worker: BenchWorker, loop: EventLoop, request: RequestTemplate, address: SocketAddress, tls: BenchTLS? = nil,
         streams: Int, timeoutNs: UInt64, scanEvents: Bool, openLoop: Bool, stats: BenchStats) {
        tlsSettings = tls
        self.worker = worker
        self.loop = loop
        self.request = request
        self.address = address
        self.timeoutNs = timeoutNs
        self.scanEvents = scanEvents
        self.openLoop = openLoop
        self.stats = stats
        slots = Array(repeating: Slot(), count: streams)
        bodies = (0..<streams).map { _ in HTTP2Body() }
        freeSlots = Array((0..<streams).reversed())
        unsent.reserveCapacity(streams)
        for field in request.h2Fields {
            headers.add(
                name: UnsafeRawBufferPointer(rebasing: request.h2Storage[field.name]),
                value: UnsafeRawBufferPointer(rebasing: request.h2Storage[field.value]), stable: true)
        }
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

    /// Writes to the socket (h2c): the one place bytes go out in cleartext. Over TLS, `flushTLS` writes instead.
    private func writeVectors(_ vectors: UnsafePointer<iovec>, _ count: Int32) throws(IOError) -> IOResult<Int> {
        try HTTP2Socket.sendVectors(fd, vectors, count)
    }

    /// Read always; write when output waits or OpenSSL must write before it can read.
    private func updateInterest() {
        loop.setInterest(registration, wantsWrite || tls?.readWantsWrite == true ? Interest.readWrite : Interest.read)
    }

    // MARK: Connecting

    func open() {
        guard state == .disconnected else { return }
        state = .connecting
        deadline = Clock.monotonicNs() + timeoutNs
        do {
            let (descriptor, result) = try Sockets.connect(to: address)
            fd = descriptor
            registration = loop.register(fd: descriptor, interest: Interest.write, handler: self)
            stats.counters.connectionsOpened += 1
            if case .processed = result { connected() }
        } catch {
            connectFailed()
        }
    }

    private func connected() {
        if let tlsSettings {
            guard handshake(tlsSettings) else { return }
        }
        state = .open
        draining = false
        loop.setInterest(registration, Interest.read)
        if !input.isAllocated { loop.buffers.attachSmall(&input) }
        session = HTTP2Session(role: .client, settings: BenchH2Connection.settings, buffers: loop.buffers, delegate: self)
        for index in slots.indices where slots[index].phase == .queued { submit(index) }
        offerTickets()
        output()
    }

    /// Drives the TLS handshake one step. - Returns: true once it is done and h2 was chosen.
    private func handshake(_ settings: BenchTLS) -> Bool {
        if tls == nil {
            do {
                tls = try TLSStream(client: settings.context, fd: fd, host: settings.host, slot: settings.session)
            } catch {
                if stats.counters.connectErrors == 0 { Log.error("gwbench: \(error)") }
                connectFailed()
                return false
            }
        }
        switch tls!.handshake() {
        case .done:
            guard tls!.negotiatedProtocol == .h2 else {
                if !reportedNoH2.exchange(true, ordering: .relaxed) {
                    let chosen = tls!.negotiatedProtocol.map { "ALPN chose \($0.rawValue)" } ?? "no ALPN protocol chosen"
                    Log.error(
                        "gwbench: the server did not negotiate h2 (\(chosen)): --h2 needs a server that offers HTTP/2 over TLS")
                }
                connectFailed()
                return false
            }
            return true
        case .wantRead:
            loop.setInterest(registration, Interest.read)
        case .wantWrite:
            loop.setInterest(registration, Interest.write)
        case .failed(let reason):
            if stats.counters.connectErrors == 0 { Log.error("gwbench: \(reason)") }
            connectFailed()
        }
        return false
    }

    private func connectFailed() {
        stats.counters.connectErrors += 1
        dropSocket()
        state = .disconnected
        worker.connectFailed()
        if worker.wantsConnections {
            loop.schedule(at: Clock.monotonicNs() + BenchConnection.reconnectBackoffNs, target: self, token: 0)
        }
    }

    func timerFired(token: UInt64) {
        if state == .disconnected, worker.wantsConnections { open() }
    }

    private func dropSocket() {
        if fd >= 0 {
            loop.deregisterAndClose(registration)
            fd = -1
            registration = .none
        }
        tls = nil
        stagedThrough = 0
        wantsWrite = false
        input.clear()
        unsent.removeAll(keepingCapacity: true)
        unsentHead = 0
        if let session {
            // Bodies still referenced by its queue are dropped with it: the next stream of a slot gets a fresh one.
            for index in slots.indices where bodies[index].streamID != 0 {
                session.release(bodies[index])
            }
            session.outbound.releaseAll()
        }
        session = nil
    }

    /// Replaces a connection that broke: its streams failed; queued requests wait for the next one.
    private func reconnect() {
        dropSocket()
        state = .disconnected
        if worker.wantsConnections { open() }
    }

    func shutdown() {
        dropSocket()
        loop.buffers.release(&input)
        state = .closed
    }

    // MARK: Sending

    /// Gives the worker a ticket for every free stream it does not hold one for. In a closed loop each is spent at
    /// once (`send` comes back before `connectionReady` returns).
    private func offerTickets() {
        guard state == .open, !draining else { return }
        while tickets < freeSlots.count {
            tickets += 1
            worker.connectionReady(self)
            guard state == .open, !draining else { return }
        }
    }

    func send(intended: UInt64, measured: Bool) {
        precondition(tickets > 0 && !freeSlots.isEmpty, "send without a ticket")
        tickets -= 1
        let index = freeSlots.removeLast()
        let now = Clock.monotonicNs()
        slots[index] = Slot(phase: .queued, measured: measured, intended: intended, deadline: now + timeoutNs)
        if state == .open && !draining { submit(index) }
        if inEvent { outputPending = true } else { output() }
    }

    /// Opens the stream of a queued request.
    private func submit(_ index: Int) {
        guard let session else { return }
        var body: HTTP2Body?
        if request.bodyBytes > 0 {
            if bodies[index].readable > 0 {
                // The previous stream of the slot was cancelled before its body was all sent, and nghttp2 may still
                // read it: this stream gets a new object.
                bodies[index] = HTTP2Body()
            } else {
                session.release(bodies[index])
            }
            bodies[index].setExternal(request.body.baseAddress!, count: request.bodyBytes)
            body = bodies[index]
        }
        let stream = session.submitRequest(headers: headers, body: body, tag: index + 1)
        guard stream > 0 else {
            // No new stream on this session (GOAWAY, or stream ids used up): the next connection takes it.
            draining = true
            return
        }
        slots[index].phase = .active
        slots[index].stream = stream
    }

    /// Serialises and writes whatever is pending. Replaces a connection that failed or finished (after a GOAWAY).
    private func output() {
        guard !inOutput else {
            outputPending = true
            return
        }
        guard state == .open, let session else { return }
        inOutput = true
        defer { inOutput = false }
        outputPending = false
        while true {
            let produced = session.send()
            guard produced >= 0 else {
                inOutput = false
                broken()
                return
            }
            guard flush(session.outbound) else { return }
            if produced == 0 && !outputPending { break }
            outputPending = false
        }
        if session.isFinished || (draining && activeCount == 0) {
            // GOAWAY and no stream left: a new connection takes the queued requests.
            stats.counters.reconnects += 1
            reconnect()
        }
    }

    private var activeCount: Int { slots.reduce(0) { $0 + ($1.phase == .active ? 1 : 0) } }

    /// Writes the queue. False when the socket is full (writability is awaited) or broke.
    private func flush(_ outbound: HTTP2Outbound) -> Bool {
        if let tls { return flushTLS(outbound, tls) }
        while !outbound.isEmpty {
            let (vectors, count) = outbound.vectors
            let result: IOResult<Int>
            // A request leaves with the writev that carries its HEADERS frame: stamped as the call starts. (At its
            // return the server may already have answered: on loopback the kernel can run it inside the call.)
            let writeAt = Clock.monotonicNs()
            do {
                result = try writeVectors(vectors, count)
            } catch {
                // A new connection may be up before this returns: let it write.
                inOutput = false
                broken()
                return false
            }
            switch result {
            case .processed(let written):
                outbound.advance(by: written)
                stampSent(flushed: outbound.flushedTotal, at: writeAt)
            case .wouldBlock:
                awaitWritable()
                return false
            }
        }
        if wantsWrite {
            wantsWrite = false
            updateInterest()
        }
        return true
    }

    /// `flush` over TLS: the queue is staged a record at a time (copied, so the queue lets go of it at once), then
    /// encrypted onto the socket. A request counts as sent when the write of the record carrying its HEADERS frame
    /// begins, the same moment the writev marks for h2c.
    private func flushTLS(_ outbound: HTTP2Outbound, _ tls: TLSStream) -> Bool {
        while !outbound.isEmpty || tls.hasStagedOutput {
            if tls.hasStagedOutput {
                let writeAt = Clock.monotonicNs()
                let result: IOResult<Void>
                do {
                    result = try tls.writeStaged()
                } catch {
                    inOutput = false
                    broken()
                    return false
                }
                guard case .processed = result else {
                    awaitWritable()
                    return false
                }
                stampSent(flushed: stagedThrough, at: writeAt)
                continue
            }
            let (vectors, count) = outbound.vectors
            outbound.advance(by: tls.stage(vectors, Int(count)))
            stagedThrough = outbound.flushedTotal
        }
        if wantsWrite {
            wantsWrite = false
            updateInterest()
        }
        return true
    }

    private func awaitWritable() {
        guard !wantsWrite else { return }
        wantsWrite = true
        updateInterest()
    }

    /// Requests whose HEADERS frame the last write took count as sent `now`, when that write began.
    @inline(__always)
    private func stampSent(flushed: UInt64, at now: UInt64) {
        guard unsentHead < unsent.count, unsent[unsentHead].offset <= flushed else { return }
        while unsentHead < unsent.count && unsent[unsentHead].offset <= flushed {
            let entry = unsent[unsentHead]
            unsentHead += 1
            if slots[entry.slot].phase == .active && slots[entry.slot].stream == entry.stream && slots[entry.slot].sentAt == 0 {
                slots[entry.slot].sentAt = now
                // The closed loop measures from the moment the request left.
                if !openLoop { slots[entry.slot].intended = now }
            }
        }
        if unsentHead == unsent.count {
            unsent.removeAll(keepingCapacity: true)
            unsentHead = 0
        }
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        if state == .connecting {
            // Once the TLS handshake has begun, its own step reports a broken socket.
            if tls == nil, Posix.socketError(fd) != 0 || events & (EventBits.error | EventBits.hangup) != 0 {
                connectFailed()
            } else {
                connected()
            }
            return
        }
        guard state == .open else { return }
        inEvent = true
        if events & EventBits.writable != 0, wantsWrite { outputPending = true }
        if events & EventBits.writable != 0, tls?.readWantsWrite == true { readAvailable() }
        if events & (EventBits.readable | EventBits.readHangup | EventBits.error | EventBits.hangup) != 0 {
            readAvailable()
        }
        inEvent = false
        if outputPending && state == .open {
            outputPending = false
            output()
        }
    }

    func tick(now: UInt64) {
        switch state {
        case .connecting where now > deadline:
            connectFailed()
        case .open, .disconnected, .connecting:
            var cancelled = false
            for index in slots.indices where slots[index].phase != .free && now > slots[index].deadline {
                cancelled = true
                timedOut(index)
            }
            if cancelled && state == .open { output() }
        default:
            break
        }
    }

    private func timedOut(_ index: Int) {
        let slot = slots[index]
        if slot.measured { stats.counters.timeouts += 1 }
        stats.counters.failuresTotal += 1
        if slot.phase == .active, let session {
            session.resetStream(slot.stream, errorCode: HTTP2ErrorCode.cancel)
            session.setTag(slot.stream, 0)
        }
        release(index)
        worker.requestFailed(measured: slot.measured)
        offerTickets()
    }

    private func readAvailable() {
        while state == .open, let session {
            let asked = input.writableBytes
            let result: IOResult<Int>
            do {
                result = try readBytes(input.writePointer, asked)
            } catch {
                broken()
                return
            }
            guard case .processed(let count) = result else { return }
            if count == 0 {
                broken()
                return
            }
            readAt = Clock.monotonicNs()
            // The buffer is scratch: nghttp2 takes every byte before `receive` returns.
            let ok = session.receive(input.writePointer, count)
            guard ok else {
                stats.counters.badResponses += 1
                broken()
                return
            }
            outputPending = true
            // Read again only when the buffer filled up: level-triggered epoll reports the rest anyway. OpenSSL may
            // hold decrypted bytes the socket no longer signals.
            guard count == asked || tls?.hasBufferedInput == true else { return }
        }
    }

    /// The connection broke (reset, close, a fatal protocol error): every stream on it failed.
    private func broken() {
        guard state == .open else { return }
        for index in slots.indices where slots[index].phase == .active {
            let measured = slots[index].measured
            if measured { stats.counters.resets += 1 }
            stats.counters.failuresTotal += 1
            release(index)
            worker.requestFailed(measured: measured)
        }
        stats.counters.reconnects += 1
        reconnect()
    }

    /// Frees a slot; its ticket is offered again when the connection can take it.
    private func release(_ index: Int) {
        slots[index].phase = .free
        slots[index].stream = 0
        freeSlots.append(index)
    }

    // MARK: HTTP2SessionDelegate

    @inline(__always)
    private func slot(_ stream: Int32, _ tag: Int) -> Int? {
        guard tag > 0, tag <= slots.count, slots[tag - 1].stream == stream, slots[tag - 1].phase == .active else { return nil }
        return tag - 1
    }

    func http2HeadersQueued(_ stream: Int32, tag: Int, until offset: UInt64) {
        guard let index = slot(stream, tag) else { return }
        unsent.append((offset, index, stream))
    }

    func http2HeadersComplete(_ stream: Int32, tag: Int, fields: HTTP2HeaderList, endStream: Bool, oversized: Bool) {
        guard let index = slot(stream, tag) else { return }
        for field in 0..<fields.count {
            let name = fields.name(field)
            guard let base = name.baseAddress else { continue }
            if name.count == 7 && memcmp(base, ":status", 7) == 0 {
                slots[index].status = Int(BenchConnection.parseDecimal(fields.value(field)))
            } else if name.count == 18 && memcmp(base, "x-mock-received-ns", 18) == 0 {
                slots[index].mockReceived = BenchConnection.parseDecimal(fields.value(field))
            }
        }
        if !slots[index].headDone && slots[index].status >= 200 {
            slots[index].headDone = true
            if slots[index].measured {
                stats.ttfb.recordClamped(readAt &- min(slots[index].intended, readAt))
            }
        }
        if endStream { finish(index) }
    }

    func http2Data(_ stream: Int32, tag: Int, _ bytes: UnsafeRawBufferPointer) {
        session?.consume(stream, bytes.count)
        guard let index = slot(stream, tag), let base = bytes.baseAddress else { return }
        slots[index].bodyCount += UInt64(bytes.count)
        if scanEvents {
            let events = slots[index].sse.feed(base, bytes.count)
            if events > 0 { eventsArrived(index, events) }
        }
    }

    func http2DataComplete(_ stream: Int32, tag: Int) {
        guard let index = slot(stream, tag) else { return }
        finish(index)
    }

    func http2StreamClosed(_ stream: Int32, tag: Int, errorCode: UInt32) {
        if tag > 0, tag <= bodies.count, bodies[tag - 1].streamID == stream, let session {
            session.release(bodies[tag - 1])
        }
        guard let index = slot(stream, tag) else { return }
        // Closed before its END_STREAM arrived: reset by the server, or refused by its GOAWAY.
        let measured = slots[index].measured
        if errorCode != HTTP2ErrorCode.noError {
            if measured { stats.counters.resets += 1 }
        } else if measured {
            stats.counters.badResponses += 1
        }
        stats.counters.failuresTotal += 1
        release(index)
        worker.requestFailed(measured: measured)
        offerTickets()
    }

    func http2GoAway(lastStreamID: Int32, errorCode: UInt32) {
        draining = true
    }

    /// `count` SSE events completed in the bytes read at `readAt`.
    private func eventsArrived(_ index: Int, _ count: Int) {
        let now = readAt
        var left = count
        let measured = slots[index].measured
        if slots[index].firstEventAt == 0 {
            slots[index].firstEventAt = now
            if measured { stats.ttft.recordClamped(now &- min(slots[index].intended, now)) }
            left -= 1
        } else if measured {
            stats.interEventGap.recordClamped(now &- min(slots[index].lastEventAt, now))
            left -= 1
        }
        // Events that came in the same read are 0 ns apart.
        if measured, left > 0 { stats.interEventGap.record(0, count: UInt64(left)) }
        slots[index].lastEventAt = now
        slots[index].eventCount += UInt64(count)
    }

    /// END_STREAM arrived: record the response, free the stream's ticket.
    private func finish(_ index: Int) {
        let now = readAt
        let slot = slots[index]
        stats.counters.responsesTotal += 1
        if slot.measured {
            let sent = slot.sentAt != 0 ? slot.sentAt : slot.intended
            let timing = RequestTiming(intended: slot.intended, sent: sent, completed: now)
            stats.latency.recordClamped(timing.corrected)
            stats.latencyUncorrected.recordClamped(timing.uncorrected)
            if openLoop { stats.sendDelay.recordClamped(sent &- min(slot.intended, sent)) }
            stats.statuses[min(slot.status, 999)] += 1
            stats.counters.responses += 1
            if now <= stats.windowEnd { stats.counters.responsesInWindow += 1 }
            stats.counters.bodyBytes += slot.bodyCount
            stats.bytesPerResponse.recordClamped(slot.bodyCount)
            if scanEvents {
                stats.counters.events += slot.eventCount
                stats.eventsPerResponse.recordClamped(slot.eventCount)
            }
            if slot.mockReceived != 0 {
                stats.legToUpstream.recordClamped(slot.mockReceived &- min(sent, slot.mockReceived))
                stats.legFromUpstream.recordClamped(now &- min(slot.mockReceived, now))
            }
            stats.lastCompletion = now
        }
        release(index)
        worker.requestCompleted(measured: slot.measured)
        offerTickets()
    }
}

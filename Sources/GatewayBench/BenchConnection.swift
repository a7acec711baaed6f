#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP
import GatewayIO

/// One keep-alive HTTP/1.1 client connection of the load generator, with at most one request in flight.
///
/// It writes the shared request bytes, parses the response head in place, follows the body framing
/// (Content-Length, chunked, or until close) and counts a response only when its last byte is in. On the
/// way it takes the times the statistics need: head, SSE events, completion, and gwmock's
/// `x-mock-received-ns`. Nothing here allocates per request.
/// What a worker's https connections share: the client context, the name to verify, and the session to resume.
struct BenchTLS {
    let context: TLSContext
    let host: String
    let session: TLSSessionSlot
}

final class BenchConnection: EventHandler, TimerTarget {
    enum State { case disconnected, connecting, ready, inFlight, closed }

    private enum Framing { case none, length, chunked, untilClose }

    static let reconnectBackoffNs: UInt64 = 10_000_000

    // Unowned without reference counting: the worker owns its connections and its loop, and neither calls a
    // connection once the worker is gone. A checked `unowned` costs a retain and a release on every use, on the
    // slow path for the worker (its timer relay holds it weakly, which gives it a side table).
    private unowned(unsafe) let worker: BenchWorker
    private unowned(unsafe) let loop: EventLoop
    private let request: RequestTemplate
    private let address: SocketAddress
    private let timeoutNs: UInt64
    private let scanEvents: Bool
    private let openLoop: Bool
    private let stats: BenchStats

    private(set) var state = State.disconnected
    private var fd: Int32 = -1
    private let tlsSettings: BenchTLS?
    /// The TLS session of the current socket; the handshake runs while `state` is still `.connecting`.
    private var tls: TLSStream?
    private var registration = Registration.none
    private var input = ByteBuffer()
    private var head = ResponseHead()
    private var decoder = ChunkedDecoder()
    private var sse = SSEScanner()
    private var framing = Framing.none
    private var remaining: Int64 = 0
    private var headDone = false
    private var keepAlive = true
    private var written = 0
    private var wantsWrite = false
    private var deadline: UInt64 = 0

    // The request in flight.
    private(set) var measured = false
    private var intended: UInt64 = 0
    private var sentAt: UInt64 = 0
    private var firstEventAt: UInt64 = 0
    private var lastEventAt: UInt64 = 0
    private var eventCount: UInt64 = 0
    private var bodyCount: UInt64 = 0
    private var mockReceived: UInt64 = 0
    private var status = 0

    init(worker: BenchWorker, loop: EventLoop, request: RequestTemplate, address: SocketAddress, tls: BenchTLS? = nil,
         timeoutNs: UInt64, scanEvents: Bool, openLoop: Bool, stats: BenchStats) {
        tlsSettings = tls
        self.worker = worker
        self.loop = loop
        self.request = request
        self.address = address
        self.timeoutNs = timeoutNs
        self.scanEvents = scanEvents
        self.openLoop = openLoop
        self.stats = stats
    }

    // MARK: Connecting

    /// Starts a nonblocking connect; the worker hears `connectionReady` once it is up.
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
            if tls == nil {
                do {
                    tls = try TLSStream(client: tlsSettings.context, fd: fd, host: tlsSettings.host, slot: tlsSettings.session)
                } catch {
                    connectFailed()
                    return
                }
            }
            switch tls!.handshake() {
            case .done: break
            case .wantRead:
                loop.setInterest(registration, Interest.read)
                return
            case .wantWrite:
                loop.setInterest(registration, Interest.write)
                return
            case .failed(let reason):
                if stats.counters.connectErrors == 0 { Log.error("gwbench: \(reason)") }
                connectFailed()
                return
            }
        }
        state = .ready
        loop.setInterest(registration, Interest.read)
        if !input.isAllocated { loop.buffers.attachSmall(&input) }
        worker.connectionReady(self)
    }

    private func connectFailed() {
        stats.counters.connectErrors += 1
        dropSocket()
        state = .disconnected
        worker.connectFailed()
        // Back off a little, so that a refused port is not hammered in a tight loop.
        if worker.wantsConnections {
            loop.schedule(at: Clock.monotonicNs() + BenchConnection.reconnectBackoffNs, target: self, token: 0)
        }
    }

    func timerFired(token: UInt64) {
        if state == .disconnected, worker.wantsConnections { open() }
    }

    /// Replaces a connection the server closed or broke.
    private func reconnect() {
        dropSocket()
        state = .disconnected
        if worker.wantsConnections { open() }
    }

    private func dropSocket() {
        if fd >= 0 {
            loop.deregisterAndClose(registration)
            fd = -1
            registration = .none
        }
        tls = nil
        wantsWrite = false
        input.clear()
    }

    /// Closes for good at the end of the run.
    func shutdown() {
        dropSocket()
        loop.buffers.release(&input)
        state = .closed
    }

    // MARK: Sending

    /// Writes the request. `intended` is when it was due (the send time in a closed loop).
    @inline(__always)
    func send(intended: UInt64, measured: Bool) {
        precondition(state == .ready)
        self.intended = intended
        self.measured = measured
        // A closed loop sends the moment it decides to: `intended` was read from the clock just now.
        sentAt = openLoop ? Clock.monotonicNs() : intended
        deadline = sentAt + timeoutNs
        state = .inFlight
        headDone = false
        status = 0
        firstEventAt = 0
        lastEventAt = 0
        eventCount = 0
        bodyCount = 0
        mockReceived = 0
        written = 0
        head.reset()
        flush()
    }

    private func flush() {
        let base = request.bytes.baseAddress!
        let total = request.count
        while written < total {
            let result: IOResult<Int>
            do {
                result = if let tls {
                    try tls.write(base + written, total - written)
                } else {
                    try Posix.send(fd, base + written, total - written)
                }
            } catch {
                broken()
                return
            }
            switch result {
            case .processed(let count):
                written += count
            case .wouldBlock:
                if !wantsWrite {
                    wantsWrite = true
                    loop.setInterest(registration, Interest.readWrite)
                }
                return
            }
        }
        if wantsWrite {
            wantsWrite = false
            loop.setInterest(registration, Interest.read)
        }
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        if state == .connecting {
            if tls == nil, Posix.socketError(fd) != 0 || events & (EventBits.error | EventBits.hangup) != 0 {
                connectFailed()
            } else {
                connected()
            }
            return
        }
        if events & EventBits.writable != 0, wantsWrite {
            flush()
            guard state == .inFlight else { return }
        }
        if events & (EventBits.readable | EventBits.readHangup | EventBits.error | EventBits.hangup) != 0 {
            readAvailable()
        }
    }

    func tick(now: UInt64) {
        switch state {
        case .inFlight where now > deadline:
            if measured { stats.counters.timeouts += 1 }
            stats.counters.failuresTotal += 1
            let wasMeasured = measured
            reconnect()
            worker.requestFailed(measured: wasMeasured)
        case .connecting where now > deadline:
            connectFailed()
        default:
            break
        }
    }

    private func readAvailable() {
        guard state == .inFlight else {
            if state == .ready {
                // A TLS 1.3 server sends its session tickets after the handshake: they yield no bytes.
                if tls?.onlyHandshakeMessagesArrived() == true { return }
                // An idle keep-alive connection turned readable: the server closed it (or sent junk).
                stats.counters.reconnects += 1
                reconnect()
            }
            return
        }
        while true {
            if input.writableBytes == 0 {
                input.compact()
                if input.writableBytes == 0 {
                    guard !headDone, input.capacity == Buffers.smallSize else {
                        badResponse()
                        return
                    }
                    loop.buffers.grow(&input)
                }
            }
            let asked = input.writableBytes
            let result: IOResult<Int>
            do {
                if let tls {
                    result = try tls.read(input.writePointer, asked)
                } else {
                    result = try Posix.read(fd, input.writePointer, asked)
                }
            } catch {
                broken()
                return
            }
            guard case .processed(let count) = result else { return }
            if count == 0 {
                endOfStream()
                return
            }
            input.writerIndex += count
            processInput(at: Clock.monotonicNs())
            // Read again only when the buffer filled up: level-triggered epoll reports the rest anyway. OpenSSL may
            // hold decrypted bytes the socket no longer signals.
            guard state == .inFlight, count == asked || tls?.hasBufferedInput == true else { return }
        }
    }

    private func processInput(at now: UInt64) {
        while !headDone {
            switch head.parse(input.readPointer, input.readableBytes) {
            case .incomplete:
                return
            case .failed:
                badResponse()
                return
            case .complete:
                let code = head.status
                if code >= 100 && code < 200 {
                    guard code != 101 else {
                        badResponse()
                        return
                    }
                    input.readerIndex += head.headLength
                    head.reset()
                    continue
                }
                headReceived(at: now)
            }
        }
        deliverBody(at: now)
    }

    private func headReceived(at now: UInt64) {
        status = head.status
        keepAlive = head.keepAlive
        if request.isHead || status == 204 || status == 304 {
            framing = .none
        } else if head.chunked {
            framing = .chunked
            decoder.reset()
        } else if head.contentLength >= 0 {
            framing = .length
            remaining = head.contentLength
        } else {
            framing = .untilClose
            keepAlive = false
        }
        mockReceived = head.mockReceivedNs
        if measured {
            stats.ttfb.recordClamped(now &- min(intended, now))
        }
        input.readerIndex += head.headLength
        headDone = true
        if scanEvents { sse.reset() }
    }

    private func deliverBody(at now: UInt64) {
        let available = input.readableBytes
        let start = input.readPointer
        switch framing {
        case .none:
            finish(at: now)
        case .length:
            let take = Int(min(Int64(available), remaining))
            body(start, take, at: now)
            remaining -= Int64(take)
            input.readerIndex += take
            if remaining == 0 { finish(at: now) } else { input.clear() }
        case .chunked:
            var chunked = decoder
            var events = 0
            var bytes = 0
            let scan = scanEvents
            var scanner = sse
            let feed = chunked.feed(start, available) { data, count in
                bytes += count
                if scan { events += scanner.feed(data, count) }
            }
            decoder = chunked
            sse = scanner
            bodyCount += UInt64(bytes)
            if events > 0 { eventsArrived(events, at: now) }
            if feed.error != nil {
                badResponse()
                return
            }
            input.readerIndex += feed.consumed
            if feed.done { finish(at: now) } else { input.clear() }
        case .untilClose:
            body(start, available, at: now)
            input.clear()
        }
    }

    @inline(__always)
    private func body(_ start: UnsafeRawPointer, _ count: Int, at now: UInt64) {
        guard count > 0 else { return }
        bodyCount += UInt64(count)
        if scanEvents {
            let events = sse.feed(start, count)
            if events > 0 { eventsArrived(events, at: now) }
        }
    }

    /// `count` SSE events completed in the bytes that arrived at `now`.
    private func eventsArrived(_ count: Int, at now: UInt64) {
        var left = count
        if firstEventAt == 0 {
            firstEventAt = now
            if measured { stats.ttft.recordClamped(now &- min(intended, now)) }
            left -= 1
        } else if measured {
            stats.interEventGap.recordClamped(now &- min(lastEventAt, now))
            left -= 1
        }
        // Events that came in the same read are 0 ns apart.
        if measured, left > 0 { stats.interEventGap.record(0, count: UInt64(left)) }
        lastEventAt = now
        eventCount += UInt64(count)
    }

    /// The server closed the connection.
    private func endOfStream() {
        if state == .inFlight, headDone, framing == .untilClose {
            finish(at: Clock.monotonicNs())
            return
        }
        broken()
    }

    /// A reset or an early close with a request in flight.
    private func broken() {
        guard state == .inFlight else {
            reconnect()
            return
        }
        let wasMeasured = measured
        if wasMeasured { stats.counters.resets += 1 }
        stats.counters.failuresTotal += 1
        reconnect()
        worker.requestFailed(measured: wasMeasured)
    }

    private func badResponse() {
        let wasMeasured = measured
        if wasMeasured { stats.counters.badResponses += 1 }
        stats.counters.failuresTotal += 1
        reconnect()
        worker.requestFailed(measured: wasMeasured)
    }

    /// The last byte of the response is in: record it, then reuse or replace the connection.
    private func finish(at now: UInt64) {
        if input.readableBytes > 0 { keepAlive = false }  // bytes past the response: do not trust the stream
        input.clear()
        let wasMeasured = measured
        stats.counters.responsesTotal += 1
        if wasMeasured {
            let timing = RequestTiming(intended: intended, sent: sentAt, completed: now)
            stats.latency.recordClamped(timing.corrected)
            stats.latencyUncorrected.recordClamped(timing.uncorrected)
            if openLoop { stats.sendDelay.recordClamped(sentAt &- min(intended, sentAt)) }
            stats.statuses[min(status, 999)] += 1
            stats.counters.responses += 1
            if now <= stats.windowEnd { stats.counters.responsesInWindow += 1 }
            stats.counters.bodyBytes += bodyCount
            stats.bytesPerResponse.recordClamped(bodyCount)
            if scanEvents {
                stats.counters.events += eventCount
                stats.eventsPerResponse.recordClamped(eventCount)
            }
            if mockReceived != 0 {
                stats.legToUpstream.recordClamped(mockReceived &- min(sentAt, mockReceived))
                stats.legFromUpstream.recordClamped(now &- min(mockReceived, now))
            }
            stats.lastCompletion = now
        }
        state = .ready
        if keepAlive {
            worker.requestCompleted(measured: wasMeasured)
            worker.connectionReady(self)
        } else {
            stats.counters.reconnects += 1
            worker.requestCompleted(measured: wasMeasured)
            reconnect()
        }
    }

    /// A decimal number from header bytes; 0 when there is none.
    static func parseDecimal(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var value: UInt64 = 0
        for byte in bytes {
            let digit = byte &- UInt8(ascii: "0")
            guard digit < 10 else { return byte == UInt8(ascii: " ") ? value : 0 }
            value = value &* 10 &+ UInt64(digit)
        }
        return value
    }
}

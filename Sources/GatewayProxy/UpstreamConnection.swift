#if canImport(Glibc)
import Glibc
#endif
import GatewayConfig
import GatewayHTTP
import GatewayIO

/// Why an upstream gave no usable response. Each maps to one status of the contract.
public enum UpstreamFailure: Sendable {
    /// Refused or reset before the response head: 502. `retryable` when it happened on a reused
    /// connection before any response byte, where the server may simply have closed an idle connection.
    case failed(errno: Int32, retryable: Bool)
    /// The connection could not be made (refused, unreachable): 502.
    case connectFailed(errno: Int32)
    /// No connection within the connect timeout: 503.
    case connectTimeout
    /// No response within the response timeout: 504.
    case responseTimeout
    /// The response was not valid HTTP: 502.
    case badResponse(StaticString)
    /// The TLS handshake failed (bad certificate, wrong host name, no common protocol): 502, with OpenSSL's reason.
    case tlsFailed(String)

    var status: Int {
        switch self {
        case .failed, .connectFailed, .badResponse, .tlsFailed: 502
        case .connectTimeout: 503
        case .responseTimeout: 504
        }
    }

    var code: StaticCode {
        switch self {
        case .failed, .connectFailed, .badResponse, .tlsFailed: .upstreamError
        case .connectTimeout: .upstreamUnavailable
        case .responseTimeout: .upstreamTimeout
        }
    }

    var message: String {
        switch self {
        case .failed(let code, _): code == 0 ? "the upstream closed the connection before responding"
            : "the upstream connection failed (\(errnoName(code)))"
        case .connectFailed(let code): "could not connect to the upstream (\(errnoName(code)))"
        case .connectTimeout: "no upstream connection could be made within the connect timeout"
        case .responseTimeout: "the upstream did not respond within the response timeout"
        case .badResponse(let text): "the upstream sent an invalid response: \(text)"
        case .tlsFailed(let reason): "the TLS handshake with the upstream failed: \(reason)"
        }
    }

    /// The retry class of the failure (`models[].retry.on`).
    var retryCondition: RetryCondition {
        switch self {
        case .connectFailed, .connectTimeout, .tlsFailed: .connect_error
        case .responseTimeout: .timeout
        case .failed, .badResponse: .reset
        }
    }
}

func errnoName(_ code: Int32) -> String {
    switch code {
    case ECONNREFUSED: "connection refused"
    case ECONNRESET: "connection reset"
    case EPIPE: "broken pipe"
    case ETIMEDOUT: "timed out"
    case EHOSTUNREACH: "host unreachable"
    case ENETUNREACH: "network unreachable"
    default: "errno \(code)"
    }
}

/// How the upstream frames its response body.
public enum ResponseFraming: Equatable {
    case none
    case length(Int64)
    case chunked
    /// HTTP/1.0 style: the body ends when the upstream closes. The connection is not reused.
    case untilClose
}

/// What carries one request to a provider: a keep-alive HTTP/1.1 connection (`UpstreamConnection`) or a stream of
/// an HTTP/2 connection (`UpstreamH2Stream`). Either way the exchange writes an HTTP/1.1 request into `out` and calls
/// `sendQueued`, and hears the response through `UpstreamExchange`.
protocol UpstreamChannel: AnyObject {
    var out: OutboundQueue { get set }
    /// True: chunked bodies reach the exchange with their framing. False: decoded (HTTP/1.0 clients, HTTP/2
    /// streams, translation).
    var passRawChunks: Bool { get set }
    /// False while a request body is still streaming in from the client.
    var requestBodyComplete: Bool { get set }
    /// Request bytes are still waiting to go out: a streaming body reads on at `upstreamWritable`.
    var hasPendingOutput: Bool { get }
    var route: ProviderRoute { get }
    /// Sends what the exchange queued in `out`, then waits for the response. `layout`, when given, says where the
    /// parts of the head at the start of `out` are (an HTTP/2 stream makes its fields from it without parsing).
    func sendQueued(layout: RequestHeadLayout?)
    /// More request body; the bytes stay valid until `upstreamWritable`.
    func sendMore(_ bytes: UnsafeRawPointer, _ count: Int)
    /// The exchange took the body bytes it was last given: deliver on.
    func resume()
    /// From `upstreamResponseHead`: the exchange will not use this response (it retries elsewhere).
    func discardResponse()
    /// Undoes `discardResponse` within the same `upstreamResponseHead` call.
    func keepResponse(for exchange: any UpstreamExchange)
    /// The exchange is gone (its client left): stop the request.
    func cancel()
}

/// What rendering a request head tells about where its parts went (`ClientConnection.renderUpstreamHead`).
protocol HeadLayoutNotes {
    func noteMethod(count: Int32)
    func noteTarget(start: Int, end: Int)
    /// "host: VALUE\r\n" at `start`.
    func noteHostLine(start: Int, count: Int)
    func note(nameStart: Int, nameCount: Int, lineEnd: Int)
    func noteLine(_ head: UnsafeRawPointer, from lineStart: Int, to lineEnd: Int)
    func noteHeadLength(_ length: Int)
}

/// Notes nothing: the head goes to an HTTP/1.1 provider as it is.
struct NoHeadLayout: HeadLayoutNotes {
    @inline(__always) func noteMethod(count: Int32) {}
    @inline(__always) func noteTarget(start: Int, end: Int) {}
    @inline(__always) func noteHostLine(start: Int, count: Int) {}
    @inline(__always) func note(nameStart: Int, nameCount: Int, lineEnd: Int) {}
    @inline(__always) func noteLine(_ head: UnsafeRawPointer, from lineStart: Int, to lineEnd: Int) {}
    @inline(__always) func noteHeadLength(_ length: Int) {}
}

/// Where the parts of an HTTP/1.1 request head the gateway rendered are, as offsets from its first byte: what an
/// HTTP/2 stream needs to make HEADERS fields from it (`UpstreamH2Stream`). `fields` are the fields it forwards, in
/// order, without Host (`authority` is Host's value) and without hop-by-hop fields.
final class RequestHeadLayout: HeadLayoutNotes {
    /// The most fields a layout holds: the client's forwarded fields (at most `HTTPHeadParser.maxFields`) and the
    /// ones the gateway adds. A head with more is parsed instead (`fields` is then nil).
    static let capacity = HTTPHeadParser.maxFields + 8
    var method = ByteRange.empty
    var target = ByteRange.empty
    var authority = ByteRange.empty
    var headLength = 0
    private let storage = UnsafeMutablePointer<HeaderField>.allocate(capacity: RequestHeadLayout.capacity)
    private(set) var count = 0

    deinit { storage.deallocate() }

    var fields: UnsafeBufferPointer<HeaderField> { UnsafeBufferPointer(start: storage, count: count) }

    func removeAll() { count = 0 }

    func noteMethod(count: Int32) { method = ByteRange(start: 0, count: count) }
    func noteTarget(start: Int, end: Int) { target = ByteRange(start: Int32(start), count: Int32(end - start)) }
    func noteHostLine(start: Int, count: Int) { authority = ByteRange(start: Int32(start + 6), count: Int32(count - 8)) }
    func noteHeadLength(_ length: Int) { headLength = length }

    /// Notes the field "NAME: value\r\n" whose name starts at `nameStart` and whose line ends at `lineEnd`.
    @inline(__always)
    func note(nameStart: Int, nameCount: Int, lineEnd: Int) {
        precondition(count < RequestHeadLayout.capacity, "request head layout full")
        let valueStart = nameStart + nameCount + 2
        storage[count] = HeaderField(name: ByteRange(start: Int32(nameStart), count: Int32(nameCount)),
                                     value: ByteRange(start: Int32(valueStart), count: Int32(lineEnd - 2 - valueStart)))
        count += 1
    }

    /// Notes the field "name: value\r\n" that starts at `lineStart` and ends at `lineEnd` of `head`.
    func noteLine(_ head: UnsafeRawPointer, from lineStart: Int, to lineEnd: Int) {
        var colon = lineStart
        while head.load(fromByteOffset: colon, as: UInt8.self) != UInt8(ascii: ":") { colon += 1 }
        note(nameStart: lineStart, nameCount: colon - lineStart, lineEnd: lineEnd)
    }
}

/// The side of a proxied request that waits on an upstream: the client connection, or one HTTP/2 stream of it.
protocol UpstreamExchange: AnyObject {
    /// The channel is ready for this request: write it into `out`, then `sendQueued`.
    func upstreamReady(_ connection: any UpstreamChannel)
    func upstreamFailed(_ failure: UpstreamFailure)
    /// The response head is in `parser`; its ranges are valid only during this call.
    /// Everything queued so far reached the socket: a streaming request body may read on.
    func upstreamWritable()
    func upstreamResponseHead(_ parser: HTTPHeadParser, framing: ResponseFraming)
    /// Response body bytes, framed as the client asked (`passRawChunks`). Returns false when the client
    /// cannot take more yet; the bytes stay valid and the upstream stops reading until `resume()`.
    func upstreamBody(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool
    func upstreamResponseComplete()
    /// The upstream broke after the response head was sent on.
    func upstreamAborted()
}

/// One keep-alive HTTP/1.1 connection to a provider, owned by its pool, serving one request at a time.
final class UpstreamConnection: EventHandler, UpstreamChannel {
    static let maxRequestsPerConnection = 10_000

    enum State { case connecting, handshaking, idle, writing, awaitingHead, readingBody, closed }

    // Strong: after a reload, connections in flight keep their old pool alive until they close.
    let pool: UpstreamPool
    let loop: EventLoop
    /// The loop's buffer pools, held by a strong `let` of its own: a call through `loop.buffers` (or an unowned
    /// reference) retained and released them around every use; a `let` of this object needs neither.
    private let buffers: Buffers
    private(set) var state = State.connecting
    private var dialer = UpstreamDialer()
    private var fd: Int32 { dialer.fd }
    private var tls: TLSStream? { dialer.tls }
    private var registration: Registration { dialer.registration }
    private var exchange: (any UpstreamExchange)?
    private var input = ByteBuffer()
    var out = OutboundQueue()
    private let parser = HTTPHeadParser()
    private var decoder = ChunkedDecoder()
    private var framing = ResponseFraming.none
    private var remaining: Int64 = 0
    private(set) var requestsServed = 0
    private var receivedResponseBytes = false
    private var deadline: UInt64 = 0
    private var paused = false
    private var finishOnResume = false
    private var reusable = true
    private var wantsWrite = false
    /// The response head was handed over and nothing has flushed it yet.
    private var headPending = false
    /// The exchange let go of the response (`discardResponse`): read it to the end and drop it.
    private var discarding = false
    /// True: chunked bodies pass through with their framing. False: they are decoded (for HTTP/1.0
    /// clients and HTTP/2 streams).
    var passRawChunks = true
    /// False while a request body is still streaming in: the connection cannot be reused until it is sent.
    var requestBodyComplete = true

    var hasPendingOutput: Bool { !out.isEmpty }
    var route: ProviderRoute { pool.route }

    init(pool: UpstreamPool, loop: EventLoop) {
        self.pool = pool
        self.loop = loop
        self.buffers = loop.buffers
    }

    deinit {
        out.deallocate()
    }

    var isReused: Bool { requestsServed > 0 }

    /// Starts a nonblocking connect for `exchange`.
    func connect(for exchange: any UpstreamExchange) {
        self.exchange = exchange
        state = .connecting
        deadline = loop.now + pool.context.config.connectTimeoutNs
        dialed(dialer.start(pool, handler: self))
    }

    /// Takes an idle connection for a new request.
    func assign(_ exchange: any UpstreamExchange) {
        self.exchange = exchange
        state = .writing
        exchange.upstreamReady(self)
    }

    private func dialed(_ progress: UpstreamDialer.Progress) {
        switch progress {
        case .waiting:
            if dialer.handshaking { state = .handshaking }
        case .failed(let failure):
            fail(failure)
        case .open:
            state = .writing
            loop.setInterest(registration, Interest.read)
            exchange?.upstreamReady(self)
        }
    }

    /// Writes what the exchange queued in `out`, then waits for the response (the head as it is: `layout` is for
    /// HTTP/2 streams).
    func sendQueued(layout: RequestHeadLayout?) {
        receivedResponseBytes = false
        reusable = true
        paused = false
        finishOnResume = false
        deadline = loop.now + pool.context.config.responseTimeoutNs
        state = .awaitingHead
        flushOut()
    }

    private func flushOut() {
        let result = if let tls { out.flush(through: tls) } else { out.flush(to: fd) }
        switch result {
        case .done:
            if wantsWrite {
                wantsWrite = false
                loop.setInterest(registration, paused ? Interest.none : Interest.read)
                exchange?.upstreamWritable()
            }
        case .wouldBlock:
            if !wantsWrite {
                wantsWrite = true
                loop.setInterest(registration, Interest.readWrite)
            }
        case .failed(let error):
            handleBrokenConnection(errno: error.errno)
        }
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        if state == .connecting || state == .handshaking {
            dialed(dialer.advance(pool, events: events))
            return
        }
        if events & EventBits.writable != 0, wantsWrite || tls?.readWantsWrite == true {
            if wantsWrite { flushOut() }
            guard state != .closed else { return }
            if tls?.readWantsWrite == true { readAvailable() }
        }
        if events & (EventBits.readable | EventBits.readHangup | EventBits.error | EventBits.hangup) != 0 {
            readAvailable()
        }
        // OpenSSL may hold decrypted bytes the socket no longer signals.
        while let tls, tls.hasBufferedInput, !paused, state == .awaitingHead || state == .readingBody {
            readAvailable()
        }
    }

    func tick(now: UInt64) {
        switch state {
        case .connecting where now > deadline, .handshaking where now > deadline:
            fail(.connectTimeout)
        case .writing where now > deadline, .awaitingHead where now > deadline:
            fail(.responseTimeout)
        case .readingBody where now > deadline && !paused:
            abort()
        case .idle where now > deadline:
            close()
        default:
            break
        }
    }

    private func readAvailable() {
        if state == .idle {
            // An idle keep-alive connection turned readable: the server closed it or sent junk, unless it is a
            // late TLS message (a session ticket) that yields no bytes.
            if tls?.onlyHandshakeMessagesArrived() == true { return }
            close()
            return
        }
        if paused { return }
        if !input.isAllocated { buffers.attachSmall(&input) }
        if input.writableBytes == 0 {
            if state == .awaitingHead, input.capacity == Buffers.smallSize {
                buffers.grow(&input)
            } else {
                input.compact()
            }
        }
        let result: IOResult<Int>
        do {
            if let tls {
                result = try tls.read(input.writePointer, input.writableBytes)
                if tls.readWantsWrite { loop.setInterest(registration, Interest.readWrite) }
            } else {
                result = try Posix.read(fd, input.writePointer, input.writableBytes)
            }
        } catch {
            handleBrokenConnection(errno: error.errno)
            return
        }
        guard case .processed(let count) = result else { return }
        if count == 0 {
            handleBrokenConnection(errno: 0)
            return
        }
        input.writerIndex += count
        receivedResponseBytes = true
        deadline = loop.now + pool.context.config.responseTimeoutNs
        processInput()
    }

    /// EOF or a socket error.
    private func handleBrokenConnection(errno code: Int32) {
        switch state {
        case .connecting:
            fail(.connectFailed(errno: code == 0 ? ECONNREFUSED : code))
        case .handshaking:
            fail(.tlsFailed(tls?.failureReason ?? "errno \(code)"))
        case .writing, .awaitingHead:
            fail(.failed(errno: code, retryable: isReused && !receivedResponseBytes))
        case .readingBody:
            if framing == .untilClose && code == 0 {
                reusable = false
                finishResponse()
            } else {
                abort()
            }
        case .idle:
            close()
        case .closed:
            break
        }
    }

    private func processInput() {
        while state == .awaitingHead {
            switch parser.parseResponse(input.readPointer, input.readableBytes) {
            case .incomplete:
                return
            case .failed(let error):
                fail(.badResponse(error.message))
                return
            case .complete:
                let status = parser.status
                if status >= 100 && status < 200 {
                    // Interim responses (100 Continue) are not forwarded; 101 would switch protocols.
                    guard status != 101 else {
                        fail(.badResponse("unexpected protocol switch"))
                        return
                    }
                    input.readerIndex += parser.headLength
                    continue
                }
                if status == 204 || status == 304 {
                    framing = .none
                } else if parser.chunked {
                    framing = .chunked
                    decoder.reset()
                } else if parser.contentLength >= 0 {
                    framing = .length(parser.contentLength)
                    remaining = parser.contentLength
                } else {
                    framing = .untilClose
                    reusable = false
                }
                if !parser.keepAlive { reusable = false }
                state = .readingBody
                headPending = true
                exchange?.upstreamResponseHead(parser, framing: framing)
                guard state == .readingBody else { return }
                input.readerIndex += parser.headLength
                if framing == .none || framing == .length(0) {
                    if input.readableBytes > 0 { reusable = false }
                    input.clear()
                    finishResponse()
                    return
                }
            }
        }
        if state == .readingBody { deliverBody() }
    }

    private func deliverBody() {
        let available = input.readableBytes
        guard exchange != nil || discarding, available > 0 || headPending else { return }
        headPending = false
        let start = input.readPointer
        var deliverCount = available
        var done = false
        switch framing {
        case .length:
            let take = Int(min(Int64(available), remaining))
            remaining -= Int64(take)
            if take < available { reusable = false }
            deliverCount = take
            done = remaining == 0
        case .chunked:
            if passRawChunks {
                let feed = decoder.feed(start, available) { _, _ in }
                if let error = feed.error {
                    Log.error("upstream \(pool.route.name): bad chunked body: \(error)")
                    abort()
                    return
                }
                deliverCount = feed.consumed
                done = feed.done
                if done && feed.consumed < available { reusable = false }
            } else {
                // Decode in place: data runs move toward the start, which never overtakes the input.
                var write = start
                let feed = decoder.feed(start, available) { data, count in
                    if write != UnsafeMutableRawPointer(mutating: data) {
                        memmove(write, data, count)
                    }
                    write += count
                }
                if let error = feed.error {
                    Log.error("upstream \(pool.route.name): bad chunked body: \(error)")
                    abort()
                    return
                }
                deliverCount = write - start
                done = feed.done
                if done && feed.consumed < available { reusable = false }
            }
        case .untilClose:
            break
        case .none:
            deliverCount = 0
            done = true
        }
        // A discarded response is read to its end and dropped, so the connection can be reused.
        let accepted = exchange?.upstreamBody(start, deliverCount) ?? true
        guard state == .readingBody else { return }
        if accepted {
            input.clear()
            if done { finishResponse() }
        } else {
            paused = true
            finishOnResume = done
            loop.setInterest(registration, wantsWrite ? Interest.write : Interest.none)
        }
    }

    /// More request body for the upstream (streaming); the bytes stay valid until written.
    func sendMore(_ bytes: UnsafeRawPointer, _ count: Int) {
        guard state != .closed, state != .idle else { return }
        out.append(bytes, count)
        flushOut()
    }

    /// The client took the bytes it was given: read on.
    func resume() {
        guard paused, state == .readingBody else { return }
        paused = false
        input.clear()
        if finishOnResume {
            finishResponse()
            return
        }
        loop.setInterest(registration, wantsWrite ? Interest.readWrite : Interest.read)
        readAvailable()
    }

    private func finishResponse() {
        headPending = false
        discarding = false
        let finished = exchange
        exchange = nil
        requestsServed += 1
        buffers.release(&input)
        if reusable && requestBodyComplete && requestsServed < UpstreamConnection.maxRequestsPerConnection && !wantsWrite {
            state = .idle
            deadline = loop.now + pool.context.config.idleTimeoutNs
            pool.release(self)
        } else {
            close()
        }
        finished?.upstreamResponseComplete()
    }

    /// Called from `upstreamResponseHead`: the exchange will not use this response (it retries elsewhere).
    /// The body is read and dropped, and the connection goes back to its pool if it stays usable.
    func discardResponse() {
        exchange = nil
        discarding = true
    }

    /// Undoes `discardResponse` within the same `upstreamResponseHead` call: no retry was possible after all.
    func keepResponse(for exchange: any UpstreamExchange) {
        self.exchange = exchange
        discarding = false
    }

    /// Detaches the exchange (its client went away) and drops the connection: its state is unknown.
    func cancel() {
        exchange = nil
        close()
    }

    private func fail(_ failure: UpstreamFailure) {
        let failed = exchange
        exchange = nil
        close()
        failed?.upstreamFailed(failure)
    }

    private func abort() {
        discarding = false
        let aborted = exchange
        exchange = nil
        close()
        aborted?.upstreamAborted()
    }

    func close() {
        guard state != .closed else { return }
        state = .closed
        discarding = false
        dialer.close(loop)
        buffers.release(&input)
        out.removeAll()
        pool.connectionClosed(self)
    }
}

#if canImport(Glibc)
import Glibc
#endif
import GatewayConfig
import GatewayHTTP
import GatewayIO
import GatewayPolicy
import GatewayStore
import GatewayTranslate

/// The API paths the gateway answers; anything else is a 404.
typealias Endpoint = APIPath

extension APIPath {
    /// Forwarded to a provider (the model APIs); the others are answered by the gateway itself.
    var isProxied: Bool { isModelAPI }
}

/// The client side of a request that has no socket of its own: an HTTP/2 stream. It hands `ClientConnection` the
/// request as HTTP/1.1 bytes and takes the HTTP/1.1 response it writes, so that every request, whatever its
/// protocol, runs through the same policy, routing and accounting.
protocol ClientStreamTransport: AnyObject {
    /// Request bytes copied into `buffer`; `.wouldBlock` until more arrive (the transport then calls
    /// `streamReadable`).
    func readRequest(_ buffer: UnsafeMutableRawPointer, _ count: Int) -> IOResult<Int>
    /// Has `parser` take the request head now at `start` (the first `available` bytes read) from the fields it was
    /// rendered from, instead of parsing it again: `.incomplete` until all of it has been read.
    func adoptRequestHead(_ parser: HTTPHeadParser, _ start: UnsafeRawPointer, _ available: Int) -> HTTPHeadParser.Outcome
    /// Takes response bytes from `out`; `.wouldBlock` keeps the rest queued until `streamWritable`.
    func writeResponse(_ out: inout OutboundQueue) -> OutboundQueue.FlushResult
    /// Takes a proxied response's head as fields, before any of its body is written. - Returns: false when the
    /// head must come as HTTP/1.1 bytes through `writeResponse` instead.
    func writeResponseHead(_ head: ProxiedResponseHead, upstream: HTTPHeadParser) -> Bool
    /// Whether the exchange wants request bytes now (false: backpressure, leave them unread).
    func readInterestChanged(_ wantsRead: Bool)
    /// The exchange is over: its response was written, or it was abandoned before its end.
    func exchangeClosed()
}

/// The head of a proxied response, as the client is to get it: the upstream's status and end-to-end fields
/// (`ClientConnection.forwardsResponseField`, from the parser passed beside it), a `retry-after: 1` when a 429 lacks
/// one, then the gateway's own fields. The body bytes written after it are framed as `framing` says, chunks as the
/// upstream sent them. Valid only during the call it is passed to. It holds no object references: the parser goes
/// as a parameter and the label as bytes, so that building it costs no reference counting.
struct ProxiedResponseHead {
    let framing: ResponseFraming
    let addRetryAfter: Bool
    let rateLimits: RateLimitHeaders?
    let requestID: UnsafeRawBufferPointer
    let deploymentLabel: UnsafeRawBufferPointer?
    let attempts: Int
}

/// One client's HTTP/1.1 connection: it parses requests in place, picks the upstream from the body's
/// `model`, and relays the response as it arrives. One request is in flight at a time; pipelined
/// requests wait in the read buffer and are answered in order. An HTTP/2 stream is served by one of these over a
/// `ClientStreamTransport` instead of a socket.
///
/// Memory: the read buffer, the upstream head and the response head are pool chunks taken while a
/// request is active and given back when the connection goes idle. A request that fits in the read
/// buffer is forwarded from it without a copy; a larger body, or a chunked one, goes to a heap buffer.
final class ClientConnection: EventHandler, UpstreamExchange, TimerTarget {
    enum State { case idle, readingHead, readingBody, proxying, closed }
    enum BodyMode { case none, inInput, heapLength, heapChunked }

    /// Strong: an unowned(unsafe) reference is retained and released around each use, a `let` is not. The context
    /// does not hold its connections, so there is no cycle.
    private let context: LoopContext
    private let loop: EventLoop
    /// The loop's buffer pools, held by a strong `let` of its own: a call through `loop.buffers` (or an unowned
    /// reference) retained and released them around every use; a `let` of this object needs neither.
    private let buffers: Buffers
    private let fd: Int32
    private let peer: SocketAddress
    /// Set on a tls:// listener; the handshake runs before the first request is read.
    private let tls: TLSStream?
    /// Set for an HTTP/2 stream (then `fd` is -1); released when the exchange closes.
    private var stream: (any ClientStreamTransport)?
    /// Nothing has been parsed yet on a plain socket: the first bytes may be the HTTP/2 client preface.
    private var mayBeH2 = true
    private var registration = Registration.none
    private(set) var state = State.idle

    private var input = ByteBuffer()
    private var body = ByteBuffer()
    private var headCopy = ByteBuffer()
    private var upstreamHead = ByteBuffer()
    /// Where the parts of `upstreamHead` are, when it is for an HTTP/2 provider (`headLayoutValid`).
    private let headLayout = RequestHeadLayout()
    private var headLayoutValid = false
    private var responseHead = ByteBuffer()
    private var out = OutboundQueue()
    private let parser = HTTPHeadParser()
    private var decoder = ChunkedDecoder()

    private var deadline: UInt64 = 0
    private var writeDeadline: UInt64 = 0
    private var wantsWrite = false
    private var readPaused = false
    private var peerClosedInput = false
    private var closeAfterFlush = false
    private var draining = false
    private var processing = false

    // The request in flight.
    private var keepAlive = true
    private var minorVersion = 1
    private var endpoint = Endpoint.other
    private var bodyMode = BodyMode.none
    private var headEnd = 0
    private var contentLength = 0
    private var bodyPointer: UnsafeRawPointer?
    private var bodyCount = 0
    private var modelRange: Range<Int> = 0..<0
    private var deployment: DeploymentRoute?
    private var pool: UpstreamPool?
    private var upstream: (any UpstreamChannel)?
    private var waitingForUpstream = false
    private var attempts = 0
    private var responseStarted = false
    /// The request went upstream before its whole body arrived; the rest follows as it is read.
    private var streamingBody = false
    /// Body bytes already queued to the upstream (offsets in `body`).
    private var bodyForwarded = 0
    private var triedEarlyDispatch = false
    private var closeAfterResponse = false
    // Routing of the request in flight (see `startAttempt`).
    private var primaryModel: ModelRoute?
    private var currentModel: ModelRoute?
    /// The deployment of `currentModel` in use, or -1.
    private var deploymentIndex = -1
    /// Deployments of `currentModel` this request has tried, a bit each.
    private var triedMask: UInt64 = 0
    /// How many of the primary model's fallbacks have been moved on to.
    private var fallbackPosition = 0
    private var fallbacksAllowed = true
    /// This attempt is its deployment's half-open probe.
    private var probing = false
    /// The attempt counts in its model's picker (in flight, latency): models with several deployments.
    private var pickerTracks = false
    private var freshRetryUsed = false
    /// The body's `model` differs from the deployment's upstream id: it is spliced.
    private var renameBody = false
    private var streamRequested = false
    private var requestFields = JSONFieldScanner.Result()
    private var attemptStartNs: UInt64 = 0
    /// `x-gateway-timeout-ms`: no attempt starts, and no response may still be awaited, past this; 0 for none.
    private var requestDeadline: UInt64 = 0
    /// The picker generation the request was routed under; after a reload its attempts report nothing.
    private var routeGeneration = 0
    private var retryTimerToken: UInt64 = 0
    /// The last 429's `retry-after`, for the 429 the client gets when no attempt is left.
    private var lastRetryAfterNs: UInt64 = 0
    private var waitingToRetry = false
    /// What the last failed attempt was, for the final error: status, code and message.
    private var lastFailure: (status: Int, code: StaticCode, message: String)?
    /// Each failed attempt, "deployment status-or-cause ms", for the log and the audit record.
    private var attemptTrail: String?
    /// Set when this attempt's provider speaks the other API shape (see `Translation`).
    private var translation: Translation?
    /// The translated request body (pooled memory: the upstream's write queue points into it).
    private var translatedRequest = ByteBuffer()
    /// A translated response: a collected whole body, or the framed output of one stream read.
    private var translatedResponse = ByteBuffer()
    private var translatedStreaming = false
    private var translatedStatus = 0
    private let requestID: UnsafeMutableRawPointer
    private var requestIDCount = 0
    // Policy and accounting of the request in flight.
    private var key: KeyPolicy?
    private var ticket: Ticket?
    private var modelIndex = -1
    private var modelMetricsID = 0
    private var admittedPrice: Price?
    private var usageTap: UsageTap?
    private var tapDecoder = ChunkedDecoder()
    private var tapDechunks = false
    private var includeUsage = IncludeUsagePlan.unchanged
    private var record = RequestRecord()
    private var tagsHeader: String?
    /// Bodies kept for the audit record when the key's group asks (`log_bodies: true`), up to a cap.
    private var loggedRequest: String?
    private var loggedResponse: [UInt8]?
    static let loggedBodyCap = 1 << 20
    private let peerHost: UnsafeMutableRawPointer
    private var peerHostCount = 0
    /// The peer's address for audit records: made for the connection's first one, then shared by the others.
    private lazy var peerHostText = String(decoding: UnsafeRawBufferPointer(start: peerHost, count: peerHostCount), as: UTF8.self)

    init(fd: Int32, peer: SocketAddress, context: LoopContext, tls: TLSStream? = nil) {
        self.fd = fd
        self.peer = peer
        self.tls = tls
        self.context = context
        self.loop = context.loop
        self.buffers = context.loop.buffers
        requestID = .allocate(byteCount: 128, alignment: 1)
        peerHost = .allocate(byteCount: 64, alignment: 1)
        peerHostCount = peer.writeHost(into: peerHost, capacity: 64)
    }

    deinit {
        requestID.deallocate()
        peerHost.deallocate()
        out.deallocate()
    }

    /// An HTTP/2 stream's exchange: no socket, bytes through `stream`. `start()` it, then feed it.
    convenience init(stream: any ClientStreamTransport, peer: SocketAddress, context: LoopContext) {
        self.init(fd: -1, peer: peer, context: context)
        self.stream = stream
    }

    /// Serves another stream of the same HTTP/2 connection: an exchange that has closed is made ready again, so
    /// that a connection allocates its exchanges once, not once per stream. The per-request state is set again by
    /// every request (as on a keep-alive connection); this resets what only a new connection would.
    func reopen(stream: any ClientStreamTransport) {
        precondition(state == .closed && self.stream == nil && fd == -1, "reopen: not a closed stream exchange")
        self.stream = stream
        state = .idle
        wantsWrite = false
        readPaused = false
        peerClosedInput = false
        closeAfterFlush = false
        draining = false
        streamingBody = false
        triedEarlyDispatch = false
        bodyForwarded = 0
        bodyMode = .none
        bodyPointer = nil
        bodyCount = 0
        deployment = nil
        pool = nil
        key = nil
        ticket = nil
        usageTap = nil
        requestDeadline = 0
        lastRetryAfterNs = 0
        loggedRequest = nil
        loggedResponse = nil
        parser.reset()
    }

    /// The stream was reset or its connection closed: the exchange ends here.
    func streamReset() {
        closeNow()
    }

    /// The stream has request bytes (or room was made): read them.
    func streamReadable() { onReadable() }

    /// The stream took what was queued and has room for more.
    func streamWritable() { if wantsWrite { onWritable() } }

    func start() {
        if stream != nil {
            deadline = loop.now + context.config.headerTimeoutNs
            return
        }
        registration = loop.register(fd: fd, interest: Interest.read, handler: self)
        // A TLS handshake must finish within the header timeout.
        deadline = loop.now + (tls == nil ? context.config.idleTimeoutNs : context.config.headerTimeoutNs)
    }

    /// One handshake step; true once it is done and requests may be read. A failed handshake closes this
    /// connection only, and is not an error of the gateway's.
    private func handshake(_ tls: TLSStream) -> Bool {
        switch tls.handshake() {
        case .done:
            if tls.negotiatedProtocol == .h2 {
                handOffToHTTP2()
                return false
            }
            mayBeH2 = false
            loop.setInterest(registration, Interest.read)
            deadline = loop.now + context.config.idleTimeoutNs
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

    /// Nothing queued or staged for the client.
    private var outputDrained: Bool { out.isEmpty && tls?.hasStagedOutput != true }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        if let tls {
            if !tls.handshakeComplete {
                guard handshake(tls) else { return }
                if tls.hasBufferedInput { onReadable() }
                return
            }
            if events & EventBits.writable != 0 && tls.readWantsWrite {
                onReadable()
                guard state != .closed else { return }
            }
        }
        if events & EventBits.writable != 0 && wantsWrite {
            onWritable()
            guard state != .closed else { return }
        }
        if events & (EventBits.readable | EventBits.readHangup | EventBits.error | EventBits.hangup) != 0 {
            onReadable()
        }
    }

    func tick(now: UInt64) {
        if wantsWrite && now > writeDeadline {
            closeNow()
            return
        }
        switch state {
        case .idle where now > deadline && outputDrained:
            closeNow()
        case .readingHead where now > deadline, .readingBody where now > deadline:
            respondError(408, .requestTimeout, "the request was not received within the timeout", close: true)
        case .proxying where requestDeadline != 0 && now > requestDeadline && !responseStarted:
            requestDeadline = 0
            waitingToRetry = false
            if waitingForUpstream {
                waitingForUpstream = false
                pool?.cancelWait(self)
            }
            if let upstream {
                self.upstream = nil
                upstream.cancel()
            }
            respondError(504, .upstreamTimeout, "no response within x-gateway-timeout-ms (\(attempts) attempts)", close: false)
        case .proxying where waitingForUpstream && now > deadline:
            waitingForUpstream = false
            pool?.cancelWait(self)
            upstreamFailed(.connectTimeout)
        default:
            break
        }
    }

    /// Shutdown: close now when idle, otherwise after the response in flight.
    func drain() {
        draining = true
        if state == .idle && outputDrained && input.readableBytes == 0 && tls?.handshakeComplete != false { closeNow() }
    }

    private func onReadable() {
        // OpenSSL may hold decrypted bytes the socket no longer signals: read until it holds none.
        repeat {
            readOnce()
        } while tls?.hasBufferedInput == true && state != .closed && !readPaused && !peerClosedInput
    }

    private func readOnce() {
        if peerClosedInput { return }
        if !input.isAllocated { buffers.attachSmall(&input) }
        let readingIntoBody = bodyMode == .heapLength && (state == .readingBody || (state == .proxying && streamingBody))
        if streamingBody && state == .proxying && (upstream == nil || upstream!.hasPendingOutput) {
            // The upstream has not taken what we sent: stop reading the client's body (backpressure).
            readPaused = true
            updateInterest()
            return
        }
        if !readingIntoBody && input.writableBytes == 0 {
            switch state {
            case .idle, .readingHead:
                if input.readerIndex > 0 {
                    input.compact()
                    parser.reset()
                } else if input.capacity == Buffers.smallSize {
                    buffers.grow(&input)
                }
            case .readingBody where bodyMode == .heapChunked:
                input.compact()
            default:
                break
            }
            if input.writableBytes == 0 {
                // Busy with a request and the next ones fill the buffer: stop reading (backpressure).
                readPaused = true
                updateInterest()
                return
            }
        }
        let result: IOResult<Int>
        do {
            let (into, wanted) = readingIntoBody
                ? (body.writePointer, contentLength - body.writerIndex) : (input.writePointer, input.writableBytes)
            if let stream {
                result = stream.readRequest(into, wanted)
            } else if let tls {
                result = try tls.read(into, wanted)
                if tls.readWantsWrite { updateInterest() }
            } else {
                result = try Posix.read(fd, into, wanted)
            }
        } catch {
            closeNow()
            return
        }
        guard case .processed(let count) = result else { return }
        if count == 0 {
            peerClosedInput = true
            switch state {
            case .proxying where streamingBody:
                // The client left before sending its whole body: the upstream request cannot complete.
                closeNow()
            case .proxying:
                // Half-close: answer the request in flight, then close.
                updateInterest()
            default:
                if outputDrained { closeNow() } else { closeAfterFlush = true; updateInterest() }
            }
            return
        }
        if readingIntoBody {
            body.writerIndex += count
            if streamingBody && state == .proxying {
                forwardBody()
                return
            }
        } else {
            input.writerIndex += count
            if mayBeH2 && stream == nil {
                switch HTTP2Session.matchPreface(input.readPointer, input.readableBytes) {
                case .match:
                    handOffToHTTP2()
                    return
                case .partial:
                    return
                case .mismatch:
                    mayBeH2 = false
                }
            }
        }
        switch state {
        case .idle:
            state = .readingHead
            deadline = loop.now + context.config.headerTimeoutNs
        case .readingBody:
            deadline = loop.now + context.config.idleTimeoutNs
        default:
            break
        }
        process()
    }

    /// HTTP/2 (prior knowledge, or ALPN): the socket, its registration, the TLS session and the bytes read so far go
    /// to an `H2ClientConnection`, which takes the registration's events from here on. This object is dropped.
    private func handOffToHTTP2() {
        mayBeH2 = false
        let connection = H2ClientConnection(
            fd: fd, registration: registration, tls: tls, peer: peer, context: context, input: input)
        input = ByteBuffer()
        state = .closed
        loop.replaceHandler(registration, with: connection)
        connection.start()
    }

    private func onWritable() {
        guard flush() else { return }
        if let upstream, responseStarted {
            upstream.resume()
            return
        }
        afterFlush()
    }

    /// Runs when everything queued has been written and no upstream is waiting on us.
    private func afterFlush() {
        if closeAfterFlush {
            closeNow()
            return
        }
        if state == .idle {
            if input.readableBytes == 0 { releaseIdleBuffers() }
            process()
        }
    }

    private func updateInterest() {
        if let stream {
            stream.readInterestChanged(!peerClosedInput && !readPaused)
            return
        }
        var interest = Interest.none
        if !peerClosedInput && !readPaused { interest |= Interest.read }
        if wantsWrite || tls?.readWantsWrite == true { interest |= Interest.write }
        loop.setInterest(registration, interest)
    }

    /// Writes what is queued. Returns true when all of it went out.
    private func flush() -> Bool {
        let result = if let stream {
            stream.writeResponse(&out)
        } else if let tls {
            out.flush(through: tls)
        } else {
            out.flush(to: fd)
        }
        switch result {
        case .done:
            if wantsWrite {
                wantsWrite = false
                updateInterest()
            }
            return true
        case .wouldBlock:
            if !wantsWrite {
                wantsWrite = true
                writeDeadline = loop.now + context.config.idleTimeoutNs
                updateInterest()
            }
            return false
        case .failed:
            closeNow()
            return false
        }
    }

    // MARK: Requests

    /// Parses and starts requests from the read buffer until it needs more bytes or a request is in flight.
    private func process() {
        guard !processing else { return }
        processing = true
        defer { processing = false }
        while true {
            switch state {
            case .idle, .readingHead:
                // Pipelined requests wait until the previous response has gone out.
                guard outputDrained, !closeAfterFlush, input.readableBytes > 0 else { return }
                let outcome = stream?.adoptRequestHead(parser, input.readPointer, input.readableBytes)
                    ?? parser.parseRequest(input.readPointer, input.readableBytes)
                switch outcome {
                case .incomplete:
                    if state == .idle {
                        state = .readingHead
                        deadline = loop.now + context.config.headerTimeoutNs
                    }
                    return
                case .failed(let error):
                    respondError(error.status, error.code, String(describing: error.message), close: true)
                    return
                case .complete:
                    startRequest()
                }
            case .readingBody:
                guard bodyComplete() else {
                    dispatchEarlyIfModelKnown()
                    return
                }
                dispatch()
            case .proxying, .closed:
                return
            }
        }
    }

    private func startRequest() {
        keepAlive = parser.keepAlive && !draining
        minorVersion = parser.minorVersion
        requestIDCount = 0
        attempts = 0
        responseStarted = false
        closeAfterResponse = false
        headEnd = input.readerIndex + parser.headLength
        endpoint = Endpoint.classify(parser.bytes(parser.target))
        if let id = parser.value(of: .xRequestID), id.count > 0, id.count <= 128 {
            requestID.copyMemory(from: parser.base + Int(id.start), byteCount: Int(id.count))
            requestIDCount = Int(id.count)
        } else {
            requestIDCount = context.writeRequestID(requestID)
        }
        let hasBody = parser.chunked || parser.contentLength > 0
        key = nil
        modelIndex = -1
        modelMetricsID = 0
        admittedPrice = nil
        // Requests are timed and accounted only when something reads the result (audit, metrics, keys): the
        // model APIs, and `/v1/models`, the one local answer that takes a key.
        record.begin(
            accounted: (endpoint.isModelAPI || endpoint == .models)
                && (context.audit != nil || context.metrics != nil || context.config.authRequired),
            headBytes: parser.headLength)
        if record.active { context.metrics?.requestStarted() }
        tagsHeader = nil
        if context.audit != nil, parser.hasGatewayFields, let tags = parser.value(named: "x-gateway-tags") {
            tagsHeader = String(decoding: parser.bytes(tags), as: UTF8.self)
        }
        if parser.contentLength > Int64(context.config.maxBodyBytes) {
            respondError(413, .requestTooLarge, "the request body exceeds \(context.config.maxBodyBytes) bytes", close: true)
            return
        }
        contentLength = max(0, Int(parser.contentLength))
        if !endpoint.isProxied {
            // Local endpoints take no body; skip one that is already here, else close after answering.
            if hasBody && (parser.chunked || input.writerIndex - headEnd < contentLength) { closeAfterResponse = true }
            input.readerIndex = min(input.writerIndex, headEnd + contentLength)
            answerLocally()
            return
        }
        guard parser.method == .post else {
            if hasBody { closeAfterResponse = true }
            input.readerIndex = min(input.writerIndex, headEnd + contentLength)
            respondError(405, .methodNotAllowed, "this endpoint takes POST", close: closeAfterResponse)
            return
        }
        // Authenticate before reading the body: a caller without a valid key costs one hash, not a buffer.
        if context.config.authRequired {
            guard let key = authenticate() else {
                if hasBody && (parser.chunked || input.writerIndex - headEnd < contentLength) { closeAfterResponse = true }
                input.readerIndex = min(input.writerIndex, headEnd + contentLength)
                respondError(401, .invalidAPIKey, "a valid API key is required (Authorization: Bearer KEY or x-api-key)",
                             close: closeAfterResponse)
                return
            }
            self.key = key
        }
        if !parser.chunked && headEnd + contentLength <= input.capacity {
            bodyMode = .inInput
        } else {
            // The body will not fit beside the head: keep a copy of the head, and collect the body apart.
            let headStart = input.readerIndex
            buffers.attachHeap(&headCopy, capacity: parser.headLength)
            headCopy.append(input.base! + headStart, parser.headLength)
            parser.rebase(to: headCopy.base!)
            input.readerIndex = headEnd
            if parser.chunked {
                bodyMode = .heapChunked
                decoder.reset()
                buffers.attachHeap(&body, capacity: min(64 * 1024, context.config.maxBodyBytes + 1))
            } else {
                bodyMode = .heapLength
                buffers.attachHeap(&body, capacity: contentLength)
                let already = min(input.readableBytes, contentLength)
                body.append(input.readPointer, already)
                input.readerIndex += already
            }
        }
        state = .readingBody
        deadline = loop.now + context.config.idleTimeoutNs
        if parser.expectContinue && !bodyComplete() && state == .readingBody {
            let interim: StaticString = "HTTP/1.1 100 Continue\r\n\r\n"
            out.append(UnsafeRawPointer(interim.utf8Start), interim.utf8CodeUnitCount)
            _ = flush()
        }
    }

    /// True when the whole body is here. Decodes chunked bodies on the way.
    private func bodyComplete() -> Bool {
        switch bodyMode {
        case .none:
            return true
        case .inInput:
            return input.writerIndex - headEnd >= contentLength
        case .heapLength:
            return body.writerIndex == contentLength
        case .heapChunked:
            let limit = context.config.maxBodyBytes
            var tooLarge = false
            let feed = decoder.feed(input.readPointer, input.readableBytes) { data, count in
                if body.writerIndex + count > limit {
                    tooLarge = true
                    return
                }
                if body.writableBytes < count { growBody(to: body.writerIndex + count) }
                body.append(data, count)
            }
            if tooLarge {
                respondError(413, .requestTooLarge, "the request body exceeds \(limit) bytes", close: true)
                return false
            }
            if let error = feed.error {
                respondError(400, .invalidRequest, "malformed chunked body: \(error)", close: true)
                return false
            }
            input.readerIndex += feed.consumed
            if input.readableBytes == 0 { input.clear() }
            return feed.done
        }
    }

    /// Large bodies: when `model` is in the first 64 KiB, go upstream now and stream the rest, reading
    /// the client only as fast as the upstream takes it. A body whose `model` comes later is collected
    /// whole first (up to `max_body_bytes`), since the upstream is not known before it.
    private func dispatchEarlyIfModelKnown() {
        // With policy on, bodies are collected whole: forcing include_usage (billing) needs the whole body.
        guard bodyMode == .heapLength, !triedEarlyDispatch, state == .readingBody, !context.config.authRequired,
              body.writerIndex >= ClientConnection.earlyDispatchBytes else { return }
        triedEarlyDispatch = true
        let prefix = UnsafeRawBufferPointer(start: body.base!, count: body.writerIndex)
        guard let model = JSONFieldScanner.scan(prefix).model, model.upperBound < body.writerIndex else { return }
        streamingBody = true
        dispatch()
    }

    static let earlyDispatchBytes = 64 * 1024

    /// Sends the body bytes read since the last call to the upstream. The last byte waits until the whole
    /// body has been checked: an upstream cannot act on a JSON body it has not fully received, so a second
    /// top-level "model" after the part we routed on is caught before it can count.
    private func forwardBody() {
        guard let upstream else { return }
        let complete = body.writerIndex == contentLength
        if complete {
            let fields = JSONFieldScanner.scan(UnsafeRawBufferPointer(start: body.base!, count: contentLength))
            guard fields.isObject, fields.model == modelRange else {
                self.upstream = nil
                upstream.cancel()
                streamingBody = false
                respondError(400, .invalidRequest, "the request body must be one JSON object with one 'model'", close: true)
                return
            }
        }
        let limit = complete ? contentLength : min(body.writerIndex, contentLength - 1)
        if limit > bodyForwarded {
            upstream.sendMore(UnsafeRawPointer(body.base! + bodyForwarded), limit - bodyForwarded)
            bodyForwarded = limit
        }
        if complete {
            streamingBody = false
            upstream.requestBodyComplete = true
        }
    }

    private func growBody(to needed: Int) {
        var capacity = max(body.capacity * 2, needed)
        capacity = min(capacity, context.config.maxBodyBytes + 1)
        var grown = ByteBuffer()
        buffers.attachHeap(&grown, capacity: capacity)
        grown.append(body.base!, body.writerIndex)
        buffers.release(&body)
        body = grown
    }

    /// The body is complete: find the model, pick the deployment, and ask its pool for a connection.
    private func dispatch() {
        switch bodyMode {
        case .inInput:
            bodyPointer = UnsafeRawPointer(input.base! + headEnd)
            bodyCount = contentLength
            input.readerIndex = headEnd + contentLength
        case .heapLength:
            bodyPointer = UnsafeRawPointer(body.base!)
            bodyCount = contentLength
        case .heapChunked:
            bodyPointer = UnsafeRawPointer(body.base!)
            bodyCount = body.writerIndex
        case .none:
            bodyPointer = nil
            bodyCount = 0
        }
        state = .proxying
        record.bytesIn += bodyCount
        let received = bodyMode == .heapLength ? body.writerIndex : bodyCount
        let bodyBytes = UnsafeRawBufferPointer(start: bodyPointer, count: received)
        let fields = JSONFieldScanner.scan(bodyBytes)
        guard fields.isObject || streamingBody else {
            respondError(400, .invalidRequest, "the request body must be a JSON object", close: false)
            return
        }
        guard let modelRange = fields.model, modelRange.count > 0 else {
            respondError(400, .invalidRequest, "the request body has no 'model'", close: false)
            return
        }
        self.modelRange = modelRange
        let modelName = UnsafeRawBufferPointer(rebasing: bodyBytes[modelRange])
        let model = context.config.model(named: modelName)
        modelIndex = model?.index ?? -1
        modelMetricsID = model?.metricsID ?? 0
        record.setModel(modelName, streamed: fields.stream == true, keepName: context.audit != nil)
        if let key {
            switch context.config.policy.access(key, modelIndex: model?.index, modelName: modelName) {
            case .allowed:
                break
            case .notAllowed:
                let name = String(decoding: modelName, as: UTF8.self)
                respondError(403, .modelNotAllowed, "this key may not use the model '\(name)'", close: false)
                return
            case .notFound:
                break
            }
        }
        guard let model else {
            let name = String(decoding: modelName, as: UTF8.self)
            respondError(404, .modelNotFound, "the model '\(name)' does not exist", close: false)
            return
        }
        modelIndex = model.index
        // Billed and counted under the configuration the request was admitted with, even if a reload
        // swaps it while the request is in flight.
        admittedPrice = model.price
        modelMetricsID = model.metricsID
        loggedRequest = nil
        loggedResponse = nil
        if let key, key.logBodies, context.audit != nil {
            loggedRequest = String(decoding: bodyBytes.prefix(ClientConnection.loggedBodyCap), as: UTF8.self)
            loggedResponse = []
        }
        if let key {
            let admission = context.config.policy.counters.admit(
                key, estimatedTokens: bodyCount / 4, nowNs: loop.now, nowSeconds: Int64(Clock.realtimeNs() / 1_000_000_000))
            switch admission {
            case .admitted(let ticket):
                self.ticket = ticket
            case .rejected(.rateLimit(let retryAfter, let which)):
                respondError(429, .rateLimitExceeded, "rate limit exceeded: \(which)", close: false,
                             extraHeaders: "retry-after: \(retryAfter)\r\n")
                return
            case .rejected(.budget(let which)):
                respondError(402, .budgetExceeded, "budget exceeded: \(which)", close: false)
                return
            }
        }
        if requestIDCount == 0 { requestIDCount = context.writeRequestID(requestID) }
        primaryModel = model
        currentModel = model
        fallbackPosition = 0
        triedMask = 0
        freshRetryUsed = false
        if lastFailure != nil { lastFailure = nil }
        if attemptTrail != nil { attemptTrail = nil }
        streamRequested = fields.stream == true
        requestFields = fields
        routeGeneration = context.pickerGeneration
        fallbacksAllowed = true
        requestDeadline = 0
        readRoutingHeaders()
        _ = startAttempt()
    }

    /// `x-gateway-fallbacks: none` and `x-gateway-timeout-ms: N`, in one pass over the other headers.
    private func readRoutingHeaders() {
        guard parser.hasGatewayFields else { return }
        let base = parser.base
        for i in 0..<parser.fieldCount {
            let field = parser.fields[i]
            let count = Int(field.name.count)
            guard field.kind == .xGatewayPrefixed, count >= 19, count <= 20,
                  HTTPBytes.hasLowercasePrefix(base + Int(field.name.start), count, "x-gateway-") else { continue }
            let name = base + Int(field.name.start)
            let value = parser.bytes(field.value)
            if HTTPBytes.equalsLowercase(name, count, "x-gateway-fallbacks") {
                fallbacksAllowed = !(value.count == 4 && HTTPBytes.equalsLowercase(value.baseAddress!, 4, "none"))
            } else if HTTPBytes.equalsLowercase(name, count, "x-gateway-timeout-ms") {
                var ms: UInt64 = 0
                var valid = value.count > 0 && value.count <= 9
                for byte in value where valid {
                    valid = byte >= 0x30 && byte <= 0x39
                    ms = ms * 10 + UInt64(byte &- 0x30)
                }
                if valid && ms > 0 { requestDeadline = loop.now + ms * 1_000_000 }
            }
        }
    }

    // MARK: Routing and failover

    /// Sends the request to the next deployment: an untried one of the current model, chosen by its
    /// strategy, then the model's fallbacks in order. Returns false when none is available.
    private func startAttempt() -> Bool {
        guard routeGeneration == context.pickerGeneration, let primary = primaryModel else { return false }
        let now = loop.now
        while let model = currentModel {
            let picked: Int?
            if model.deployments.count == 1 {
                // Nothing to choose: the one deployment, unless tried or cooling down.
                picked = triedMask == 0 && model.deployments[0].health.isAvailable(nowNs: now) ? 0 : nil
            } else {
                let context = self.context
                picked = context.pickers[model.index].pick(
                    excluding: triedMask,
                    available: { model.deployments[$0].health.isAvailable(nowNs: now) },
                    hasRoom: { context.poolHasRoom(model.deployments[$0].providerIndex) })
            }
            if let index = picked {
                triedMask |= 1 << index
                let admission = model.deployments[index].health.admit(nowNs: now)
                // Another request took the half-open probe a moment ago.
                if admission == .closed { continue }
                probing = admission == .probe
                send(to: index, of: model)
                return true
            }
            guard fallbacksAllowed, fallbackPosition < primary.fallbacks.count else { break }
            currentModel = context.config.models[primary.fallbacks[fallbackPosition]]
            fallbackPosition += 1
            triedMask = 0
        }
        // Every deployment of the model and its fallbacks is cooling down. Rather than refuse the request,
        // its first attempt goes to the primary model anyway (like a load balancer's panic mode): a provider
        // that blipped should cost a retry, not 30 s of refusals. Retries still respect the cooldown.
        guard attempts == 0 else { return false }
        currentModel = primary
        fallbackPosition = primary.fallbacks.count
        triedMask = 0
        guard let index = primary.deployments.count == 1 ? 0 : context.pickers[primary.index].pick(
            excluding: 0, available: { _ in true }, hasRoom: { _ in true }) else { return false }
        triedMask = 1 << index
        probing = false
        send(to: index, of: primary)
        return true
    }

    private func send(to index: Int, of model: ModelRoute) {
        let chosen = model.deployments[index]
        deployment = chosen
        deploymentIndex = index
        pool = context.pools[chosen.providerIndex]
        // Billed at the price of the model that serves it.
        admittedPrice = model.price
        renameBody = !chosen.upstreamModel.withUnsafeBytes { upstreamName in
            upstreamName.count == modelRange.count
                && memcmp(upstreamName.baseAddress!, bodyPointer! + modelRange.lowerBound, modelRange.count) == 0
        }
        let provider = context.config.providers[chosen.providerIndex]
        // Streams must end with usage, or they could not be billed.
        includeUsage = .unchanged
        if streamRequested && provider.kind == .openai && !streamingBody
            && (endpoint == .chatCompletions || endpoint == .completions) {
            includeUsage = includeUsagePlan(body: UnsafeRawBufferPointer(start: bodyPointer, count: bodyCount), fields: requestFields)
        }
        translation = nil
        if translatedRequest.isAllocated { buffers.release(&translatedRequest) }
        if let direction = Translation.direction(endpoint: endpoint, provider: provider.kind) {
            guard !streamingBody else {
                respondError(400, .invalidRequest, "a request served in the other API shape must fit in \(ClientConnection.earlyDispatchBytes) bytes before its model", close: true)
                return
            }
            let modelName = String(decoding: UnsafeRawBufferPointer(start: bodyPointer! + modelRange.lowerBound, count: modelRange.count), as: UTF8.self)
            let plan = Translation(direction, clientModel: modelName, streamRequested: streamRequested)
            do throws(TranslationError) {
                let bytes = try plan.request(UnsafeRawBufferPointer(start: bodyPointer, count: bodyCount),
                                             upstreamModel: String(decoding: chosen.upstreamModel, as: UTF8.self))
                buffers.attachHeap(&translatedRequest, capacity: bytes.count)
                translatedRequest.append(bytes)
            } catch {
                respondError(400, .invalidRequest, "the request cannot be translated for \(provider.name): \(error.message)", close: false)
                return
            }
            translation = plan
            includeUsage = .unchanged
        }
        buildUpstreamHead(chosen, provider: provider)
        attempts += 1
        // A model with one deployment has nothing to balance: its in-flight count and latency go untracked.
        pickerTracks = model.deployments.count > 1
        if pickerTracks { context.pickers[model.index].started(index) }
        attemptStartNs = loop.now
        waitingForUpstream = true
        deadline = loop.now + context.config.connectTimeoutNs
        pool!.acquire(for: self)
    }

    /// The attempt in flight is over: its deployment has one request fewer in flight.
    private func endAttempt() {
        guard deploymentIndex >= 0 else { return }
        if pickerTracks, routeGeneration == context.pickerGeneration, let model = currentModel {
            context.pickers[model.index].finished(deploymentIndex)
        }
        deploymentIndex = -1
    }

    /// An attempt failed with `condition`: counts it against the deployment and decides what comes next.
    /// - Returns: true when another attempt is on its way (now, or after a backoff); false when the caller
    ///   must answer the client with this failure.
    private func failOver(_ condition: RetryCondition, cause: String, retryAfterNs: UInt64 = 0) -> Bool {
        let now = loop.now
        if let deployment {
            deployment.health.recordFailure(nowNs: now, probe: probing, retryAfterNs: retryAfterNs)
            let label = deployment.labelText
            attemptTrail = (attemptTrail.map { $0 + "; " } ?? "") + "\(label) \(cause) \((now &- attemptStartNs) / 1_000_000)ms"
        }
        probing = false
        endAttempt()
        guard let primary = primaryModel, primary.retry.retries(condition), attempts < primary.retry.attempts,
              !streamingBody, requestDeadline == 0 || now < requestDeadline else { return false }
        if startAttempt() { return true }
        // Every deployment has been tried: wait, then go round again (cooling ones stay skipped). Not after a
        // timeout: that attempt already waited the whole response timeout.
        guard condition != .timeout else { return false }
        let shift = UInt64(min(attempts - 1, 20))
        var delay = min(primary.retry.maxBackoffNs, primary.retry.backoffNs << shift)
        delay = delay / 2 + UInt64.random(in: 0...(delay / 2))
        if retryAfterNs > 0 {
            guard retryAfterNs <= primary.retry.retryAfterMaxNs else { return false }
            delay = max(delay, retryAfterNs)
        }
        guard requestDeadline == 0 || now + delay < requestDeadline else { return false }
        currentModel = primary
        fallbackPosition = 0
        triedMask = 0
        waitingToRetry = true
        retryTimerToken &+= 1
        deployment = nil
        loop.schedule(at: now + delay, target: self, token: retryTimerToken)
        return true
    }

    func timerFired(token: UInt64) {
        guard waitingToRetry, token == retryTimerToken, state == .proxying else { return }
        waitingToRetry = false
        if startAttempt() { return }
        let failure = lastFailure ?? (503, .upstreamUnavailable, "no deployment is available")
        // Every 429 says when to come back: the upstream's wait, or a second.
        let retryAfter = failure.status == 429 ? "retry-after: \(max(1, (lastRetryAfterNs + 999_999_999) / 1_000_000_000))\r\n" : ""
        respondError(failure.status, failure.code, failure.message, close: false, extraHeaders: retryAfter)
    }

    /// Seconds of a `retry-after` header (delta-seconds; an HTTP date is ignored), in ns; 0 when absent.
    private static func retryAfterNs(_ parser: HTTPHeadParser) -> UInt64 {
        guard let value = parser.value(named: "retry-after") else { return 0 }
        var seconds: UInt64 = 0
        for byte in parser.bytes(value) {
            guard byte >= 0x30 && byte <= 0x39, seconds < 1_000_000 else { return 0 }
            seconds = seconds * 10 + UInt64(byte &- 0x30)
        }
        return seconds * 1_000_000_000
    }

    /// Writes the request head for the upstream: hop-by-hop and credential headers dropped, the
    /// provider's host and key added, the body re-framed with Content-Length.
    private func buildUpstreamHead(_ deployment: DeploymentRoute, provider: ProviderRoute) {
        // An HTTP/2 provider's stream makes its fields from where the parts went, instead of parsing the head. Two
        // inlined copies: the HTTP/1.1 one, with no layout, notes nothing and costs nothing for it.
        headLayoutValid = provider.http2
        if provider.http2 {
            headLayout.removeAll()
            renderUpstreamHead(deployment, provider: provider, layout: headLayout)
        } else {
            renderUpstreamHead(deployment, provider: provider, layout: NoHeadLayout())
        }
    }

    /// Generic so that it is specialized twice: with `NoHeadLayout` every note is an empty call the optimizer drops.
    private func renderUpstreamHead<Layout: HeadLayoutNotes>(_ deployment: DeploymentRoute, provider: ProviderRoute,
                                                             layout: Layout) {
        buffers.release(&upstreamHead)
        let needed = parser.headLength + provider.basePath.count + provider.query.count + provider.credentialLines.count + 512
        buffers.attach(&upstreamHead, capacity: needed)
        let base = parser.base
        upstreamHead.append(base + Int(parser.methodRange.start), Int(parser.methodRange.count))
        layout.noteMethod(count: parser.methodRange.count)
        upstreamHead.append(byte: UInt8(ascii: " "))
        let targetStart = upstreamHead.readableBytes
        upstreamHead.append(provider.basePath)
        var hasQuery = false
        if let translation {
            upstreamHead.append(translation.upstreamPath)
        } else {
            // The client's "/v1" is replaced by the provider's base path.
            let target = parser.bytes(parser.target)
            upstreamHead.append(target.baseAddress! + 3, target.count - 3)
            hasQuery = provider.query.count > 0 && target.contains(UInt8(ascii: "?"))
        }
        if provider.query.count > 0 {
            upstreamHead.append(byte: UInt8(ascii: hasQuery ? "&" : "?"))
            upstreamHead.append(provider.query)
        }
        layout.noteTarget(start: targetStart, end: upstreamHead.readableBytes)
        upstreamHead.append(" HTTP/1.1\r\n")
        // "host: VALUE\r\n"
        layout.noteHostLine(start: upstreamHead.readableBytes, count: provider.hostLine.count)
        upstreamHead.append(provider.hostLine)
        var lineStart = upstreamHead.readableBytes
        // Anthropic's API requires the version header; clients of the OpenAI shape never send it.
        if provider.kind == .anthropic, parser.value(named: "anthropic-version") == nil {
            upstreamHead.append("anthropic-version: 2023-06-01\r\n")
            layout.note(nameStart: lineStart, nameCount: 17, lineEnd: upstreamHead.readableBytes)
            lineStart = upstreamHead.readableBytes
        }
        var forwardedFor: HeaderField?
        for i in 0..<parser.fieldCount {
            let field = parser.fields[i]
            switch field.kind {
            case .other, .contentType:
                if field.nominatedByConnection { continue }
                // The usage tap reads response bodies: ask for them uncompressed.
                if field.kind == .other,
                   HTTPBytes.equalsLowercase(base + Int(field.name.start), Int(field.name.count), "accept-encoding") { continue }
                // The provider's own key header (Azure's api-key) carries the gateway's key, never the client's.
                if field.kind == .other, provider.keyHeaderName.count == Int(field.name.count),
                   provider.keyHeaderName.withUnsafeBytes({ name in
                       (0..<name.count).allSatisfy { base.load(fromByteOffset: Int(field.name.start) + $0, as: UInt8.self) | 0x20 == name[$0] }
                   }) { continue }
                appendField(field, to: &upstreamHead)
                layout.note(nameStart: lineStart, nameCount: Int(field.name.count), lineEnd: upstreamHead.readableBytes)
                lineStart = upstreamHead.readableBytes
            case .xForwardedFor:
                forwardedFor = field
            default:
                continue
            }
        }
        upstreamHead.append(provider.credentialLines)
        if provider.credentialLines.count > 0 {
            layout.noteLine(upstreamHead.readPointer, from: lineStart, to: upstreamHead.readableBytes)
            lineStart = upstreamHead.readableBytes
        }
        upstreamHead.append("x-forwarded-for: ")
        if let forwardedFor, forwardedFor.value.count > 0 {
            upstreamHead.append(base + Int(forwardedFor.value.start), Int(forwardedFor.value.count))
            upstreamHead.append(", ")
        }
        upstreamHead.append(peerHost, peerHostCount)
        // Each literal ends one line and starts the next (one append each: this is the hot path).
        upstreamHead.append("\r\nx-request-id: ")
        layout.note(nameStart: lineStart, nameCount: 15, lineEnd: upstreamHead.readableBytes &- 14)
        lineStart = upstreamHead.readableBytes &- 14
        upstreamHead.append(requestID, requestIDCount)
        upstreamHead.append("\r\ncontent-length: ")
        layout.note(nameStart: lineStart, nameCount: 12, lineEnd: upstreamHead.readableBytes &- 16)
        lineStart = upstreamHead.readableBytes &- 16
        var length = renameBody ? bodyCount - modelRange.count + deployment.upstreamModel.count : bodyCount
        length += includeUsage.lengthDelta
        if translation != nil { length = translatedRequest.readableBytes }
        upstreamHead.append(decimal: length)
        upstreamHead.append("\r\n\r\n")
        layout.note(nameStart: lineStart, nameCount: 14, lineEnd: upstreamHead.readableBytes &- 2)
        layout.noteHeadLength(upstreamHead.readableBytes)
    }

    @inline(__always)
    private func appendField(_ field: HeaderField, to buffer: inout ByteBuffer) {
        let base = parser.base
        buffer.append(base + Int(field.name.start), Int(field.name.count))
        buffer.append(": ")
        buffer.append(base + Int(field.value.start), Int(field.value.count))
        buffer.append("\r\n")
    }

    // MARK: UpstreamExchange

    func upstreamReady(_ connection: any UpstreamChannel) {
        waitingForUpstream = false
        upstream = connection
        // A translated response is read decoded: it is re-framed for the client after translation.
        connection.passRawChunks = minorVersion >= 1 && translation == nil
        connection.out.append(upstreamHead.readPointer, upstreamHead.readableBytes)
        // While streaming, only the bytes read so far can go; forwardBody sends the rest.
        let available = streamingBody ? min(body.writerIndex, contentLength - 1) : bodyCount
        if translation != nil {
            connection.out.append(translatedRequest.readPointer, translatedRequest.readableBytes)
        } else if let bodyPointer, available > 0 {
            appendBody(bodyPointer, available, to: &connection.out)
        }
        bodyForwarded = available
        connection.requestBodyComplete = !streamingBody
        deadline = 0
        if record.active && record.upstreamStartNs == 0 { record.upstreamStartNs = Clock.monotonicNs() }
        connection.sendQueued(layout: headLayoutValid ? headLayout : nil)
        if streamingBody && body.writerIndex > bodyForwarded { forwardBody() }
        upstreamWritable()
    }

    func upstreamFailed(_ failure: UpstreamFailure) {
        upstream = nil
        waitingForUpstream = false
        if case .failed(_, let retryable) = failure, retryable, !freshRetryUsed, let pool {
            // A reused connection closed under us before any response byte (the server may have closed an
            // idle connection): once per request, try the same deployment on a new one.
            freshRetryUsed = true
            attempts += 1
            waitingForUpstream = true
            deadline = loop.now + context.config.connectTimeoutNs
            pool.acquire(for: self, fresh: true)
            return
        }
        let label = deployment.map { String(decoding: $0.label, as: UTF8.self) } ?? "?"
        let id = String(decoding: UnsafeRawBufferPointer(start: requestID, count: requestIDCount), as: UTF8.self)
        Log.error("upstream \(label) request \(id) attempt \(attempts): \(failure.message) -> \(failure.status)")
        let message = attempts > 1 ? "\(failure.message) (\(label), the last of \(attempts) attempts)" : failure.message
        lastFailure = (failure.status, failure.code, message)
        if failOver(failure.retryCondition, cause: "\(failure.retryCondition.rawValue)") { return }
        respondError(failure.status, failure.code, message, close: false)
    }

    /// Queues the body with its rewrites as writev segments, in offset order: the model alias and the
    /// forced `stream_options`. The body itself is never copied.
    private func appendBody(_ start: UnsafeRawPointer, _ count: Int, to out: inout OutboundQueue) {
        var position = 0
        func splice(_ range: Range<Int>, _ bytes: UnsafeRawBufferPointer) {
            out.append(start + position, range.lowerBound - position)
            out.append(bytes.baseAddress!, bytes.count)
            position = range.upperBound
        }
        let rename = renameBody ? deployment : nil
        var usageSplice: (Range<Int>, StaticString)?
        if case .splice(let range, let bytes) = includeUsage { usageSplice = (range, bytes) }
        let usageFirst = usageSplice.map { rename == nil || $0.0.lowerBound < modelRange.lowerBound } ?? false
        if usageFirst, let (range, bytes) = usageSplice {
            splice(range, UnsafeRawBufferPointer(start: bytes.utf8Start, count: bytes.utf8CodeUnitCount))
            usageSplice = nil
        }
        if let rename {
            rename.upstreamModel.withUnsafeBytes { splice(modelRange, $0) }
        }
        if let (range, bytes) = usageSplice {
            splice(range, UnsafeRawBufferPointer(start: bytes.utf8Start, count: bytes.utf8CodeUnitCount))
        }
        out.append(start + position, count - position)
    }

    func upstreamWritable() {
        guard streamingBody, readPaused, let upstream, !upstream.hasPendingOutput else { return }
        readPaused = false
        updateInterest()
    }

    func upstreamResponseHead(_ parser: HTTPHeadParser, framing: ResponseFraming) {
        let status = parser.status
        if let deployment {
            if status == 429 || status >= 500 {
                // Nothing has reached the client yet: the next deployment may still answer instead.
                let retryAfter = status == 429 ? ClientConnection.retryAfterNs(parser) : 0
                lastRetryAfterNs = retryAfter
                lastFailure = (status == 429 ? 429 : 502, status == 429 ? .rateLimitExceeded : .upstreamError,
                               "the upstream answered \(status) (\(deployment.labelText), "
                               + "the last of \(attempts) attempts)")
                let connection = upstream
                upstream = nil
                connection?.discardResponse()
                if failOver(status == 429 ? .status_429 : .status_5xx, cause: "\(status)", retryAfterNs: retryAfter) { return }
                // No retry: this response goes to the client after all.
                upstream = connection
                connection?.keepResponse(for: self)
            } else {
                deployment.health.recordSuccess(probe: probing)
                probing = false
                if pickerTracks, routeGeneration == context.pickerGeneration, let model = currentModel, deploymentIndex >= 0 {
                    context.pickers[model.index].observeLatency(deploymentIndex, ns: loop.now &- attemptStartNs)
                }
            }
        }
        responseStarted = true
        record.status = parser.status
        if record.active { record.upstreamHeadNs = Clock.monotonicNs() }
        usageTap = nil
        if ticket != nil && parser.status < 300 {
            // The tap reads the upstream's bytes, so the provider's shape decides (they differ when translating).
            let anthropic = context.config.providers[deployment?.providerIndex ?? 0].kind == .anthropic
            let stream = record.streamed
            // A length-framed body that arrives in one read is read from its end.
            var bodyLength: Int?
            if case .length(let length) = framing { bodyLength = Int(length) }
            usageTap = UsageTap(mode: anthropic ? (stream ? .anthropicSSE : .anthropicJSON) : (stream ? .openAISSE : .openAIJSON),
                                bodyLength: bodyLength)
        }
        tapDechunks = framing == .chunked && minorVersion >= 1 && translation == nil
        tapDecoder.reset()
        if let translation {
            startTranslatedResponse(translation, status: parser.status)
            return
        }
        // The upstream answered before the whole body arrived: the rest is never read, so close after.
        if streamingBody { closeAfterResponse = true }
        var chunkedToClient = false
        switch framing {
        case .chunked:
            if minorVersion >= 1 { chunkedToClient = true } else { closeAfterResponse = true }
        case .untilClose:
            closeAfterResponse = true
        default:
            break
        }
        let close = !keepAlive || closeAfterResponse || draining || peerClosedInput
        keepAlive = !close
        releaseRequestBuffersOnceSent()
        // Every 429 the client sees says when to come back, even when the provider's did not.
        let addRetryAfter = parser.status == 429 && parser.value(named: "retry-after") == nil
        let rateLimits = key.map { context.config.policy.counters.headers($0, nowNs: loop.now) }
        // An HTTP/2 stream takes the head as fields: rendered as HTTP/1.1 here, it would only be parsed again.
        var direct = false
        if let stream, out.isEmpty {
            func write(_ label: UnsafeRawBufferPointer?) -> Bool {
                stream.writeResponseHead(ProxiedResponseHead(
                    framing: framing, addRetryAfter: addRetryAfter, rateLimits: rateLimits,
                    requestID: UnsafeRawBufferPointer(start: requestID, count: requestIDCount),
                    deploymentLabel: label, attempts: attempts), upstream: parser)
            }
            if let deployment { direct = deployment.label.withUnsafeBytes { write($0) } } else { direct = write(nil) }
        }
        // The HTTP/1.1 text, also when only its size is wanted (the record's bytes out).
        guard !direct || record.active else { return }
        buffers.release(&responseHead)
        let needed = parser.headLength + 512 + requestIDCount + RateLimitHeaders.maxEncodedBytes
        buffers.attach(&responseHead, capacity: needed)
        let base = parser.base
        responseHead.append("HTTP/1.1 ")
        let lineLength = parser.startLineLength
        responseHead.append(base + 9, max(3, lineLength - 9))
        responseHead.append("\r\n")
        for i in 0..<parser.fieldCount where ClientConnection.forwardsResponseField(parser.fields[i]) {
            let field = parser.fields[i]
            responseHead.append(base + Int(field.name.start), Int(field.name.count))
            responseHead.append(": ")
            responseHead.append(base + Int(field.value.start), Int(field.value.count))
            responseHead.append("\r\n")
        }
        if chunkedToClient { responseHead.append("transfer-encoding: chunked\r\n") }
        if addRetryAfter { responseHead.append("retry-after: 1\r\n") }
        appendGatewayHeaders(rateLimits, close: close)
        if !direct { out.append(responseHead.readPointer, responseHead.readableBytes) }
        record.bytesOut += responseHead.readableBytes
    }

    /// Whether an upstream response field goes on to the client: not the hop-by-hop ones, nor the upstream's
    /// request id (the gateway sends its own).
    @inline(__always)
    static func forwardsResponseField(_ field: HeaderField) -> Bool {
        switch field.kind {
        case .connection, .keepAlive, .te, .trailer, .upgrade, .proxyPrefixed, .transferEncoding, .xRequestID:
            return false
        default:
            return !field.nominatedByConnection
        }
    }

    /// The gateway's own response headers, then the blank line: rate limits, request id, deployment, attempts.
    private func appendGatewayHeaders(_ rateLimits: RateLimitHeaders?, close: Bool) {
        rateLimits?.write(into: &responseHead)
        responseHead.append("x-request-id: ")
        responseHead.append(requestID, requestIDCount)
        if let deployment {
            responseHead.append("\r\nx-gateway-deployment: ")
            responseHead.append(deployment.label)
        }
        responseHead.append("\r\nx-gateway-attempts: ")
        responseHead.append(decimal: attempts)
        responseHead.append(close ? "\r\nconnection: close\r\n\r\n" : "\r\n\r\n")
    }

    /// Once the response has started there is no retry: the request's head and a body that sits alone in the
    /// read buffer are no longer needed, so a long stream to a slow reader holds as little as possible.
    private func releaseRequestBuffersOnceSent() {
        guard let upstream, !upstream.hasPendingOutput, !streamingBody else { return }
        buffers.release(&upstreamHead)
        if bodyMode == .inInput && input.readableBytes == 0 {
            buffers.release(&input)
            bodyPointer = nil
        }
    }

    func upstreamBody(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        if count > 0 {
            if record.active && record.firstByteNs == 0 { record.firstByteNs = Clock.monotonicNs() }
            if usageTap != nil || loggedResponse != nil { tap(bytes, count) }
        }
        if let translation { return translatedBody(translation, UnsafeRawBufferPointer(start: bytes, count: count)) }
        record.bytesOut += count
        out.append(bytes, count)
        return flush()
    }

    // MARK: Translated responses

    /// The head of a response to translate: a stream's head goes now (chunked, since its length changes);
    /// any other response is collected whole first.
    private func startTranslatedResponse(_ translation: Translation, status: Int) {
        translatedStatus = status
        translatedStreaming = translation.streams(status: status)
        buffers.release(&translatedResponse)
        if translatedStreaming {
            if minorVersion == 0 { closeAfterResponse = true }
            writeTranslatedHead(status: status, contentType: "text/event-stream", length: nil)
        } else {
            buffers.attachHeap(&translatedResponse, capacity: 16 * 1024)
        }
    }

    /// Writes the client's head for a translated response: the upstream's status, our own framing and the
    /// gateway's headers. `length` nil: chunked (HTTP/1.1) or until close (HTTP/1.0).
    private func writeTranslatedHead(status: Int, contentType: StaticString, length: Int?) {
        let close = !keepAlive || closeAfterResponse || draining || peerClosedInput || (length == nil && minorVersion == 0)
        keepAlive = !close
        buffers.release(&responseHead)
        buffers.attach(&responseHead, capacity: 512 + requestIDCount + RateLimitHeaders.maxEncodedBytes)
        releaseRequestBuffersOnceSent()
        responseHead.append("HTTP/1.1 ")
        responseHead.append(decimal: status)
        responseHead.append(byte: UInt8(ascii: " "))
        responseHead.append(HTTPStatus.reason(status))
        responseHead.append("\r\ncontent-type: ")
        responseHead.append(contentType)
        if let length {
            responseHead.append("\r\ncontent-length: ")
            responseHead.append(decimal: length)
        } else {
            responseHead.append("\r\ncache-control: no-cache")
            if minorVersion >= 1 { responseHead.append("\r\ntransfer-encoding: chunked") }
        }
        responseHead.append("\r\n")
        if status == 429 {
            responseHead.append("retry-after: ")
            responseHead.append(decimal: Int(max(1, (lastRetryAfterNs + 999_999_999) / 1_000_000_000)))
            responseHead.append("\r\n")
        }
        appendGatewayHeaders(key.map { context.config.policy.counters.headers($0, nowNs: loop.now) }, close: close)
        out.append(responseHead.readPointer, responseHead.readableBytes)
        record.bytesOut += responseHead.readableBytes
    }

    /// Upstream bytes of a translated response (decoded). Returns false when the client must catch up.
    private func translatedBody(_ translation: Translation, _ bytes: UnsafeRawBufferPointer) -> Bool {
        guard translatedStreaming else {
            guard translatedResponse.readableBytes + bytes.count <= context.config.maxBodyBytes else {
                translation.failed = true
                return true
            }
            if translatedResponse.writableBytes < bytes.count {
                var grown = ByteBuffer()
                buffers.attachHeap(&grown, capacity: max(translatedResponse.capacity * 2, translatedResponse.readableBytes + bytes.count))
                grown.append(translatedResponse.readPointer, translatedResponse.readableBytes)
                buffers.release(&translatedResponse)
                translatedResponse = grown
            }
            if bytes.count > 0 { translatedResponse.append(bytes.baseAddress!, bytes.count) }
            return true
        }
        var events: [UInt8] = []
        translation.feed(bytes, into: &events)
        return sendTranslatedChunk(events, last: false)
    }

    /// Frames translated stream bytes for the client and writes them. The previous chunk has been written
    /// (the upstream waits for `resume` otherwise), so the one buffer is reused.
    private func sendTranslatedChunk(_ events: [UInt8], last: Bool) -> Bool {
        guard !events.isEmpty || last else { return true }
        if translatedResponse.isAllocated && translatedResponse.capacity >= events.count + 32 {
            translatedResponse.clear()
        } else {
            buffers.release(&translatedResponse)
            buffers.attachHeap(&translatedResponse, capacity: max(events.count + 32, 4096))
        }
        let chunked = minorVersion >= 1
        if chunked && !events.isEmpty {
            translatedResponse.append(hex: events.count)
            translatedResponse.append("\r\n")
        }
        translatedResponse.append(events)
        if chunked {
            if !events.isEmpty { translatedResponse.append("\r\n") }
            if last { translatedResponse.append("0\r\n\r\n") }
        }
        record.bytesOut += translatedResponse.readableBytes
        out.append(translatedResponse.readPointer, translatedResponse.readableBytes)
        return flush()
    }

    /// The upstream response is complete: the stream's tail, or the whole body translated.
    private func finishTranslatedResponse(_ translation: Translation) {
        if translatedStreaming {
            var tail: [UInt8] = []
            translation.finish(into: &tail)
            _ = sendTranslatedChunk(tail, last: true)
            return
        }
        let collected = UnsafeRawBufferPointer(start: translatedResponse.readPointer, count: translatedResponse.readableBytes)
        let result: Result<[UInt8], TranslationError>
        if translation.failed {
            result = .failure(TranslationError(field: "(response)", "larger than max_body_bytes"))
        } else {
            do throws(TranslationError) { result = .success(try translation.whole(collected, status: translatedStatus)) } catch {
                result = .failure(error)
            }
        }
        buffers.release(&translatedResponse)
        switch result {
        case .success(let body):
            writeTranslatedHead(status: translatedStatus, contentType: "application/json", length: body.count)
            buffers.attachHeap(&translatedResponse, capacity: max(1, body.count))
            translatedResponse.append(body)
            record.bytesOut += body.count
            out.append(translatedResponse.readPointer, translatedResponse.readableBytes)
        case .failure(let error):
            respondError(502, .upstreamError, "the upstream response could not be translated: \(error.message)", close: false)
        }
    }

    /// Feeds response bytes to the usage tap and the body log, through a decoder when they still carry
    /// chunked framing.
    private func tap(_ bytes: UnsafeRawPointer, _ count: Int) {
        if tapDechunks {
            _ = tapDecoder.feed(bytes, count) { data, length in
                observe(UnsafeRawBufferPointer(start: data, count: length))
            }
        } else {
            observe(UnsafeRawBufferPointer(start: bytes, count: count))
        }
    }

    private func observe(_ data: UnsafeRawBufferPointer) {
        usageTap?.feed(data)
        if loggedResponse != nil, loggedResponse!.count < ClientConnection.loggedBodyCap {
            loggedResponse!.append(contentsOf: data.prefix(ClientConnection.loggedBodyCap - loggedResponse!.count))
        }
    }

    func upstreamResponseComplete() {
        upstream = nil
        if record.active { record.upstreamEndNs = Clock.monotonicNs() }
        if let translation {
            finishTranslatedResponse(translation)
            // respondError finished the request itself.
            guard state == .proxying else { return }
        }
        finishRequest()
    }

    func upstreamAborted() {
        upstream = nil
        Log.error("upstream reset after the response started; closing the client connection")
        closeNow()
    }

    // MARK: Policy and accounting

    /// The key a client presents (`Authorization: Bearer KEY` or `x-api-key: KEY`), if valid.
    private func authenticate() -> KeyPolicy? {
        var presented: UnsafeRawBufferPointer?
        if let value = parser.value(of: .authorization) {
            let bytes = parser.bytes(value)
            if bytes.count > 7, HTTPBytes.hasLowercasePrefix(bytes.baseAddress!, 7, "bearer ") {
                presented = UnsafeRawBufferPointer(rebasing: bytes[7...])
            }
        } else if let value = parser.value(of: .xApiKey) {
            presented = parser.bytes(value)
        }
        guard let presented, presented.count > 0 else { return nil }
        return context.authenticate(bearer: presented, nowSeconds: Int64(Clock.realtimeNs() / 1_000_000_000))
    }

    /// Closes the books on the request: the ticket (real usage and cost), the metrics, the audit record.
    private func finishAccounting() {
        guard record.active else { return }
        record.active = false
        record.endNs = Clock.monotonicNs()
        if record.upstreamStartNs > 0 && record.upstreamEndNs == 0 { record.upstreamEndNs = record.endNs }
        let usage = usageTap?.usage
        usageTap = nil
        var cost: Int64 = 0
        if let ticket {
            cost = costMicroUSD(usage: usage, price: admittedPrice)
            context.config.policy.counters.complete(
                ticket, usage: usage, costMicroUSD: cost, nowNs: loop.now, nowSeconds: Int64(Clock.realtimeNs() / 1_000_000_000))
            self.ticket = nil
        }
        context.recordMetrics(record, modelMetricsID: modelMetricsID, key: key, deployment: deployment, usage: usage, costMicroUSD: cost)
        if let audit = context.audit {
            let id = String(decoding: UnsafeRawBufferPointer(start: requestID, count: requestIDCount), as: UTF8.self)
            var tags = ""
            if let value = tagsHeader { tags = value }
            let requestBody = loggedRequest
            let responseBody = loggedResponse.map { String(decoding: $0, as: UTF8.self) }
            loggedRequest = nil
            loggedResponse = nil
            // Built as the argument, so that it moves into the queue without a copy.
            audit.enqueue(AuditRecord(
                record, requestID: id, keyID: key?.id, keyName: key?.name, groups: key?.groups ?? [], tags: tags,
                client: peerHostText,
                deployment: deployment?.labelText ?? "", attempts: attempts,
                promptTokens: usage?.promptTokens ?? 0, completionTokens: usage?.completionTokens ?? 0, costMicroUSD: cost,
                attemptLog: attemptTrail, requestBody: requestBody, responseBody: responseBody))
        }
    }

    // MARK: Local responses

    private func answerLocally() {
        switch endpoint {
        case .models:
            guard parser.method == .get else {
                respondError(405, .methodNotAllowed, "this endpoint takes GET", close: closeAfterResponse)
                return
            }
            guard context.config.authRequired else {
                respondJSON(200, context.config.modelListBody)
                return
            }
            guard let key = authenticate() else {
                respondError(401, .invalidAPIKey, "a valid API key is required (Authorization: Bearer KEY or x-api-key)",
                             close: closeAfterResponse)
                return
            }
            self.key = key
            respondJSON(200, context.config.modelList(for: key))
        case .health:
            respondJSON(200, Array("{\"status\":\"ok\"}".utf8))
        default:
            respondError(404, .notFound, "no such endpoint", close: closeAfterResponse)
        }
    }

    private func respondJSON(_ status: Int, _ json: [UInt8]) {
        state = .proxying
        record.status = status
        let close = closeAfterResponse || !keepAlive || draining
        buffers.release(&responseHead)
        buffers.attach(&responseHead, capacity: json.count + 256 + requestIDCount + RateLimitHeaders.maxEncodedBytes)
        responseHead.append("HTTP/1.1 ")
        responseHead.append(decimal: status)
        responseHead.append(" OK\r\ncontent-type: application/json\r\ncontent-length: ")
        responseHead.append(decimal: json.count)
        responseHead.append("\r\n")
        if let key { context.config.policy.counters.headers(key, nowNs: loop.now).write(into: &responseHead) }
        responseHead.append("x-request-id: ")
        responseHead.append(requestID, requestIDCount)
        responseHead.append(close ? "\r\nconnection: close\r\n\r\n" : "\r\n\r\n")
        responseHead.append(json)
        keepAlive = !close
        record.bytesOut += responseHead.readableBytes
        out.append(responseHead.readPointer, responseHead.readableBytes)
        finishRequest()
    }

    /// Answers with an OpenAI-style error. `close` when the request's framing is unknown or broken.
    private func respondError(_ status: Int, _ code: StaticCode, _ message: String, close: Bool, extraHeaders: String = "") {
        record.status = status
        record.errorCode = code
        let closing = close || closeAfterResponse || !keepAlive || draining
        if closing { keepAlive = false }
        state = .proxying
        buffers.release(&responseHead)
        let body = ErrorBody.json(code: code, message: message)
        buffers.attach(&responseHead, capacity: body.count + 512)
        let id = requestIDCount > 0 ? UnsafeRawBufferPointer(start: requestID, count: requestIDCount) : nil
        var headers = extraHeaders
        if attempts > 0 {
            // Failures after routing say where the request went (error path only: a String is fine here).
            if let deployment { headers += "x-gateway-deployment: \(deployment.labelText)\r\n" }
            headers += "x-gateway-attempts: \(attempts)\r\n"
        }
        if let key {
            let limits = context.config.policy.counters.headers(key, nowNs: loop.now)
            if !limits.isEmpty {
                var text = ByteBuffer()
                buffers.attach(&text, capacity: RateLimitHeaders.maxEncodedBytes)
                limits.write(into: &text)
                headers += String(decoding: UnsafeRawBufferPointer(start: text.readPointer, count: text.readableBytes), as: UTF8.self)
                buffers.release(&text)
            }
        }
        ErrorBody.appendResponse(
            to: &responseHead, status: status, code: code, message: message, close: closing, requestID: id,
            extraHeaders: headers, anthropic: endpoint == .messages)
        record.bytesOut += responseHead.readableBytes
        out.append(responseHead.readPointer, responseHead.readableBytes)
        if closing { closeAfterFlush = true }
        finishRequest()
    }

    // MARK: Ends

    /// The response is queued: reset for the next request, or close when the connection ends here.
    private func finishRequest() {
        endAttempt()
        if probing, let deployment { deployment.health.releaseProbe() }
        probing = false
        waitingToRetry = false
        primaryModel = nil
        currentModel = nil
        finishAccounting()
        if streamingBody {
            streamingBody = false
            closeAfterFlush = true
        }
        triedEarlyDispatch = false
        bodyForwarded = 0
        buffers.release(&body)
        buffers.release(&headCopy)
        releaseTranslationBuffersOnceSent()
        bodyMode = .none
        bodyPointer = nil
        bodyCount = 0
        deployment = nil
        pool = nil
        state = .idle
        deadline = loop.now + context.config.idleTimeoutNs
        if !keepAlive || draining || peerClosedInput { closeAfterFlush = true }
        if readPaused {
            readPaused = false
            updateInterest()
        }
        guard flush() else { return }
        if closeAfterFlush {
            closeNow()
            return
        }
        if input.readableBytes == 0 {
            releaseIdleBuffers()
        } else if input.readerIndex > 0 {
            input.compact()
            parser.reset()
        }
        process()
    }

    /// The translated request is done with; the translated response may still be queued for the client.
    private func releaseTranslationBuffersOnceSent() {
        guard translation != nil || translatedRequest.isAllocated || translatedResponse.isAllocated else { return }
        translation = nil
        buffers.release(&translatedRequest)
        if out.isEmpty { buffers.release(&translatedResponse) }
    }

    private func releaseIdleBuffers() {
        if translatedResponse.isAllocated { buffers.release(&translatedResponse) }
        buffers.release(&input)
        buffers.release(&upstreamHead)
        buffers.release(&responseHead)
        parser.reset()
    }

    private func closeNow() {
        guard state != .closed else { return }
        if record.active {
            // The client or the upstream went away mid-request: the record and the ticket still close.
            if record.status == 0 || responseStarted { record.errorCode = record.errorCode ?? .clientClosed }
            finishAccounting()
        }
        state = .closed
        endAttempt()
        if probing, let deployment { deployment.health.releaseProbe() }
        probing = false
        waitingToRetry = false
        if let upstream {
            self.upstream = nil
            upstream.cancel()
        }
        if waitingForUpstream {
            waitingForUpstream = false
            pool?.cancelWait(self)
        }
        if tls?.handshakeComplete == true && closeAfterFlush { tls?.shutdown() }
        if let stream {
            self.stream = nil
            stream.exchangeClosed()
        } else {
            loop.deregisterAndClose(registration)
        }
        out.removeAll()
        buffers.release(&input)
        buffers.release(&body)
        buffers.release(&headCopy)
        buffers.release(&upstreamHead)
        buffers.release(&responseHead)
        buffers.release(&translatedRequest)
        buffers.release(&translatedResponse)
        translation = nil
        context.clientClosed()
    }
}

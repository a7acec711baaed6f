#if canImport(Glibc)
import Glibc
#endif
import GatewayConfig
import GatewayHTTP
import GatewayIO
import GatewayPolicy
import GatewayStore

/// The API paths the gateway answers; anything else is a 404.
typealias Endpoint = APIPath

extension APIPath {
    /// Forwarded to a provider (the model APIs); the others are answered by the gateway itself.
    var isProxied: Bool { isModelAPI }
}

/// One client's HTTP/1.1 connection: it parses requests in place, picks the upstream from the body's
/// `model`, and relays the response as it arrives. One request is in flight at a time; pipelined
/// requests wait in the read buffer and are answered in order.
///
/// Memory: the read buffer, the upstream head and the response head are pool chunks taken while a
/// request is active and given back when the connection goes idle. A request that fits in the read
/// buffer is forwarded from it without a copy; a larger body, or a chunked one, goes to a heap buffer.
final class ClientConnection: EventHandler, UpstreamExchange {
    enum State { case idle, readingHead, readingBody, proxying, closed }
    enum BodyMode { case none, inInput, heapLength, heapChunked }

    private unowned(unsafe) let context: LoopContext
    private let loop: EventLoop
    private let fd: Int32
    private let peer: SocketAddress
    private var registration = Registration.none
    private(set) var state = State.idle

    private var input = ByteBuffer()
    private var body = ByteBuffer()
    private var headCopy = ByteBuffer()
    private var upstreamHead = ByteBuffer()
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
    private var upstream: UpstreamConnection?
    private var waitingForUpstream = false
    private var attempts = 0
    private var responseStarted = false
    /// The request went upstream before its whole body arrived; the rest follows as it is read.
    private var streamingBody = false
    /// Body bytes already queued to the upstream (offsets in `body`).
    private var bodyForwarded = 0
    private var triedEarlyDispatch = false
    private var closeAfterResponse = false
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

    init(fd: Int32, peer: SocketAddress, context: LoopContext) {
        self.fd = fd
        self.peer = peer
        self.context = context
        self.loop = context.loop
        requestID = .allocate(byteCount: 128, alignment: 1)
        peerHost = .allocate(byteCount: 64, alignment: 1)
        peerHostCount = peer.writeHost(into: peerHost, capacity: 64)
    }

    deinit {
        requestID.deallocate()
        peerHost.deallocate()
        out.deallocate()
    }

    func start() {
        registration = loop.register(fd: fd, interest: Interest.read, handler: self)
        deadline = loop.now + context.config.idleTimeoutNs
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
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
        case .idle where now > deadline && out.isEmpty:
            closeNow()
        case .readingHead where now > deadline, .readingBody where now > deadline:
            respondError(408, .requestTimeout, "the request was not received within the timeout", close: true)
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
        if state == .idle && out.isEmpty && input.readableBytes == 0 { closeNow() }
    }

    private func onReadable() {
        if peerClosedInput { return }
        if !input.isAllocated { loop.buffers.attachSmall(&input) }
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
                    loop.buffers.grow(&input)
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
            if readingIntoBody {
                let wanted = contentLength - body.writerIndex
                result = try Posix.read(fd, body.writePointer, wanted)
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
            switch state {
            case .proxying where streamingBody:
                // The client left before sending its whole body: the upstream request cannot complete.
                closeNow()
            case .proxying:
                // Half-close: answer the request in flight, then close.
                updateInterest()
            default:
                if out.isEmpty { closeNow() } else { closeAfterFlush = true; updateInterest() }
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
        var interest = Interest.none
        if !peerClosedInput && !readPaused { interest |= Interest.read }
        if wantsWrite { interest |= Interest.write }
        loop.setInterest(registration, interest)
    }

    /// Writes what is queued. Returns true when all of it went out.
    private func flush() -> Bool {
        switch out.flush(to: fd) {
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
                guard out.isEmpty, !closeAfterFlush, input.readableBytes > 0 else { return }
                switch parser.parseRequest(input.readPointer, input.readableBytes) {
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
        if context.audit != nil, let tags = parser.value(named: "x-gateway-tags") {
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
            loop.buffers.attachHeap(&headCopy, capacity: parser.headLength)
            headCopy.append(input.base! + headStart, parser.headLength)
            parser.rebase(to: headCopy.base!)
            input.readerIndex = headEnd
            if parser.chunked {
                bodyMode = .heapChunked
                decoder.reset()
                loop.buffers.attachHeap(&body, capacity: min(64 * 1024, context.config.maxBodyBytes + 1))
            } else {
                bodyMode = .heapLength
                loop.buffers.attachHeap(&body, capacity: contentLength)
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
        loop.buffers.attachHeap(&grown, capacity: capacity)
        grown.append(body.base!, body.writerIndex)
        loop.buffers.release(&body)
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
        let chosen = model.deployments[0]
        deployment = chosen
        pool = context.pools[chosen.providerIndex]
        if requestIDCount == 0 { requestIDCount = context.writeRequestID(requestID) }
        let provider = context.config.providers[chosen.providerIndex]
        // Streams must end with usage, or they could not be billed.
        includeUsage = .unchanged
        if fields.stream == true && provider.kind == .openai && !streamingBody
            && (endpoint == .chatCompletions || endpoint == .completions) {
            includeUsage = includeUsagePlan(body: bodyBytes, fields: fields)
        }
        buildUpstreamHead(chosen, provider: provider)
        attempts = 1
        waitingForUpstream = true
        deadline = loop.now + context.config.connectTimeoutNs
        pool!.acquire(for: self)
    }

    /// Writes the request head for the upstream: hop-by-hop and credential headers dropped, the
    /// provider's host and key added, the body re-framed with Content-Length.
    private func buildUpstreamHead(_ deployment: DeploymentRoute, provider: ProviderRoute) {
        loop.buffers.release(&upstreamHead)
        let needed = parser.headLength + provider.basePath.count + provider.credentialLines.count + 512
        loop.buffers.attach(&upstreamHead, capacity: needed)
        let base = parser.base
        upstreamHead.append(base + Int(parser.methodRange.start), Int(parser.methodRange.count))
        upstreamHead.append(byte: UInt8(ascii: " "))
        upstreamHead.append(provider.basePath)
        // The client's "/v1" is replaced by the provider's base path.
        upstreamHead.append(base + Int(parser.target.start) + 3, Int(parser.target.count) - 3)
        upstreamHead.append(" HTTP/1.1\r\n")
        upstreamHead.append(provider.hostLine)
        var forwardedFor: HeaderField?
        for i in 0..<parser.fieldCount {
            let field = parser.fields[i]
            switch field.kind {
            case .other, .contentType:
                if field.nominatedByConnection { continue }
                // The usage tap reads response bodies: ask for them uncompressed.
                if field.kind == .other,
                   HTTPBytes.equalsLowercase(base + Int(field.name.start), Int(field.name.count), "accept-encoding") { continue }
                appendField(field, to: &upstreamHead)
            case .xForwardedFor:
                forwardedFor = field
            default:
                continue
            }
        }
        upstreamHead.append(provider.credentialLines)
        upstreamHead.append("x-forwarded-for: ")
        if let forwardedFor, forwardedFor.value.count > 0 {
            upstreamHead.append(base + Int(forwardedFor.value.start), Int(forwardedFor.value.count))
            upstreamHead.append(", ")
        }
        upstreamHead.append(peerHost, peerHostCount)
        upstreamHead.append("\r\nx-request-id: ")
        upstreamHead.append(requestID, requestIDCount)
        upstreamHead.append("\r\ncontent-length: ")
        var length = deployment.renames ? bodyCount - modelRange.count + deployment.upstreamModel.count : bodyCount
        length += includeUsage.lengthDelta
        upstreamHead.append(decimal: length)
        upstreamHead.append("\r\n\r\n")
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

    func upstreamReady(_ connection: UpstreamConnection) {
        waitingForUpstream = false
        upstream = connection
        connection.passRawChunks = minorVersion >= 1
        connection.out.append(upstreamHead.readPointer, upstreamHead.readableBytes)
        // While streaming, only the bytes read so far can go; forwardBody sends the rest.
        let available = streamingBody ? min(body.writerIndex, contentLength - 1) : bodyCount
        if let bodyPointer, available > 0 {
            appendBody(bodyPointer, available, to: &connection.out)
        }
        bodyForwarded = available
        connection.requestBodyComplete = !streamingBody
        deadline = 0
        if record.active && record.upstreamStartNs == 0 { record.upstreamStartNs = Clock.monotonicNs() }
        connection.sendQueued()
        if streamingBody && body.writerIndex > bodyForwarded { forwardBody() }
        upstreamWritable()
    }

    func upstreamFailed(_ failure: UpstreamFailure) {
        upstream = nil
        waitingForUpstream = false
        if case .failed(_, let retryable) = failure, retryable, attempts == 1, let pool {
            // A reused connection closed under us before any response byte: try once on a new one.
            attempts += 1
            waitingForUpstream = true
            deadline = loop.now + context.config.connectTimeoutNs
            pool.acquire(for: self, fresh: true)
            return
        }
        let label = deployment.map { String(decoding: $0.label, as: UTF8.self) } ?? "?"
        let id = String(decoding: UnsafeRawBufferPointer(start: requestID, count: requestIDCount), as: UTF8.self)
        Log.error("upstream \(label) request \(id): \(failure.message) -> \(failure.status)")
        respondError(failure.status, failure.code, failure.message, close: false)
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
        let rename = deployment.flatMap { $0.renames ? $0 : nil }
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
        responseStarted = true
        record.status = parser.status
        if record.active { record.upstreamHeadNs = Clock.monotonicNs() }
        usageTap = nil
        if ticket != nil && parser.status < 300 {
            let anthropic = endpoint == .messages
            let stream = record.streamed
            usageTap = UsageTap(mode: anthropic ? (stream ? .anthropicSSE : .anthropicJSON) : (stream ? .openAISSE : .openAIJSON))
        }
        tapDechunks = framing == .chunked && minorVersion >= 1
        tapDecoder.reset()
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
        loop.buffers.release(&responseHead)
        let needed = parser.headLength + 512 + requestIDCount + RateLimitHeaders.maxEncodedBytes
        loop.buffers.attach(&responseHead, capacity: needed)
        releaseRequestBuffersOnceSent()
        let base = parser.base
        responseHead.append("HTTP/1.1 ")
        let lineLength = parser.startLineLength
        responseHead.append(base + 9, max(3, lineLength - 9))
        responseHead.append("\r\n")
        for i in 0..<parser.fieldCount {
            let field = parser.fields[i]
            switch field.kind {
            case .connection, .keepAlive, .te, .trailer, .upgrade, .proxyPrefixed, .transferEncoding, .xRequestID:
                continue
            default:
                if field.nominatedByConnection { continue }
                responseHead.append(base + Int(field.name.start), Int(field.name.count))
                responseHead.append(": ")
                responseHead.append(base + Int(field.value.start), Int(field.value.count))
                responseHead.append("\r\n")
            }
        }
        if chunkedToClient { responseHead.append("transfer-encoding: chunked\r\n") }
        if let key { context.config.policy.counters.headers(key, nowNs: loop.now).write(into: &responseHead) }
        responseHead.append("x-request-id: ")
        responseHead.append(requestID, requestIDCount)
        if let deployment {
            responseHead.append("\r\nx-gateway-deployment: ")
            responseHead.append(deployment.label)
        }
        responseHead.append("\r\nx-gateway-attempts: ")
        responseHead.append(decimal: attempts)
        responseHead.append(close ? "\r\nconnection: close\r\n\r\n" : "\r\n\r\n")
        out.append(responseHead.readPointer, responseHead.readableBytes)
        record.bytesOut += responseHead.readableBytes
    }

    /// Once the response has started there is no retry: the request's head and a body that sits alone in the
    /// read buffer are no longer needed, so a long stream to a slow reader holds as little as possible.
    private func releaseRequestBuffersOnceSent() {
        guard let upstream, !upstream.hasPendingOutput, !streamingBody else { return }
        loop.buffers.release(&upstreamHead)
        if bodyMode == .inInput && input.readableBytes == 0 {
            loop.buffers.release(&input)
            bodyPointer = nil
        }
    }

    func upstreamBody(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        if count > 0 {
            if record.active && record.firstByteNs == 0 { record.firstByteNs = Clock.monotonicNs() }
            record.bytesOut += count
            if usageTap != nil || loggedResponse != nil { tap(bytes, count) }
        }
        out.append(bytes, count)
        return flush()
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
                requestBody: requestBody, responseBody: responseBody))
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
        loop.buffers.release(&responseHead)
        loop.buffers.attach(&responseHead, capacity: json.count + 256 + requestIDCount + RateLimitHeaders.maxEncodedBytes)
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
        loop.buffers.release(&responseHead)
        let body = ErrorBody.json(code: code, message: message)
        loop.buffers.attach(&responseHead, capacity: body.count + 512)
        let id = requestIDCount > 0 ? UnsafeRawBufferPointer(start: requestID, count: requestIDCount) : nil
        var headers = extraHeaders
        if let key {
            let limits = context.config.policy.counters.headers(key, nowNs: loop.now)
            if !limits.isEmpty {
                var text = ByteBuffer()
                loop.buffers.attach(&text, capacity: RateLimitHeaders.maxEncodedBytes)
                limits.write(into: &text)
                headers += String(decoding: UnsafeRawBufferPointer(start: text.readPointer, count: text.readableBytes), as: UTF8.self)
                loop.buffers.release(&text)
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
        finishAccounting()
        if streamingBody {
            streamingBody = false
            closeAfterFlush = true
        }
        triedEarlyDispatch = false
        bodyForwarded = 0
        loop.buffers.release(&body)
        loop.buffers.release(&headCopy)
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

    private func releaseIdleBuffers() {
        loop.buffers.release(&input)
        loop.buffers.release(&upstreamHead)
        loop.buffers.release(&responseHead)
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
        if let upstream {
            self.upstream = nil
            upstream.cancel()
        }
        if waitingForUpstream {
            waitingForUpstream = false
            pool?.cancelWait(self)
        }
        loop.deregisterAndClose(registration)
        out.removeAll()
        loop.buffers.release(&input)
        loop.buffers.release(&body)
        loop.buffers.release(&headCopy)
        loop.buffers.release(&upstreamHead)
        loop.buffers.release(&responseHead)
        context.clientClosed()
    }
}

#if canImport(Glibc)
import Glibc
#endif
import GatewayHTTP
import GatewayIO

/// One admin client's HTTP/1.1 keep-alive connection. It reads a request head with `HTTPHeadParser`,
/// collects the body (Content-Length or chunked, at most `maxBodyBytes`), hands the request to the
/// router (inline for probes, else on the worker thread), and writes the response with Content-Length.
/// One request at a time: pipelined requests wait in the read buffer.
///
/// A request it cannot frame (a malformed head, a bad chunk, a body over the cap) is answered with
/// `connection: close`; then the connection stops writing and reads and drops what the client still
/// sends for a moment, so the client sees the answer rather than a reset.
final class AdminConnection: EventHandler {
    enum Phase { case head, body, waiting, lingering, closed }

    private unowned let host: AdminLoop
    private let loop: EventLoop
    private let fd: Int32
    private var registration = Registration.none
    private(set) var phase = Phase.head

    private var input = ByteBuffer()
    private let parser = HTTPHeadParser()
    private var decoder = ChunkedDecoder()

    // The request being read.
    private var method = ""
    private var target = ""
    private var authorization: String?
    private var isHead = false
    private var keepAlive = true
    private var chunked = false
    private var bodyRemaining = 0
    private var body: [UInt8] = []

    // The response being written.
    private var output: [UInt8] = []
    private var outputOffset = 0
    private var wantsWrite = false
    private var closeAfterWrite = false

    private var deadline: UInt64 = 0
    private var lingerBytes = 0
    static let lingerNs: UInt64 = 2_000_000_000
    static let lingerMaxBytes = 4 << 20

    init(fd: Int32, host: AdminLoop) {
        self.fd = fd
        self.host = host
        self.loop = host.loop
    }

    func start() {
        registration = loop.register(fd: fd, interest: Interest.read, handler: self)
        deadline = loop.now + host.options.idleTimeoutNs
    }

    // MARK: Events

    func handleEvent(_ events: UInt32) {
        if events & EventBits.writable != 0 && wantsWrite {
            flush()
            guard phase != .closed else { return }
        }
        if events & (EventBits.error | EventBits.hangup) != 0 {
            closeNow()
            return
        }
        if events & (EventBits.readable | EventBits.readHangup) != 0 {
            onReadable()
        }
    }

    func tick(now: UInt64) {
        guard phase != .closed, now > deadline else { return }
        if wantsWrite {
            // A client that does not read its response.
            closeNow()
            return
        }
        switch phase {
        case .head where input.readableBytes > 0, .body:
            respond(.error(AdminError(status: 408, code: "request_timeout", message: "the request was not received within the timeout")),
                    close: true)
        case .waiting:
            break
        default:
            // Idle too long, or the end of a lingering close.
            closeNow()
        }
    }

    private func onReadable() {
        if phase == .lingering {
            discardInput()
            return
        }
        guard phase == .head || phase == .body, !wantsWrite else { return }
        if !input.isAllocated { loop.buffers.attachSmall(&input) }
        if input.writableBytes == 0 {
            if input.readerIndex > 0 {
                input.compact()
                parser.reset()
            } else if input.capacity == Buffers.smallSize {
                loop.buffers.grow(&input)
            }
            if input.writableBytes == 0 {
                // Cannot happen while the parser refuses heads over 64 KiB; never read 0 bytes and call it EOF.
                respond(.error(AdminError(status: 431, code: "headers_too_large", message: "the request head is too large")), close: true)
                return
            }
        }
        let count: Int
        do {
            guard case .processed(let n) = try Posix.read(fd, input.writePointer, input.writableBytes) else { return }
            count = n
        } catch {
            closeNow()
            return
        }
        if count == 0 {
            closeNow()
            return
        }
        if phase == .head && input.readableBytes == 0 { deadline = loop.now + host.options.headerTimeoutNs }
        input.writerIndex += count
        process()
    }

    // MARK: Requests

    private func process() {
        while true {
            switch phase {
            case .head:
                guard input.readableBytes > 0 else {
                    releaseInputIfEmpty()
                    return
                }
                switch parser.parseRequest(input.readPointer, input.readableBytes) {
                case .incomplete:
                    return
                case .failed(let error):
                    respond(.error(AdminError(status: error.status, code: error.code.rawValue, message: "\(error.message)")), close: true)
                    return
                case .complete:
                    beginRequest()
                }
            case .body:
                guard readBody() else { return }
                dispatch()
                return
            case .waiting, .lingering, .closed:
                return
            }
        }
    }

    private func beginRequest() {
        method = String(decoding: parser.bytes(parser.methodRange), as: UTF8.self)
        target = String(decoding: parser.bytes(parser.target), as: UTF8.self)
        authorization = parser.value(of: .authorization).map { String(decoding: parser.bytes($0), as: UTF8.self) }
        isHead = parser.method == .head
        keepAlive = parser.keepAlive
        chunked = parser.chunked
        let declared = parser.contentLength
        let expectContinue = parser.expectContinue
        input.readerIndex += parser.headLength
        body = []
        phase = .body
        deadline = loop.now + host.options.headerTimeoutNs
        if declared > Int64(host.options.maxBodyBytes) {
            respond(tooLarge(), close: true)
            return
        }
        bodyRemaining = max(0, Int(declared))
        if chunked {
            decoder.reset()
        } else {
            body.reserveCapacity(bodyRemaining)
        }
        if expectContinue && (chunked || bodyRemaining > input.readableBytes) {
            let interim: StaticString = "HTTP/1.1 100 Continue\r\n\r\n"
            _ = try? Posix.send(fd, interim.utf8Start, interim.utf8CodeUnitCount)
        }
    }

    private func tooLarge() -> AdminResponse {
        .error(AdminError(status: 413, code: "request_too_large",
                          message: "the request body exceeds \(host.options.maxBodyBytes) bytes"))
    }

    /// Moves body bytes from the read buffer; true once the whole body is here.
    private func readBody() -> Bool {
        if !chunked {
            let take = min(bodyRemaining, input.readableBytes)
            if take > 0 {
                body.append(contentsOf: UnsafeRawBufferPointer(start: input.readPointer, count: take))
                input.readerIndex += take
                bodyRemaining -= take
            }
            return bodyRemaining == 0
        }
        guard input.readableBytes > 0 else { return false }
        let cap = host.options.maxBodyBytes
        var overflow = false
        let feed = decoder.feed(input.readPointer, input.readableBytes) { data, count in
            if body.count + count > cap {
                overflow = true
            } else {
                body.append(contentsOf: UnsafeRawBufferPointer(start: data, count: count))
            }
        }
        input.readerIndex += feed.consumed
        if overflow {
            respond(tooLarge(), close: true)
            return false
        }
        if let error = feed.error {
            respond(.error(AdminError(status: 400, code: "invalid_request", message: "\(error)")), close: true)
            return false
        }
        return feed.done
    }

    private func dispatch() {
        let request = AdminRequest(method: method, target: target, authorization: authorization, body: body)
        body = []
        phase = .waiting
        updateInterest()
        let router = host.router
        if AdminRouter.runsInline(request) {
            respond(router.handle(request), close: false)
            return
        }
        nonisolated(unsafe) let connection = self
        let loop = self.loop
        host.worker.submit {
            let response = router.handle(request)
            loop.execute { _ in connection.respond(response, close: false) }
        }
    }

    // MARK: Responses

    /// Queues the response and writes it. `close` when the request's framing is broken.
    func respond(_ response: AdminResponse, close: Bool) {
        guard phase != .closed, phase != .lingering else { return }
        let closing = close || !keepAlive || host.stopping
        closeAfterWrite = closing
        let hadBrokenFraming = close
        output = AdminConnection.encode(response, head: isHead, close: closing)
        outputOffset = 0
        phase = hadBrokenFraming ? .lingering : .waiting
        deadline = loop.now + host.options.idleTimeoutNs
        flush()
    }

    static func encode(_ response: AdminResponse, head: Bool, close: Bool) -> [UInt8] {
        var text = "HTTP/1.1 \(response.status) \(AdminConnection.reason(response.status))\r\n"
        let noBody = response.status == 204 || response.status == 304 || response.status < 200
        if !noBody {
            if let type = response.contentType { text += "content-type: \(type)\r\n" }
            text += "content-length: \(response.body.count)\r\n"
        }
        for (name, value) in response.headers { text += "\(name): \(value)\r\n" }
        // Key secrets travel in these bodies: no cache may keep them.
        text += "cache-control: no-store\r\n"
        if close { text += "connection: close\r\n" }
        text += "\r\n"
        var bytes = Array(text.utf8)
        if !head && !noBody { bytes += response.body }
        return bytes
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 201: "Created"
        case 409: "Conflict"
        default: "\(HTTPStatus.reason(status))"
        }
    }

    private func flush() {
        while outputOffset < output.count {
            let result: IOResult<Int>
            do {
                result = try output.withUnsafeBytes { raw in
                    try Posix.send(fd, raw.baseAddress! + outputOffset, raw.count - outputOffset)
                }
            } catch {
                closeNow()
                return
            }
            guard case .processed(let n) = result else {
                if !wantsWrite {
                    wantsWrite = true
                    updateInterest()
                }
                return
            }
            outputOffset += n
        }
        output = []
        outputOffset = 0
        if wantsWrite {
            wantsWrite = false
            updateInterest()
        }
        responseWritten()
    }

    private func responseWritten() {
        if phase == .lingering {
            // The answer is out; stop writing, and drop what the client still sends until it closes.
            Posix.shutdownWrite(fd)
            deadline = loop.now + AdminConnection.lingerNs
            loop.buffers.release(&input)
            updateInterest()
            return
        }
        if closeAfterWrite {
            closeNow()
            return
        }
        phase = .head
        method = ""
        target = ""
        authorization = nil
        isHead = false
        deadline = loop.now + (input.readableBytes > 0 ? host.options.headerTimeoutNs : host.options.idleTimeoutNs)
        updateInterest()
        process()
    }

    private func discardInput() {
        let scratch = loop.buffers.small.acquire()
        defer { loop.buffers.small.release(scratch) }
        let count: Int
        do {
            guard case .processed(let n) = try Posix.read(fd, scratch, Buffers.smallSize) else { return }
            count = n
        } catch {
            closeNow()
            return
        }
        lingerBytes += count
        if count == 0 || lingerBytes > AdminConnection.lingerMaxBytes { closeNow() }
    }

    private func releaseInputIfEmpty() {
        guard input.isAllocated, input.readableBytes == 0 else { return }
        loop.buffers.release(&input)
        parser.reset()
    }

    private func updateInterest() {
        var interest = Interest.none
        switch phase {
        case .head, .body, .lingering:
            if !wantsWrite { interest |= Interest.read }
        case .waiting, .closed:
            break
        }
        if wantsWrite { interest |= Interest.write }
        loop.setInterest(registration, interest)
    }

    /// Closes at once (the server's shutdown, errors, timeouts).
    func closeNow() {
        guard phase != .closed else { return }
        phase = .closed
        loop.deregisterAndClose(registration)
        loop.buffers.release(&input)
        output = []
        body = []
        host.connectionClosed()
    }
}

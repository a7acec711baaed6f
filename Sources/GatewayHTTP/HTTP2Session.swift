#if canImport(Glibc)
import Glibc
#endif
import CNghttp2
import GatewayIO

/// What an HTTP/2 session reports to the connection that owns it. Every call comes from inside
/// `HTTP2Session.receive` or `HTTP2Session.send`: submit frames from here if you like, but call neither of those.
///
/// `tag` is the connection's number for a stream (a slot index + 1, say): given by `http2StreamOpened` for a
/// stream the peer opened, or to `submitRequest` for one this side opened; 0 for a stream the connection forgot.
public protocol HTTP2SessionDelegate: AnyObject {
    /// Server: the peer opened a stream. - Returns: its tag (> 0), or 0 to refuse it with RST_STREAM.
    func http2StreamOpened(_ stream: Int32) -> Int
    /// A header block is complete: its fields, pseudo-headers first, valid only during the call. `oversized`: it
    /// passed the header list limit, and the fields past the limit are not in `fields`.
    func http2HeadersComplete(_ stream: Int32, tag: Int, fields: HTTP2HeaderList, endStream: Bool, oversized: Bool)
    /// Body bytes, valid only during the call. Call `HTTP2Session.consume` once they are taken, here or later:
    /// the peer's window reopens only then.
    func http2Data(_ stream: Int32, tag: Int, _ bytes: UnsafeRawBufferPointer)
    /// END_STREAM arrived on a DATA frame (on HEADERS, `http2HeadersComplete` says so).
    func http2DataComplete(_ stream: Int32, tag: Int)
    /// The stream is gone: ended both ways (error code 0), reset by either side, or refused by a GOAWAY.
    func http2StreamClosed(_ stream: Int32, tag: Int, errorCode: UInt32)
    /// Client: the HEADERS frame of a request is queued; it has left once `outbound.flushedTotal >= offset`.
    func http2HeadersQueued(_ stream: Int32, tag: Int, until offset: UInt64)
    /// The peer sent GOAWAY.
    func http2GoAway(lastStreamID: Int32, errorCode: UInt32)
    /// The peer's SETTINGS arrived (its limits, such as `peerMaxConcurrentStreams`, are known from now on).
    func http2SettingsReceived()
}

extension HTTP2SessionDelegate {
    public func http2StreamOpened(_ stream: Int32) -> Int { 0 }
    public func http2HeadersQueued(_ stream: Int32, tag: Int, until offset: UInt64) {}
    public func http2GoAway(lastStreamID: Int32, errorCode: UInt32) {}
    public func http2SettingsReceived() {}
}

/// HTTP/2 error codes (RFC 9113 §7).
public enum HTTP2ErrorCode {
    public static let noError: UInt32 = 0
    public static let protocolError: UInt32 = 1
    public static let internalError: UInt32 = 2
    public static let refusedStream: UInt32 = 7
    public static let cancel: UInt32 = 8
    public static let enhanceYourCalm: UInt32 = 11
}

/// One HTTP/2 connection's protocol state: an `nghttp2_session`, owned here and freed once, in `deinit`.
///
/// Input goes from the read buffer straight into `receive` (`nghttp2_session_mem_recv`). Output goes into
/// `outbound` through `send` (`nghttp2_session_mem_send`): control and HEADERS frames are copied into the queue's
/// pooled chunks (nghttp2's pointer is valid only until its next call), DATA frames are sent with
/// NGHTTP2_DATA_FLAG_NO_COPY, as a copied 9-byte header and a reference to the body's own bytes. The connection
/// writes `outbound` with writev. Window updates are not automatic: the connection calls `consume` once it has
/// taken the bytes, so a slow consumer holds the peer back. The same type serves the server (gwmock) and the
/// client (gwbench) role.
public final class HTTP2Session {
    public enum Role: Sendable { case server, client }

    public struct Settings: Sendable {
        /// SETTINGS_MAX_CONCURRENT_STREAMS this side allows the peer to open.
        public var maxConcurrentStreams: UInt32 = 100
        /// SETTINGS_INITIAL_WINDOW_SIZE: how much each stream of the peer may send before `consume`.
        public var initialWindowSize: UInt32 = 65_535
        /// The connection-level receive window (65,535 unless raised).
        public var connectionWindowSize: Int32 = 65_535
        /// SETTINGS_MAX_HEADER_LIST_SIZE, enforced on what arrives: names + values + 32 per field.
        public var maxHeaderListSize: Int = 64 * 1024
        /// Rapid reset (CVE-2023-44487): a server answers more RST_STREAM than this token bucket allows (`resetBurst`
        /// at once, `resetRate` more per second) with GOAWAY.
        public var resetBurst: UInt64 = 1000
        public var resetRate: UInt64 = 33

        public init() {}
    }

    public let role: Role
    public let outbound: HTTP2Outbound
    public let settings: Settings
    /// The connection that owns this session, and so outlives it.
    private unowned(unsafe) let delegate: any HTTP2SessionDelegate
    private var session: OpaquePointer?
    /// The header block being decoded (one at a time per connection): its size so far.
    private var blockBytes = 0
    private var blockOversized = false
    /// The fields of the block being decoded.
    private let blockFields = HTTP2HeaderList()
    /// nghttp2's allocations: free lists, freed after the session (a stored property outlives `deinit`'s body).
    private let memory = HTTP2Memory()
    /// HEADERS frames that nghttp2 reported sent during the current `nghttp2_session_mem_send`.
    private var queuedHeaders: [(stream: Int32, tag: Int)] = []
    /// nghttp2 failed fatally (out of memory, a callback failure, a bad client preface): close the connection.
    public private(set) var failed = false

    public init(role: Role, settings: Settings = Settings(), buffers: Buffers, delegate: any HTTP2SessionDelegate) {
        self.role = role
        self.settings = settings
        self.delegate = delegate
        outbound = HTTP2Outbound(buffers: buffers)
        queuedHeaders.reserveCapacity(16)

        var option: OpaquePointer?
        nghttp2_option_new(&option)
        nghttp2_option_set_no_auto_window_update(option, 1)
        nghttp2_option_set_stream_reset_rate_limit(option, settings.resetBurst, settings.resetRate)
        let userData = Unmanaged.passUnretained(self).toOpaque()
        var created: OpaquePointer?
        // nghttp2 copies the table; its user data, `memory`, lives as long as this session.
        var table = memory.table
        let result = role == .server
            ? nghttp2_session_server_new3(&created, HTTP2Callbacks.shared, userData, option, &table)
            : nghttp2_session_client_new3(&created, HTTP2Callbacks.shared, userData, option, &table)
        nghttp2_option_del(option)
        precondition(result == 0 && created != nil, "nghttp2_session_new failed: \(result)")
        session = created

        var entries: [nghttp2_settings_entry] = [
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE.rawValue), value: settings.initialWindowSize),
            nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE.rawValue), value: UInt32(settings.maxHeaderListSize)),
        ]
        if role == .server {
            entries.append(nghttp2_settings_entry(
                settings_id: Int32(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS.rawValue), value: settings.maxConcurrentStreams))
        } else {
            entries.append(nghttp2_settings_entry(settings_id: Int32(NGHTTP2_SETTINGS_ENABLE_PUSH.rawValue), value: 0))
        }
        _ = nghttp2_submit_settings(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), entries, entries.count)
        if settings.connectionWindowSize > 65_535 {
            _ = nghttp2_session_set_local_window_size(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), 0, settings.connectionWindowSize)
        }
    }

    deinit {
        nghttp2_session_del(session)
    }

    // MARK: Input and output

    /// Feeds bytes read from the socket; the delegate hears about them before this returns.
    /// - Returns: false on a fatal error: close the connection. (A protocol error is not fatal: nghttp2 queues a
    ///   GOAWAY, and `isFinished` turns true once it is sent.)
    @discardableResult
    public func receive(_ bytes: UnsafeRawPointer, _ count: Int) -> Bool {
        let result = nghttp2_session_mem_recv(session, bytes.assumingMemoryBound(to: UInt8.self), count)
        if result < 0 {
            failed = true
            return false
        }
        return true
    }

    /// Serialises pending frames into `outbound` until nghttp2 has nothing more to send now (flow control,
    /// deferred bodies) or `limit` bytes are queued.
    /// - Returns: the bytes added, or -1 on a fatal error (close the connection).
    @discardableResult
    public func send(limit: Int = 256 * 1024) -> Int {
        let before = outbound.queuedTotal
        while outbound.pendingBytes < limit {
            var data: UnsafePointer<UInt8>?
            let count = nghttp2_session_mem_send(session, &data)
            if count < 0 {
                failed = true
                return -1
            }
            guard count > 0, let data else { break }
            outbound.appendCopy(data, count)
            if !queuedHeaders.isEmpty {
                let offset = outbound.queuedTotal
                for entry in queuedHeaders { delegate.http2HeadersQueued(entry.stream, tag: entry.tag, until: offset) }
                queuedHeaders.removeAll(keepingCapacity: true)
            }
        }
        return Int(outbound.queuedTotal - before)
    }

    public static let clientPreface: StaticString = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    public enum PrefaceMatch { case match, partial, mismatch }

    /// Whether `count` bytes at `bytes` are (the start of) the HTTP/2 client preface: h2c with prior knowledge.
    public static func matchPreface(_ bytes: UnsafeRawPointer, _ count: Int) -> PrefaceMatch {
        let length = min(count, clientPreface.utf8CodeUnitCount)
        guard length > 0, memcmp(bytes, clientPreface.utf8Start, length) == 0 else { return .mismatch }
        return length == clientPreface.utf8CodeUnitCount ? .match : .partial
    }

    public var wantsRead: Bool { nghttp2_session_want_read(session) != 0 }
    public var wantsWrite: Bool { nghttp2_session_want_write(session) != 0 }
    /// Nothing more to read or write (after a GOAWAY): once `outbound` is written, close the connection.
    public var isFinished: Bool { !wantsRead && !wantsWrite }

    /// The peer's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS arrive).
    public var peerMaxConcurrentStreams: UInt32 {
        nghttp2_session_get_remote_settings(session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
    }

    // MARK: Streams

    /// Reopens the peer's window by `count` bytes of `stream` that were taken.
    @inline(__always)
    public func consume(_ stream: Int32, _ count: Int) {
        guard count > 0 else { return }
        _ = nghttp2_session_consume(session, stream, count)
    }

    /// Server: answers `stream` with a head and, when `body` is given, its bytes (see `HTTP2Body`); without a body
    /// the HEADERS frame ends the stream.
    @discardableResult
    public func submitResponse(_ stream: Int32, headers: HTTP2HeaderBlock, body: HTTP2Body?) -> Bool {
        guard let body else {
            return nghttp2_submit_response(session, stream, headers.fields, headers.count, nil) == 0
        }
        body.streamID = stream
        var provider = HTTP2Session.provider(body)
        return nghttp2_submit_response(session, stream, headers.fields, headers.count, &provider) == 0
    }

    /// Client: opens a stream with a request.
    /// - Returns: the stream id, or a negative nghttp2 error (no more stream ids, or after GOAWAY).
    public func submitRequest(headers: HTTP2HeaderBlock, body: HTTP2Body?, tag: Int) -> Int32 {
        let userData = UnsafeMutableRawPointer(bitPattern: tag)
        guard let body else {
            return nghttp2_submit_request(session, nil, headers.fields, headers.count, nil, userData)
        }
        var provider = HTTP2Session.provider(body)
        let stream = nghttp2_submit_request(session, nil, headers.fields, headers.count, &provider, userData)
        if stream > 0 { body.streamID = stream }
        return stream
    }

    private static func provider(_ body: HTTP2Body) -> nghttp2_data_provider {
        nghttp2_data_provider(
            source: nghttp2_data_source(ptr: Unmanaged.passUnretained(body).toOpaque()),
            read_callback: HTTP2Callbacks.readBody)
    }

    /// Resets a stream (RST_STREAM); the delegate hears `http2StreamClosed` once it is sent.
    public func resetStream(_ stream: Int32, errorCode: UInt32) {
        _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream, errorCode)
    }

    /// Forgets the tag of `stream` (0): later callbacks for it carry tag 0.
    public func setTag(_ stream: Int32, _ tag: Int) {
        _ = nghttp2_session_set_stream_user_data(session, stream, UnsafeMutableRawPointer(bitPattern: tag))
    }

    /// Server: a graceful GOAWAY (NO_ERROR, the last stream processed): no new stream is accepted, the open ones
    /// finish, and `isFinished` turns true once they have.
    public func goAwayGracefully() {
        _ = nghttp2_submit_goaway(
            session, UInt8(NGHTTP2_FLAG_NONE.rawValue), nghttp2_session_get_last_proc_stream_id(session),
            HTTP2ErrorCode.noError, nil, 0)
    }

    /// Sends GOAWAY with `errorCode` and ends the session once it is out.
    public func terminate(errorCode: UInt32) {
        _ = nghttp2_session_terminate_session(session, errorCode)
    }

    // MARK: Bodies

    /// Makes room for `count` more bytes at the end of `body.buffer`. Bytes already queued by reference stay where
    /// they are: when the room must come from moving them, the old chunk is retired to `outbound` instead, and the
    /// unsent bytes move to a new one.
    public func reserve(_ body: HTTP2Body, _ count: Int) {
        let buffers = outbound.buffers
        if !body.buffer.isAllocated {
            buffers.attach(&body.buffer, capacity: count)
            return
        }
        if body.buffer.writableBytes >= count { return }
        let referenced = body.queuedUntil > outbound.flushedTotal
        if !referenced {
            if body.buffer.readableBytes == 0 { body.buffer.clear() } else { body.buffer.compact() }
            if body.buffer.writableBytes >= count { return }
        }
        let unsent = body.buffer.readableBytes
        var fresh = ByteBuffer()
        buffers.attach(&fresh, capacity: max(unsent + count, body.buffer.capacity))
        if unsent > 0 { fresh.append(body.buffer.readPointer, unsent) }
        if referenced {
            outbound.retire(&body.buffer, until: body.queuedUntil)
        } else {
            buffers.release(&body.buffer)
        }
        body.buffer = fresh
    }

    /// Bytes were added to `body`: nghttp2 sends them as the window allows.
    @inline(__always)
    public func appended(_ body: HTTP2Body) {
        guard body.deferred, body.streamID != 0 else { return }
        body.deferred = false
        _ = nghttp2_session_resume_data(session, body.streamID)
    }

    /// No more bytes will be added: the last DATA frame ends the stream.
    public func end(_ body: HTTP2Body) {
        body.ended = true
        body.deferred = true  // resume even if nghttp2 has not asked yet: harmless, and an empty end needs it
        appended(body)
    }

    /// The stream of `body` is over: its memory goes back to the pool once the socket has taken its last queued
    /// byte, and the object is ready for another stream.
    public func release(_ body: HTTP2Body) {
        outbound.retire(&body.buffer, until: body.queuedUntil)
        body.reset()
    }

    // MARK: Callbacks (called by HTTP2Callbacks)

    @inline(__always)
    fileprivate func tag(_ stream: Int32) -> Int {
        Int(bitPattern: nghttp2_session_get_stream_user_data(session, stream))
    }

    fileprivate func beginHeaders(_ frame: UnsafePointer<nghttp2_frame>) -> Int32 {
        let stream = frame.pointee.hd.stream_id
        blockBytes = 0
        blockOversized = false
        blockFields.removeAll()
        if role == .server && frame.pointee.headers.cat == NGHTTP2_HCAT_REQUEST {
            let tag = delegate.http2StreamOpened(stream)
            guard tag > 0 else { return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE.rawValue }
            setTag(stream, tag)
        }
        return 0
    }

    fileprivate func header(_ frame: UnsafePointer<nghttp2_frame>, _ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) {
        guard !blockOversized else { return }
        blockBytes += name.count + value.count + 32
        if blockBytes > settings.maxHeaderListSize {
            blockOversized = true
            return
        }
        blockFields.append(name: name, value: value)
    }

    fileprivate func frameReceived(_ frame: UnsafePointer<nghttp2_frame>) {
        let header = frame.pointee.hd
        let endStream = header.flags & UInt8(NGHTTP2_FLAG_END_STREAM.rawValue) != 0
        switch UInt32(header.type) {
        case NGHTTP2_HEADERS.rawValue:
            delegate.http2HeadersComplete(header.stream_id, tag: tag(header.stream_id), fields: blockFields, endStream: endStream,
                                          oversized: blockOversized)
        case NGHTTP2_DATA.rawValue:
            if endStream { delegate.http2DataComplete(header.stream_id, tag: tag(header.stream_id)) }
        case NGHTTP2_GOAWAY.rawValue:
            delegate.http2GoAway(lastStreamID: frame.pointee.goaway.last_stream_id, errorCode: frame.pointee.goaway.error_code)
        case NGHTTP2_SETTINGS.rawValue where header.flags & UInt8(NGHTTP2_FLAG_ACK.rawValue) == 0:
            delegate.http2SettingsReceived()
        default:
            break
        }
    }

    fileprivate func data(_ stream: Int32, _ bytes: UnsafeRawBufferPointer) {
        delegate.http2Data(stream, tag: tag(stream), bytes)
    }

    fileprivate func frameSent(_ frame: UnsafePointer<nghttp2_frame>) {
        guard role == .client, UInt32(frame.pointee.hd.type) == NGHTTP2_HEADERS.rawValue else { return }
        let stream = frame.pointee.hd.stream_id
        queuedHeaders.append((stream, tag(stream)))
    }

    fileprivate func streamClosed(_ stream: Int32, _ errorCode: UInt32) {
        delegate.http2StreamClosed(stream, tag: tag(stream), errorCode: errorCode)
    }

    /// A DATA frame of `body` goes out: its header is copied, its payload queued by reference.
    @inline(__always)
    fileprivate func sendData(header: UnsafePointer<UInt8>, _ count: Int, _ body: HTTP2Body) {
        outbound.appendCopy(header, 9)
        let bytes = body.take(count)
        body.queuedUntil = outbound.appendReference(bytes, count)
    }
}

/// nghttp2's callbacks: plain C functions that find their session through `user_data` (an unretained
/// `HTTP2Session`), and a body through its data source (an unretained `HTTP2Body`). One callbacks object serves
/// every session (nghttp2 copies it).
enum HTTP2Callbacks {
    /// Runs `body` on the session behind `userData` without retaining it: the connection that owns the session
    /// keeps it alive through every nghttp2 call.
    @inline(__always)
    static func withSession<R>(_ userData: UnsafeMutableRawPointer?, _ body: (HTTP2Session) -> R) -> R {
        Unmanaged<HTTP2Session>.fromOpaque(userData!)._withUnsafeGuaranteedRef(body)
    }

    nonisolated(unsafe) static let shared: OpaquePointer = {
        var callbacks: OpaquePointer?
        nghttp2_session_callbacks_new(&callbacks)
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks) { _, frame, userData in
            HTTP2Callbacks.withSession(userData) { $0.beginHeaders(frame!) }
        }
        nghttp2_session_callbacks_set_on_header_callback(callbacks) { _, frame, name, nameCount, value, valueCount, _, userData in
            HTTP2Callbacks.withSession(userData) {
                $0.header(frame!, UnsafeRawBufferPointer(start: name, count: nameCount), UnsafeRawBufferPointer(start: value, count: valueCount))
            }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks) { _, frame, userData in
            HTTP2Callbacks.withSession(userData) { $0.frameReceived(frame!) }
            return 0
        }
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks) { _, _, stream, data, count, userData in
            HTTP2Callbacks.withSession(userData) { $0.data(stream, UnsafeRawBufferPointer(start: data, count: count)) }
            return 0
        }
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks) { _, frame, userData in
            HTTP2Callbacks.withSession(userData) { $0.frameSent(frame!) }
            return 0
        }
        nghttp2_session_callbacks_set_on_stream_close_callback(callbacks) { _, stream, errorCode, userData in
            HTTP2Callbacks.withSession(userData) { $0.streamClosed(stream, errorCode) }
            return 0
        }
        nghttp2_session_callbacks_set_send_data_callback(callbacks) { _, _, header, count, source, userData in
            Unmanaged<HTTP2Body>.fromOpaque(source!.pointee.ptr)._withUnsafeGuaranteedRef { body in
                HTTP2Callbacks.withSession(userData) { $0.sendData(header: header!, count, body) }
            }
            return 0
        }
        return callbacks!
    }()

    /// How much of a body the next DATA frame carries: NO_COPY always, EOF with the last byte of an ended body,
    /// DEFERRED when nothing is ready yet (`HTTP2Session.appended` resumes it).
    static let readBody: nghttp2_data_source_read_callback = { _, _, _, limit, flags, source, _ in
        Unmanaged<HTTP2Body>.fromOpaque(source!.pointee.ptr)._withUnsafeGuaranteedRef { body in
            let count = body.nextFrameLength(limit: limit)
            if count == 0 {
                if body.ended {
                    flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue
                    return 0
                }
                body.deferred = true
                return Int(NGHTTP2_ERR_DEFERRED.rawValue)
            }
            flags!.pointee |= NGHTTP2_DATA_FLAG_NO_COPY.rawValue
            if body.ended && count == body.readable { flags!.pointee |= NGHTTP2_DATA_FLAG_EOF.rawValue }
            return count
        }
    }
}

/// The header fields of one request or response, as nghttp2 takes them. Static names and values are passed
/// without copying; numbers are written into a small scratch area that nghttp2 copies at submit time. One block
/// serves a connection's every submit: `removeAll()` before building the next.
public final class HTTP2HeaderBlock {
    public static let capacity = 128
    static let scratchCapacity = 1024
    let fields: UnsafeMutablePointer<nghttp2_nv>
    public private(set) var count = 0
    private let scratch: UnsafeMutableRawPointer
    private var scratchUsed = 0

    public init() {
        fields = .allocate(capacity: HTTP2HeaderBlock.capacity)
        scratch = .allocate(byteCount: HTTP2HeaderBlock.scratchCapacity, alignment: 1)
    }

    deinit {
        fields.deallocate()
        scratch.deallocate()
    }

    /// The fields as (name, value, indexed) copies: for checks in tests and debug builds, not for the hot path.
    public func snapshot() -> [([UInt8], [UInt8], Bool)] {
        (0..<count).map { i in
            let field = fields[i]
            return (Array(UnsafeRawBufferPointer(start: field.name, count: field.namelen)),
                    Array(UnsafeRawBufferPointer(start: field.value, count: field.valuelen)),
                    field.flags & UInt8(NGHTTP2_NV_FLAG_NO_INDEX.rawValue) == 0)
        }
    }

    public func removeAll() {
        count = 0
        scratchUsed = 0
    }

    /// A field whose name and value never change.
    public func add(_ name: StaticString, _ value: StaticString) {
        append(UnsafeRawPointer(name.utf8Start), name.utf8CodeUnitCount, UnsafeRawPointer(value.utf8Start),
               value.utf8CodeUnitCount, flags: NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue)
    }

    /// A field with a decimal value (`:status`, `content-length`). `indexed: false` keeps a value that changes with
    /// every message (a timestamp) out of the HPACK dynamic table, where it would only evict useful entries and cost
    /// both ends an allocation.
    public func add(_ name: StaticString, decimal value: Int, indexed: Bool = true) {
        precondition(value >= 0)
        let start = scratch + scratchUsed
        var length = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            length += 1
        }
        precondition(scratchUsed + length <= HTTP2HeaderBlock.scratchCapacity, "header scratch full")
        var v = value
        var cursor = length
        repeat {
            cursor -= 1
            (start + cursor).storeBytes(of: UInt8(ascii: "0") &+ UInt8(v % 10), as: UInt8.self)
            v /= 10
        } while v > 0
        scratchUsed += length
        append(UnsafeRawPointer(name.utf8Start), name.utf8CodeUnitCount, UnsafeRawPointer(start), length,
               flags: NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | (indexed ? 0 : NGHTTP2_NV_FLAG_NO_INDEX.rawValue))
    }

    /// A field with a fixed name and a value from bytes, which nghttp2 copies at submit time.
    public func add(_ name: StaticString, value: UnsafeRawBufferPointer, indexed: Bool = true) {
        let flags = NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | (indexed ? 0 : NGHTTP2_NV_FLAG_NO_INDEX.rawValue)
        append(UnsafeRawPointer(name.utf8Start), name.utf8CodeUnitCount, value.baseAddress ?? UnsafeRawPointer(scratch),
               value.count, flags: flags)
    }

    /// A field from bytes. `stable`: they stay valid and unchanged until the frame has been sent, so nghttp2 need
    /// not copy them (a request template); otherwise nghttp2 copies them at submit time. `indexed: false` keeps
    /// the field out of the HPACK dynamic table (see `HPACKIndexPolicy`).
    public func add(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, stable: Bool, indexed: Bool = true) {
        var flags = stable ? NGHTTP2_NV_FLAG_NO_COPY_NAME.rawValue | NGHTTP2_NV_FLAG_NO_COPY_VALUE.rawValue : NGHTTP2_NV_FLAG_NONE.rawValue
        if !indexed { flags |= NGHTTP2_NV_FLAG_NO_INDEX.rawValue }
        let empty = UnsafeRawPointer(scratch)
        append(name.baseAddress ?? empty, name.count, value.baseAddress ?? empty, value.count, flags: flags)
    }

    @inline(__always)
    private func append(_ name: UnsafeRawPointer, _ nameCount: Int, _ value: UnsafeRawPointer, _ valueCount: Int, flags: UInt32) {
        precondition(count < HTTP2HeaderBlock.capacity, "too many header fields")
        fields[count] = nghttp2_nv(
            name: UnsafeMutablePointer(mutating: name.assumingMemoryBound(to: UInt8.self)),
            value: UnsafeMutablePointer(mutating: value.assumingMemoryBound(to: UInt8.self)),
            namelen: nameCount, valuelen: valueCount, flags: UInt8(flags))
        count += 1
    }
}

#if canImport(Glibc)
import Glibc
#endif
import COpenSSL

/// Why a TLS context could not be made, or why a handshake or record failed: OpenSSL's own reason text.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }

    /// What OpenSSL queued on this thread, oldest first, then clears the queue.
    static func drainQueue(_ context: String) -> TLSError {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            reasons.append(String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return TLSError(reasons.isEmpty ? context : "\(context): \(reasons.joined(separator: "; "))")
    }
}

/// The application protocols a TLS listener or client offers, most preferred first.
public enum ALPNProtocol: String, Sendable {
    case h2
    case http11 = "http/1.1"
}

/// An OpenSSL `SSL_CTX`: certificates, verification, ALPN and session settings shared by every connection of a
/// listener or of an upstream. Thread-safe once built (OpenSSL locks its session cache), so all reactor threads share
/// one; `SSL_CTX_free` runs exactly once, when the last owner lets go.
public final class TLSContext: @unchecked Sendable {
    let context: OpaquePointer
    /// ALPN in wire format (length-prefixed names): the server's preference list, or what a client offers.
    private let alpnWire: UnsafeMutableBufferPointer<UInt8>
    public let isServer: Bool

    private init(context: OpaquePointer, alpn: [ALPNProtocol], isServer: Bool) {
        self.context = context
        self.isServer = isServer
        let wire = alpn.flatMap { [UInt8($0.rawValue.utf8.count)] + Array($0.rawValue.utf8) }
        alpnWire = .allocate(capacity: max(wire.count, 1))
        _ = alpnWire.initialize(from: wire)
        alpnWireCount = wire.count
    }

    private let alpnWireCount: Int

    deinit {
        SSL_CTX_free(context)
        alpnWire.deallocate()
    }

    /// A listener's context: TLS 1.2 and 1.3, the certificate chain and key from PEM files, ALPN choosing from
    /// `alpn` in order, stateless session tickets for resumption, no renegotiation.
    public static func server(certificateFile: String, keyFile: String, alpn: [ALPNProtocol]) throws(TLSError) -> TLSContext {
        ERR_clear_error()
        guard let raw = SSL_CTX_new(TLS_server_method()) else { throw TLSError.drainQueue("SSL_CTX_new") }
        let tls = TLSContext(context: raw, alpn: alpn, isServer: true)
        try tls.applyCommonSettings()
        guard SSL_CTX_use_certificate_chain_file(raw, certificateFile) == 1 else {
            throw TLSError.drainQueue("server.tls.cert \(certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(raw, keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError.drainQueue("server.tls.key \(keyFile)")
        }
        guard SSL_CTX_check_private_key(raw) == 1 else {
            throw TLSError.drainQueue("server.tls.key \(keyFile) does not match the certificate")
        }
        // Tickets are on by default (keys made per context, so every thread resumes every other's sessions);
        // the server-side cache also serves TLS 1.2 session ids.
        _ = COpenSSL_SSL_CTX_set_session_cache_mode(raw, Int(SSL_SESS_CACHE_SERVER))
        _ = "gateway".withCString { SSL_CTX_set_session_id_context(raw, $0, 7) }
        SSL_CTX_set_alpn_select_cb(raw, { _, out, outCount, offered, offeredCount, argument in
            let tls = Unmanaged<TLSContext>.fromOpaque(argument!).takeUnretainedValue()
            var chosen: UnsafeMutablePointer<UInt8>?
            var chosenCount: UInt8 = 0
            // Server preference: the first of our protocols that the client offers.
            let result = SSL_select_next_proto(
                &chosen, &chosenCount, tls.alpnWire.baseAddress, UInt32(tls.alpnWireCount), offered, offeredCount
            )
            guard result == OPENSSL_NPN_NEGOTIATED, let chosen else { return SSL_TLSEXT_ERR_NOACK }
            out!.pointee = UnsafePointer(chosen)
            outCount!.pointee = chosenCount
            return SSL_TLSEXT_ERR_OK
        }, Unmanaged.passUnretained(tls).toOpaque())
        return tls
    }

    /// An upstream's context: peers verified against `caFile` or the system's CAs (unless `verifyPeer` is false),
    /// ALPN offering `alpn`, and a client session cache that `TLSSessionSlot` fills for resumption.
    public static func client(caFile: String?, verifyPeer: Bool, alpn: [ALPNProtocol]) throws(TLSError) -> TLSContext {
        ERR_clear_error()
        guard let raw = SSL_CTX_new(TLS_client_method()) else { throw TLSError.drainQueue("SSL_CTX_new") }
        let tls = TLSContext(context: raw, alpn: alpn, isServer: false)
        try tls.applyCommonSettings()
        if verifyPeer {
            if let caFile {
                guard SSL_CTX_load_verify_locations(raw, caFile, nil) == 1 else { throw TLSError.drainQueue("ca_file \(caFile)") }
            } else {
                guard SSL_CTX_set_default_verify_paths(raw) == 1 else { throw TLSError.drainQueue("the system CA store") }
            }
            SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nil)
        } else {
            SSL_CTX_set_verify(raw, SSL_VERIFY_NONE, nil)
        }
        if tls.alpnWireCount > 0 {
            guard SSL_CTX_set_alpn_protos(raw, tls.alpnWire.baseAddress, UInt32(tls.alpnWireCount)) == 0 else {
                throw TLSError.drainQueue("SSL_CTX_set_alpn_protos")
            }
        }
        // Sessions are kept by the caller (one slot per upstream host and port), not in OpenSSL's internal cache:
        // the new-session callback hands each one to the slot stored in the connection's ex_data.
        _ = COpenSSL_SSL_CTX_set_session_cache_mode(raw, Int(SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE))
        SSL_CTX_sess_set_new_cb(raw) { ssl, session in
            guard let ssl, let session, let slot = SSL_get_ex_data(ssl, 0) else { return 0 }
            Unmanaged<TLSSessionSlot>.fromOpaque(slot).takeUnretainedValue().store(session)
            return 1  // the slot owns the session now
        }
        return tls
    }

    private func applyCommonSettings() throws(TLSError) {
        guard COpenSSL_SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION) == 1 else {
            throw TLSError.drainQueue("SSL_CTX_set_min_proto_version")
        }
        // Partial writes, and a retry may pass the same bytes from a new address (they move with the buffer).
        _ = COpenSSL_SSL_CTX_set_mode(
            context, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS)
        )
        _ = SSL_CTX_set_options(context, COpenSSL_SSL_OP_NO_RENEGOTIATION() | COpenSSL_SSL_OP_NO_COMPRESSION())
    }
}

/// The latest resumable session for one upstream host and port, kept per reactor thread. A new connection to that
/// upstream offers it; the server's new tickets replace it.
public final class TLSSessionSlot {
    private var session: OpaquePointer?

    public init() {}

    deinit {
        if let session { SSL_SESSION_free(session) }
    }

    /// How many sessions servers have handed over so far.
    public private(set) var sessionsStored = 0

    fileprivate func store(_ new: OpaquePointer) {
        if let session { SSL_SESSION_free(session) }
        session = new
        sessionsStored += 1
    }

    fileprivate var current: OpaquePointer? { session }

    /// True once a server has sent a resumable session.
    public var hasSession: Bool { session != nil }

    /// Forgets the session: the next connection makes a full handshake.
    public func clear() {
        if let session { SSL_SESSION_free(session) }
        session = nil
    }
}

/// One TLS connection over a nonblocking socket the caller owns. OpenSSL reads and writes the socket itself; this
/// type maps its results to the reactor's vocabulary (`.wouldBlock`, errno-style failures) and stages plaintext
/// from many buffers into one record, since OpenSSL has no writev. `SSL_free` runs exactly once, in deinit.
public final class TLSStream {
    public enum HandshakeStep: Equatable {
        case done
        case wantRead
        case wantWrite
        case failed(String)
    }

    /// The most bytes staged for one SSL_write: one full TLS record.
    static let recordSize = 16 * 1024

    private let ssl: OpaquePointer
    private let context: TLSContext
    private let slot: TLSSessionSlot?
    private var staged: UnsafeMutableRawPointer
    private var stagedStart = 0
    private var stagedEnd = 0
    public private(set) var handshakeComplete = false
    /// The last read stopped because OpenSSL must write first (a TLS 1.3 key update, say): retry it on writable.
    public private(set) var readWantsWrite = false
    /// Why the last call failed, for the log line.
    public private(set) var failureReason = ""

    /// A server-side stream on an accepted socket.
    public convenience init(server context: TLSContext, fd: Int32) throws(TLSError) {
        try self.init(context: context, fd: fd, slot: nil)
        SSL_set_accept_state(ssl)
    }

    /// A client-side stream to `host` (SNI, and the name the certificate must carry when the context verifies),
    /// resuming the session in `slot` when there is one.
    public convenience init(client context: TLSContext, fd: Int32, host: String, slot: TLSSessionSlot) throws(TLSError) {
        try self.init(context: context, fd: fd, slot: slot)
        SSL_set_connect_state(ssl)
        // SNI carries names only, never IP literals (RFC 6066 3).
        let isAddress = host.contains(":") || host.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }
        if !isAddress {
            guard COpenSSL_SSL_set_tlsext_host_name(ssl, host) == 1 else { throw TLSError.drainQueue("SNI \(host)") }
        }
        if SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER != 0 {
            // SSL_set1_host matches DNS names and IP addresses alike against the certificate.
            guard SSL_set1_host(ssl, host) == 1 else { throw TLSError.drainQueue("SSL_set1_host \(host)") }
        }
        // A copy: OpenSSL marks a TLS 1.3 session used once as not resumable, and the slot's session must stay
        // offerable by every other connection that starts before a fresh ticket replaces it.
        if let session = slot.current, let copy = SSL_SESSION_dup(session) {
            _ = SSL_set_session(ssl, copy)
            SSL_SESSION_free(copy)
        }
        _ = SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(slot).toOpaque())
    }

    private init(context: TLSContext, fd: Int32, slot: TLSSessionSlot?) throws(TLSError) {
        ERR_clear_error()
        guard let ssl = SSL_new(context.context) else { throw TLSError.drainQueue("SSL_new") }
        self.ssl = ssl
        self.context = context
        self.slot = slot
        staged = .allocate(byteCount: TLSStream.recordSize, alignment: 16)
        guard SSL_set_fd(ssl, fd) == 1 else { throw TLSError.drainQueue("SSL_set_fd") }
    }

    deinit {
        // Freed without a close_notify exchange, OpenSSL would mark the current session not resumable, and that is
        // the session the slot keeps: a connection that ends abruptly (idle close, reset) must not spoil it.
        if handshakeComplete { SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN) }
        SSL_free(ssl)
        staged.deallocate()
    }

    /// Drives the handshake one step: call again when the socket is ready the way the step asks.
    public func handshake() -> HandshakeStep {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            handshakeComplete = true
            return .done
        }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        default:
            failureReason = describeFailure(result, "handshake")
            return .failed(failureReason)
        }
    }

    /// The protocol ALPN chose, or nil when the peer offered none we speak.
    public var negotiatedProtocol: ALPNProtocol? {
        var data: UnsafePointer<UInt8>?
        var count: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &count)
        guard let data, count > 0 else { return nil }
        return ALPNProtocol(rawValue: String(decoding: UnsafeBufferPointer(start: data, count: Int(count)), as: UTF8.self))
    }

    /// True when this connection resumed an earlier session (no full handshake).
    public var sessionReused: Bool { SSL_session_reused(ssl) == 1 }

    /// Plaintext already decrypted inside OpenSSL: the socket may be drained, so poll will not say readable.
    public var hasBufferedInput: Bool { SSL_pending(ssl) > 0 }

    /// Like `Posix.read`: `.processed(0)` is the peer's close (close_notify or EOF); errors throw EPROTO or the
    /// socket's errno, with the reason in `failureReason`.
    public func read(_ buffer: UnsafeMutableRawPointer, _ count: Int) throws(IOError) -> IOResult<Int> {
        readWantsWrite = false
        ERR_clear_error()
        var done = 0
        if SSL_read_ex(ssl, buffer, count, &done) == 1 { return .processed(done) }
        let code = SSL_get_error(ssl, 0)
        switch code {
        case SSL_ERROR_WANT_READ:
            return .wouldBlock
        case SSL_ERROR_WANT_WRITE:
            readWantsWrite = true
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .processed(0)
        case SSL_ERROR_SYSCALL where ERR_peek_error() == 0 && Glibc.errno == 0:
            return .processed(0)  // EOF without close_notify: the peer is gone all the same
        default:
            throw failure(code, "read")
        }
    }

    /// Like `Posix.send` for one contiguous buffer: encrypts as much as the socket takes. After `.wouldBlock`, call
    /// again with the same bytes first (more may follow them).
    public func write(_ buffer: UnsafeRawPointer, _ count: Int) throws(IOError) -> IOResult<Int> {
        ERR_clear_error()
        var written = 0
        if SSL_write_ex(ssl, buffer, count, &written) == 1 { return .processed(written) }
        let code = SSL_get_error(ssl, 0)
        switch code {
        case SSL_ERROR_WANT_WRITE, SSL_ERROR_WANT_READ:
            return .wouldBlock
        default:
            throw failure(code, "write")
        }
    }

    /// A readable event on a connection with nothing in flight: true when it held only TLS records that yield no
    /// bytes (the session tickets a TLS 1.3 server sends after the handshake), so the connection stays usable; false
    /// when the peer closed or sent data.
    public func onlyHandshakeMessagesArrived() -> Bool {
        var byte: UInt8 = 0
        guard case .wouldBlock? = try? read(&byte, 1) else { return false }
        return !readWantsWrite
    }

    /// Bytes staged but not yet taken by OpenSSL.
    public var hasStagedOutput: Bool { stagedEnd > stagedStart }

    /// Copies up to one record of plaintext from `iov` into the stage and returns how many bytes it took; the
    /// caller may reuse those buffers at once.
    public func stage(_ iov: UnsafePointer<iovec>, _ count: Int) -> Int {
        if stagedStart == stagedEnd { stagedStart = 0; stagedEnd = 0 }
        var taken = 0
        for index in 0..<count {
            let room = TLSStream.recordSize - stagedEnd
            if room == 0 { break }
            let segment = iov[index]
            let length = min(segment.iov_len, room)
            (staged + stagedEnd).copyMemory(from: segment.iov_base!, byteCount: length)
            stagedEnd += length
            taken += length
            if length < segment.iov_len { break }
        }
        return taken
    }

    /// Hands the stage to OpenSSL: `.processed(())` when all of it is on the socket.
    public func writeStaged() throws(IOError) -> IOResult<Void> {
        while stagedEnd > stagedStart {
            ERR_clear_error()
            var written = 0
            if SSL_write_ex(ssl, staged + stagedStart, stagedEnd - stagedStart, &written) == 1 {
                stagedStart += written
                continue
            }
            let code = SSL_get_error(ssl, 0)
            switch code {
            case SSL_ERROR_WANT_WRITE, SSL_ERROR_WANT_READ:
                return .wouldBlock
            default:
                throw failure(code, "write")
            }
        }
        stagedStart = 0
        stagedEnd = 0
        return .processed(())
    }

    /// Sends close_notify if the socket takes it now; never waits.
    public func shutdown() {
        guard handshakeComplete else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    private func failure(_ code: Int32, _ operation: String) -> IOError {
        let socketErrno = Glibc.errno
        failureReason = describeFailure(code == SSL_ERROR_SYSCALL ? -1 : 0, operation)
        if code == SSL_ERROR_SYSCALL && socketErrno != 0 { return IOError(errno: socketErrno, function: "SSL") }
        return IOError(errno: EPROTO, function: "SSL")
    }

    private func describeFailure(_ result: Int32, _ operation: String) -> String {
        let socketErrno = Glibc.errno
        var reason = TLSError.drainQueue("TLS \(operation) failed").description
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            reason += " (certificate: \(String(cString: X509_verify_cert_error_string(verify))))"
        } else if result < 0 && socketErrno != 0 {
            reason += " (errno \(socketErrno))"
        }
        return reason
    }
}

extension OutboundQueue {
    /// Writes what is queued through `tls`: the queued bytes are staged a record at a time (and released to the
    /// owner as soon as they are copied), then encrypted onto the socket. `.done` means all of it is on the socket.
    public mutating func flush(through tls: TLSStream) -> FlushResult {
        while true {
            if tls.hasStagedOutput {
                do {
                    guard case .processed = try tls.writeStaged() else { return .wouldBlock }
                } catch {
                    return .failed(error)
                }
            }
            guard pendingBytes > 0 else { return .done }
            let taken = withSegments { iov, count in tls.stage(iov, count) }
            consume(taken)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
import GatewayIO

/// What an HTTP/2 connection has queued for its socket, as iovecs for one writev.
///
/// Two kinds of segment:
/// - copies: frames nghttp2 serialised into its own buffer (valid only until its next call) and DATA frame
///   headers. They go into a pooled chunk that the queue owns.
/// - references: DATA payloads, written straight from the memory of their owner (`HTTP2Body`). The owner keeps
///   that memory until `flushedTotal` passes the offset `appendReference` returned, or hands it to `retire`.
///
/// Offsets (`queuedTotal`, `flushedTotal`) count every byte the connection ever queued and wrote, so a caller can
/// tell when a given byte has left: a client stamps a request when the writev carrying its HEADERS returns.
public final class HTTP2Outbound {
    /// iovecs per writev: Linux's IOV_MAX.
    public static let maxVectorsPerWrite = 1024

    public let buffers: Buffers
    private var iov: UnsafeMutablePointer<iovec>
    private var capacity = 64
    private var start = 0
    private var end = 0
    public private(set) var pendingBytes = 0
    public private(set) var queuedTotal: UInt64 = 0
    public private(set) var flushedTotal: UInt64 = 0
    /// The chunk copies go into.
    private var copies = ByteBuffer()
    /// Chunks no longer written into, each kept until the socket has taken the byte at `until`.
    private var retired: [(buffer: ByteBuffer, until: UInt64)] = []
    private var retiredHead = 0

    public init(buffers: Buffers) {
        self.buffers = buffers
        iov = .allocate(capacity: capacity)
    }

    deinit {
        releaseAll()
        iov.deallocate()
    }

    public var isEmpty: Bool { pendingBytes == 0 }

    /// Copies `count` bytes into the queue's own memory and queues them.
    public func appendCopy(_ bytes: UnsafeRawPointer, _ count: Int) {
        guard count > 0 else { return }
        if copies.isAllocated && copies.writableBytes < count {
            retire(&copies, until: queuedTotal)
        }
        if !copies.isAllocated { buffers.attach(&copies, capacity: max(count, Buffers.smallSize)) }
        let destination = copies.writePointer
        copies.append(bytes, count)
        push(destination, count)
    }

    /// Queues `count` bytes that stay where they are until written.
    /// - Returns: the offset just past them: the memory may be reused once `flushedTotal` reaches it.
    @discardableResult
    public func appendReference(_ bytes: UnsafeRawPointer, _ count: Int) -> UInt64 {
        if count > 0 { push(UnsafeMutableRawPointer(mutating: bytes), count) }
        return queuedTotal
    }

    /// Takes `buffer` over: it is given back to the pool once the byte at `until` has been written. Leaves
    /// `buffer` detached.
    public func retire(_ buffer: inout ByteBuffer, until: UInt64) {
        guard buffer.isAllocated else { return }
        if until <= flushedTotal {
            buffers.release(&buffer)
            return
        }
        retired.append((buffer, until))
        buffer = ByteBuffer()
    }

    /// The segments to write next: at most `maxVectorsPerWrite` of them.
    public var vectors: (UnsafePointer<iovec>, Int32) {
        (UnsafePointer(iov + start), Int32(min(end - start, HTTP2Outbound.maxVectorsPerWrite)))
    }

    /// Drops the `count` bytes a write took from the front, and frees the memory they were the last use of.
    public func advance(by count: Int) {
        precondition(count <= pendingBytes)
        var remaining = count
        pendingBytes -= count
        flushedTotal += UInt64(count)
        while remaining > 0 {
            let length = iov[start].iov_len
            if remaining >= length {
                remaining -= length
                start += 1
            } else {
                iov[start].iov_base = iov[start].iov_base! + remaining
                iov[start].iov_len = length - remaining
                remaining = 0
            }
        }
        while retiredHead < retired.count && retired[retiredHead].until <= flushedTotal {
            buffers.release(&retired[retiredHead].buffer)
            retiredHead += 1
        }
        if retiredHead == retired.count {
            retired.removeAll(keepingCapacity: true)
            retiredHead = 0
        } else if retiredHead >= 64 && retiredHead * 2 >= retired.count {
            retired.removeFirst(retiredHead)
            retiredHead = 0
        }
        if pendingBytes == 0 {
            start = 0
            end = 0
            copies.clear()
        }
    }

    /// Gives the copy chunk back to the pool when nothing is queued: an idle connection holds no buffer.
    public func releaseIdle() {
        if pendingBytes == 0 { buffers.release(&copies) }
    }

    /// Drops everything queued and gives back all memory (the connection is closing).
    public func releaseAll() {
        buffers.release(&copies)
        for index in retiredHead..<retired.count { buffers.release(&retired[index].buffer) }
        retired.removeAll()
        retiredHead = 0
        start = 0
        end = 0
        pendingBytes = 0
    }

    @inline(__always)
    private func push(_ base: UnsafeMutableRawPointer, _ count: Int) {
        pendingBytes += count
        queuedTotal += UInt64(count)
        // Contiguous with the last segment (copies one after another): one iovec for both.
        if end > start, let last = iov[end - 1].iov_base, last + iov[end - 1].iov_len == base {
            iov[end - 1].iov_len += count
            return
        }
        if end == capacity { makeRoom() }
        iov[end] = iovec(iov_base: base, iov_len: count)
        end += 1
    }

    private func makeRoom() {
        if start > 0 {
            (iov).update(from: iov + start, count: end - start)
            end -= start
            start = 0
            if end < capacity { return }
        }
        let bigger = UnsafeMutablePointer<iovec>.allocate(capacity: capacity * 2)
        bigger.update(from: iov, count: end)
        iov.deallocate()
        iov = bigger
        capacity *= 2
    }
}

extension HTTP2Outbound {
    /// Writes what is queued to `fd`, or through `tls` (staged a record at a time, then encrypted; staged bytes go
    /// first, since OpenSSL wants a retried write to start with the same bytes). `.done`: all of it is on the socket.
    public func write(to fd: Int32, tls: TLSStream?) -> OutboundQueue.FlushResult {
        while !isEmpty || tls?.hasStagedOutput == true {
            let result: IOResult<Int>
            do {
                if let tls {
                    if tls.hasStagedOutput {
                        guard case .processed = try tls.writeStaged() else { return .wouldBlock }
                        continue
                    }
                    let (vectors, count) = self.vectors
                    result = .processed(tls.stage(vectors, Int(count)))
                } else {
                    let (vectors, count) = self.vectors
                    result = try HTTP2Socket.sendVectors(fd, vectors, count)
                }
            } catch {
                return .failed(error)
            }
            switch result {
            case .processed(let written): advance(by: written)
            case .wouldBlock: return .wouldBlock
            }
        }
        return .done
    }
}

/// Socket calls for the HTTP/2 connections: sendmsg with MSG_NOSIGNAL (a writev that cannot raise SIGPIPE in a
/// process that does not ignore it, such as gwbench) and read, each with the reactor's errno rules (EINTR retried,
/// EAGAIN as `.wouldBlock`).
public enum HTTP2Socket {
    @inline(__always)
    public static func sendVectors(_ fd: Int32, _ iov: UnsafePointer<iovec>, _ count: Int32) throws(IOError) -> IOResult<Int> {
        var message = msghdr()
        message.msg_iov = UnsafeMutablePointer(mutating: iov)
        message.msg_iovlen = Int(count)
        while true {
            let result = Glibc.sendmsg(fd, &message, Int32(MSG_NOSIGNAL))
            if result >= 0 { return .processed(result) }
            let code = errno
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw IOError(errno: code, function: "sendmsg")
        }
    }
}

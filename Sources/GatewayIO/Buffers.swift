#if canImport(Glibc)
import Glibc
#endif

/// A per-thread free list of fixed-size chunks. A connection takes a chunk when bytes arrive and gives
/// it back when it has none left to keep, so idle keep-alive connections hold no buffer at all.
public final class BufferPool {
    public let chunkSize: Int
    /// A fixed stack of free chunks, not an Array: an Array's popLast and append checked uniqueness on every call.
    private let free: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private var freeCount = 0
    private let maxFree: Int
    public private(set) var outstanding = 0

    public init(chunkSize: Int, maxFree: Int = 4096) {
        self.chunkSize = chunkSize
        self.maxFree = maxFree
        free = .allocate(capacity: maxFree)
    }

    deinit {
        for i in 0..<freeCount { free[i].deallocate() }
        free.deallocate()
    }

    @inline(__always)
    public func acquire() -> UnsafeMutableRawPointer {
        outstanding += 1
        if freeCount > 0 {
            freeCount -= 1
            return free[freeCount]
        }
        return UnsafeMutableRawPointer.allocate(byteCount: chunkSize, alignment: 16)
    }

    @inline(__always)
    public func release(_ chunk: UnsafeMutableRawPointer) {
        outstanding -= 1
        if freeCount < maxFree {
            free[freeCount] = chunk
            freeCount += 1
        } else {
            chunk.deallocate()
        }
    }
}

/// A byte buffer over memory it does not own by itself: a pool chunk or a one-off allocation.
/// Bytes are appended at `writerIndex` and consumed from `readerIndex`; parsers read them in place.
public struct ByteBuffer {
    public private(set) var base: UnsafeMutableRawPointer?
    public private(set) var capacity: Int
    public var readerIndex = 0
    public var writerIndex = 0
    /// Which pool the memory came from: 0 none (heap), 1 small, 2 large, 3 head.
    public private(set) var origin: UInt8 = 0

    public init() {
        base = nil
        capacity = 0
    }

    public var isAllocated: Bool { base != nil }
    // The small accessors and appends are @inlinable: every module writes heads with them, a few bytes at a time,
    // and a call per append cost more than the copy.
    @inlinable @inline(__always) public var readableBytes: Int { writerIndex - readerIndex }
    @inlinable @inline(__always) public var writableBytes: Int { capacity - writerIndex }
    @inlinable @inline(__always) public var readPointer: UnsafeMutableRawPointer { base! + readerIndex }
    @inlinable @inline(__always) public var writePointer: UnsafeMutableRawPointer { base! + writerIndex }

    public mutating func attach(_ memory: UnsafeMutableRawPointer, capacity: Int, origin: UInt8) {
        precondition(base == nil)
        self.base = memory
        self.capacity = capacity
        self.origin = origin
        readerIndex = 0
        writerIndex = 0
    }

    /// Detaches and returns the memory, or nil when none was attached.
    public mutating func detach() -> (UnsafeMutableRawPointer, UInt8)? {
        guard let memory = base else { return nil }
        let result = (memory, origin)
        base = nil
        capacity = 0
        readerIndex = 0
        writerIndex = 0
        origin = 0
        return result
    }

    /// Moves the unread bytes to the front to make room at the end.
    public mutating func compact() {
        guard let base, readerIndex > 0 else { return }
        let count = readableBytes
        if count > 0 { memmove(base, base + readerIndex, count) }
        readerIndex = 0
        writerIndex = count
    }

    public mutating func clear() {
        readerIndex = 0
        writerIndex = 0
    }

    @inlinable @inline(__always)
    public mutating func append(_ bytes: UnsafeRawPointer, _ count: Int) {
        precondition(count <= writableBytes)
        (base! + writerIndex).copyMemory(from: bytes, byteCount: count)
        writerIndex += count
    }

    @inlinable @inline(__always)
    public mutating func append(_ text: StaticString) {
        append(UnsafeRawPointer(text.utf8Start), text.utf8CodeUnitCount)
    }

    public mutating func append(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { append($0.baseAddress!, $0.count) }
    }

    @inlinable
    public mutating func append(byte: UInt8) {
        precondition(writableBytes >= 1)
        (base! + writerIndex).storeBytes(of: byte, as: UInt8.self)
        writerIndex += 1
    }

    /// Appends a decimal number without allocating, straight into the buffer: its length from its bit length, then
    /// two digits per division, each pair one 16-bit store from a table.
    public mutating func append(decimal value: Int) {
        if value < 0 { append(byte: UInt8(ascii: "-")) }
        var v = UInt64(value.magnitude)
        let digits = ByteBuffer.decimalDigits(v)
        precondition(digits <= writableBytes)
        // "00", "01", … "99".
        let pairs: StaticString = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"
        let table = UnsafeRawPointer(pairs.utf8Start)
        var end = base! + writerIndex + digits
        while v >= 100 {
            let pair = Int(truncatingIfNeeded: v % 100) &* 2
            v /= 100
            end -= 2
            end.storeBytes(of: table.loadUnaligned(fromByteOffset: pair, as: UInt16.self), as: UInt16.self)
        }
        if v >= 10 {
            end -= 2
            end.storeBytes(of: table.loadUnaligned(fromByteOffset: Int(truncatingIfNeeded: v) &* 2, as: UInt16.self), as: UInt16.self)
        } else {
            end -= 1
            end.storeBytes(of: UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: v), as: UInt8.self)
        }
        writerIndex += digits
    }

    /// How many decimal digits `v` has (1 for 0): log10 estimated from the bit length (1233 / 4096 ≈ log10(2)),
    /// then one comparison.
    @inline(__always)
    static func decimalDigits(_ v: UInt64) -> Int {
        let bits = 64 - (v | 1).leadingZeroBitCount
        let estimate = (bits &* 1233) >> 12  // floor(log10(2^bits)): the digits of 2^bits - 1, or one fewer
        return estimate &+ ((v | 1) >= powerOfTen(estimate) ? 1 : 0)
    }

    /// 10^n for n in 0...19 (a switch of constants: a table lookup once compiled).
    @inline(__always)
    static func powerOfTen(_ n: Int) -> UInt64 {
        switch n {
        case 0: 1
        case 1: 10
        case 2: 100
        case 3: 1_000
        case 4: 10_000
        case 5: 100_000
        case 6: 1_000_000
        case 7: 10_000_000
        case 8: 100_000_000
        case 9: 1_000_000_000
        case 10: 10_000_000_000
        case 11: 100_000_000_000
        case 12: 1_000_000_000_000
        case 13: 10_000_000_000_000
        case 14: 100_000_000_000_000
        case 15: 1_000_000_000_000_000
        case 16: 10_000_000_000_000_000
        case 17: 100_000_000_000_000_000
        case 18: 1_000_000_000_000_000_000
        default: 10_000_000_000_000_000_000
        }
    }

    /// Appends a number in lowercase hex (chunk sizes).
    public mutating func append(hex value: Int) {
        var started = false
        var shift = 60
        while shift >= 0 {
            let nibble = (value >> shift) & 0xF
            if nibble != 0 || started || shift == 0 {
                started = true
                append(byte: nibble < 10 ? UInt8(ascii: "0") + UInt8(nibble) : UInt8(ascii: "a") + UInt8(nibble - 10))
            }
            shift -= 4
        }
    }
}

/// The thread's buffer pools: 4 KiB chunks for the heads the gateway writes, 16 KiB ones for reads, and
/// 80 KiB ones for header sections up to 64 KiB. Small head chunks keep a connection that waits on a slow
/// reader at about 24 KiB.
public final class Buffers {
    public static let headSize = 4 * 1024
    public static let smallSize = 16 * 1024
    public static let largeSize = 80 * 1024
    public let heads = BufferPool(chunkSize: Buffers.headSize)
    public let small = BufferPool(chunkSize: Buffers.smallSize)
    public let large = BufferPool(chunkSize: Buffers.largeSize, maxFree: 64)

    public init() {}

    /// Attaches the smallest pooled chunk that holds `capacity` bytes, or a heap buffer beyond 80 KiB.
    public func attach(_ buffer: inout ByteBuffer, capacity: Int) {
        if capacity <= Buffers.headSize {
            buffer.attach(heads.acquire(), capacity: Buffers.headSize, origin: 3)
        } else if capacity <= Buffers.smallSize {
            buffer.attach(small.acquire(), capacity: Buffers.smallSize, origin: 1)
        } else if capacity <= Buffers.largeSize {
            buffer.attach(large.acquire(), capacity: Buffers.largeSize, origin: 2)
        } else {
            attachHeap(&buffer, capacity: capacity)
        }
    }

    @inline(__always)
    public func attachSmall(_ buffer: inout ByteBuffer) {
        buffer.attach(small.acquire(), capacity: Buffers.smallSize, origin: 1)
    }

    /// Moves the unread bytes of a small buffer into a large one.
    public func grow(_ buffer: inout ByteBuffer) {
        let pending = buffer.readableBytes
        let memory = large.acquire()
        if pending > 0 { memory.copyMemory(from: buffer.readPointer, byteCount: pending) }
        release(&buffer)
        buffer.attach(memory, capacity: Buffers.largeSize, origin: 2)
        buffer.writerIndex = pending
    }

    @inline(__always)
    @inlinable
    public func release(_ buffer: inout ByteBuffer) {
        // Most releases on the request path are of buffers that were never attached: no call for those.
        if buffer.base != nil { releaseAttached(&buffer) }
    }

    @usableFromInline
    func releaseAttached(_ buffer: inout ByteBuffer) {
        guard let (memory, origin) = buffer.detach() else { return }
        switch origin {
        case 1: small.release(memory)
        case 2: large.release(memory)
        case 3: heads.release(memory)
        default: memory.deallocate()
        }
    }

    /// A one-off heap buffer (large request bodies); `release` frees it.
    public func attachHeap(_ buffer: inout ByteBuffer, capacity: Int) {
        buffer.attach(UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 1), alignment: 16), capacity: capacity, origin: 0)
    }
}

/// Segments waiting to be written with one writev. Holds pointers, not bytes: the owner keeps the memory alive.
public struct OutboundQueue {
    public static let maxSegments = 16
    private let iov: UnsafeMutablePointer<iovec>
    private var start = 0
    private var end = 0
    public private(set) var pendingBytes = 0

    public init() {
        iov = .allocate(capacity: OutboundQueue.maxSegments)
    }

    /// Frees the segment array; call once when the owner dies.
    public func deallocate() { iov.deallocate() }

    public var isEmpty: Bool { pendingBytes == 0 }
    public var segmentSpace: Int { OutboundQueue.maxSegments - end }

    @inline(__always)
    public mutating func append(_ base: UnsafeRawPointer, _ count: Int) {
        guard count > 0 else { return }
        precondition(end < OutboundQueue.maxSegments, "too many outbound segments")
        iov[end] = iovec(iov_base: UnsafeMutableRawPointer(mutating: base), iov_len: count)
        end += 1
        pendingBytes += count
    }

    public mutating func removeAll() {
        start = 0
        end = 0
        pendingBytes = 0
    }

    public enum FlushResult { case done, wouldBlock, failed(IOError) }

    /// Writes as much as the socket takes. `.wouldBlock` leaves the rest queued.
    @inline(__always)
    public mutating func flush(to fd: Int32) -> FlushResult {
        while pendingBytes > 0 {
            let written: Int
            do {
                let result: IOResult<Int>
                if end - start == 1 {
                    result = try Posix.send(fd, iov[start].iov_base!, iov[start].iov_len)
                } else {
                    result = try Posix.writev(fd, iov + start, Int32(end - start))
                }
                switch result {
                case .processed(let n): written = n
                case .wouldBlock: return .wouldBlock
                }
            } catch {
                return .failed(error)
            }
            advance(by: written)
        }
        start = 0
        end = 0
        return .done
    }

    /// The queued segments, for a writer that is not a socket (TLS stages them into a record).
    public func withSegments<R>(_ body: (UnsafePointer<iovec>, Int) -> R) -> R {
        body(iov + start, end - start)
    }

    /// Drops `count` bytes from the front: they were written or copied.
    public mutating func consume(_ count: Int) {
        guard count > 0 else { return }
        advance(by: count)
    }

    private mutating func advance(by count: Int) {
        var remaining = count
        pendingBytes -= count
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
        if pendingBytes == 0 {
            start = 0
            end = 0
        }
    }
}

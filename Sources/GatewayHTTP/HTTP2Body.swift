import GatewayIO

/// The body one stream sends. nghttp2 reads it with NGHTTP2_DATA_FLAG_NO_COPY: it asks how many bytes are ready,
/// and when the DATA frame goes out the session queues the frame header and a reference to the bytes (see
/// `HTTP2Session`). The bytes are either the body's own pooled buffer or external memory that outlives the
/// stream (a load generator's request template).
///
/// A producer writes with `HTTP2Session.reserve(_:_:)`, then `appended(_:)` or `end(_:)`. `cut()` ends a DATA
/// frame at the current end, so that each SSE event goes out in its own frame.
///
/// One object serves many streams in turn: a connection keeps them in a free list.
public final class HTTP2Body {
    /// Owned bytes: `readerIndex` is the next byte to send.
    public var buffer = ByteBuffer()
    private var external: UnsafeRawPointer?
    private var externalCount = 0
    private var externalOffset = 0
    /// No more bytes will be added: the last DATA frame carries END_STREAM.
    public internal(set) var ended = false
    /// nghttp2 found nothing to send and waits for `resume`.
    var deferred = false
    /// The stream this body is attached to.
    public internal(set) var streamID: Int32 = 0
    /// The output offset just past the last byte queued from this body (see `HTTP2Outbound.appendReference`).
    public internal(set) var queuedUntil: UInt64 = 0
    /// Frame boundaries: the lengths of the pieces still to send, oldest first (a ring). A DATA frame never
    /// crosses one. Empty: no boundaries.
    private var cuts: (Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    private var cutHead = 0
    private var cutCount = 0
    /// Bytes already counted into `cuts` (the pieces' total): the bytes past it belong to no piece yet.
    private var cutBytes = 0

    public init() {}

    /// Bytes ready to send.
    @inline(__always)
    public var readable: Int { external != nil ? externalCount - externalOffset : buffer.readableBytes }

    /// Sends `count` bytes of memory the caller keeps alive and unchanged until the stream is done (and, when
    /// the body is reused, until the connection has written them).
    public func setExternal(_ bytes: UnsafeRawPointer, count: Int) {
        external = bytes
        externalCount = count
        externalOffset = 0
        ended = true
    }

    /// Ends a DATA frame at the current end of the body.
    public func cut() {
        let piece = readable - cutBytes
        guard piece > 0 else { return }
        if cutCount == 16 {
            // Full: the newest piece grows instead (two events may share a frame).
            let last = (cutHead + cutCount - 1) & 15
            setCut(last, getCut(last) + piece)
        } else {
            setCut((cutHead + cutCount) & 15, piece)
            cutCount += 1
        }
        cutBytes += piece
    }

    /// How many bytes the next DATA frame may carry, at most `limit`.
    @inline(__always)
    func nextFrameLength(limit: Int) -> Int {
        let available = readable
        guard cutCount > 0 else { return min(limit, available) }
        return min(limit, getCut(cutHead), available)
    }

    /// Takes the next `count` bytes for a DATA frame.
    @inline(__always)
    func take(_ count: Int) -> UnsafeRawPointer {
        let start: UnsafeRawPointer
        if let external {
            start = external + externalOffset
            externalOffset += count
        } else {
            start = UnsafeRawPointer(buffer.readPointer)
            buffer.readerIndex += count
        }
        var left = count
        while left > 0 && cutCount > 0 {
            let head = getCut(cutHead)
            if head > left {
                setCut(cutHead, head - left)
                cutBytes -= left
                left = 0
            } else {
                left -= head
                cutBytes -= head
                cutHead = (cutHead + 1) & 15
                cutCount -= 1
            }
        }
        return start
    }

    /// Ready for another stream. The caller has dealt with `buffer` (see `HTTP2Session.release(_:)`).
    func reset() {
        external = nil
        externalCount = 0
        externalOffset = 0
        ended = false
        deferred = false
        streamID = 0
        queuedUntil = 0
        cutHead = 0
        cutCount = 0
        cutBytes = 0
        buffer.clear()
    }

    @inline(__always)
    private func getCut(_ index: Int) -> Int {
        withUnsafeBytes(of: cuts) { $0.load(fromByteOffset: index * MemoryLayout<Int>.stride, as: Int.self) }
    }

    @inline(__always)
    private func setCut(_ index: Int, _ value: Int) {
        withUnsafeMutableBytes(of: &cuts) { $0.storeBytes(of: value, toByteOffset: index * MemoryLayout<Int>.stride, as: Int.self) }
    }
}

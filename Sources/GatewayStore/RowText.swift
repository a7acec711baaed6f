#if canImport(Glibc)
import Glibc
#endif

/// The text columns of one audit row, copied side by side into memory the writer thread owns and reuses, so that
/// SQLite binds them in place (`SQLiteStatement.bindStatic`) instead of copying each one into an allocation of its
/// own. The slices stay valid until the next `begin`.
final class RowText {
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    private var used = 0

    init(capacity: Int = 4096) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity, alignment: 1)
    }

    deinit { base.deallocate() }

    /// Starts a row of at most `bytes` bytes of text. Growing happens here, never between two `add`s, so that the
    /// slices handed out for one row all stay valid.
    func begin(reserving bytes: Int) {
        used = 0
        if bytes > capacity {
            base.deallocate()
            capacity = max(bytes, capacity * 2)
            base = .allocate(byteCount: capacity, alignment: 1)
        }
    }

    /// Copies a string's UTF-8 bytes in; `begin` must have reserved them (`text.utf8.count`).
    func add(_ text: String) -> UnsafeRawBufferPointer {
        // Native and small strings (all of the writer's) are read in place, without a copy of the string to make
        // contiguous.
        if let added = text.utf8.withContiguousStorageIfAvailable({ append(UnsafeRawBufferPointer($0)) }) { return added }
        var text = text
        return text.withUTF8 { bytes in append(UnsafeRawBufferPointer(bytes)) }
    }

    /// Copies `items` joined by `separator`; `begin` must have reserved `joinedCount(items)` bytes.
    func add(joining items: [String], separator: UInt8) -> UnsafeRawBufferPointer {
        let start = used
        for (i, item) in items.enumerated() {
            if i > 0 {
                base.storeBytes(of: separator, toByteOffset: used, as: UInt8.self)
                used += 1
            }
            _ = add(item)
        }
        return UnsafeRawBufferPointer(start: base + start, count: used - start)
    }

    static func joinedCount(_ items: [String]) -> Int {
        items.reduce(max(0, items.count - 1)) { $0 + $1.utf8.count }
    }

    private func append(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        precondition(used + bytes.count <= capacity, "RowText: begin(reserving:) reserved too little")
        let start = base + used
        if let source = bytes.baseAddress, bytes.count > 0 { start.copyMemory(from: source, byteCount: bytes.count) }
        used += bytes.count
        return UnsafeRawBufferPointer(start: start, count: bytes.count)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// The fields of one received header block, handed to the session's delegate in one call once the block is
/// complete (`http2HeadersComplete`), instead of one call per field: the connection then sees the whole request or
/// response head at once, and each field costs a copy here rather than a call through the delegate and a stream
/// lookup.
///
/// The session reuses one list for every block (blocks never interleave on a connection), so the bytes are valid
/// only during the delegate's call. Pseudo-headers come first: nghttp2 refuses a block where they do not.
public final class HTTP2HeaderList {
    /// A field's name and value, as offsets into `bytes`.
    @usableFromInline
    struct Entry {
        @usableFromInline var nameStart: Int32
        @usableFromInline var nameCount: Int32
        @usableFromInline var valueStart: Int32
        @usableFromInline var valueCount: Int32
    }

    @usableFromInline var bytes: UnsafeMutableRawPointer
    @usableFromInline var entries: UnsafeMutablePointer<Entry>
    private var byteCapacity = 2048
    private var entryCapacity = 32
    private var used = 0
    /// The number of fields.
    public private(set) var count = 0
    /// The number of pseudo-headers, the first fields.
    public private(set) var pseudoCount = 0

    public init() {
        bytes = .allocate(byteCount: byteCapacity, alignment: 8)
        entries = .allocate(capacity: entryCapacity)
    }

    deinit {
        bytes.deallocate()
        entries.deallocate()
    }

    @inlinable
    public func name(_ index: Int) -> UnsafeRawBufferPointer {
        let entry = entries[index]
        return UnsafeRawBufferPointer(start: bytes + Int(entry.nameStart), count: Int(entry.nameCount))
    }

    @inlinable
    public func value(_ index: Int) -> UnsafeRawBufferPointer {
        let entry = entries[index]
        return UnsafeRawBufferPointer(start: bytes + Int(entry.valueStart), count: Int(entry.valueCount))
    }

    /// The value of the pseudo-header `name` (":path", say), or nil when the block has none.
    public func pseudo(_ name: StaticString) -> UnsafeRawBufferPointer? {
        for index in 0..<pseudoCount {
            let entry = entries[index]
            if Int(entry.nameCount) == name.utf8CodeUnitCount
                && memcmp(bytes + Int(entry.nameStart), name.utf8Start, Int(entry.nameCount)) == 0 {
                return value(index)
            }
        }
        return nil
    }

    /// Empties the list for the next block, keeping its memory.
    func removeAll() {
        count = 0
        pseudoCount = 0
        used = 0
    }

    /// Copies a field in. The session bounds a block by SETTINGS_MAX_HEADER_LIST_SIZE, and so the memory.
    func append(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) {
        let total = name.count + value.count
        if used + total > byteCapacity {
            var capacity = byteCapacity * 2
            while used + total > capacity { capacity *= 2 }
            let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
            grown.copyMemory(from: bytes, byteCount: used)
            bytes.deallocate()
            bytes = grown
            byteCapacity = capacity
        }
        if count == entryCapacity {
            let grown = UnsafeMutablePointer<Entry>.allocate(capacity: entryCapacity * 2)
            grown.moveInitialize(from: entries, count: count)
            entries.deallocate()
            entries = grown
            entryCapacity *= 2
        }
        let nameStart = used
        if name.count > 0 { (bytes + used).copyMemory(from: name.baseAddress!, byteCount: name.count) }
        used += name.count
        let valueStart = used
        if value.count > 0 { (bytes + used).copyMemory(from: value.baseAddress!, byteCount: value.count) }
        used += value.count
        entries[count] = Entry(nameStart: Int32(nameStart), nameCount: Int32(name.count),
                               valueStart: Int32(valueStart), valueCount: Int32(value.count))
        count += 1
        if name.first == UInt8(ascii: ":") && pseudoCount == count - 1 { pseudoCount = count }
    }
}

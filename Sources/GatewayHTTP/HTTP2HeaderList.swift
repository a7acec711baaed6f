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
    private var methodIndex = -1
    private var pathIndex = -1
    private var authorityIndex = -1

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

    /// The request pseudo-headers the gateway reads, found while the block was copied in (nil: absent).
    public var method: UnsafeRawBufferPointer? { methodIndex < 0 ? nil : value(methodIndex) }
    public var path: UnsafeRawBufferPointer? { pathIndex < 0 ? nil : value(pathIndex) }
    public var authority: UnsafeRawBufferPointer? { authorityIndex < 0 ? nil : value(authorityIndex) }

    /// Empties the list for the next block, keeping its memory.
    func removeAll() {
        count = 0
        pseudoCount = 0
        used = 0
        methodIndex = -1
        pathIndex = -1
        authorityIndex = -1
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
        // The session bounds a block's bytes far below Int32.max.
        entries[count] = Entry(nameStart: Int32(truncatingIfNeeded: nameStart), nameCount: Int32(truncatingIfNeeded: name.count),
                               valueStart: Int32(truncatingIfNeeded: valueStart), valueCount: Int32(truncatingIfNeeded: value.count))
        if pseudoCount == count && name.count > 1 && bytes.load(fromByteOffset: nameStart, as: UInt8.self) == UInt8(ascii: ":") {
            pseudoCount += 1
            // ":method", ":path", ":authority": told apart by length and one letter (nghttp2 has checked the names).
            switch name.count {
            case 7 where bytes.load(fromByteOffset: nameStart + 1, as: UInt8.self) == UInt8(ascii: "m"): methodIndex = count
            case 5 where bytes.load(fromByteOffset: nameStart + 1, as: UInt8.self) == UInt8(ascii: "p"): pathIndex = count
            case 10 where bytes.load(fromByteOffset: nameStart + 1, as: UInt8.self) == UInt8(ascii: "a"): authorityIndex = count
            default: break
            }
        }
        count += 1
    }
}

/// Which header fields one connection's HPACK encoder should add to its dynamic table: not those whose value keeps
/// changing from one message to the next (a timestamp, a request id).
///
/// Why: nghttp2 indexes every field it is not told otherwise about (`NGHTTP2_NV_FLAG_NO_INDEX`). A field with a
/// fresh value each time then fills the 4 KiB table with entries that are never used again: each insert costs an
/// allocation and an eviction, and every lookup compares against all the entries that share the name (about 60
/// of them once the table is full). Measured, two such fields cost ~10k instructions per response. Keeping them out
/// costs no bytes on the wire: their name is still found in the table, and their value would never have matched.
///
/// How: the first time a name is seen, its value's hash is kept; the first time the name comes with another value,
/// the name is volatile for the rest of the connection. A hash collision or a full table only means a field is
/// indexed as nghttp2 would have done anyway: the choice changes the encoding, never the headers.
public final class HPACKIndexPolicy {
    static let slots = 64
    /// Per slot: the name's hash (0: empty), the hash of the value it had, and whether it changed.
    private let names: UnsafeMutablePointer<UInt64>
    private let values: UnsafeMutablePointer<UInt64>
    private let volatile: UnsafeMutablePointer<Bool>

    public init() {
        names = .allocate(capacity: HPACKIndexPolicy.slots)
        names.initialize(repeating: 0, count: HPACKIndexPolicy.slots)
        values = .allocate(capacity: HPACKIndexPolicy.slots)
        values.initialize(repeating: 0, count: HPACKIndexPolicy.slots)
        volatile = .allocate(capacity: HPACKIndexPolicy.slots)
        volatile.initialize(repeating: false, count: HPACKIndexPolicy.slots)
    }

    deinit {
        names.deallocate()
        values.deallocate()
        volatile.deallocate()
    }

    /// Whether to index `name: value` (a lowercase name), learning from it.
    public func shouldIndex(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer) -> Bool {
        let nameHash = HPACKIndexPolicy.hash(name) | 1  // never 0, which marks an empty slot
        var slot = Int(truncatingIfNeeded: nameHash >> 40) & (HPACKIndexPolicy.slots - 1)
        for _ in 0..<4 {
            if names[slot] == nameHash {
                if volatile[slot] { return false }
                if values[slot] == HPACKIndexPolicy.hash(value) { return true }
                volatile[slot] = true
                return false
            }
            if names[slot] == 0 {
                names[slot] = nameHash
                values[slot] = HPACKIndexPolicy.hash(value)
                return true
            }
            slot = (slot + 1) & (HPACKIndexPolicy.slots - 1)
        }
        return true
    }

    /// A fast 64-bit hash, 8 bytes at a time (not for adversarial keys: a collision costs only compression).
    @inline(__always)
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let count = bytes.count
        var h = 0x9E37_79B9_7F4A_7C15 ^ UInt64(count)
        guard let base = bytes.baseAddress else { return h }
        var offset = 0
        while offset + 8 <= count {
            h = (h ^ base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0xFF51_AFD7_ED55_8CCD
            h ^= h >> 32
            offset += 8
        }
        if offset < count {
            var tail: UInt64 = 0
            if count >= 8 {
                // The last 8 bytes, overlapping the ones already mixed in.
                tail = base.loadUnaligned(fromByteOffset: count - 8, as: UInt64.self)
            } else {
                while offset < count {
                    tail = tail << 8 | UInt64(base.load(fromByteOffset: offset, as: UInt8.self))
                    offset += 1
                }
            }
            h = (h ^ tail) &* 0xC4CE_B9FE_1A85_EC53
        }
        h ^= h >> 29
        return h
    }
}

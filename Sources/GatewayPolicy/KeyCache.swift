// A reactor thread's memory of the keys it authenticated last, so that a client sending the same key on every
// request costs a few word compares instead of a SHA-256 and a dictionary probe.

/// Presented key bytes → the `KeyPolicy` they authenticated as, for a few keys. One per reactor thread, used only
/// by that thread.
///
/// - Correct under change: it holds the `KeyPolicy` objects of one policy snapshot. Its owner empties it whenever it
///   takes a new configuration (a reload, or an admin key or group change: revoking a key makes a new snapshot),
///   and `lookup` re-checks expiry on every hit.
/// - Constant time: every slot is compared, each over its whole width with no early exit, so the time of a lookup
///   does not depend on how many bytes of a cached key the presented one shares. A miss then costs the hash, as
///   without the cache.
/// - Only keys of at most `maxKeyBytes` bytes are kept; a longer one is hashed every time.
public final class KeyCache {
    public static let slotCount = 4
    public static let maxKeyBytes = 96
    private static let words = maxKeyBytes / 8

    /// `slotCount` slots of `words` words: each key zero-padded to the full width.
    private let keyWords: UnsafeMutablePointer<UInt64>
    private var lengths = [Int](repeating: -1, count: slotCount)
    private var keys = [KeyPolicy?](repeating: nil, count: slotCount)
    /// The slot the next insert replaces (round robin).
    private var next = 0

    public init() {
        keyWords = .allocate(capacity: KeyCache.slotCount * KeyCache.words)
        keyWords.initialize(repeating: 0, count: KeyCache.slotCount * KeyCache.words)
    }

    deinit { keyWords.deallocate() }

    /// The key these bytes authenticated as, unless it has expired since; nil when they are not cached.
    public func lookup(_ presented: UnsafeRawBufferPointer, nowSeconds: Int64) -> KeyPolicy? {
        guard presented.count > 0, presented.count <= KeyCache.maxKeyBytes else { return nil }
        var padded = KeyCache.pad(presented)
        var found = -1
        withUnsafeBytes(of: &padded) { raw in
            let probe = raw.baseAddress!.assumingMemoryBound(to: UInt64.self)
            for slot in 0..<KeyCache.slotCount {
                let stored = keyWords + slot * KeyCache.words
                var difference = UInt64(truncatingIfNeeded: lengths[slot] ^ presented.count)
                for word in 0..<KeyCache.words { difference |= stored[word] ^ probe[word] }
                if difference == 0 { found = slot }
            }
        }
        guard found >= 0, let key = keys[found] else { return nil }
        if let expires = key.expires, nowSeconds >= expires { return nil }
        return key
    }

    /// Remembers that `presented` authenticated as `key`, in place of the oldest entry.
    public func insert(_ presented: UnsafeRawBufferPointer, _ key: KeyPolicy) {
        guard presented.count > 0, presented.count <= KeyCache.maxKeyBytes else { return }
        var padded = KeyCache.pad(presented)
        withUnsafeBytes(of: &padded) { raw in
            (keyWords + next * KeyCache.words).update(from: raw.baseAddress!.assumingMemoryBound(to: UInt64.self), count: KeyCache.words)
        }
        lengths[next] = presented.count
        keys[next] = key
        next = (next + 1) % KeyCache.slotCount
    }

    /// Forgets every key (a new policy snapshot is in force).
    public func removeAll() {
        keyWords.update(repeating: 0, count: KeyCache.slotCount * KeyCache.words)
        for slot in 0..<KeyCache.slotCount {
            lengths[slot] = -1
            keys[slot] = nil
        }
        next = 0
    }

    /// The key's bytes in a zeroed block of `maxKeyBytes`, on the stack.
    private typealias Block = (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

    private static func pad(_ bytes: UnsafeRawBufferPointer) -> Block {
        var block: Block = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &block) { raw in raw.copyMemory(from: bytes) }
        return block
    }
}

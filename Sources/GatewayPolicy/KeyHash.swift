// Virtual keys are kept only as SHA-256 digests. A presented key is hashed once, looked up by digest,
// and confirmed with a constant-time compare, so neither the table nor the timing tells which keys exist.
import COpenSSL

/// The SHA-256 of a key: 32 bytes held as four words, so that hashing, comparing and copying it
/// never touch the heap.
public struct KeyHash: Hashable, Sendable, CustomStringConvertible {
    public var w0: UInt64
    public var w1: UInt64
    public var w2: UInt64
    public var w3: UInt64

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
        self.w3 = w3
    }

    /// The digest of `key`'s bytes, as they arrive in the request (no String is made).
    @inline(__always)
    public init(of key: UnsafeRawBufferPointer) {
        self.init(w0: 0, w1: 0, w2: 0, w3: 0)
        withUnsafeMutableBytes(of: &self) { digest in SHA256Digest.compute(key, into: digest) }
    }

    /// The digest of a String's UTF-8 bytes (config keys, tests).
    public init(of key: String) {
        var key = key
        self = key.withUTF8 { KeyHash(of: UnsafeRawBufferPointer($0)) }
    }

    /// Parses 64 hex characters, either case; nil for anything else.
    public init?(hex: String) {
        let bytes = Array(hex.utf8)
        guard bytes.count == 64 else { return nil }
        self.init(w0: 0, w1: 0, w2: 0, w3: 0)
        let ok = withUnsafeMutableBytes(of: &self) { raw -> Bool in
            for i in 0..<32 {
                guard let high = KeyHash.nibble(bytes[2 * i]), let low = KeyHash.nibble(bytes[2 * i + 1]) else { return false }
                raw[i] = high << 4 | low
            }
            return true
        }
        guard ok else { return nil }
    }

    /// Lowercase hex of the digest bytes, in order (what `key_sha256` holds).
    public var hex: String {
        var copy = self
        return withUnsafeBytes(of: &copy) { raw in
            let digits = Array("0123456789abcdef".utf8)
            var out: [UInt8] = []
            out.reserveCapacity(64)
            for byte in raw {
                out.append(digits[Int(byte >> 4)])
                out.append(digits[Int(byte & 0xF)])
            }
            return String(decoding: out, as: UTF8.self)
        }
    }

    public var description: String { "KeyHash(\(hex))" }

    /// Branch-free equality, so a dictionary probe's compare does not exit early on the first
    /// differing word. (The digest is confirmed again with CRYPTO_memcmp after the lookup.)
    @inline(__always)
    public static func == (a: KeyHash, b: KeyHash) -> Bool {
        ((a.w0 ^ b.w0) | (a.w1 ^ b.w1) | (a.w2 ^ b.w2) | (a.w3 ^ b.w3)) == 0
    }

    /// The digest is already uniformly random: one word is a good hash, and Hasher's seed keeps
    /// bucket positions unpredictable across processes.
    @inline(__always)
    public func hash(into hasher: inout Hasher) {
        hasher.combine(w0)
    }

    /// Constant-time comparison of the 32 digest bytes (OpenSSL's CRYPTO_memcmp).
    @inline(__always)
    public static func constantTimeEquals(_ a: KeyHash, _ b: KeyHash) -> Bool {
        var a = a
        var b = b
        return withUnsafeBytes(of: &a) { pa in
            withUnsafeBytes(of: &b) { pb in CRYPTO_memcmp(pa.baseAddress!, pb.baseAddress!, 32) == 0 }
        }
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

/// SHA-256 through OpenSSL's low-level interface.
///
/// Why not the one-shot `SHA256()`: in OpenSSL 3 it goes through `EVP_Q_digest`, which fetches the
/// algorithm from the provider store (a lock) and allocates a context on every call: about 300 ns
/// against 50 ns here (SHA-NI), measured on this machine. `SHA256_Init/Update/Final` keep the context
/// on the stack. They are marked deprecated in OpenSSL 3.0 but remain in libcrypto; the protocol
/// indirection below keeps the deprecation warning out of every build while staying a direct call.
enum SHA256Digest {
    @inline(__always)
    static func compute(_ input: UnsafeRawBufferPointer, into digest: UnsafeMutableRawBufferPointer) {
        (LowLevelSHA256.self as SHA256Implementation.Type).digest(input, into: digest)
    }
}

private protocol SHA256Implementation {
    static func digest(_ input: UnsafeRawBufferPointer, into digest: UnsafeMutableRawBufferPointer)
}

private enum LowLevelSHA256: SHA256Implementation {
    @available(*, deprecated, message: "OpenSSL 3 deprecates the low-level SHA-256 calls; see SHA256Digest")
    @inline(__always)
    static func digest(_ input: UnsafeRawBufferPointer, into digest: UnsafeMutableRawBufferPointer) {
        precondition(digest.count >= 32)
        var context = SHA256_CTX()
        SHA256_Init(&context)
        if let base = input.baseAddress, input.count > 0 { SHA256_Update(&context, base, input.count) }
        SHA256_Final(digest.baseAddress!.assumingMemoryBound(to: UInt8.self), &context)
    }
}

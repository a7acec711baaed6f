/// Byte comparison whose time does not depend on where the inputs differ.
public enum ConstantTime {
    /// Whether `candidate` equals `secret`, in time that depends only on `candidate.count`.
    ///
    /// Every byte of the candidate is compared (against the secret, repeated), and the differences are
    /// OR-ed together with no early exit, so neither the position of the first wrong byte nor the
    /// secret's length shows in the timing. An empty secret never matches.
    @inline(never)
    public static func equals(_ candidate: UnsafeRawBufferPointer, _ secret: UnsafeRawBufferPointer) -> Bool {
        guard secret.count > 0 else { return false }
        var difference: UInt = candidate.count == secret.count ? 0 : 1
        for i in 0..<candidate.count {
            difference |= UInt(candidate[i] ^ secret[i % secret.count])
        }
        return difference == 0
    }

    public static func equals(_ candidate: [UInt8], _ secret: [UInt8]) -> Bool {
        candidate.withUnsafeBytes { a in secret.withUnsafeBytes { b in equals(a, b) } }
    }
}

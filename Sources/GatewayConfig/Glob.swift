// Group model patterns ("gpt-4o*", "embed-*"). Only '*' is special: model names are plain ids,
// and a single wildcard keeps patterns readable and matching allocation-free on the request path.

/// true when `name` matches `pattern`, where '*' matches any run of characters, including none.
/// Everything else matches itself, case-sensitively.
public func globMatch(pattern: String, name: String) -> Bool {
    var pattern = pattern
    var name = name
    // Bytes are enough: '*' is ASCII, so it never falls inside a multi-byte UTF-8 sequence.
    return pattern.withUTF8 { p in name.withUTF8 { n in globMatch(p, n) } }
}

/// The classic greedy matcher with one backtrack point: on a mismatch, let the last '*' swallow one more byte.
/// Linear in practice, O(p·n) at worst, never exponential.
private func globMatch(_ p: UnsafeBufferPointer<UInt8>, _ n: UnsafeBufferPointer<UInt8>) -> Bool {
    let star = UInt8(ascii: "*")
    var pi = 0, ni = 0
    var lastStar = -1, resumeAt = 0
    while ni < n.count {
        if pi < p.count, p[pi] == star {
            lastStar = pi
            resumeAt = ni
            pi += 1
        } else if pi < p.count, p[pi] == n[ni] {
            pi += 1
            ni += 1
        } else if lastStar >= 0 {
            pi = lastStar + 1
            resumeAt += 1
            ni = resumeAt
        } else {
            return false
        }
    }
    while pi < p.count, p[pi] == star { pi += 1 }
    return pi == p.count
}

import Testing

@testable import GatewayHTTP

@Suite struct HTTPBytesTests {
    /// RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~"
    /// / DIGIT / ALPHA.
    private static let tchars = Set(Array("!#$%&'*+-.^_`|~0123456789".utf8)
        + Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8))

    @Test func isTokenMatchesTheRFCForEveryByte() {
        for value in 0...255 {
            let byte = UInt8(value)
            #expect(HTTPBytes.isToken(byte) == Self.tchars.contains(byte), "byte \(value)")
        }
    }
}

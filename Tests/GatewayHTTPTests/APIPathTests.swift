import Testing

@testable import GatewayHTTP

@Suite struct APIPathTests {
    private static func classify(_ target: String) -> APIPath {
        Array(target.utf8).withUnsafeBytes { APIPath.classify($0) }
    }

    @Test func everyPathIsRecognisedWithOrWithoutAQuery() {
        for path in APIPath.allCases where path != .other {
            let text = path.path.description
            #expect(Self.classify(text) == path)
            #expect(Self.classify(text + "?") == path)
            #expect(Self.classify(text + "?a=1&b=?") == path)
        }
    }

    @Test func nearMissesAreOther() {
        for target in ["", "?", "/", "/v1/chat/completions/", "/v1/chat/completion", "/V1/models", "//v1/models",
                       "/v1/models#x", "x/v1/models", "/v1/chat?/completions"] {
            #expect(Self.classify(target) == .other, "\(target)")
        }
    }
}

import Foundation
import GatewayHTTP
import GatewayPolicy
import Testing

@Suite struct IncludeUsagePlanTests {
    /// Plans, applies, and parses the result; checks include_usage is true and every other field,
    /// and every other member of stream_options, is as it was.
    func check(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> IncludeUsagePlan {
        let body = Array(text.utf8)
        let (plan, spliced) = body.withUnsafeBytes { raw in
            let plan = includeUsagePlan(body: raw, fields: JSONFieldScanner.scan(raw))
            return (plan, plan.applied(to: raw))
        }
        #expect(spliced.count == body.count + plan.lengthDelta, sourceLocation: sourceLocation)
        let before = try #require(try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any], sourceLocation: sourceLocation)
        let after = try #require(
            try JSONSerialization.jsonObject(with: Data(spliced)) as? [String: Any], "\(String(decoding: spliced, as: UTF8.self))",
            sourceLocation: sourceLocation)
        let options = try #require(after["stream_options"] as? [String: Any], sourceLocation: sourceLocation)
        #expect(options["include_usage"] as? Bool == true, sourceLocation: sourceLocation)
        var beforeRest = before
        var afterRest = after
        let beforeOptions = beforeRest.removeValue(forKey: "stream_options") as? [String: Any] ?? [:]
        afterRest.removeValue(forKey: "stream_options")
        #expect(try canonical(beforeRest) == canonical(afterRest), sourceLocation: sourceLocation)
        var otherOptions = options
        otherOptions.removeValue(forKey: "include_usage")
        var beforeOther = beforeOptions
        beforeOther.removeValue(forKey: "include_usage")
        #expect(try canonical(beforeOther) == canonical(otherOptions), sourceLocation: sourceLocation)
        return plan
    }

    /// The object re-serialized with sorted keys, so that equal JSON compares equal.
    func canonical(_ object: [String: Any]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    @Test func absentIsInsertedBeforeTheLastBrace() throws {
        let text = #"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"} \"stream_options\" }"}]}"#
        let plan = try check(text)
        guard case .splice(let range, let bytes) = plan else { Issue.record("no splice"); return }
        #expect(range == (text.utf8.count - 1)..<(text.utf8.count - 1))
        #expect(bytes.description == #","stream_options":{"include_usage":true}"#)
        _ = try check("{\"model\":\"m\",\n \"stream\": true }\n\t ")
        _ = try check(#"{"stream":true}"#)
    }

    @Test func presentWithoutIncludeUsageKeepsItsMembers() throws {
        let plan = try check(#"{"model":"m","stream":true,"stream_options":{"continuous_usage_stats":false,"x":[1,{"y":"}"}]},"n":2}"#)
        guard case .splice(let range, let bytes) = plan else { Issue.record("no splice"); return }
        #expect(range.isEmpty)
        #expect(bytes.description == #""include_usage":true,"#)
        _ = try check(#"{"model":"m","stream_options": { "a" : 1 } ,"stream":true}"#)
    }

    @Test func emptyOrNotAnObjectIsReplaced() throws {
        for options in ["{}", "{ \n }", "null", "\"x\"", "[]", "true"] {
            let plan = try check("{\"model\":\"m\",\"stream\":true,\"stream_options\":\(options),\"temperature\":0.5}")
            guard case .splice(let range, let bytes) = plan else { Issue.record("no splice"); continue }
            #expect(range.count == options.utf8.count)
            #expect(bytes.description == #"{"include_usage":true}"#)
        }
    }

    @Test func includeUsageFalseBecomesTrue() throws {
        for value in ["false", "null", "0"] {
            let plan = try check("{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"a\":\"b\",\"include_usage\":\(value),\"c\":{}}}")
            guard case .splice(let range, let bytes) = plan else { Issue.record("no splice"); continue }
            #expect(range.count == value.utf8.count)
            #expect(bytes.description == "true")
        }
        // An escaped spelling of the key is the same key to the upstream's parser.
        _ = try check(#"{"model":"m","stream":true,"stream_options":{"include\u005fusage":false}}"#)
    }

    @Test func alreadyTrueOrNotStreamingIsUnchanged() throws {
        let cases = [
            #"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
            #"{"model":"m","stream":true,"stream_options":{"include_usage":false,"include_usage":true}}"#,
            #"{"model":"m","stream":false}"#,
            #"{"model":"m"}"#,
            #"{"model":"m","stream":"true"}"#,
            #"{"model":"m","stream":true"#,
            #"[{"model":"m","stream":true}]"#,
        ]
        for text in cases {
            let body = Array(text.utf8)
            let plan = body.withUnsafeBytes { includeUsagePlan(body: $0, fields: JSONFieldScanner.scan($0)) }
            guard case .unchanged = plan else { Issue.record("expected no change for \(text)"); continue }
        }
    }
}

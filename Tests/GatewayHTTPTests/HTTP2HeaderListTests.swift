// HTTP2HeaderList: the copy of a header block the session hands its delegate, and the request pseudo-headers it
// finds on the way in.
import Testing

@testable import GatewayHTTP

@Suite("HTTP/2 header list")
struct HTTP2HeaderListTests {
    private func add(_ list: HTTP2HeaderList, _ name: String, _ value: String) {
        Array(name.utf8).withUnsafeBytes { n in Array(value.utf8).withUnsafeBytes { v in list.append(name: n, value: v) } }
    }

    private func text(_ bytes: UnsafeRawBufferPointer?) -> String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

    @Test func findsTheRequestPseudoHeadersWhateverTheirOrder() {
        let list = HTTP2HeaderList()
        add(list, ":scheme", "http")
        add(list, ":authority", "api.example")
        add(list, ":path", "/v1/chat/completions")
        add(list, ":method", "POST")
        add(list, "content-type", "application/json")
        add(list, "x-empty", "")
        #expect(list.count == 6 && list.pseudoCount == 4)
        #expect(text(list.method) == "POST" && text(list.path) == "/v1/chat/completions" && text(list.authority) == "api.example")
        #expect(text(list.name(4)) == "content-type" && text(list.value(4)) == "application/json")
        #expect(list.value(5).count == 0)
    }

    @Test func aResponseBlockHasNoRequestPseudoHeaders() {
        let list = HTTP2HeaderList()
        add(list, ":status", "200")
        add(list, "server", "mock")
        #expect(list.pseudoCount == 1 && list.method == nil && list.path == nil && list.authority == nil)
    }

    @Test func removeAllForgetsTheLastBlockAndGrowthKeepsEveryField() {
        let list = HTTP2HeaderList()
        add(list, ":method", "GET")
        list.removeAll()
        #expect(list.count == 0 && list.method == nil)
        // Past the first capacities (32 fields, 2 KiB): both grow and keep what was copied.
        let long = String(repeating: "v", count: 300)
        for index in 0..<100 { add(list, "x-field-\(index)", "\(index)-\(long)") }
        #expect(list.count == 100 && list.pseudoCount == 0)
        for index in [0, 31, 32, 99] {
            #expect(text(list.name(index)) == "x-field-\(index)" && text(list.value(index)) == "\(index)-\(long)")
        }
    }
}

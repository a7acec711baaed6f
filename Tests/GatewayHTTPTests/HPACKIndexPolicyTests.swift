// HPACKIndexPolicy: which response fields go into the HPACK dynamic table, and that a field kept out still arrives
// intact, response after response.
import GatewayIO
import Testing

@testable import GatewayHTTP

@Suite("HPACK index policy")
struct HPACKIndexPolicyTests {
    private func index(_ policy: HPACKIndexPolicy, _ name: String, _ value: String) -> Bool {
        Array(name.utf8).withUnsafeBytes { n in Array(value.utf8).withUnsafeBytes { v in policy.shouldIndex(name: n, value: v) } }
    }

    @Test func aFieldWhoseValueChangesStopsBeingIndexedAndStaysSo() {
        let policy = HPACKIndexPolicy()
        #expect(index(policy, "content-type", "application/json"))
        #expect(index(policy, "x-request-id", "gw-0000000000000001"))
        #expect(index(policy, "content-type", "application/json"))
        #expect(!index(policy, "x-request-id", "gw-0000000000000002"))
        #expect(index(policy, "content-type", "application/json"))
        // Volatile for the rest of the connection, even when a value repeats.
        #expect(!index(policy, "x-request-id", "gw-0000000000000002"))
        #expect(index(policy, "x-gateway-deployment", "mock/gpt-4o-mini"))
    }

    @Test func manyNamesFillTheTableAndAreThenIndexedAsUsual() {
        let policy = HPACKIndexPolicy()
        for i in 0..<200 { #expect(index(policy, "x-field-\(i)", "a")) }
        // Past the table's room a new name is indexed: what nghttp2 does without a policy.
        #expect(index(policy, "x-one-more", "b"))
        #expect(index(policy, "x-one-more", "c") || !index(policy, "x-one-more", "d"))
    }

    @Test func hashesTellApartValuesOfEveryLength() {
        var seen = Set<UInt64>()
        for length in 0..<40 {
            for last in [UInt8(ascii: "a"), UInt8(ascii: "b")] {
                var bytes = [UInt8](repeating: UInt8(ascii: "x"), count: length)
                bytes.append(last)
                seen.insert(bytes.withUnsafeBytes { HPACKIndexPolicy.hash($0) })
            }
        }
        #expect(seen.count == 80)
    }

    @Test func responsesWithAChangingFieldKeptOutOfTheTableArriveIntact() {
        let client = H2Peer(.client)
        let server = H2Peer(.server)
        let policy = HPACKIndexPolicy()
        for round in 0..<300 {
            let tag = client.request("GET", "/")
            H2Wire.settle(client, server)
            let serverTag = server.requestsEnded.removeFirst()
            let stream = server.streams[serverTag]!.id
            let fields = [("content-type", "application/json"), ("x-request-id", "gw-\(round)"),
                          ("x-stamp", String(round * 7919)), ("x-gateway-attempts", "1")]
            let block = server.headerBlock
            block.removeAll()
            block.add(":status", decimal: 200)
            // Every name and value in one array, valid until nghttp2 has copied them in submitResponse.
            let text = fields.flatMap { Array($0.0.utf8) + Array($0.1.utf8) }
            text.withUnsafeBytes { raw in
                var offset = 0
                for (name, value) in fields {
                    let n = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + name.utf8.count])
                    offset += name.utf8.count
                    let v = UnsafeRawBufferPointer(rebasing: raw[offset..<offset + value.utf8.count])
                    offset += value.utf8.count
                    block.add(name: n, value: v, stable: false, indexed: policy.shouldIndex(name: n, value: v))
                }
                #expect(server.session.submitResponse(stream, headers: block, body: nil))
            }
            H2Wire.settle(client, server)
            let got = client.streams[tag]!
            #expect(got.header(":status") == "200")
            for (name, value) in fields { #expect(got.header(name) == value) }
        }
    }
}

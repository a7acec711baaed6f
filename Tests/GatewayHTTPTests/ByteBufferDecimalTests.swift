import GatewayIO
import Testing

@Suite struct ByteBufferDecimalTests {
    @Test func decimalsMatchTheirDescription() {
        var values = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 12345, 100_000_000, 999_999_999, 1_000_000_000,
                      Int.max, Int.min, -1, -10, -99, -100]
        var power = 1
        while power < Int.max / 10 {
            power *= 10
            values += [power - 1, power, power + 1]
        }
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 1)
        defer { memory.deallocate() }
        for value in values {
            var buffer = ByteBuffer()
            buffer.attach(memory, capacity: 64, origin: 0)
            buffer.append(byte: UInt8(ascii: "<"))
            buffer.append(decimal: value)
            buffer.append(byte: UInt8(ascii: ">"))
            let text = String(decoding: UnsafeRawBufferPointer(start: buffer.readPointer, count: buffer.readableBytes), as: UTF8.self)
            #expect(text == "<\(value)>")
            _ = buffer.detach()
        }
    }
}

import GatewayIO
import Testing

@Suite struct ByteBufferDecimalTests {
    /// Every length boundary: powers of ten ±1 and powers of two ±1 (where the bit length changes), both signs,
    /// the extremes, and a spread of others.
    static var values: [Int] {
        var values = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 12345, 100_000_000, 999_999_999, 1_000_000_000,
                      Int.max, Int.min, Int.min + 1, Int.max - 1, -1, -9, -10, -99, -100]
        var power = 1
        while power < Int.max / 10 {
            power *= 10
            values += [power - 1, power, power + 1, -(power - 1), -power, -(power + 1)]
        }
        for bit in 1..<63 {
            let two = 1 << bit
            values += [two - 1, two, two + 1, -two]
        }
        var seed: UInt64 = 0x2545_F491_4F6C_DD1D
        for _ in 0..<2000 {
            seed ^= seed << 13
            seed ^= seed >> 7
            seed ^= seed << 17
            // Every magnitude: a random value shifted to a random bit length.
            values.append(Int(truncatingIfNeeded: seed) >> Int(seed % 64))
        }
        return values
    }

    @Test func decimalsMatchTheirDescription() {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 1)
        defer { memory.deallocate() }
        for value in ByteBufferDecimalTests.values {
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

    /// The digits fill a buffer of exactly their length, at every alignment, and touch no byte around it.
    @Test func exactFitAtEveryOffsetTouchesNothingElse() {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 48, alignment: 8)
        defer { memory.deallocate() }
        for value in ByteBufferDecimalTests.values.prefix(400) {
            let expected = Array("\(value)".utf8)
            for offset in 0..<8 {
                memory.initializeMemory(as: UInt8.self, repeating: 0xEE, count: 48)
                var buffer = ByteBuffer()
                buffer.attach(memory + 8 + offset, capacity: expected.count, origin: 0)
                buffer.append(decimal: value)
                #expect(buffer.readableBytes == expected.count && buffer.writableBytes == 0)
                let all = Array(UnsafeRawBufferPointer(start: memory, count: 48))
                #expect(Array(all[(8 + offset)..<(8 + offset + expected.count)]) == expected, "\(value) at offset \(offset)")
                #expect(all[..<(8 + offset)].allSatisfy { $0 == 0xEE } && all[(8 + offset + expected.count)...].allSatisfy { $0 == 0xEE })
                _ = buffer.detach()
            }
        }
    }
}

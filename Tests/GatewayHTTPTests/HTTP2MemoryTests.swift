// HTTP2Memory through the table nghttp2 calls: every size class and a large block keep their bytes, realloc keeps
// the old content, calloc zeroes, and a freed block is handed out again.
import CNghttp2
import Testing

@testable import GatewayHTTP

@Suite("HTTP/2 session memory")
struct HTTP2MemoryTests {
    private func fill(_ pointer: UnsafeMutableRawPointer, _ count: Int, seed: UInt8) {
        for i in 0..<count { pointer.storeBytes(of: UInt8(truncatingIfNeeded: i &* 31) &+ seed, toByteOffset: i, as: UInt8.self) }
    }

    private func holds(_ pointer: UnsafeMutableRawPointer, _ count: Int, seed: UInt8) -> Bool {
        (0..<count).allSatisfy { pointer.load(fromByteOffset: $0, as: UInt8.self) == UInt8(truncatingIfNeeded: $0 &* 31) &+ seed }
    }

    @Test func everySizeKeepsItsBytesWhileOthersAreLive() {
        let memory = HTTP2Memory()
        let table = memory.table
        let sizes = [0, 1, 47, 48, 49, 112, 113, 500, 1000, 2032, 2033, 4080, 8176, 8177, 20_000, 100_000]
        var live: [(UnsafeMutableRawPointer, Int, UInt8)] = []
        for (index, size) in sizes.enumerated() {
            let pointer = table.malloc!(size, table.mem_user_data)!
            #expect(Int(bitPattern: pointer) % 16 == 0, "nghttp2 stores 8-byte fields: blocks are 16-byte aligned")
            fill(pointer, size, seed: UInt8(index))
            live.append((pointer, size, UInt8(index)))
        }
        for (pointer, size, seed) in live { #expect(holds(pointer, size, seed: seed), "size \(size)") }
        for (pointer, _, _) in live { table.free!(pointer, table.mem_user_data) }
        table.free!(nil, table.mem_user_data)
    }

    @Test func aFreedBlockIsReusedForItsClass() {
        let memory = HTTP2Memory()
        let table = memory.table
        let first = table.malloc!(300, table.mem_user_data)!
        table.free!(first, table.mem_user_data)
        let second = table.malloc!(260, table.mem_user_data)!
        #expect(second == first, "same class (512): the free list hands the block back")
        table.free!(second, table.mem_user_data)
    }

    @Test func reallocKeepsTheContentAcrossClassesAndIntoLargeBlocks() {
        let memory = HTTP2Memory()
        let table = memory.table
        var pointer = table.realloc!(nil, 40, table.mem_user_data)!
        fill(pointer, 40, seed: 7)
        var size = 40
        for next in [45, 100, 1000, 8176, 9000, 50_000, 30] {
            pointer = table.realloc!(pointer, next, table.mem_user_data)!
            #expect(holds(pointer, min(size, next), seed: 7), "grown from \(size) to \(next)")
            fill(pointer, next, seed: 7)
            size = next
        }
        table.free!(pointer, table.mem_user_data)
    }

    @Test func callocZeroesEvenARecycledBlock() {
        let memory = HTTP2Memory()
        let table = memory.table
        let dirty = table.malloc!(200, table.mem_user_data)!
        fill(dirty, 200, seed: 1)
        table.free!(dirty, table.mem_user_data)
        let clean = table.calloc!(10, 20, table.mem_user_data)!
        #expect((0..<200).allSatisfy { clean.load(fromByteOffset: $0, as: UInt8.self) == 0 })
        table.free!(clean, table.mem_user_data)
        #expect(table.calloc!(Int.max, 2, table.mem_user_data) == nil, "an overflowing size is refused")
    }

    @Test func manyBlocksOfOneClassPastTheCacheBound() {
        let memory = HTTP2Memory()
        let table = memory.table
        let blocks = (0..<2000).map { _ in table.malloc!(100, table.mem_user_data)! }
        for (index, block) in blocks.enumerated() { fill(block, 100, seed: UInt8(truncatingIfNeeded: index)) }
        for (index, block) in blocks.enumerated() { #expect(holds(block, 100, seed: UInt8(truncatingIfNeeded: index))) }
        for block in blocks { table.free!(block, table.mem_user_data) }
        let again = (0..<2000).map { _ in table.malloc!(100, table.mem_user_data)! }
        #expect(Set(again).count == 2000)
        for block in again { table.free!(block, table.mem_user_data) }
    }
}

import CNghttp2
#if canImport(Glibc)
import Glibc
#endif

/// The memory of one nghttp2 session: size-class free lists in front of malloc.
///
/// nghttp2 allocates and frees a stream, its outbound items and its header copies for every request, about six
/// blocks. Through glibc that costs some 200 instructions a block; a free list costs a tenth of that, and the
/// blocks stay warm in the cache. A session lives on one thread, so the lists need no lock.
///
/// Every block carries a 16-byte prefix with its class (or `largeClass` for a block past the biggest class,
/// which goes straight to malloc). Each class keeps at most `cachedBytesPerClass` of free blocks (512 KiB a session
/// in all), so a burst of streams does not pin its peak memory for the life of the connection; `deinit` returns
/// the rest.
final class HTTP2Memory {
    /// Classes of 64, 128, ... 8192 bytes, prefix included.
    private static let classCount = 8
    private static let smallestShift = 6
    private static let prefix = 16
    private static let largeClass = UInt64.max
    private static let cachedBytesPerClass = 64 * 1024

    private struct FreeList {
        var head: UnsafeMutableRawPointer?
        var count: Int
    }

    private let lists: UnsafeMutablePointer<FreeList>
    /// Handed to nghttp2's `*_new3`, which copies it. Its user data is the lists themselves, not this object:
    /// reaching them costs no reference counting.
    private(set) var table = nghttp2_mem()

    init() {
        lists = .allocate(capacity: HTTP2Memory.classCount)
        lists.initialize(repeating: FreeList(head: nil, count: 0), count: HTTP2Memory.classCount)
        table.mem_user_data = UnsafeMutableRawPointer(lists)
        table.malloc = { size, user in HTTP2Memory.allocate(size, HTTP2Memory.lists(user)) }
        table.free = { pointer, user in HTTP2Memory.release(pointer, HTTP2Memory.lists(user)) }
        table.calloc = { count, size, user in
            let (total, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow, let pointer = HTTP2Memory.allocate(total, HTTP2Memory.lists(user)) else { return nil }
            memset(pointer, 0, total)
            return pointer
        }
        table.realloc = { pointer, size, user in HTTP2Memory.reallocate(pointer, size, HTTP2Memory.lists(user)) }
    }

    deinit {
        for index in 0..<HTTP2Memory.classCount {
            var next = lists[index].head
            while let block = next {
                next = block.load(as: UnsafeMutableRawPointer?.self)
                free(block - HTTP2Memory.prefix)
            }
        }
        lists.deallocate()
    }

    @inline(__always)
    private static func lists(_ user: UnsafeMutableRawPointer?) -> UnsafeMutablePointer<FreeList> {
        user.unsafelyUnwrapped.assumingMemoryBound(to: FreeList.self)
    }

    /// The class that holds `size` bytes after the prefix, or nil for a large block.
    @inline(__always)
    private static func sizeClass(_ size: Int) -> Int? {
        let total = size + prefix
        guard total <= 1 << (smallestShift + classCount - 1) else { return nil }
        let shift = total <= 1 << smallestShift ? smallestShift : Int.bitWidth - (total - 1).leadingZeroBitCount
        return shift - smallestShift
    }

    @inline(__always)
    private static func capacity(ofClass index: Int) -> Int { (1 << (smallestShift + index)) - prefix }

    private static func allocate(_ size: Int, _ lists: UnsafeMutablePointer<FreeList>) -> UnsafeMutableRawPointer? {
        guard let index = HTTP2Memory.sizeClass(size) else {
            guard let block = malloc(size + HTTP2Memory.prefix) else { return nil }
            block.storeBytes(of: HTTP2Memory.largeClass, as: UInt64.self)
            return block + HTTP2Memory.prefix
        }
        if let pointer = lists[index].head {
            lists[index].head = pointer.load(as: UnsafeMutableRawPointer?.self)
            lists[index].count -= 1
            return pointer
        }
        guard let block = malloc(1 << (HTTP2Memory.smallestShift + index)) else { return nil }
        block.storeBytes(of: UInt64(index), as: UInt64.self)
        return block + HTTP2Memory.prefix
    }

    private static func release(_ pointer: UnsafeMutableRawPointer?, _ lists: UnsafeMutablePointer<FreeList>) {
        guard let pointer else { return }
        let sizeClass = (pointer - HTTP2Memory.prefix).load(as: UInt64.self)
        guard sizeClass != HTTP2Memory.largeClass,
              lists[Int(sizeClass)].count < HTTP2Memory.cachedBytesPerClass >> (HTTP2Memory.smallestShift + Int(sizeClass)) else {
            free(pointer - HTTP2Memory.prefix)
            return
        }
        let index = Int(sizeClass)
        pointer.storeBytes(of: lists[index].head, as: UnsafeMutableRawPointer?.self)
        lists[index].head = pointer
        lists[index].count += 1
    }

    private static func reallocate(_ pointer: UnsafeMutableRawPointer?, _ size: Int,
                                   _ lists: UnsafeMutablePointer<FreeList>) -> UnsafeMutableRawPointer? {
        guard let pointer else { return allocate(size, lists) }
        let sizeClass = (pointer - HTTP2Memory.prefix).load(as: UInt64.self)
        if sizeClass == HTTP2Memory.largeClass {
            guard let block = realloc(pointer - HTTP2Memory.prefix, size + HTTP2Memory.prefix) else { return nil }
            return block + HTTP2Memory.prefix
        }
        let capacity = HTTP2Memory.capacity(ofClass: Int(sizeClass))
        if size <= capacity { return pointer }
        guard let moved = allocate(size, lists) else { return nil }
        moved.copyMemory(from: pointer, byteCount: capacity)
        release(pointer, lists)
        return moved
    }
}

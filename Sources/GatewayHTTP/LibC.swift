#if canImport(Glibc)
import Glibc
#endif

@inline(__always)
func memchrC(_ pointer: UnsafeRawPointer, _ byte: Int32, _ count: Int) -> UnsafeRawPointer? {
    UnsafeRawPointer(memchr(pointer, byte, count))
}

@inline(__always)
func memcmpC(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Int32 {
    memcmp(a, b, count)
}

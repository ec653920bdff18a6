// Reads the malloc count of perf/lib/malloccount.so when the benchmark runs
// under it (LD_PRELOAD, set by the perf/ scripts); nil otherwise.
import Foundation

enum MallocCounter {
    private typealias Fn = @convention(c) () -> UInt64
    private static let fn: Fn? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "ws_malloc_count") else { return nil }
        return unsafeBitCast(sym, to: Fn.self)
    }()

    /// Process-wide count of malloc/calloc/realloc/aligned allocations so far.
    static var count: UInt64? { fn?() }
}

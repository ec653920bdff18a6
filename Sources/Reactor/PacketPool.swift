// Packets that outlive their batch. A `DatagramSocket` receives into buffers
// of a pool (Datagram.swift): for the batch, the socket holds one reference to
// each buffer it posted; a handler that wants a datagram later keeps it
// (`DatagramSocket.keep(i)`: one more reference, its handle) and releases the
// handle when done — a reorder buffer waiting for a gap, a queue waiting for a
// handshake. Every other buffer goes back to the free list when the handler
// returns, and the socket posts buffers from the free list for the next
// receive. Bytes that did not arrive in a pool buffer (a TUN read, a ring
// record) can be copied into one with `hold`: the one copy such a packet pays.
//
//   take() ─▶ handle (1 reference) ─▶ buffer(h): written (by the kernel, or `hold`)
//          ─▶ retain(h): one more holder (two packets of one GRO run kept apart)
//          ─▶ release(h) by each holder; at the last, the buffer is free again
//
// One slab allocated at start (count × size, size rounded up to 64 bytes,
// 64-byte aligned), and the bookkeeping beside it (free stack, generation,
// reference count, length per buffer), allocated once too: take, retain and
// release are O(1) and allocate nothing. One pool per reactor, used on that
// reactor's thread only (no locks). A handle is the buffer's index and its
// generation, which moves on when the buffer is freed: a handle released once
// too often, or used after its buffer was freed, is caught (a refused release,
// counted; a precondition on access).
public struct PacketHandle: Hashable, Sendable {
    public let index: UInt32
    public let generation: UInt32
}

public struct PacketPoolCounters: Sendable, Equatable {
    /// `take` found no free buffer (the caller posts fewer receive slots, or drops and counts).
    public var exhausted = 0
    /// `release` or `retain` of a handle whose buffer was already freed (a stale handle: refused).
    public var staleHandles = 0
}

public final class PacketPool {
    public let count: Int
    public let bufferSize: Int
    public private(set) var counters = PacketPoolCounters()
    /// The first byte of buffer 0; buffer i starts at `base + i × bufferSize` (the io_uring backend's addressing).
    let base: UnsafeMutableRawPointer
    private let free: UnsafeMutablePointer<UInt32>
    private var freeCount: Int
    private let generations: UnsafeMutablePointer<UInt32>
    private let references: UnsafeMutablePointer<UInt32>
    private let lengths: UnsafeMutablePointer<Int>

    /// `count` buffers of `bufferSize` bytes each (rounded up to a multiple of 64).
    public init(count: Int, bufferSize: Int) {
        precondition(count > 0 && count < Int(UInt32.max) && bufferSize > 0)
        self.count = count
        self.bufferSize = (bufferSize + 63) & ~63
        base = .allocate(byteCount: count * self.bufferSize, alignment: 64)
        free = .allocate(capacity: count)
        // Index 0 on top: buffers are handed out from the start of the slab.
        for i in 0..<count { free[i] = UInt32(count - 1 - i) }
        freeCount = count
        generations = .allocate(capacity: count)
        generations.initialize(repeating: 0, count: count)
        references = .allocate(capacity: count)
        references.initialize(repeating: 0, count: count)
        lengths = .allocate(capacity: count)
        lengths.initialize(repeating: 0, count: count)
    }

    deinit {
        base.deallocate()
        free.deallocate()
        generations.deallocate()
        references.deallocate()
        lengths.deallocate()
    }

    /// Buffers free now.
    public var available: Int { freeCount }

    /// A free buffer with one reference (the caller's), or nil (counted) when every buffer is held.
    /// Last freed, first taken: the buffers a steady flow uses stay in cache.
    @inline(__always)
    public func take() -> PacketHandle? {
        guard freeCount > 0 else {
            counters.exhausted += 1
            return nil
        }
        freeCount -= 1
        let i = Int(free[freeCount])
        references[i] = 1
        lengths[i] = 0
        return PacketHandle(index: UInt32(i), generation: generations[i])
    }

    /// One more holder of `h`'s buffer: each holder releases once. False (counted) for a stale handle.
    @discardableResult @inline(__always)
    public func retain(_ h: PacketHandle) -> Bool {
        guard isLive(h) else {
            counters.staleHandles += 1
            return false
        }
        references[Int(h.index)] += 1
        return true
    }

    /// Drops one reference; the last frees the buffer (its old handles become stale).
    /// False (counted) for a stale handle: released already, or never taken.
    @discardableResult @inline(__always)
    public func release(_ h: PacketHandle) -> Bool {
        guard isLive(h) else {
            counters.staleHandles += 1
            return false
        }
        let i = Int(h.index)
        references[i] -= 1
        if references[i] == 0 {
            generations[i] &+= 1
            free[freeCount] = h.index
            freeCount += 1
        }
        return true
    }

    /// Whether `h` is held (taken, and not released by its last holder since).
    @inline(__always)
    public func isLive(_ h: PacketHandle) -> Bool {
        let i = Int(h.index)
        return i < count && references[i] > 0 && generations[i] == h.generation
    }

    /// How many holders `h`'s buffer has (0 for a stale handle).
    public func holders(_ h: PacketHandle) -> Int { isLive(h) ? Int(references[Int(h.index)]) : 0 }

    /// The whole buffer of `h` (valid until its last holder releases it).
    @inline(__always)
    public func buffer(_ h: PacketHandle) -> UnsafeMutableRawBufferPointer {
        precondition(isLive(h), "a packet handle used after its buffer was freed")
        return UnsafeMutableRawBufferPointer(start: base + Int(h.index) * bufferSize, count: bufferSize)
    }

    /// The packet's bytes at the start of the buffer (what `setLength` or `hold` said).
    public func packet(_ h: PacketHandle) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: buffer(h)[0..<lengths[Int(h.index)]])
    }

    public func setLength(_ h: PacketHandle, _ n: Int) {
        precondition(isLive(h) && n >= 0 && n <= bufferSize)
        lengths[Int(h.index)] = n
    }

    /// Copies `bytes` into a new buffer: the one copy a packet from outside the pool pays.
    /// Nil when it is larger than a buffer or the pool is empty (counted).
    public func hold(_ bytes: UnsafeRawBufferPointer) -> PacketHandle? {
        guard bytes.count <= bufferSize, let h = take() else { return nil }
        if let src = bytes.baseAddress { buffer(h).baseAddress!.copyMemory(from: src, byteCount: bytes.count) }
        lengths[Int(h.index)] = bytes.count
        return h
    }

    /// The live handle of buffer `index` (the io_uring backend: the kernel names a buffer by its index).
    @inline(__always)
    func handle(at index: Int) -> PacketHandle {
        PacketHandle(index: UInt32(index), generation: generations[index])
    }

    /// Whether `p` lies inside buffer `h` (a view's data pointer, for a holder that keeps an offset).
    public func offset(of p: UnsafeRawPointer, in h: PacketHandle) -> Int? {
        let start = UnsafeRawPointer(buffer(h).baseAddress!)
        let off = p - start
        return off >= 0 && off <= bufferSize ? off : nil
    }
}

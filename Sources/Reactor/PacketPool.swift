// Packets that outlive their batch. Received views are valid only during the
// handler call (Datagram.swift) and ring records are freed at the end of a
// batch (ByteRing.swift); a packet that must wait — in a reorder buffer for a
// gap to fill, or in a queue for a handshake — is copied once into a buffer
// of this pool and held by its handle until released.
//
//   take() ──▶ handle ──▶ buffer(h): write the packet, setLength(h, n)
//                      ──▶ (held across batches by whoever owns the handle)
//                      ──▶ release(h): the buffer is free again
//
// One slab allocated at start (count × size, 64-byte aligned), a free list as a
// stack of indices: take and release are O(1) and allocate nothing. One pool
// per lane, used on that lane's thread only (no locks). A handle carries a
// generation, so a handle released twice, or used after release, is caught.
public struct PacketHandle: Hashable, Sendable {
    let index: UInt32
    let generation: UInt32
}

public final class PacketPool {
    public let count: Int
    public let bufferSize: Int
    private let slab: UnsafeMutableRawPointer
    private var free: [UInt32]
    private var generations: [UInt32]
    private var lengths: [Int]
    private var inUse: [Bool]

    /// `count` buffers of `bufferSize` bytes each.
    public init(count: Int, bufferSize: Int) {
        precondition(count > 0 && count < Int(UInt32.max) && bufferSize > 0)
        self.count = count
        self.bufferSize = (bufferSize + 63) & ~63
        slab = .allocate(byteCount: count * self.bufferSize, alignment: 64)
        free = (0..<UInt32(count)).reversed().map { $0 }
        generations = Array(repeating: 0, count: count)
        lengths = Array(repeating: 0, count: count)
        inUse = Array(repeating: false, count: count)
    }

    deinit { slab.deallocate() }

    /// Buffers free now.
    public var available: Int { free.count }

    /// A free buffer, or nil when every buffer is held (the caller drops and counts).
    public func take() -> PacketHandle? {
        guard let i = free.popLast() else { return nil }
        inUse[Int(i)] = true
        lengths[Int(i)] = 0
        return PacketHandle(index: i, generation: generations[Int(i)])
    }

    /// Gives the buffer back. A stale handle (released already) is refused: false.
    @discardableResult
    public func release(_ h: PacketHandle) -> Bool {
        guard isLive(h) else { return false }
        let i = Int(h.index)
        inUse[i] = false
        generations[i] &+= 1
        free.append(h.index)
        return true
    }

    /// Whether `h` is held (taken and not released since).
    public func isLive(_ h: PacketHandle) -> Bool {
        let i = Int(h.index)
        return i < count && inUse[i] && generations[i] == h.generation
    }

    /// The whole buffer of `h` (valid until it is released).
    public func buffer(_ h: PacketHandle) -> UnsafeMutableRawBufferPointer {
        precondition(isLive(h), "a packet handle used after release")
        return UnsafeMutableRawBufferPointer(start: slab + Int(h.index) * bufferSize, count: bufferSize)
    }

    /// The packet's bytes in the buffer (what `setLength` said).
    public func packet(_ h: PacketHandle) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: buffer(h)[0..<lengths[Int(h.index)]])
    }

    public func setLength(_ h: PacketHandle, _ n: Int) {
        precondition(isLive(h) && n >= 0 && n <= bufferSize)
        lengths[Int(h.index)] = n
    }

    /// Copies `bytes` into a new buffer: the one copy a packet that must wait pays.
    public func hold(_ bytes: UnsafeRawBufferPointer) -> PacketHandle? {
        guard bytes.count <= bufferSize, let h = take() else { return nil }
        if let base = bytes.baseAddress { buffer(h).baseAddress!.copyMemory(from: base, byteCount: bytes.count) }
        lengths[Int(h.index)] = bytes.count
        return h
    }
}

// Variable-length records handed from one thread to another, copied once, never allocated.
//
// The engine's reactors use it to hand TUN packets and datagrams to the
// reactor that owns a session (one ring per ordered pair of reactors; the
// Mailbox's eventfd wakes the consumer). One producer thread, one consumer
// thread; storage allocated once at init; no locks: one atomic index per side
// (as SPSCQueue in Mailbox.swift), written with release, read with acquire.
// The consumer frees records one at a time (`peek`, `release`) or a batch at
// once (`readNext` until nil, work in place, `releaseRead`); not both in one batch.
//
// Indices `head` (consumer) and `tail` (producer) count bytes since the start
// and only grow; a byte at index i lives at offset i & (capacity - 1). A
// record is a 16-byte prefix and its body, padded to 16 bytes:
//
//   offset p                 p+8                p+16
//   +------------------------+------------------+-------------------------+
//   | length (Int)           | body offset (Int)| body, `length` bytes,   |
//   |                        | = p + 16         | padded to 16            |
//   +------------------------+------------------+-------------------------+
//
// Records never wrap. When a record does not fit before the end of the
// storage, its prefix stays at p as a skip marker (body offset 0) and its body
// starts at offset 0; the bytes from p to the end are consumed with it:
//
//   0                                         p                  capacity
//   +----------------+------------------------+------+-----------+
//   | body (wrapped) |  older records ...     |prefix| (skipped) |
//   +----------------+------------------------+------+-----------+
//     ^ body offset 0                          length, 0
//
// Keeping the body (and not a second prefix) at 0 is what lets any record of
// up to capacity / 2 bytes fit into an empty ring at any position, so a
// producer waiting for room never waits forever (`maxLength`).
import Atomics

public final class ByteRing: @unchecked Sendable {
    /// Bytes of storage: a power of two.
    public let capacity: Int
    /// The longest record `reserve` ever grants (capacity / 2): it always fits once the ring is empty.
    public let maxLength: Int
    private let mask: Int
    private let storage: UnsafeMutableRawPointer
    private let head = ManagedAtomic<Int>(0)  // next byte to consume (consumer)
    private let tail = ManagedAtomic<Int>(0)  // next byte to produce (producer)

    // Producer only.
    private var producerTail = 0
    private var cachedHead = 0
    private var reservedEnd = -1  // tail after the reserved record; -1: none
    // Consumer only.
    private var consumerHead = 0
    private var cachedTail = 0
    private var peekedStride = 0  // bytes the peeked record takes; 0: none
    private var readCursor = 0  // next record `readNext` returns (>= consumerHead)

    static let prefixSize = 16

    /// `capacity` bytes, rounded up to a power of two (at least 64).
    public init(capacity: Int) {
        precondition(capacity > 0 && capacity <= 1 << 40)
        var c = 64
        while c < capacity { c <<= 1 }
        self.capacity = c
        maxLength = c / 2
        mask = c - 1
        storage = .allocate(byteCount: c, alignment: 64)
    }

    deinit { storage.deallocate() }

    @inline(__always) private static func padded(_ n: Int) -> Int { (n + 15) & ~15 }

    /// Producer only. Contiguous room for one record of `length` bytes (16-byte
    /// aligned start), or nil when the ring has not that much free room (or
    /// `length` > `maxLength`). Write into it, then `commit`. Reserving again
    /// before `commit` abandons the earlier reservation.
    @inline(__always)
    public func reserve(_ length: Int) -> UnsafeMutableRawPointer? {
        precondition(length >= 0)
        guard length <= maxLength else { return nil }
        let body = Self.padded(length)
        let t = producerTail
        let p = t & mask
        let toEnd = capacity - p
        let bodyOffset: Int
        let end: Int
        if Self.prefixSize + body <= toEnd {
            bodyOffset = p + Self.prefixSize
            end = t + Self.prefixSize + body
        } else {
            bodyOffset = 0
            end = t + toEnd + body
        }
        if end - cachedHead > capacity {
            cachedHead = head.load(ordering: .acquiring)
            if end - cachedHead > capacity { return nil }
        }
        // Unpublished until `commit`: the consumer does not read past `tail`.
        storage.storeBytes(of: length, toByteOffset: p, as: Int.self)
        storage.storeBytes(of: bodyOffset, toByteOffset: p + 8, as: Int.self)
        reservedEnd = end
        return storage + bodyOffset
    }

    /// Producer only: publishes the record last reserved (the consumer may see it from now on).
    @inline(__always)
    public func commit() {
        precondition(reservedEnd >= 0, "commit without reserve")
        producerTail = reservedEnd
        reservedEnd = -1
        tail.store(producerTail, ordering: .releasing)
    }

    /// Consumer only: the oldest published record, or nil. The same record until `release`.
    @inline(__always)
    public func peek() -> UnsafeMutableRawBufferPointer? {
        let h = consumerHead
        guard hasRecord(at: h) else { return nil }
        let (record, stride) = record(at: h)
        peekedStride = stride
        return record
    }

    /// Consumer only: frees the record `peek` returned.
    @inline(__always)
    public func release() {
        precondition(peekedStride > 0, "release without peek")
        consumerHead += peekedStride
        peekedStride = 0
        readCursor = max(readCursor, consumerHead)
        head.store(consumerHead, ordering: .releasing)
    }

    /// Consumer only: the published record after those `readNext` already
    /// returned, or nil. They all stay valid, and keep their room, until
    /// `releaseRead`: a lane reads a batch, works on it in place, sends it,
    /// then frees it at once (one release store per batch).
    @inline(__always)
    public func readNext() -> UnsafeMutableRawBufferPointer? {
        let r = readCursor
        guard hasRecord(at: r) else { return nil }
        let (record, stride) = record(at: r)
        readCursor = r + stride
        return record
    }

    /// Consumer only: frees every record `readNext` returned.
    @inline(__always)
    public func releaseRead() {
        guard readCursor != consumerHead else { return }
        consumerHead = readCursor
        peekedStride = 0
        head.store(consumerHead, ordering: .releasing)
    }

    /// Consumer only: is a record published at byte index `i`?
    @inline(__always) private func hasRecord(at i: Int) -> Bool {
        if i != cachedTail { return true }
        cachedTail = tail.load(ordering: .acquiring)
        return i != cachedTail
    }

    /// Consumer only: the record whose prefix is at byte index `i`, and the bytes it takes.
    @inline(__always) private func record(at i: Int) -> (UnsafeMutableRawBufferPointer, Int) {
        let p = i & mask
        let length = storage.load(fromByteOffset: p, as: Int.self)
        let bodyOffset = storage.load(fromByteOffset: p + 8, as: Int.self)
        // Body offset 0 is the skip marker: the body wrapped to the start.
        let stride = (bodyOffset == 0 ? capacity - p : Self.prefixSize) + Self.padded(length)
        return (UnsafeMutableRawBufferPointer(start: storage + bodyOffset, count: length), stride)
    }

    /// No record published and not released (a snapshot when read by the other side).
    public var isEmpty: Bool { head.load(ordering: .acquiring) == tail.load(ordering: .acquiring) }
}

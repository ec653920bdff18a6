// The anti-replay window of one receiving key (RFC 6479, as WireGuard's
// `replay.go`): a ring of 64-bit blocks, one bit per counter, sliding forward
// with the highest counter seen.
//
//   ring (128 blocks × 64 bits):  [b0][b1]...[b127]   block of counter c = (c / 64) mod 128
//   accepted:  c > last                       -> slide (zero the skipped blocks), set bit
//              last − c ≤ windowSize, bit 0    -> set bit
//   rejected:  c ≥ limit, last − c > windowSize, bit already set
//
// One block is slack: the block that holds `last` may be partly "ahead", so the
// guaranteed window is (blocks − 1) × 64 = 8128 counters, ≥ the 4096 the design
// asks for (multipath reorders deliberately; a deep window costs 1 KiB per key).
//
// Stored inline (InlineArray): no heap, no copy-on-write check on the data path.

import Support
import Wire
import Crypto

/// Sliding replay window for one receive key. Call `check` before decrypting (a
/// cheap reject of obvious replays) and `accept` only after the packet
/// authenticated: an unauthenticated counter must never move the window.
public struct ReplayWindow: Sendable {
    static let blocks = SessionConstants.replayWindowBlocks
    static let blockMask = UInt64(blocks - 1)
    public static let size: UInt64 = SessionConstants.replayWindowSize

    private var ring = InlineArray<128, UInt64>(repeating: 0)
    /// Highest counter accepted so far (meaningful once `any` is true).
    public private(set) var last: UInt64 = 0
    /// Counters at or above this are rejected (REJECT_AFTER_MESSAGES).
    public let limit: UInt64

    public init(limit: UInt64 = SessionConstants.rejectAfterMessages) {
        self.limit = limit
    }

    /// Would `counter` be accepted? Does not change the window. Inlined: called on a
    /// stored window (`Keypair.replay`), a call copied all 1 KiB of it first (a memcpy
    /// per received packet, seen in perf/throughput's profile, session 12).
    @inline(__always)
    public func check(_ counter: UInt64) -> Bool {
        guard counter < limit else { return false }
        if counter > last { return true }
        if last - counter > Self.size { return false }
        let block = Int((counter >> 6) & Self.blockMask)
        return ring[block] & (1 << (counter & 63)) == 0
    }

    /// Records `counter` as received; false if it is a replay, too old, or past
    /// the limit. Only for packets that already authenticated.
    @inline(__always)
    public mutating func accept(_ counter: UInt64) -> Bool {
        guard counter < limit else { return false }
        let blockIndex = counter >> 6
        if counter > last {
            // Slide forward: clear every block between the old head and the new
            // one (at most the whole ring), so stale bits do not alias new counters.
            let current = last >> 6
            let diff = min(blockIndex - current, UInt64(Self.blocks))
            var i: UInt64 = 1
            while i <= diff {
                ring[Int((current &+ i) & Self.blockMask)] = 0
                i += 1
            }
            last = counter
        } else if last - counter > Self.size {
            return false
        }
        let block = Int(blockIndex & Self.blockMask)
        let bit: UInt64 = 1 << (counter & 63)
        let old = ring[block]
        ring[block] = old | bit
        return old & bit == 0
    }
}

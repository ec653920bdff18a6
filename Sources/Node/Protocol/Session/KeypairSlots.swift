// One peer's three keypair slots (WireGuard §6.2, wireguard-go `noise-protocol.go`
// `BeginSymmetricSession` / `ReceivedWithKeypair`), written once for the two
// places that open and seal under them:
//
//   PeerSession (NodeCore, reactor 0)              SessionShard (the owning reactor, at 1..N)
//   ────────────────────────────────────────────   ─────────────────────────────────────────────
//   seal: keepalives, control; data only when      seal: data for the peers it owns
//         not sharded (unit tests, benchmarks)
//   open: DATA only when not sharded               open: DATA for the peers it owns
//   promote on the first packet under `next`       promote, then report it (ShardReport.promoted)
//   install a new keypair (handshake completed)    install a copy of reactor 0's slots
//
// Slots:
//   current   what we seal under; the peer sends under it too
//   next      responder only: keys from an initiation we answered, unconfirmed
//             until the peer's first packet under them (then: promote)
//   previous  the keys `current` replaced: packets in flight under them still open
//
// The rotation rules and why they depart from wireguard-go are in PeerSession.swift.
// Reactor 0 hands the owning reactor a copy of the slots (`Tunnels.keys(of:)`,
// `SessionShard.install`); each side then moves its own copy the same way.
// The data path (`open`, `seal`) allocates nothing and calls nothing generic:
// the slots and their replay windows are inline, picked by index comparison.

import Support
import Wire

package struct KeypairSlots: Sendable {
    var current: Keypair?
    var previous: Keypair?
    var next: Keypair?

    init(current: Keypair? = nil, previous: Keypair? = nil, next: Keypair? = nil) {
        self.current = current
        self.previous = previous
        self.next = next
    }

    /// What opening one DATA message under the slots gave. One case per
    /// outcome, so "promote after a failure" cannot be written.
    enum Opened: Equatable {
        /// Authenticated and not a replay. `underNext`: it was the first packet
        /// under `next` (the peer has confirmed those keys): the caller promotes
        /// once it has checked whatever else it must (`promote()`).
        case opened(underNext: Bool)
        /// Refused, and why (no slot has the index, keys expired, replay, AEAD failed).
        case rejected(DropReason)
    }

    /// Opens the DATA message of `length` bytes at `base` in place under the
    /// slot whose local index is `index`: current first (the common case), then
    /// next, then previous. Changes only that slot's replay window.
    @inline(__always)
    mutating func open(index: UInt32, counter: UInt64, _ base: UnsafeMutableRawPointer, length: Int,
                       now: Instant, timings: SessionTimings) -> Opened {
        let outcome: Keypair.OpenOutcome?
        var underNext = false
        if current?.localIndex == index {
            outcome = current?.open(base, length: length, counter: counter, now: now, timings: timings)
        } else if next?.localIndex == index {
            outcome = next?.open(base, length: length, counter: counter, now: now, timings: timings)
            underNext = true
        } else if previous?.localIndex == index {
            outcome = previous?.open(base, length: length, counter: counter, now: now, timings: timings)
        } else {
            outcome = nil
        }
        switch outcome {
        case nil: return .rejected(.unknownIndex)
        case .expired?: return .rejected(.keyExpired)
        case .replay?: return .rejected(.replay)
        case .authFailed?: return .rejected(.authFailed)
        case .badFlags?: return .rejected(.unknownType)
        case .opened?: return .opened(underNext: underNext)
        }
    }

    /// Seals under `current` in place (geometry as `Keypair.seal`); nil without current keys.
    @inline(__always)
    mutating func seal(_ base: UnsafeMutableRawPointer, payloadOffset: Int, payloadLength: Int, flags: UInt8 = 0,
                       source: UnsafeRawPointer? = nil, now: Instant, timings: SessionTimings) -> Keypair.SealOutcome? {
        current?.seal(base, payloadOffset: payloadOffset, payloadLength: payloadLength, flags: flags, source: source,
                      now: now, timings: timings)
    }

    /// Whether `current` negotiated DATA header flags (partial inner checksums may be sent under it).
    var headerFlags: Bool { current?.keys.headerFlags ?? false }

    /// The first packet under `next` arrived: previous <- current, current <- next.
    /// Returns the local index of the keypair that fell out (the caller frees it).
    mutating func promote() -> UInt32? {
        let retired = previous?.localIndex
        previous = current
        current = next
        next = nil
        return retired
    }

    /// Initiator, response consumed: previous <- current, current <- `fresh`
    /// (`next`, if any, stays). Returns the local index that fell out.
    mutating func installInitiated(_ fresh: Keypair) -> UInt32? {
        let retired = previous?.localIndex
        previous = current
        current = fresh
        return retired
    }

    /// Responder, initiation consumed: next <- `fresh` (current unchanged).
    /// Returns the local index of the unconfirmed `next` it replaced.
    mutating func installResponded(_ fresh: Keypair) -> UInt32? {
        let stale = next?.localIndex
        next = fresh
        return stale
    }

    /// Whether a slot holds the keypair with local index `index`.
    func holds(_ index: UInt32) -> Bool {
        current?.localIndex == index || next?.localIndex == index || previous?.localIndex == index
    }

    /// Creation time of the oldest keypair held (the next to expire).
    var oldestCreatedAt: Instant? {
        var earliest = previous?.createdAt
        if let c = current?.createdAt, earliest.map({ c < $0 }) ?? true { earliest = c }
        if let c = next?.createdAt, earliest.map({ c < $0 }) ?? true { earliest = c }
        return earliest
    }
}

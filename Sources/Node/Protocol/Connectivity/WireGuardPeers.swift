// Stock WireGuard peers inside NodeCore (issue 16; seed 2.5).
//
// A WireGuard peer (`wireguard = true` in the config) is a roster member with
// its X25519 key and no capabilities beyond its tunnel. The session layer runs
// WireGuard's handshake suite for it (Crypto/WireGuardHandshake.swift) and the
// same transport, keypair slots and timers as for Whalescale peers (WireGuard's
// own: PeerSession, SessionTimers). NodeCore keeps it to one direct path:
//
//   never sent to it      control messages (PATH_PING/PONG, candidates, gossip,
//                         rendezvous: `sendControlBytes` refuses), PATH_PROBE
//                         (recovery skips it), RELAY (never a relay target)
//   never taken from it   control messages (`control_not_allowed`), RELAY as sender
//   its path              the configured `endpoint`, active from the start; or,
//                         without one, the source of its first authenticated handshake
//   roaming (monitored)   an authenticated packet from another source is counted
//                         and shown (`wsctl status`: `roam`), and the path moves only
//                         under PathManager's `roams` rule, as for any member: a
//                         source of the same or a better class (direct, LAN) on
//                         traffic (data or keepalive); a worse one only after the
//                         active path went quiet (`pathQuiet`)
//
// Padding (whitepaper §5.4.6): WireGuard pads each plaintext to a multiple of
// 16 bytes; the IP header's own length says where a received packet ends. We
// pad what we send to a WireGuard peer the same way when the buffer has the
// room (the engine's TSO slots are cut to size and have none: those segments go
// unpadded, which every WireGuard receiver accepts).

import Support
import Wire

/// Authenticated packets from a WireGuard peer at a source other than its active path.
public struct WireGuardRoamMonitor: Sendable, Equatable {
    /// How many such packets arrived.
    public var newSources: UInt64 = 0
    /// How many of them moved the path (under PathManager's rule).
    public var taken: UInt64 = 0
    /// The last such source, and the path it was not (or no longer) on.
    public var lastSource: Endpoint?
    public var lastFrom: Endpoint?
    public var lastAt: Instant?

    public init() {}

    mutating func sawNewSource(_ source: Endpoint, from old: Endpoint, taken moved: Bool, now: Instant) {
        newSources += 1
        if moved { taken += 1 }
        lastSource = source
        lastFrom = old
        lastAt = now
    }
}

/// The true length of a padded IP packet (WireGuard pads to 16 bytes).
enum WireGuardPadding {
    /// Zero-pads `base[payloadOffset + payloadLength ...]` to a multiple of 16
    /// and returns the padded length, when that and the tag fit in `capacity`;
    /// otherwise `payloadLength` (nothing written). No allocation.
    @inline(__always)
    static func pad(_ base: UnsafeMutableRawPointer, payloadOffset: Int, payloadLength: Int, capacity: Int) -> Int {
        let padded = (payloadLength + 15) & ~15
        guard padded > payloadLength, payloadOffset + padded + DataMessage.tagSize <= capacity else { return payloadLength }
        (base + payloadOffset + payloadLength).initializeMemory(as: UInt8.self, repeating: 0, count: padded - payloadLength)
        return padded
    }

    /// `length` trimmed to the IPv4 total length or IPv6 payload length + 40,
    /// when that is shorter; `length` itself for anything else.
    @inline(__always)
    static func ipLength(_ payload: UnsafeRawBufferPointer, length: Int) -> Int {
        guard length >= 1 else { return length }
        switch payload[0] >> 4 {
        case 4 where length >= 20:
            let total = Int(payload[2]) << 8 | Int(payload[3])
            return total >= 20 && total < length ? total : length
        case 6 where length >= 40:
            let total = 40 + (Int(payload[4]) << 8 | Int(payload[5]))
            return total < length ? total : length
        default:
            return length
        }
    }
}

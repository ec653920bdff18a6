// The per-hop tag of a RELAY header (docs/wire.md, Wire/Relay.swift): proof that
// the hop that sent a RELAY holds the session with the hop that receives it.
//
//   tag = SipHash-2-4(key: the first 16 bytes of the hop session's relay-tag key
//                     for that direction, message: RELAY bytes 8 ..< 32 (member
//                     id, the inner datagram's first 16 bytes) || inner length
//                     (u32 LE)) [low 56 bits]
//
// SipHash-2-4 is libsodium's `crypto_shorthash` (a PRF made for short-input
// MACs): about 23 ns per tag here against about 290 ns for keyed BLAKE2b, and an
// anchor computes two per forwarded packet (check, then re-tag).
//
// The inner datagram's first 16 bytes are its type and indices, and for DATA
// the counter: unique per packet under one key, so no two packets share a tag
// input. The length is in it so that a captured packet cannot be grown. The
// rest of the inner datagram is not covered: it authenticates itself end to
// end, and a replay of a captured RELAY (the only forgery left without the key)
// reaches a target whose replay window drops it before any AEAD.
//
// Keys: each direction's transport key gives its relay-tag key, once per
// keypair (`TransportKey.init`): BLAKE2b-256(key: transport key, "whalescale
// relay tag v1"). The sender's send key and the receiver's receive key of one
// keypair are the same key, so both ends derive the same tag key; a keyed hash
// (a PRF) of the key is independent of it for anyone without it.
//
// One short hash per packet, on the stack: no allocation.

import Support
import Wire
import CSodium

/// One direction's 32-byte relay-tag key, stored inline.
public struct RelayTagKey: Equatable, Sendable {
    let k0, k1, k2, k3: UInt64

    static let context = Array("whalescale relay tag v1".utf8)

    /// The relay-tag key of the transport key `key` (32 bytes at `key`).
    init(transportKey key: UnsafeRawBufferPointer) {
        precondition(key.count == 32)
        var out: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &out) { o in
            Self.context.withUnsafeBufferPointer { m in
                _ = crypto_generichash_blake2b(o.baseAddress!.assumingMemoryBound(to: UInt8.self), 32,
                                               m.baseAddress, UInt64(m.count),
                                               key.baseAddress!.assumingMemoryBound(to: UInt8.self), 32)
            }
        }
        (k0, k1, k2, k3) = out
    }

    /// A key from 32 raw bytes (tests).
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32)
        var out: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &out) { $0.copyBytes(from: bytes) }
        (k0, k1, k2, k3) = out
    }
}

/// Computing, writing and checking the tag of a RELAY in place.
public enum RelayTag {
    /// The 7-byte tag of the RELAY of `length` bytes at `relay` (header and
    /// inner datagram parsed already: `length >= RelayMessage.minimumSize`), in
    /// the low 56 bits.
    @inline(__always)
    public static func compute(_ relay: UnsafeRawPointer, length: Int, key: RelayTagKey) -> UInt64 {
        // Message: id (8) + inner[0..<16] + inner length: 28 bytes, copied into a stack tuple.
        var m: (UInt64, UInt64, UInt64, UInt32) = (
            relay.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
            relay.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
            relay.loadUnaligned(fromByteOffset: 24, as: UInt64.self),
            UInt32(truncatingIfNeeded: length - RelayMessage.headerSize).littleEndian)
        var out: UInt64 = 0
        var k = (key.k0, key.k1)
        withUnsafeMutableBytes(of: &out) { o in
            withUnsafeBytes(of: &m) { mb in
                withUnsafeBytes(of: &k) { kb in
                    _ = crypto_shorthash_siphash24(o.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                   mb.baseAddress!.assumingMemoryBound(to: UInt8.self), 28,
                                                   kb.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        return UInt64(littleEndian: out) & 0x00FF_FFFF_FFFF_FFFF
    }

    /// Writes the tag of the RELAY at `relay` (its id and inner datagram in place) under `key`.
    @inline(__always)
    public static func seal(_ relay: UnsafeMutableRawPointer, length: Int, key: RelayTagKey) {
        RelayMessage.writeTag(compute(UnsafeRawPointer(relay), length: length, key: key), at: relay)
    }

    /// Whether the RELAY at `relay` carries the tag of `key` (nil: no key, false).
    @inline(__always)
    public static func check(_ relay: UnsafeRawPointer, length: Int, key: RelayTagKey?) -> Bool {
        guard let key else { return false }
        return RelayMessage.tag(at: relay) == compute(relay, length: length, key: key)
    }
}

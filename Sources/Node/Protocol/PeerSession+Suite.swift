// The handshake suite of a member's session: Whalescale's Noise_IK or WireGuard's
// Noise_IKpsk2 (with its `psk`). Everything that depends on the suite is here:
// the in-flight and received initiation in either suite, the macs, creating an
// initiation or a response, and WireGuard's padding of data to 16 bytes. The
// keypairs, the transport and the timers are the same for both
// (PeerSession.swift).

import Support
import Wire
import Crypto

/// Our initiation in flight, in the peer's suite.
enum PendingInitiation: Sendable {
    case whalescale(InitiatorHandshake)
    case wireGuard(WireGuardInitiator)

    /// The response's Noise part: nil unless it authenticates for this initiation.
    func consumeResponse(_ message: [UInt8]) -> (responderIndex: UInt32, keys: TransportKeys)? {
        switch self {
        case .whalescale(let s): WhalescaleIK.consumeResponse(message, state: s)
        case .wireGuard(let s): WireGuardIK.consumeResponse(message, state: s)
        }
    }
}

/// A peer's initiation that authenticated (Tunnels checked macs, membership and
/// the suite), in its suite: the session layer checks its timestamp and answers.
enum AuthenticatedInitiation: Sendable {
    case whalescale(ReceivedInitiation)
    case wireGuard(WireGuardReceivedInitiation)

    var timestamp: [UInt8] {
        switch self {
        case .whalescale(let r): r.timestamp
        case .wireGuard(let r): r.timestamp
        }
    }

    var senderIndex: UInt32 {
        switch self {
        case .whalescale(let r): r.senderIndex
        case .wireGuard(let r): r.senderIndex
        }
    }
}

extension PeerSession {
    /// mac1/mac2 for messages to a peer of this suite.
    static func makeMacs(suite: HandshakeSuiteID, peer: PublicKey) -> MacGenerator {
        suite == .wireGuard ? WireGuardIK.makeMacs(peer: peer) : WhalescaleIK.makeMacs(peer: peer)
    }

    /// The payload length to seal for a packet that lies in the caller's buffer:
    /// a WireGuard peer's packets are padded to 16 bytes (when there is room, and
    /// only when there are keys to seal them).
    @inline(__always)
    func padded(_ base: UnsafeMutableRawPointer, payloadOffset: Int, payloadLength: Int, capacity: Int) -> Int {
        suite == .wireGuard && keys.current != nil
            ? WireGuardPadding.pad(base, payloadOffset: payloadOffset, payloadLength: payloadLength, capacity: capacity)
            : payloadLength
    }

    /// The payload length to seal for an owned payload (queued data, keepalive): a
    /// WireGuard peer's packets are padded to 16 bytes with zeros (the array starts zeroed).
    func ownedSealedLength(_ count: Int) -> Int {
        suite == .wireGuard ? (count + 15) & ~15 : count
    }

    /// The response to an initiation that authenticated, in its suite, and the keys it makes;
    /// nil if the response's DH work fails.
    mutating func createResponse(to received: AuthenticatedInitiation, senderIndex index: UInt32, aesGCM: Bool,
                                 headerFlags: Bool, now: Instant) -> (message: [UInt8], keys: TransportKeys)? {
        switch received {
        case .whalescale(let r):
            WhalescaleIK.createResponse(to: r, senderIndex: index, aesGCM: aesGCM, headerFlags: headerFlags, macs: &macs, now: now)
        case .wireGuard(let r): WireGuardIK.createResponse(to: r, senderIndex: index, psk: psk, macs: &macs, now: now)
        }
    }

    /// A new initiation in this peer's suite and its state; nil if the peer's key cannot handshake.
    mutating func createInitiation(identity: Identity, senderIndex index: UInt32, timestamp: HandshakeTimestamp,
                                   offerAESGCM: Bool, offerHeaderFlags: Bool, now: Instant)
        -> (message: [UInt8], state: PendingInitiation)? {
        switch suite {
        case .whalescaleIK:
            WhalescaleIK.createInitiation(identity: identity, responder: publicKey, senderIndex: index,
                                          timestamp: timestamp.bytes, aesGCM: offerAESGCM, headerFlags: offerHeaderFlags,
                                          macs: &macs, now: now)
                .map { ($0.message, .whalescale($0.state)) }
        case .wireGuard:
            WireGuardIK.createInitiation(identity: identity, responder: publicKey, senderIndex: index,
                                         timestamp: timestamp.bytes, psk: psk, macs: &macs, now: now)
                .map { ($0.message, .wireGuard($0.state)) }
        }
    }
}

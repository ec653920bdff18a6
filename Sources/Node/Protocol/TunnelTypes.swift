// The values the session layer (Tunnels.swift) speaks in: member ids and specs,
// drop reasons, what a received or sent datagram became, transmits, events and a
// member's status.

import Support
import Wire
import Crypto

/// A member's id. The roster assigns it (Roster.swift): ask it, do not read
/// meaning into the number. Sessions are kept in an array indexed by it.
public struct PeerID: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public var description: String { "peer#\(rawValue)" }
}

/// What `Tunnels` needs to know about a member.
public struct PeerSpec: Sendable {
    public var publicKey: PublicKey
    /// Where to send until the peer is heard from (static endpoint, cached, gossiped).
    public var endpoint: Endpoint?
    /// Send a keepalive after this long without traffic, and keep a session up
    /// even when idle (anchors, peers behind NAT). Nil: off.
    public var persistentKeepalive: Span?
    /// The handshake this peer speaks: Whalescale's (`publicKey` Ed25519) or
    /// WireGuard's (`publicKey` the peer's X25519 key).
    public var suite: HandshakeSuiteID
    /// WireGuard's optional preshared key (nil: Q is 32 zero bytes). Always nil for Whalescale peers.
    public var psk: PresharedKey?

    public init(publicKey: PublicKey, endpoint: Endpoint? = nil, persistentKeepalive: Span? = nil,
                suite: HandshakeSuiteID = .whalescaleIK, psk: PresharedKey? = nil) {
        self.publicKey = publicKey
        self.endpoint = endpoint
        self.persistentKeepalive = persistentKeepalive
        self.suite = suite
        self.psk = suite == .wireGuard ? psk : nil
    }
}

/// Why a datagram (or an outbound payload) was dropped. The engine counts these.
public enum DropReason: String, CaseIterable, Sendable {
    /// Too short, too long for the buffer, wrong size for its type, or bad geometry on send.
    case badLength
    /// Unknown type byte, non-zero reserved bytes, or a DATA header flag its
    /// session did not negotiate (received, or asked of `send`).
    case unknownType
    /// No live keypair or initiation has this receiver index.
    case unknownIndex
    /// Counter already seen, or behind the replay window.
    case replay
    /// AEAD or Noise authentication failed (or a cookie reply did not decrypt).
    case authFailed
    /// The keypair named is older than REJECT_AFTER_TIME.
    case keyExpired
    /// A handshake that authenticated, from a key that is not a configured member.
    case notMember
    /// mac1 wrong: the sender does not know our public key.
    case mac1
    /// Under load and no valid mac2: a cookie reply was queued instead.
    case cookieRequired
    /// Under load and this source address used up its handshake budget.
    case rateLimited
    /// An initiation whose timestamp is not newer than the last accepted: a replay.
    case staleTimestamp
    /// A second initiation from one peer within INITIATION_MIN_INTERVAL.
    case handshakeFlood
    /// The peer's initiation crossed ours and ours wins the tie-break (lower key):
    /// the peer will answer ours instead.
    case simultaneousInitiation
    /// A response that answers no initiation of ours (late, duplicate).
    case unexpectedMessage
    /// `send` named a peer that is not configured.
    case unknownPeer
    /// `send` to a peer with no known endpoint.
    case noEndpoint
}

/// Result of `Tunnels.receive`.
public enum Inbound: Equatable, Sendable {
    /// Decrypted in place: the payload is `buffer[payloadOffset ..< payloadOffset + payloadLength]`.
    /// Length 0 is a keepalive (nothing to deliver).
    case data(PeerID, payloadOffset: Int, payloadLength: Int)
    /// A handshake or cookie message was consumed; drain `pollTransmit`/`pollEvent`.
    case control
    case drop(DropReason)
}

/// Result of `Tunnels.send`.
public enum Outbound: Equatable, Sendable {
    /// Sealed in place: send `buffer[offset ..< offset + length]` to the endpoint.
    case send(Endpoint, offset: Int, length: Int)
    /// No keys yet: the payload was copied into the peer's bounded queue and a
    /// handshake is on its way; it leaves through `pollTransmit` once keys exist.
    case queued
    case drop(DropReason)
}

/// Who sent the inner datagram of a RELAY: the member the anchor names, by
/// PeerID and relay label. Set by the path manager (NodeCore), which knows
/// which sources are anchors.
public struct RelayOrigin: Equatable, Sendable {
    public let sender: PeerID
    public let memberID: MemberID
    public init(sender: PeerID, memberID: MemberID) {
        self.sender = sender
        self.memberID = memberID
    }
}

/// A datagram to send that the session layer made itself.
public struct Transmit: Equatable, Sendable {
    public let to: Endpoint
    public let bytes: [UInt8]
    /// The member whose session made it (nil for a cookie reply to a direct
    /// handshake, which answers an address, not a member; a cookie reply to a
    /// relayed one names the relaying member). A path manager uses it to send
    /// the datagram another way than `to`, e.g. wrapped in RELAY through an anchor.
    public let peer: PeerID?
    public init(to: Endpoint, bytes: [UInt8], peer: PeerID? = nil) {
        self.to = to
        self.bytes = bytes
        self.peer = peer
    }
}

/// Result of `Tunnels.seal`: the sealed DATA message is `buffer[offset ..< offset + length]`.
public struct Sealed: Equatable, Sendable {
    public let offset: Int
    public let length: Int
}

/// What happened, for the engine and `wsctl`.
public enum TunnelEvent: Equatable, Sendable {
    /// The peer has usable keys after having none.
    case established(PeerID)
    /// New keys replaced live ones.
    case rekeyed(PeerID)
    /// An authenticated, non-replayed packet came from a new address; we now send there.
    case endpointChanged(PeerID, Endpoint)
    /// REKEY_ATTEMPT_TIME passed without a handshake; queued packets were dropped.
    case handshakeFailed(PeerID)
    /// The current keys reached REJECT_AFTER_TIME; no session until a new handshake.
    case expired(PeerID)
}

/// A peer's state for `wsctl status`.
public struct PeerStatus: Sendable, Equatable {
    public enum State: String, Sendable {
        /// No keys, no handshake.
        case idle
        /// No usable keys; a handshake is wanted or in flight.
        case handshaking
        /// The peer initiated; we answered and wait for its first packet.
        case awaitingConfirmation
        case established
        /// Established, with a new handshake under way.
        case rekeying
    }
    public struct Timer: Sendable, Equatable {
        public let deadline: Instant
        public let reason: TimerReason
    }
    public var publicKey: PublicKey
    public var state: State
    public var endpoint: Endpoint?
    public var lastHandshake: Instant?
    /// 1-based initiation attempt of the handshake in flight; 0 if none.
    public var handshakeAttempt: Int
    /// Age of the current keys.
    public var keyAge: Span?
    /// The AEAD of the current keys (negotiated per session); nil without current keys.
    public var cipher: NoiseCipher?
    /// The current keys negotiated DATA header flags (inner checksums may be left partial,
    /// Wire/DataMessage.swift); nil without current keys.
    public var headerFlags: Bool?
    /// Next counter to send under the current keys.
    public var sendCounter: UInt64?
    public var queuedPackets: Int
    public var persistentKeepalive: Span?
    public var counters: PeerCounters
    public var nextTimer: Timer?
}

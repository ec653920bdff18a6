// Session-layer constants: WireGuard's timers (whitepaper §6.1–6.4, wireguard-go
// `device/constants.go`) plus the few that Whalescale adds (retry backoff,
// handshake queue, rate limits under load).
//
// Two groups:
//  - `SessionConstants`: fixed by the protocol; both ends must agree or sessions
//    break (counter limits, timestamp granularity, window size).
//  - `SessionTimings`: the values that drive this node's own timers. `.default` is
//    the specification; tests shrink them (`SessionTimings(rekeyAfterTime: .seconds(2), ...)`)
//    to watch many rekeys in a second of virtual time.

import Support
import Wire
import Crypto

/// Values fixed by the protocol.
public enum SessionConstants {
    /// REKEY_AFTER_MESSAGES, messages per keypair: start a new handshake once this
    /// many packets were sent under one key, far before the nonce space runs out.
    public static let rekeyAfterMessages: UInt64 = 1 << 60

    /// REJECT_AFTER_MESSAGES = 2^64 − 2^13 − 1, messages per keypair: never send or
    /// accept a counter at or past this. The 2^13 margin keeps the replay window's
    /// arithmetic away from the top of the 64-bit nonce space (whitepaper §6.1).
    public static let rejectAfterMessages: UInt64 = UInt64.max - (1 << 13)

    /// Replay window, packets: how far behind the highest counter seen a packet may
    /// arrive and still be accepted. RFC 6479 ring of 128 × 64-bit blocks, one block
    /// kept as slack, so (128 − 1) × 64 = 8128 ≥ 4096. Large because multipath
    /// scheduling reorders on purpose (a fast path runs ahead of a slow one).
    public static let replayWindowBlocks = 128
    public static let replayWindowSize: UInt64 = UInt64(replayWindowBlocks - 1) * 64

    /// Handshake timestamp granularity, nanoseconds (2^24 ns ≈ 16.8 ms): the TAI64N
    /// sent in an initiation is rounded down to this, so it does not leak the sender's
    /// precise clock (wireguard-go `whitenerMask`).
    public static let timestampWhitening: UInt32 = 1 << 24

    /// COOKIE_REFRESH_TIME, 120 s: a cookie (and the responder's cookie secret) is
    /// good this long. Used by the Crypto layer's MacGenerator/CookieChecker; quoted
    /// here so that the whole timer picture is in one file.
    public static let cookieRefreshTime = Span.seconds(120 as UInt64)

    /// UNDER_LOAD_AFTER_TIME, 1 s: once `Tunnels` sees handshake load, it keeps
    /// `underLoad` set this long (wireguard-go `UnderLoadAfterTime`), so an attacker
    /// cannot flip it off with a short pause.
    public static let underLoadAfterTime = Span.seconds(1 as UInt64)

    /// Handshake messages per second that put the node under load, messages/s: a
    /// legitimate mesh of a few dozen members never approaches this; a flood does.
    /// Only well-formed messages whose mac1 is valid count (direct or relayed):
    /// junk that merely starts with byte 1 or 2 must not force cookies on everyone.
    public static let underLoadHandshakesPerSecond = 128

    /// Initiation attempts of one handshake that offer AES-256-GCM (INIT byte 1,
    /// docs/wire.md "Cipher negotiation"), attempts: later ones offer nothing. A node
    /// from before negotiation drops an INIT whose byte 1 is not zero; with the retry
    /// backoff (5 s, then 10 s) it answers the third attempt, ~15 s after the first,
    /// under ChaCha20-Poly1305. Two, not one, so that one lost INIT does not cost AES.
    public static let cipherOfferAttempts = 2
}

/// The timers this node runs. `SessionTimings.default` is the specification;
/// tests may pass smaller values. Relations the defaults keep (and overrides
/// should keep): rekeyAfterTime < rejectAfterTime − keepaliveTimeout − rekeyTimeout,
/// rekeyAttemptTime < rejectAfterTime − rekeyAfterTime (a rekey gives up before the
/// old key dies), rekeyAfterMessages < rejectAfterMessages.
public struct SessionTimings: Sendable, Equatable {
    /// REKEY_AFTER_TIME, 120 s: the initiator of a keypair starts a new handshake
    /// when it sends under a key this old (forward secrecy every two minutes).
    public var rekeyAfterTime: Span
    /// REJECT_AFTER_TIME, 180 s: a keypair this old is never used to send or
    /// receive, and is dropped. 60 s after REKEY_AFTER_TIME, room for the rekey.
    public var rejectAfterTime: Span
    /// REKEY_ATTEMPT_TIME, 90 s: give up a handshake that has not completed after
    /// this long, and drop the packets queued for it.
    public var rekeyAttemptTime: Span
    /// REKEY_TIMEOUT, 5 s: the first retry of an unanswered initiation comes this
    /// long after it (a little over a worst-case RTT plus the responder's work).
    public var rekeyTimeout: Span
    /// REKEY_TIMEOUT_JITTER_MAX, 333 ms: a random extra delay on every retry, so that
    /// two peers that lost packets at once do not retry in lockstep forever.
    public var rekeyTimeoutJitterMax: Span
    /// Retry backoff cap, 20 s: retries wait rekeyTimeout × 2^(n−1), at most this
    /// (5, 10, 20, 20, … s). WireGuard retries every 5 s; Whalescale backs off because
    /// a phone whose peer is gone should not wake its radio 18 times in 90 s.
    public var rekeyTimeoutMax: Span
    /// Expedited retry spacing, 250 ms: when the path manager learns that a
    /// path to the peer just opened (an anchor that refused to relay our
    /// initiation now introduces us), the unanswered initiation is sent again
    /// at once, but never sooner than this after the previous one. A relayed
    /// round trip across the internet fits in it, so a response already on its
    /// way is not thrown away (a new initiation frees the old index), and the
    /// responder's INITIATION_MIN_INTERVAL (20 ms) never drops the new one.
    /// The same spacing applies to the retry a COOKIE_REPLY triggers (the
    /// responder is under load and wants our next initiation to carry mac2).
    public var expediteMinInterval: Span
    /// KEEPALIVE_TIMEOUT, 10 s: having received data and sent nothing for this long,
    /// send an empty packet, so the peer knows the session is alive.
    public var keepaliveTimeout: Span
    /// REKEY_AFTER_MESSAGES (see `SessionConstants`); overridable so tests rekey by
    /// count within thousands of packets.
    public var rekeyAfterMessages: UInt64
    /// REJECT_AFTER_MESSAGES (see `SessionConstants`); overridable likewise.
    public var rejectAfterMessages: UInt64
    /// Packets held per peer while a handshake is pending, packets: enough to cover a
    /// TCP initial window and a few DNS queries; the oldest is dropped past it (as
    /// wireguard-go's staged queue), because the inner protocol retransmits anyway.
    public var handshakeQueueLimit: Int
    /// Minimum interval between initiations consumed from one peer, 20 ms
    /// (wireguard-go `HandshakeInitationRate`, 50/s): a peer replaying fresh-looking
    /// initiations cannot make us burn a DH per packet.
    public var initiationMinInterval: Span
    /// Handshakes accepted per source IP address per second while under load
    /// (wireguard-go's ratelimiter: 20/s with a burst of 5), after the cookie check.
    /// The same budget applies per relaying member to relayed handshakes (whose
    /// source address is the anchor's, shared by every member it relays for).
    public var handshakesPerSecondPerSource: Int
    public var handshakeBurstPerSource: Int

    public init(
        rekeyAfterTime: Span = .seconds(120 as UInt64),
        rejectAfterTime: Span = .seconds(180 as UInt64),
        rekeyAttemptTime: Span = .seconds(90 as UInt64),
        rekeyTimeout: Span = .seconds(5 as UInt64),
        rekeyTimeoutJitterMax: Span = .milliseconds(333),
        rekeyTimeoutMax: Span = .seconds(20 as UInt64),
        expediteMinInterval: Span = .milliseconds(250),
        keepaliveTimeout: Span = .seconds(10 as UInt64),
        rekeyAfterMessages: UInt64 = SessionConstants.rekeyAfterMessages,
        rejectAfterMessages: UInt64 = SessionConstants.rejectAfterMessages,
        handshakeQueueLimit: Int = 64,
        initiationMinInterval: Span = .milliseconds(20),
        handshakesPerSecondPerSource: Int = 20,
        handshakeBurstPerSource: Int = 5
    ) {
        self.rekeyAfterTime = rekeyAfterTime
        self.rejectAfterTime = rejectAfterTime
        self.rekeyAttemptTime = rekeyAttemptTime
        self.rekeyTimeout = rekeyTimeout
        self.rekeyTimeoutJitterMax = rekeyTimeoutJitterMax
        self.rekeyTimeoutMax = rekeyTimeoutMax
        self.expediteMinInterval = expediteMinInterval
        self.keepaliveTimeout = keepaliveTimeout
        self.rekeyAfterMessages = rekeyAfterMessages
        self.rejectAfterMessages = rejectAfterMessages
        self.handshakeQueueLimit = handshakeQueueLimit
        self.initiationMinInterval = initiationMinInterval
        self.handshakesPerSecondPerSource = handshakesPerSecondPerSource
        self.handshakeBurstPerSource = handshakeBurstPerSource
    }

    /// The specification's values.
    public static let `default` = SessionTimings()

    /// The receive-side "last minute" rekey (whitepaper §6.2): an initiator that
    /// *receives* under a key this old starts a handshake, so a session whose
    /// initiator only listens still rekeys before REJECT_AFTER_TIME.
    public var rekeyOnReceiveAge: Span {
        let margin = keepaliveTimeout + rekeyTimeout
        return rejectAfterTime.ns > margin.ns ? Span(ns: rejectAfterTime.ns - margin.ns) : .zero
    }

    /// The "we sent data and heard nothing back" timeout (KEEPALIVE + REKEY_TIMEOUT,
    /// 15 s): the peer should have sent at least a keepalive by then.
    public var newHandshakeTimeout: Span { keepaliveTimeout + rekeyTimeout }
}

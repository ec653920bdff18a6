// A handshake suite: the messages one handshake protocol puts on the wire, their
// sizes, and its verbs in the order the session layer calls them (STYLE 4):
//
//   initiator                          responder
//   createInitiation ── INIT ────────▶ openInitiation (es; names the static)
//                                      [session layer: a member's static? ss precomputed]
//                                      authenticate (ss, payload)
//                                      [session layer: timestamp newer? not a flood?]
//   consumeResponse ◀── RESP ───────── createResponse (e, ee, se)
//   (macs: mac1/mac2 on every message we send; cookies: mac1/mac2 checks and
//    cookie replies for messages we receive)
//
// The session layer (Protocol/Tunnels.swift) finds the suite and the message of
// a datagram by its (type, length) in `HandshakeSuites.classify`, as boringtun's
// `parse_incoming_packet` does, and only then copies it and calls the suite.
// Two suites: Whalescale's Noise_IK (180-byte INIT, Handshake.swift) and
// WireGuard's Noise_IKpsk2 (BLAKE2s, 148-byte INIT, WireGuardHandshake.swift).
// Their RESP (92) and COOKIE (64) have one length and one layout, so
// `classify` tells the suite of an INIT by its length only; a RESP or COOKIE
// belongs to the suite of the handshake its receiver index names (the session
// layer looks that up). psk: WireGuard's optional preshared key (psk2);
// Whalescale's suite has none and is given nil.

import Support
import Wire

/// `[node] cipher`: which transport ciphers this node offers (as initiator) and
/// accepts (as responder) in Whalescale's suite. WireGuard peers are ChaCha only.
public enum CipherSetting: String, Sendable, CaseIterable {
    /// AES-256-GCM when both ends have AES-NI and allow it, ChaCha20-Poly1305 otherwise (the default).
    case auto
    /// ChaCha20-Poly1305 only: never offer or accept AES-256-GCM.
    case chacha20poly1305

    /// Offer and accept AES-256-GCM (each only when this CPU has it).
    public var allowsAESGCM: Bool { self == .auto }
}

/// Which suite a handshake message belongs to.
public enum HandshakeSuiteID: UInt8, Sendable, CaseIterable {
    /// Noise_IK_25519_ChaChaPoly_BLAKE2b, prologue "whalescale v1" (`WhalescaleIK`).
    case whalescaleIK
    /// Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s, WireGuard's construction (`WireGuardIK`).
    case wireGuard
}

/// The three handshake messages of a WireGuard-shaped suite.
public enum HandshakeMessageKind: Sendable, Equatable {
    case initiation, response, cookieReply
}

/// One handshake protocol. Static requirements only: the session layer calls
/// the concrete suite (`WhalescaleIK.openInitiation(...)`), never through an
/// existential.
public protocol HandshakeSuite {
    /// The initiator's state between INIT and RESP.
    associatedtype Initiator: Sendable
    /// An INIT after its first DH: names the initiator's static, not yet authenticated.
    associatedtype Opened: Sendable
    /// An INIT that authenticated: ready to answer.
    associatedtype Received: Sendable
    /// mac1/mac2 for messages we send to one peer; holds its cookie.
    associatedtype Macs: Sendable

    static var id: HandshakeSuiteID { get }
    /// The Noise protocol name.
    static var protocolName: String { get }
    static var initiationSize: Int { get }
    static var responseSize: Int { get }
    static var cookieReplySize: Int { get }

    static func makeMacs(peer: PublicKey) -> Macs
    static func createInitiation(identity: Identity, responder: PublicKey, senderIndex: UInt32, timestamp: [UInt8],
                                 psk: PresharedKey?, macs: inout Macs, now: Instant) -> (message: [UInt8], state: Initiator)?
    static func openInitiation(identity: Identity, message: [UInt8]) -> Opened?
    static func initiatorStatic(of opened: Opened) -> [UInt8]
    static func authenticate(_ opened: Opened, staticStatic: StaticStatic, initiator: PublicKey) -> Received?
    static func createResponse(to received: Received, senderIndex: UInt32, psk: PresharedKey?, macs: inout Macs, now: Instant)
        -> (message: [UInt8], keys: TransportKeys)?
    static func consumeResponse(_ message: [UInt8], state: Initiator) -> (responderIndex: UInt32, keys: TransportKeys)?
}

extension HandshakeSuite {
    /// Which of this suite's messages a datagram of `type` and `length` is; nil: none.
    @inline(__always)
    public static func message(type: UInt8, length: Int) -> HandshakeMessageKind? {
        switch type {
        case MessageType.handshakeInit.rawValue where length == initiationSize: .initiation
        case MessageType.handshakeResp.rawValue where length == responseSize: .response
        case MessageType.cookieReply.rawValue where length == cookieReplySize: .cookieReply
        default: nil
        }
    }
}

/// Whalescale's suite: Noise_IK_25519_ChaChaPoly_BLAKE2b (Handshake.swift,
/// layouts in Wire/HandshakeMessages.swift), with the transport cipher negotiated
/// per session (ChaCha20-Poly1305, or AES-256-GCM where both ends have AES-NI).
/// WireGuard's suite is ChaCha20-Poly1305 only.
public enum WhalescaleIK: HandshakeSuite {
    public static let id = HandshakeSuiteID.whalescaleIK
    public static let protocolName = HandshakeConstants.protocolName
    public static let initiationSize = HandshakeInitiationMessage.size
    public static let responseSize = HandshakeResponseMessage.size
    public static let cookieReplySize = CookieReplyMessage.size

    public static func makeMacs(peer: PublicKey) -> MacGenerator { MacGenerator(peer: peer) }

    @inline(__always)
    public static func createInitiation(identity: Identity, responder: PublicKey, senderIndex: UInt32, timestamp: [UInt8],
                                        psk: PresharedKey? = nil, macs: inout MacGenerator, now: Instant)
        -> (message: [UInt8], state: InitiatorHandshake)? {
        createInitiation(identity: identity, responder: responder, senderIndex: senderIndex, timestamp: timestamp,
                         psk: psk, aesGCM: false, macs: &macs, now: now)
    }

    /// As above; `aesGCM`: offer AES-256-GCM for this session (config `[node] cipher`
    /// allows it; sent only when this CPU has AES-NI); `headerFlags`: offer DATA header
    /// flags (this node's TUN takes partial checksums). Handshake.swift negotiates.
    @inline(__always)
    public static func createInitiation(identity: Identity, responder: PublicKey, senderIndex: UInt32, timestamp: [UInt8],
                                        psk: PresharedKey? = nil, aesGCM: Bool, headerFlags: Bool = false,
                                        macs: inout MacGenerator, now: Instant)
        -> (message: [UInt8], state: InitiatorHandshake)? {
        assert(psk == nil, "Whalescale's suite has no preshared key")
        return InitiatorHandshake.createInitiation(identity: identity, responder: responder, senderIndex: senderIndex,
                                                   timestamp: timestamp, aesGCM: aesGCM, headerFlags: headerFlags,
                                                   macs: &macs, now: now)
    }

    @inline(__always)
    public static func openInitiation(identity: Identity, message: [UInt8]) -> OpenedInitiation? {
        Crypto.openInitiation(identity: identity, message: message)
    }

    public static func initiatorStatic(of opened: OpenedInitiation) -> [UInt8] { opened.initiatorStatic }

    @inline(__always)
    public static func authenticate(_ opened: OpenedInitiation, staticStatic: StaticStatic,
                                    initiator: PublicKey) -> ReceivedInitiation? {
        opened.authenticate(staticStatic: staticStatic, initiator: initiator)
    }

    @inline(__always)
    public static func createResponse(to received: ReceivedInitiation, senderIndex: UInt32, psk: PresharedKey? = nil,
                                      macs: inout MacGenerator, now: Instant) -> (message: [UInt8], keys: TransportKeys)? {
        createResponse(to: received, senderIndex: senderIndex, psk: psk, aesGCM: false, macs: &macs, now: now)
    }

    /// As above; `aesGCM`: accept an offer of AES-256-GCM (config allows it; only when
    /// this CPU has AES-NI); `headerFlags`: accept an offer of DATA header flags. The keys
    /// carry what was chosen (`keys.cipher`, `keys.headerFlags`).
    @inline(__always)
    public static func createResponse(to received: ReceivedInitiation, senderIndex: UInt32, psk: PresharedKey? = nil,
                                      aesGCM: Bool, headerFlags: Bool = false, macs: inout MacGenerator, now: Instant)
        -> (message: [UInt8], keys: TransportKeys)? {
        assert(psk == nil, "Whalescale's suite has no preshared key")
        return received.createResponse(senderIndex: senderIndex, aesGCM: aesGCM, headerFlags: headerFlags, macs: &macs, now: now)
    }

    @inline(__always)
    public static func consumeResponse(_ message: [UInt8], state: InitiatorHandshake)
        -> (responderIndex: UInt32, keys: TransportKeys)? {
        state.consumeResponse(message)
    }
}

/// The suites a node speaks, for dispatch by (type, length).
public enum HandshakeSuites {
    /// The suite and message of a handshake datagram; nil when no suite has a
    /// message of this type and length (the caller drops it: bad length, or not
    /// a handshake type at all). A RESP or COOKIE_REPLY is the same in both
    /// suites and comes back as `.whalescaleIK`: its receiver index, not its
    /// bytes, says whose it is.
    @inline(__always)
    public static func classify(type: UInt8, length: Int) -> (suite: HandshakeSuiteID, message: HandshakeMessageKind)? {
        if let m = WhalescaleIK.message(type: type, length: length) { return (.whalescaleIK, m) }
        if let m = WireGuardIK.message(type: type, length: length) { return (.wireGuard, m) }
        return nil
    }

    /// Whether `type` is a handshake message type of any suite (1, 2, 3).
    public static func isHandshakeType(_ type: UInt8) -> Bool {
        type == MessageType.handshakeInit.rawValue || type == MessageType.handshakeResp.rawValue
            || type == MessageType.cookieReply.rawValue
    }
}

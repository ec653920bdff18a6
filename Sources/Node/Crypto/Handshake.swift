// Whalescale's handshake: Noise_IK_25519_ChaChaPoly_BLAKE2b, prologue "whalescale v1",
// in WireGuard's shape (byte layouts: Wire/HandshakeMessages.swift).
//
//   initiator                                                 responder
//   createInitiation ──── HANDSHAKE_INIT (e, es, s, ss) ────> [mac1Valid, mac2Valid under load]
//                                                              openInitiation (es: 1 DH)
//                                                              [session layer: static a member's?]
//                                                              authenticate (ss precomputed)
//                                                              [session layer: timestamp newer?]
//   consumeResponse <──── HANDSHAKE_RESP (e, ee, se) ──────── createResponse
//   keys: send = c1, receive = c2                              keys: send = c2, receive = c1
//
//   under load, instead of consuming:                        createCookieReply
//   macs.consumeCookieReply <──── COOKIE_REPLY ──────────────
//   (the next INIT carries mac2, which mac2Valid accepts)
//
// Cipher negotiation (per session; docs/wire.md): the INIT's byte 1 is the initiator's
// offer (bit 0: AES-256-GCM, sent when this CPU has AES-NI and the config allows it),
// the RESP's byte 1 the responder's choice (1 only if offered, its CPU has it and its
// config allows it). Both are authenticated: when the offer is non-zero,
//   MixHash(offer)   right after the prologue and the responder's static (before e),
//   MixHash(choice)  in the RESP, after se and before EncryptAndHash(empty payload),
// on both sides, so a flipped bit fails the INIT's or the RESP's AEAD instead of
// leaving the two ends with different ciphers. An offer of 0 mixes nothing: the
// transcript is the one a peer without negotiation computes, and it gets ChaCha.
// Split() gives the same keys either way; only the AEAD that uses them differs.
//
// Bit 1 of the same two bytes negotiates DATA header flags (Wire/DataMessage.swift):
// the initiator sets it in its offer when it can take inner packets whose checksum
// is left partial (its TUN has offloads), the responder in its choice only when
// it was offered and it can too. Both set: the session's DATA authenticates its
// header's first 4 bytes as AD, and either end may send with `checksumPartial`.
// It rides on the same MixHash, so it cannot be changed in flight either. A node
// from before it ignores bit 1 of an offer and never sets it in a choice.
//
// Sans-IO: `now` is always a parameter; randomness (ephemerals, cookie secrets,
// cookie-reply nonces) comes from libsodium's randombytes.
//
// What is checked where:
//  - here: Noise authentication (AEAD over the transcript), exact sizes, type and
//    reserved bytes, receiver_index of a response, that the Ed25519 key an initiator
//    names converts to the static it authenticated with;
//  - the caller: mac1 (cheap, first), mac2 when under load, membership of the
//    initiator (after the es DH, before anything else), and that its timestamp is
//    newer than the last one accepted (the replay defence: a replayed INIT
//    decrypts fine, and must not reset a session), before the response's DHs.
//
// mac1/mac2 (WireGuard §5.4.4, with BLAKE2b in place of BLAKE2s):
//   mac1 = BLAKE2b-128(key = BLAKE2b-256("mac1----" || receiver's X25519 static), message up to mac1)
//   mac2 = BLAKE2b-128(key = cookie, message up to mac2), zeros without a fresh cookie
//   cookie = BLAKE2b-128(key = responder's secret (rotated every 120 s), source address || port (big-endian))
//            for a relayed message: source (the anchor) address || port || the relaying member's id (8 bytes)
//   cookie reply: XChaCha20-Poly1305(key = BLAKE2b-256("cookie--" || responder's X25519 static),
//                                    random 24-byte nonce, AD = mac1 of the message answered)

import Support
import Wire

/// Values of the handshake that both ends must agree on.
public enum HandshakeConstants {
    public static let protocolName = "Noise_IK_25519_ChaChaPoly_BLAKE2b"
    /// Mixed into the transcript: a different protocol version can never complete a handshake with this one.
    public static let prologue: [UInt8] = Array("whalescale v1".utf8)
    /// TAI64N, 12 bytes (Protocol/HandshakeTimestamp.swift builds them).
    public static let timestampLength = 12
    /// COOKIE_REFRESH_TIME, 120 s: a cookie received is used for mac2 this long,
    /// and the responder's cookie secret is replaced this often (WireGuard's value).
    public static let cookieLifetime = Span.seconds(120 as UInt64)
    public static let cookieLength = 16

    /// Bit 1 of the INIT's offer and the RESP's choice: DATA header flags (see the top of this file).
    public static let headerFlagsBit: UInt8 = 2

    static let mac1Label: [UInt8] = Array("mac1----".utf8)
    static let cookieLabel: [UInt8] = Array("cookie--".utf8)
}

// MARK: - Initiator

/// An initiation sent and not yet answered. Holds the Noise state (ephemeral
/// private key included) until a response authenticates; dropping it wipes it.
public struct InitiatorHandshake: Sendable {
    public let responder: PublicKey
    public let senderIndex: UInt32
    /// What the INIT offered (byte 1): the choice in the response must be 0 or one of these bits.
    public let cipherOffer: UInt8
    /// When the initiation was created (for the session layer's retry and give-up timers).
    public let createdAt: Instant
    let noise: NoiseHandshakeState

    /// The offer byte: bit 0 for a node whose config allows AES-GCM (`aesGCM`) when this
    /// CPU has it, bit 1 (`headerFlags`) when it takes DATA with header flags.
    public static func cipherOffer(aesGCM: Bool, headerFlags: Bool = false) -> UInt8 {
        (aesGCM && NoiseCipher.aesGCM.isAvailable ? 1 : 0) | (headerFlags ? HandshakeConstants.headerFlagsBit : 0)
    }

    /// Builds HANDSHAKE_INIT for `responder`, carrying `timestamp` (12 bytes, TAI64N).
    /// `aesGCM`: offer AES-256-GCM (only if this CPU has it); `headerFlags`: offer DATA
    /// header flags. Nil when the timestamp is not 12 bytes, `macs` is for another peer,
    /// or the responder's key has no X25519 form.
    public static func createInitiation(identity: Identity, responder: PublicKey, senderIndex: UInt32,
                                        timestamp: [UInt8], aesGCM: Bool = false, headerFlags: Bool = false,
                                        macs: inout MacGenerator, now: Instant)
        -> (message: [UInt8], state: InitiatorHandshake)? {
        createInitiation(identity: identity, responder: responder, senderIndex: senderIndex, timestamp: timestamp,
                         cipherOffer: cipherOffer(aesGCM: aesGCM, headerFlags: headerFlags), macs: &macs, now: now,
                         ephemeral: nil)
    }

    /// As above, with the offer byte as given (tests send bits a real node would not) and a fixed ephemeral.
    static func createInitiation(identity: Identity, responder: PublicKey, senderIndex: UInt32,
                                 timestamp: [UInt8], cipherOffer: UInt8 = 0, macs: inout MacGenerator, now: Instant,
                                 ephemeral: DHKeyPair?) -> (message: [UInt8], state: InitiatorHandshake)? {
        guard timestamp.count == HandshakeConstants.timestampLength, macs.peer == responder,
              let responderStatic = responder.x25519 else { return nil }
        do {
            var noise = try NoiseHandshakeState(
                protocolName: HandshakeConstants.protocolName, role: .initiator, prologue: HandshakeConstants.prologue,
                localStatic: identity.staticKeyPair, remoteStatic: responderStatic, psks: [], fixedEphemeral: ephemeral)
            // The offer, authenticated: after the pre-message key, before e.
            if cipherOffer != 0 { noise.mixHash([cipherOffer]) }
            let body = try noise.writeMessage(payload: timestamp + identity.publicKey.bytes)
            var message = HandshakeInitiationMessage(senderIndex: senderIndex, noise: body, cipherOffer: cipherOffer).bytes
            macs.stamp(&message, now: now)
            return (message, InitiatorHandshake(responder: responder, senderIndex: senderIndex, cipherOffer: cipherOffer,
                                                createdAt: now, noise: noise))
        } catch {
            return nil
        }
    }

    /// nil unless the response authenticates for this handshake (check receiver_index == our senderIndex).
    /// mac1/mac2 of the response are the caller's to check, with its own `CookieChecker`.
    /// The choice must be 0 (ChaCha) or a cipher we offered, and may set bit 1 only if we
    /// offered it; it is MixHash()ed before the payload whenever we offered anything, so a
    /// choice changed in flight does not authenticate.
    public func consumeResponse(_ message: [UInt8]) -> (responderIndex: UInt32, keys: TransportKeys)? {
        let flagsBit = HandshakeConstants.headerFlagsBit
        guard let wire = HandshakeResponseMessage(bytes: message), wire.receiverIndex == senderIndex,
              wire.cipherChoice & flagsBit == 0 || cipherOffer & flagsBit != 0,
              let cipher = NoiseCipher(rawValue: wire.cipherChoice & ~flagsBit),
              cipher == .chachaPoly || (cipherOffer & 1 != 0 && cipher.isAvailable) else {
            return nil
        }
        // A copy: this state stays usable if the message was forged.
        var noise = self.noise
        guard let payload = try? noise.readMessage(wire.noise, mixBeforePayload: cipherOffer != 0 ? [wire.cipherChoice] : nil),
              payload.isEmpty, let keys = try? noise.transportKeys(cipher: cipher) else { return nil }
        return (wire.senderIndex, keys.with(headerFlags: wire.cipherChoice & flagsBit != 0))
    }
}

// MARK: - Responder

// The responder consumes an initiation in two steps, in WireGuard's order
// (wireguard-go `ConsumeMessageInitiation`), so that a message from a stranger
// or a replay costs one DH and nothing more:
//
//   openInitiation          e, es (1 DH), decrypt s       -> who claims to send it
//   [caller: is that static a member's? if not, stop]
//   OpenedInitiation        ss (precomputed per member, 0 DH), decrypt the payload
//     .authenticate         -> ReceivedInitiation: authenticated, timestamp readable
//   [caller: timestamp newer? 20 ms since the last one? if not, stop]
//   ReceivedInitiation      e (1 base mult), ee, se (2 DH), encrypt empty, split
//     .createResponse
//
// The timestamp is encrypted under the key ss yields, so it cannot be read
// before ss; that is why ss is computed once per member (`staticStatic`) and
// not per message, as WireGuard does (`precomputedStaticStatic`).
// Each step works on its own copy of the transcript; nothing is kept from a
// message that failed, and DH outputs are `SecretBytes`, wiped when released.

/// The X25519 DH of our static and a peer's static (Noise token ss): the same
/// for every initiation from that peer, so the caller computes it once per
/// member and passes it to `OpenedInitiation.authenticate`. Opaque: the secret
/// stays in Crypto (wiped when the last copy goes).
public struct StaticStatic: Sendable {
    let secret: SecretBytes
}

/// ss with `peerStatic` (one DH). Nil for a small-order key (no handshake with it can succeed).
public func staticStatic(identity: Identity, peerStatic: [UInt8]) -> StaticStatic? {
    Sodium.x25519(identity.staticKeyPair.privateKey, peerStatic).map(StaticStatic.init)
}

/// An initiation after its first DH (es): it decrypted, and names the X25519
/// static `initiatorStatic`. Not authenticated yet: anyone who knows our public
/// key can make one naming any static. The caller looks the static up among
/// its members before paying for anything else.
public struct OpenedInitiation: Sendable {
    public let senderIndex: UInt32
    /// The INIT's byte 1, bound to the transcript (mixed in before e: a changed offer does
    /// not decrypt s; `authenticate` then proves who wrote it).
    public let cipherOffer: UInt8
    /// The initiator's X25519 static key, as claimed (proven by `authenticate`).
    public let initiatorStatic: [UInt8]
    let symmetric: NoiseSymmetricState
    let remoteEphemeral: [UInt8]
    let encryptedPayload: [UInt8]
    /// Tests only: the responder ephemeral `createResponse` will use.
    let fixedEphemeral: DHKeyPair?

    /// ss with the precomputed `staticStatic` (no DH here), then the payload:
    /// nil unless it decrypts and carries exactly `initiator`, the Ed25519 key
    /// the caller knows to belong to `initiatorStatic`.
    public func authenticate(staticStatic: StaticStatic, initiator: PublicKey) -> ReceivedInitiation? {
        guard let (state, timestamp, carried) = decryptPayload(staticStatic: staticStatic), carried == initiator else {
            return nil
        }
        return ReceivedInitiation(initiator: initiator, senderIndex: senderIndex, cipherOffer: cipherOffer,
                                  timestamp: timestamp, symmetric: state, remoteEphemeral: remoteEphemeral,
                                  remoteStatic: initiatorStatic, fixedEphemeral: fixedEphemeral)
    }

    /// "ss: MixKey(DH(s, rs))", then "DecryptAndHash(payload)" on a copy of the transcript.
    func decryptPayload(staticStatic: StaticStatic) -> (NoiseSymmetricState, [UInt8], PublicKey)? {
        var state = symmetric
        state.mixKey(staticStatic.secret)
        guard let payload = try? state.decryptAndHash(encryptedPayload),
              payload.count == HandshakeInitiationMessage.payloadSize,
              let key = PublicKey(bytes: Array(payload[HandshakeConstants.timestampLength...])) else { return nil }
        return (state, Array(payload[..<HandshakeConstants.timestampLength]), key)
    }
}

/// Reads an initiation addressed to `identity` up to the initiator's static:
/// e, es (one DH), s. Nil when it is not an INIT of the right size or does not
/// decrypt. mac1/mac2 are the caller's, and come first.
public func openInitiation(identity: Identity, message: [UInt8]) -> OpenedInitiation? {
    openInitiation(identity: identity, message: message, ephemeral: nil)
}

/// As above, with a fixed responder ephemeral for tests.
func openInitiation(identity: Identity, message: [UInt8], ephemeral: DHKeyPair?) -> OpenedInitiation? {
    guard let wire = HandshakeInitiationMessage(bytes: message) else { return nil }
    let noise = wire.noise
    let dh = noiseDHLength, tag = noiseTagLength
    guard noise.count == HandshakeInitiationMessage.noiseSize else { return nil }
    // The responder's side of IK message 1 (Noise §5.3, §7.5): h = HASH(name),
    // MixHash(prologue), MixHash(responder's s) from the pre-message, then the tokens.
    var state = NoiseSymmetricState(protocolName: Array(HandshakeConstants.protocolName.utf8))
    state.mixHash(HandshakeConstants.prologue)
    state.mixHash(identity.staticPublic)
    // The cipher offer, when there is one (Whalescale's addition, see the top of this file).
    if wire.cipherOffer != 0 { state.mixHash([wire.cipherOffer]) }
    // e: "Sets re to the next DHLEN bytes from the message. Calls MixHash(re.public_key)."
    let re = Array(noise[0..<dh])
    state.mixHash(re)
    // es (responder: DH(s, re)). A small-order re gives all zeros: refused.
    guard let es = Sodium.x25519(identity.staticKeyPair.privateKey, re) else { return nil }
    state.mixKey(es)
    // s: "Sets rs to DecryptAndHash(temp)" (DHLEN + 16 bytes: a key is set).
    guard let rs = try? state.decryptAndHash(Array(noise[dh..<(2 * dh + tag)])) else { return nil }
    return OpenedInitiation(senderIndex: wire.senderIndex, cipherOffer: wire.cipherOffer, initiatorStatic: rs,
                            symmetric: state, remoteEphemeral: re,
                            encryptedPayload: Array(noise[(2 * dh + tag)...]), fixedEphemeral: ephemeral)
}

/// An initiation that decrypted and authenticated (es, s, ss, payload). The
/// response's Noise part (a new ephemeral, ee, se) is left to `createResponse`,
/// so that the caller checks the timestamp before paying for it.
public struct ReceivedInitiation: Sendable {
    /// The initiator's Ed25519 key, proven to match the static it authenticated with.
    public let initiator: PublicKey
    public let senderIndex: UInt32
    /// The initiator's cipher offer (INIT byte 1, authenticated).
    public let cipherOffer: UInt8
    /// 12-byte TAI64N: the caller accepts the initiation only if this is greater
    /// than the last timestamp it accepted from `initiator`.
    public let timestamp: [UInt8]
    let symmetric: NoiseSymmetricState
    let remoteEphemeral: [UInt8]
    let remoteStatic: [UInt8]
    let fixedEphemeral: DHKeyPair?

    /// The cipher a responder picks: AES-256-GCM only if offered, this CPU has it and
    /// `aesGCM` (the config) allows it; ChaCha20-Poly1305 otherwise.
    public func cipherChoice(aesGCM: Bool) -> NoiseCipher {
        aesGCM && cipherOffer & 1 != 0 && NoiseCipher.aesGCM.isAvailable ? .aesGCM : .chachaPoly
    }

    /// Whether the session gets DATA header flags: offered, and `headerFlags` (this node takes them).
    public func headerFlagsChoice(headerFlags: Bool) -> Bool {
        headerFlags && cipherOffer & HandshakeConstants.headerFlagsBit != 0
    }

    /// Builds HANDSHAKE_RESP (e, ee, se, empty payload) and the session keys, under the
    /// cipher `cipherChoice(aesGCM:)` picks (`keys.cipher`) and with header flags when
    /// `headerFlagsChoice(headerFlags:)` (`keys.headerFlags`).
    /// Nil only if a DH gives all zeros, which es and ss already excluded.
    /// Every call makes a new ephemeral (tests fix it): call it once.
    public func createResponse(senderIndex: UInt32, aesGCM: Bool = false, headerFlags: Bool = false,
                               macs: inout MacGenerator, now: Instant)
        -> (message: [UInt8], keys: TransportKeys)? {
        assert(macs.peer == initiator, "MacGenerator is for another peer: the initiator will drop this response")
        var state = symmetric
        // e: "Sets e = GENERATE_KEYPAIR(). Appends e.public_key to the buffer. Calls MixHash(e.public_key)."
        let e = fixedEphemeral ?? DHKeyPair.generate()
        state.mixHash(e.publicKey)
        // ee, then se (responder: DH(e, rs)); then the empty payload's tag.
        guard let ee = Sodium.x25519(e.privateKey, remoteEphemeral) else { return nil }
        state.mixKey(ee)
        guard let se = Sodium.x25519(e.privateKey, remoteStatic) else { return nil }
        state.mixKey(se)
        // The choice, authenticated (only when the initiator offered: see the top of this file).
        let cipher = cipherChoice(aesGCM: aesGCM)
        let flags = headerFlagsChoice(headerFlags: headerFlags)
        let choice = cipher.rawValue | (flags ? HandshakeConstants.headerFlagsBit : 0)
        if cipherOffer != 0 { state.mixHash([choice]) }
        guard let tag = try? state.encryptAndHash([]) else { return nil }
        let noiseOut = e.publicKey + tag
        // Split: the initiator sends with c1, so the responder sends with c2.
        let (c1, c2) = state.split()
        guard let k1 = c1.key.map({ TransportKey(secret: $0, cipher: cipher) }),
              let k2 = c2.key.map({ TransportKey(secret: $0, cipher: cipher) }) else { return nil }
        var message = HandshakeResponseMessage(senderIndex: senderIndex, receiverIndex: self.senderIndex,
                                               noise: noiseOut, cipherChoice: choice).bytes
        macs.stamp(&message, now: now)
        return (message, TransportKeys(send: k2, receive: k1, headerFlags: flags))
    }
}

/// Decrypts and authenticates an initiation addressed to `identity` in one go;
/// nil on any failure. For one-off callers (tests, the benchmark); the session
/// layer uses the steps (`openInitiation`, `authenticate`) so that it refuses a
/// stranger after one DH. Here ss is computed, and a key `staticOf` does not
/// know is converted from the Ed25519 key the payload carries.
public func consumeInitiation(identity: Identity, message: [UInt8],
                              staticOf: (PublicKey) -> [UInt8]? = { _ in nil }) -> ReceivedInitiation? {
    consumeInitiation(identity: identity, message: message, ephemeral: nil, staticOf: staticOf)
}

/// As above, with a fixed responder ephemeral for tests.
func consumeInitiation(identity: Identity, message: [UInt8], ephemeral: DHKeyPair?,
                       staticOf: (PublicKey) -> [UInt8]? = { _ in nil }) -> ReceivedInitiation? {
    guard let opened = openInitiation(identity: identity, message: message, ephemeral: ephemeral),
          let ss = staticStatic(identity: identity, peerStatic: opened.initiatorStatic),
          let (state, timestamp, carried) = opened.decryptPayload(staticStatic: ss),
          let claimed = staticOf(carried) ?? carried.x25519,
          Sodium.constantTimeEqual(claimed, opened.initiatorStatic) else { return nil }
    return ReceivedInitiation(initiator: carried, senderIndex: opened.senderIndex, cipherOffer: opened.cipherOffer,
                              timestamp: timestamp, symmetric: state,
                              remoteEphemeral: opened.remoteEphemeral, remoteStatic: opened.initiatorStatic,
                              fixedEphemeral: ephemeral)
}

// MARK: - mac1 / mac2, sending side

/// Initiator/responder side of mac1/mac2 for messages sent TO `peer`; remembers a cookie received in a COOKIE_REPLY (valid 120 s).
/// One type for both suites: WireGuard's macs are the same construction with BLAKE2s
/// (whitepaper §5.4.4) keyed by the peer's X25519 key itself (`init(wireGuardPeer:)`).
public struct MacGenerator: Sendable {
    public let peer: PublicKey
    /// BLAKE2b (Whalescale) or BLAKE2s (WireGuard).
    let hash: NoiseHash
    /// Nil when `peer` has no X25519 form (no handshake with it can succeed anyway).
    let mac1Key: [UInt8]?
    let cookieKey: [UInt8]?
    /// mac1 of the last message stamped: a cookie reply must answer exactly it (it is the AEAD's AD).
    var lastMac1: [UInt8]?
    var cookie: [UInt8]?
    var cookieReceivedAt = Instant.zero

    public init(peer: PublicKey) {
        self.peer = peer
        hash = .blake2b
        let peerStatic = peer.x25519
        mac1Key = peerStatic.map { Sodium.blake2b(outputLength: 32, HandshakeConstants.mac1Label, $0) }
        cookieKey = peerStatic.map { Sodium.blake2b(outputLength: 32, HandshakeConstants.cookieLabel, $0) }
    }

    /// For a WireGuard peer, named by its X25519 public key: HASH(LABEL_MAC1 || S_pub)
    /// and HASH(LABEL_COOKIE || S_pub) with BLAKE2s-256.
    public init(wireGuardPeer peer: PublicKey) {
        self.peer = peer
        hash = .blake2s
        mac1Key = Sodium.blake2s(outputLength: 32, HandshakeConstants.mac1Label, peer.bytes)
        cookieKey = Sodium.blake2s(outputLength: 32, HandshakeConstants.cookieLabel, peer.bytes)
    }

    /// True while a cookie received less than 120 s ago will be used for mac2.
    public func hasFreshCookie(now: Instant) -> Bool {
        cookie != nil && now - cookieReceivedAt < HandshakeConstants.cookieLifetime
    }

    /// Fills the last 32 bytes of `message` (INIT or RESP, macs zeroed) with mac1 and mac2.
    public mutating func stamp(_ message: inout [UInt8], now: Instant) {
        guard let mac1Key, message.count >= HandshakeMACs.trailerLength else { return }
        let mac1At = message.count - HandshakeMACs.trailerLength
        let mac2At = mac1At + HandshakeMACs.macLength
        let mac1 = handshakeMAC(hash, key: mac1Key, Array(message[..<mac1At]))
        message.replaceSubrange(mac1At..<mac2At, with: mac1)
        lastMac1 = mac1
        // "If the initiator has received a cookie within the last 120 s, mac2 is computed; otherwise zeros."
        if let cookie, hasFreshCookie(now: now) {
            let mac2 = handshakeMAC(hash, key: cookie, Array(message[..<mac2At]))
            message.replaceSubrange(mac2At..<message.count, with: mac2)
        } else {
            message.replaceSubrange(mac2At..<message.count, with: [UInt8](repeating: 0, count: HandshakeMACs.macLength))
        }
    }

    /// Takes the cookie out of a COOKIE_REPLY answering the last message stamped.
    /// False (and nothing changes) if it does not decrypt with that message's mac1
    /// as AD, or no message is waiting for one. Routing by receiver_index is the caller's.
    public mutating func consumeCookieReply(_ message: [UInt8], now: Instant) -> Bool {
        guard let wire = CookieReplyMessage(bytes: message), let cookieKey, let lastMac1,
              let cookie = Sodium.xchachaPolyOpen(key: cookieKey, nonce: wire.nonce, ad: lastMac1,
                                                  ciphertext: wire.encryptedCookie) else { return false }
        self.cookie = cookie
        cookieReceivedAt = now
        // One reply per message: a duplicate (or replay) of this reply is refused.
        self.lastMac1 = nil
        return true
    }
}

// MARK: - mac1 / mac2, receiving side

/// Receiver side: validates mac1 always; mac2 under load; makes cookie replies. Rotates its secret by `now`.
public struct CookieChecker: Sendable {
    /// BLAKE2b (Whalescale's messages) or BLAKE2s (WireGuard's, `init(wireGuardIdentity:)`).
    let hash: NoiseHash
    let mac1Key: [UInt8]
    let cookieKey: [UInt8]
    var secret: SecretBytes
    /// Nil until first used: the first `now` seen starts the secret's lifetime.
    var secretCreatedAt: Instant?

    public init(identity: Identity) {
        hash = .blake2b
        mac1Key = Sodium.blake2b(outputLength: 32, HandshakeConstants.mac1Label, identity.staticPublic)
        cookieKey = Sodium.blake2b(outputLength: 32, HandshakeConstants.cookieLabel, identity.staticPublic)
        secret = SecretBytes.random(count: 32)
    }

    /// The checker for WireGuard peers' messages to us (148-byte INIT, 92-byte RESP):
    /// the same X25519 static, BLAKE2s (whitepaper §5.4.4, §5.4.7).
    public init(wireGuardIdentity identity: Identity) {
        hash = .blake2s
        mac1Key = Sodium.blake2s(outputLength: 32, HandshakeConstants.mac1Label, identity.staticPublic)
        cookieKey = Sodium.blake2s(outputLength: 32, HandshakeConstants.cookieLabel, identity.staticPublic)
        secret = SecretBytes.random(count: 32)
    }

    /// Where mac1 sits in a message of this checker's suite; nil for any other message.
    func mac1Offset(_ message: [UInt8]) -> Int? {
        switch hash {
        case .blake2b: return HandshakeMACs.mac1Offset(message)
        case .blake2s:
            guard let type = MessageType(datagram: message) else { return nil }
            switch type {
            case .handshakeInit where message.count == WireGuardInitiationMessage.size: return WireGuardInitiationMessage.mac1Offset
            case .handshakeResp where message.count == HandshakeResponseMessage.size: return HandshakeResponseMessage.mac1Offset
            default: return nil
            }
        }
    }

    /// True when `message` is an INIT or RESP of the right length whose mac1 proves
    /// the sender knew our public key. Cheap: one BLAKE2b, no DH.
    public func mac1Valid(_ message: [UInt8]) -> Bool {
        guard let mac1At = mac1Offset(message) else { return false }
        let expected = handshakeMAC(hash, key: mac1Key, Array(message[..<mac1At]))
        return Sodium.constantTimeEqual(expected, message[mac1At..<(mac1At + HandshakeMACs.macLength)])
    }

    /// True when mac2 was made with the cookie we would give `source` now: the sender
    /// receives at that address. Check it (under load) only after `mac1Valid`.
    /// `relayedFor`: the message came inside a RELAY from the anchor at `source`,
    /// naming this member as its sender; the cookie is then the one for that
    /// (anchor, member) pair, so members behind one anchor do not share one.
    public mutating func mac2Valid(_ message: [UInt8], source: Endpoint, relayedFor: MemberID? = nil, now: Instant) -> Bool {
        guard let mac1At = mac1Offset(message) else { return false }
        let mac2At = mac1At + HandshakeMACs.macLength
        rotateSecret(now: now)
        let expected = handshakeMAC(hash, key: cookie(for: source, relayedFor: relayedFor), Array(message[..<mac2At]))
        return Sodium.constantTimeEqual(expected, message[mac2At...])
    }

    /// COOKIE_REPLY to `message` (whose sender_index is `receiverIndex`), for the
    /// sender at `source`. Empty when `message` is not an INIT or RESP of the right
    /// length (never so after `mac1Valid` returned true). `relayedFor` as for `mac2Valid`.
    public mutating func createCookieReply(to message: [UInt8], receiverIndex: UInt32, source: Endpoint,
                                           relayedFor: MemberID? = nil, now: Instant) -> [UInt8] {
        guard let mac1At = mac1Offset(message) else { return [] }
        rotateSecret(now: now)
        let mac1 = Array(message[mac1At..<(mac1At + HandshakeMACs.macLength)])
        let nonce = Sodium.randomBytes(CookieReplyMessage.nonceSize)
        var cookie = cookie(for: source, relayedFor: relayedFor)
        defer { Sodium.wipe(&cookie) }
        let sealed = Sodium.xchachaPolySeal(key: cookieKey, nonce: nonce, ad: mac1, plaintext: cookie)
        return CookieReplyMessage(receiverIndex: receiverIndex, nonce: nonce, encryptedCookie: sealed).bytes
    }

    /// cookie = BLAKE2b-128(key = secret, address bytes (4 or 16) || port (big-endian)),
    /// and for a relayed sender `|| member id (8 bytes, wire order)` after the anchor's address and port.
    func cookie(for source: Endpoint, relayedFor: MemberID? = nil) -> [UInt8] {
        let address = Array(source.address.bytes.prefix(source.family == .v4 ? 4 : 16))
        let port: [UInt8] = [UInt8(source.port >> 8), UInt8(source.port & 0xff)]
        guard let relayedFor else {
            return handshakeMAC(hash, key: secret, address + port)
        }
        let id = (0..<8).map { UInt8(truncatingIfNeeded: relayedFor.rawValue >> (8 * UInt64($0))) }
        return handshakeMAC(hash, key: secret, address + port + id)
    }

    /// A new random secret every 120 s, so a cookie stops working soon after its
    /// holder stops receiving at that address.
    mutating func rotateSecret(now: Instant) {
        guard let created = secretCreatedAt else {
            secretCreatedAt = now
            return
        }
        if now - created >= HandshakeConstants.cookieLifetime {
            secret = SecretBytes.random(count: 32)
            secretCreatedAt = now
        }
    }
}

/// MAC(key, input) of the handshake: keyed BLAKE2b-128 (Whalescale) or keyed
/// BLAKE2s-128 (WireGuard, whitepaper §5.4: "Mac(key, input) Keyed-Blake2s(key, input, 16)").
func handshakeMAC(_ hash: NoiseHash, key: some ByteView, _ input: [UInt8]) -> [UInt8] {
    switch hash {
    case .blake2b: Sodium.blake2b(outputLength: HandshakeMACs.macLength, key: key, input)
    case .blake2s: Sodium.blake2s(outputLength: HandshakeMACs.macLength, key: key, input)
    }
}

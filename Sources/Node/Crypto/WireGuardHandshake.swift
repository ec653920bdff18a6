// WireGuard's handshake (whitepaper §5.4), the second handshake suite: Noise
// pattern IKpsk2 over 25519, ChaChaPoly and BLAKE2s, with WireGuard's construction
// and identifier strings. It runs on the same Noise framework as Whalescale's
// suite (Noise.swift: `NoiseHash.blake2s` from libb2), which is checked against
// the published Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s vector (NoiseVectorTests);
// the whitepaper's names map onto Noise's one to one:
//
//   whitepaper                              Noise (§5.2, §9.2)
//   Ci := Hash(CONSTRUCTION), Hi := Hash(Ci || IDENTIFIER)      InitializeSymmetric(name), MixHash(prologue)
//   Hi := Hash(Hi || Spub_r)                pre-message s of the responder
//   Ci := Kdf1(Ci, Epub_i), Hi := Hash(Hi || Epub_i)   token e in a psk handshake (MixHash, MixKey)
//   (Ci, k) := Kdf2(Ci, DH(...)), msg.x := Aead(k, 0, x, Hi), Hi := Hash(Hi || msg.x)
//                                            es / ss MixKey, EncryptAndHash
//   (Ci, τ, k) := Kdf3(Ci, Q)                token psk: MixKeyAndHash(psk)
//   (T_send, T_recv) := Kdf2(Ci, ε)          Split()
//
//   initiator                                                   responder
//   createInitiation ── INIT 148 (e, es, s, ss, {timestamp}) ─▶ openInitiation (es: 1 DH, names the static)
//                                                                [caller: a WireGuard peer's static? else stop]
//                                                                authenticate (ss precomputed, timestamp)
//                                                                [caller: timestamp newer? not a flood?]
//   consumeResponse ◀─ RESP 92 (e, ee, se, psk, {}) ─────────── createResponse
//   keys: send = T_send (c1), receive = c2                     keys: send = c2, receive = c1
//
// mac1/mac2 and cookie replies are `MacGenerator(wireGuardPeer:)` and
// `CookieChecker(wireGuardIdentity:)` (Handshake.swift, with BLAKE2s). The
// transport keys are `TransportKey`s: WireGuard's transport message is byte for
// byte Whalescale's DATA (Wire/DataMessage.swift).
//
// Our static: the node's X25519 static, the one Whalescale's handshake uses
// (`Identity.staticKeyPair`, converted from the Ed25519 seed). A WireGuard peer
// is configured with its base64 (`wsctl pubkey --wireguard`).

import Support
import Wire

/// WireGuard's strings and sizes (whitepaper §5.4).
public enum WireGuardConstants {
    /// CONSTRUCTION.
    public static let construction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
    /// IDENTIFIER, mixed in as Noise's prologue.
    public static let identifier: [UInt8] = Array("WireGuard v1 zx2c4 Jason@zx2c4.com".utf8)
    /// The initiation's encrypted payload: a TAI64N timestamp.
    public static let timestampLength = 12
}

/// A WireGuard preshared key Q (32 bytes; all zeros when none is configured, as
/// the whitepaper says). Held in wiped storage.
public struct PresharedKey: Sendable {
    let secret: SecretBytes

    /// Exactly 32 bytes (the caller wipes its copy).
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        secret = SecretBytes(copying: bytes)
    }

    /// Standard padded base64 of 32 bytes (a `wg genpsk` file), whitespace ignored.
    public init?(base64: String) {
        Sodium.initialize()
        guard let bytes = Sodium.base64Decode(base64, count: 32) else { return nil }
        secret = bytes
    }

    /// "If no pre-shared key is in use, Q is 32 zero bytes."
    public static var zero: PresharedKey { PresharedKey(bytes: [UInt8](repeating: 0, count: 32))! }
}

// MARK: - Initiator

/// An initiation sent and not yet answered (the Noise state, with the ephemeral's
/// private key and the psk, until a response authenticates).
public struct WireGuardInitiator: Sendable {
    public let responder: PublicKey
    public let senderIndex: UInt32
    public let createdAt: Instant
    let noise: NoiseHandshakeState

    /// Builds the 148-byte INIT for `responder` (its X25519 key). Nil when the
    /// timestamp is not 12 bytes, `macs` is for another peer, or a DH fails.
    static func createInitiation(identity: Identity, responder: PublicKey, senderIndex: UInt32, timestamp: [UInt8],
                                 psk: PresharedKey, macs: inout MacGenerator, now: Instant,
                                 ephemeral: DHKeyPair? = nil) -> (message: [UInt8], state: WireGuardInitiator)? {
        guard timestamp.count == WireGuardConstants.timestampLength, macs.peer == responder, macs.hash == .blake2s else {
            return nil
        }
        do {
            var noise = try NoiseHandshakeState(
                protocolName: WireGuardConstants.construction, role: .initiator, prologue: WireGuardConstants.identifier,
                localStatic: identity.staticKeyPair, remoteStatic: responder.bytes, psks: [psk.secret],
                fixedEphemeral: ephemeral)
            let body = try noise.writeMessage(payload: timestamp)
            var message = WireGuardInitiationMessage(senderIndex: senderIndex, noise: body).bytes
            macs.stamp(&message, now: now)
            return (message, WireGuardInitiator(responder: responder, senderIndex: senderIndex, createdAt: now, noise: noise))
        } catch {
            return nil
        }
    }

    /// Nil unless `message` is a 92-byte RESP to this initiation (receiver_index
    /// = our sender index) that authenticates, psk included. mac1/mac2 are the caller's.
    public func consumeResponse(_ message: [UInt8]) -> (responderIndex: UInt32, keys: TransportKeys)? {
        // WireGuard's RESP has no cipher choice: byte 1 is reserved and zero.
        guard let wire = HandshakeResponseMessage(bytes: message), wire.receiverIndex == senderIndex,
              wire.cipherChoice == 0 else { return nil }
        var noise = self.noise  // a copy: a forged response leaves this state usable
        guard let payload = try? noise.readMessage(wire.noise), payload.isEmpty,
              let keys = try? noise.transportKeys() else { return nil }
        return (wire.senderIndex, keys)
    }
}

// MARK: - Responder

/// An INIT after es: it decrypted and names the static `initiatorStatic`, which
/// is not proven yet (ss and the timestamp's tag prove it).
public struct WireGuardOpenedInitiation: Sendable {
    public let senderIndex: UInt32
    public let initiatorStatic: [UInt8]
    let symmetric: NoiseSymmetricState
    let remoteEphemeral: [UInt8]
    let encryptedTimestamp: [UInt8]
    let fixedEphemeral: DHKeyPair?

    /// ss (precomputed) and the timestamp: nil unless it decrypts and `initiator`
    /// is the static this initiation named (the caller looked it up by that static).
    public func authenticate(staticStatic: StaticStatic, initiator: PublicKey) -> WireGuardReceivedInitiation? {
        guard Sodium.constantTimeEqual(initiator.bytes, initiatorStatic) else { return nil }
        var state = symmetric
        // ss: (Ci, κ) := Kdf2(Ci, DH(Spriv_r, Spub_i)); msg.timestamp := Aead(κ, 0, Timestamp(), Hi)
        state.mixKey(staticStatic.secret)
        guard let timestamp = try? state.decryptAndHash(encryptedTimestamp),
              timestamp.count == WireGuardConstants.timestampLength else { return nil }
        return WireGuardReceivedInitiation(initiator: initiator, senderIndex: senderIndex, timestamp: timestamp,
                                           symmetric: state, remoteEphemeral: remoteEphemeral,
                                           fixedEphemeral: fixedEphemeral)
    }
}

/// e, es and s of a 148-byte INIT to `identity` (one DH). Nil when it is not a
/// WireGuard INIT or does not decrypt. mac1/mac2 are the caller's, and come first.
public func openWireGuardInitiation(identity: Identity, message: [UInt8]) -> WireGuardOpenedInitiation? {
    openWireGuardInitiation(identity: identity, message: message, ephemeral: nil)
}

func openWireGuardInitiation(identity: Identity, message: [UInt8], ephemeral: DHKeyPair?) -> WireGuardOpenedInitiation? {
    guard let wire = WireGuardInitiationMessage(bytes: message) else { return nil }
    let noise = wire.noise, dh = noiseDHLength, tag = noiseTagLength
    var state = NoiseSymmetricState(protocolName: Array(WireGuardConstants.construction.utf8), hash: .blake2s)
    state.mixHash(WireGuardConstants.identifier)
    state.mixHash(identity.staticPublic)
    // e in a psk handshake: MixHash(re), MixKey(re).
    let re = Array(noise[0..<dh])
    state.mixHash(re)
    state.mixKey(re)
    // es: responder DH(s, re); a small-order re gives zeros and is refused.
    guard let es = Sodium.x25519(identity.staticKeyPair.privateKey, re) else { return nil }
    state.mixKey(es)
    guard let rs = try? state.decryptAndHash(Array(noise[dh..<(2 * dh + tag)])) else { return nil }
    return WireGuardOpenedInitiation(senderIndex: wire.senderIndex, initiatorStatic: rs, symmetric: state,
                                     remoteEphemeral: re, encryptedTimestamp: Array(noise[(2 * dh + tag)...]),
                                     fixedEphemeral: ephemeral)
}

/// An INIT that authenticated: its timestamp is readable; answer with `createResponse`.
public struct WireGuardReceivedInitiation: Sendable {
    /// The initiator's X25519 public key (a WireGuard peer is named by it).
    public let initiator: PublicKey
    public let senderIndex: UInt32
    /// TAI64N, 12 bytes: accept only if greater than the last one accepted from `initiator`.
    public let timestamp: [UInt8]
    let symmetric: NoiseSymmetricState
    let remoteEphemeral: [UInt8]
    let fixedEphemeral: DHKeyPair?

    /// The 92-byte RESP (e, ee, se, psk, empty payload) and the session keys.
    /// Each call makes a new ephemeral: call it once.
    public func createResponse(senderIndex: UInt32, psk: PresharedKey, macs: inout MacGenerator, now: Instant)
        -> (message: [UInt8], keys: TransportKeys)? {
        guard macs.peer == initiator, macs.hash == .blake2s else { return nil }
        var state = symmetric
        let e = fixedEphemeral ?? DHKeyPair.generate()
        state.mixHash(e.publicKey)
        state.mixKey(e.publicKey)
        guard let ee = Sodium.x25519(e.privateKey, remoteEphemeral) else { return nil }
        state.mixKey(ee)
        guard let se = Sodium.x25519(e.privateKey, initiator.bytes) else { return nil }
        state.mixKey(se)
        // psk2: (Cr, τ, κ) := Kdf3(Cr, Q); Hr := Hash(Hr || τ)
        state.mixKeyAndHash(psk.secret)
        guard let tag = try? state.encryptAndHash([]) else { return nil }
        let (c1, c2) = state.split()
        guard let k1 = c1.transportKey, let k2 = c2.transportKey else { return nil }
        var message = HandshakeResponseMessage(senderIndex: senderIndex, receiverIndex: self.senderIndex,
                                               noise: e.publicKey + tag).bytes
        macs.stamp(&message, now: now)
        return (message, TransportKeys(send: k2, receive: k1))
    }
}

// MARK: - The suite

/// WireGuard's suite (this file; layouts: Wire/WireGuardMessages.swift for INIT,
/// HandshakeMessages.swift for RESP and COOKIE_REPLY). Peers are named by their
/// X25519 key, which `PublicKey` carries as its 32 bytes.
public enum WireGuardIK: HandshakeSuite {
    public static let id = HandshakeSuiteID.wireGuard
    public static let protocolName = WireGuardConstants.construction
    public static let initiationSize = WireGuardInitiationMessage.size
    public static let responseSize = HandshakeResponseMessage.size
    public static let cookieReplySize = CookieReplyMessage.size

    public static func makeMacs(peer: PublicKey) -> MacGenerator { MacGenerator(wireGuardPeer: peer) }

    public static func createInitiation(identity: Identity, responder: PublicKey, senderIndex: UInt32, timestamp: [UInt8],
                                        psk: PresharedKey?, macs: inout MacGenerator, now: Instant)
        -> (message: [UInt8], state: WireGuardInitiator)? {
        WireGuardInitiator.createInitiation(identity: identity, responder: responder, senderIndex: senderIndex,
                                            timestamp: timestamp, psk: psk ?? .zero, macs: &macs, now: now)
    }

    public static func openInitiation(identity: Identity, message: [UInt8]) -> WireGuardOpenedInitiation? {
        openWireGuardInitiation(identity: identity, message: message)
    }

    public static func initiatorStatic(of opened: WireGuardOpenedInitiation) -> [UInt8] { opened.initiatorStatic }

    public static func authenticate(_ opened: WireGuardOpenedInitiation, staticStatic: StaticStatic,
                                    initiator: PublicKey) -> WireGuardReceivedInitiation? {
        opened.authenticate(staticStatic: staticStatic, initiator: initiator)
    }

    public static func createResponse(to received: WireGuardReceivedInitiation, senderIndex: UInt32, psk: PresharedKey?,
                                      macs: inout MacGenerator, now: Instant) -> (message: [UInt8], keys: TransportKeys)? {
        received.createResponse(senderIndex: senderIndex, psk: psk ?? .zero, macs: &macs, now: now)
    }

    public static func consumeResponse(_ message: [UInt8], state: WireGuardInitiator)
        -> (responderIndex: UInt32, keys: TransportKeys)? {
        state.consumeResponse(message)
    }
}

extension Identity {
    /// This node's X25519 static key in base64: the public key a stock WireGuard
    /// peer configures for us (`wsctl pubkey --wireguard`, status `wireguard_public_key`).
    public var wireGuardPublicKey: String { Sodium.base64Encode(staticPublic) }
}

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// The transport cipher, per session (Crypto/Handshake.swift, docs/wire.md "Cipher negotiation"):
///  - the data path's seal/open round trip for both ciphers, with a tampered packet refused
///    (the known answers are the cacophony transport messages: NoiseVectorTests);
///  - the negotiation matrix on the handshake verbs: both allow AES-GCM -> AES-GCM; either
///    side ChaCha-only -> ChaCha; an offer of 0 (a peer from before negotiation) -> ChaCha,
///    on the transcript such a peer computes; an offer or a choice changed in flight -> refused;
///    a choice nobody offered -> refused; WireGuard's RESP with a choice -> refused.
/// The same matrix through NodeCore on NetSim is in ConnectivityCipherTests.
final class CipherNegotiationTests: XCTestCase {
    let a = Identity(secret: SecretKey.generate())
    let b = Identity(secret: SecretKey.generate())
    let ts = [UInt8](repeating: 1, count: HandshakeConstants.timestampLength)

    var aes: Bool { NoiseCipher.aesGCM.isAvailable }

    func requireAES() throws {
        guard aes else { throw XCTSkip("this CPU has no AES-GCM in libsodium (AES-NI): AES-256-GCM cases not run") }
    }

    // MARK: Data path

    func testSealOpenRoundTripBothCiphers() throws {
        let key = (0..<32).map { UInt8($0 &* 7 &+ 3) }
        for cipher in NoiseCipher.allCases where cipher.isAvailable {
            let send = TransportKey(bytes: key, cipher: cipher), receive = TransportKey(bytes: key, cipher: cipher)
            XCTAssertEqual(send.cipher, cipher)
            for length in [0, 1, 15, 16, 17, 64, 1420] {
                let plain = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 5) }
                var buffer = plain + [UInt8](repeating: 0, count: 16)
                buffer.withUnsafeMutableBytes { send.seal(counter: 0x0102_0304_0506, buffer: $0.baseAddress!, length: length) }
                if length > 0 { XCTAssertNotEqual(Array(buffer.prefix(length)), plain, "\(cipher) \(length): encrypted") }
                // The same bytes as the handshake's (array) AEAD: one cipher, one nonce layout.
                let reference = cipher == .aesGCM
                    ? Sodium.aesGCMSeal(key: SecretBytes(copying: key), nonce: 0x0102_0304_0506, ad: [UInt8](), plaintext: plain)
                    : Sodium.chachaPolySeal(key: SecretBytes(copying: key), nonce: 0x0102_0304_0506, ad: [UInt8](), plaintext: plain)
                XCTAssertEqual(buffer, reference, "\(cipher) \(length)")
                var tampered = buffer
                tampered[length / 2] ^= 0x01
                XCTAssertFalse(tampered.withUnsafeMutableBytes {
                    receive.open(counter: 0x0102_0304_0506, buffer: $0.baseAddress!, length: $0.count)
                }, "\(cipher) \(length): a flipped bit is refused")
                var wrongCounter = buffer
                XCTAssertFalse(wrongCounter.withUnsafeMutableBytes {
                    receive.open(counter: 0x0102_0304_0507, buffer: $0.baseAddress!, length: $0.count)
                }, "\(cipher) \(length): another counter is refused")
                XCTAssertTrue(buffer.withUnsafeMutableBytes {
                    receive.open(counter: 0x0102_0304_0506, buffer: $0.baseAddress!, length: $0.count)
                }, "\(cipher) \(length)")
                XCTAssertEqual(Array(buffer.prefix(length)), plain, "\(cipher) \(length): decrypted in place")
            }
        }
        // The two ciphers under one key give different bytes (the key carries its cipher).
        if aes {
            var x = [UInt8](repeating: 9, count: 48), y = x
            x.withUnsafeMutableBytes { TransportKey(bytes: key).seal(counter: 1, buffer: $0.baseAddress!, length: 32) }
            y.withUnsafeMutableBytes { TransportKey(bytes: key, cipher: .aesGCM).seal(counter: 1, buffer: $0.baseAddress!, length: 32) }
            XCTAssertNotEqual(x, y)
        }
    }

    /// Noise §12.4: the AESGCM nonce's counter is big-endian (ChaChaPoly's little-endian).
    func testNonceLayouts() {
        withUnsafeBytes(of: Sodium.noiseAESGCMNonce(0x0102_0304_0506_0708)) {
            XCTAssertEqual(Array($0), [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
        }
        withUnsafeBytes(of: Sodium.noiseNonce(0x0102_0304_0506_0708)) {
            XCTAssertEqual(Array($0), [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1])
        }
    }

    func testProtocolNames() throws {
        XCTAssertEqual(try NoiseProtocol(name: "Noise_IK_25519_ChaChaPoly_BLAKE2b").cipher, .chachaPoly)
        if aes {
            XCTAssertEqual(try NoiseProtocol(name: "Noise_IK_25519_AESGCM_BLAKE2s").cipher, .aesGCM)
        } else {
            XCTAssertThrowsError(try NoiseProtocol(name: "Noise_IK_25519_AESGCM_BLAKE2s"))
        }
        XCTAssertThrowsError(try NoiseProtocol(name: "Noise_IK_25519_AESGCM_SHA256"))
        XCTAssertThrowsError(try NoiseProtocol(name: "Noise_IK_448_AESGCM_BLAKE2b"))
    }

    // MARK: Negotiation on the handshake verbs

    struct Outcome {
        var initiation: [UInt8]
        var response: [UInt8]?
        var initiator: TransportKeys?
        var responder: TransportKeys?
    }

    /// One handshake A -> B. `offer`: the INIT's byte 1 as sent; `accept`: B's config allows AES-GCM;
    /// `onInit` / `onResp`: an attacker on the path.
    func handshake(offer: UInt8, accept: Bool, onInit: (inout [UInt8]) -> Void = { _ in },
                   onResp: (inout [UInt8]) -> Void = { _ in }) throws -> Outcome {
        var macsAB = MacGenerator(peer: b.publicKey), macsBA = MacGenerator(peer: a.publicKey)
        let (sent, state) = try XCTUnwrap(InitiatorHandshake.createInitiation(
            identity: a, responder: b.publicKey, senderIndex: 7, timestamp: ts, cipherOffer: offer,
            macs: &macsAB, now: .zero, ephemeral: nil))
        XCTAssertEqual(sent[1], offer, "the offer is INIT byte 1")
        var initiation = sent
        onInit(&initiation)
        guard let received = consumeInitiation(identity: b, message: initiation) else {
            return Outcome(initiation: initiation)
        }
        XCTAssertEqual(received.cipherOffer, offer)
        let (sentResponse, keysB) = try XCTUnwrap(received.createResponse(senderIndex: 9, aesGCM: accept, macs: &macsBA, now: .zero))
        var response = sentResponse
        onResp(&response)
        let keysA = state.consumeResponse(response)?.keys
        return Outcome(initiation: initiation, response: response, initiator: keysA, responder: keysB)
    }

    /// Both ends' keys work together under the cipher they report.
    func assertSession(_ o: Outcome, _ cipher: NoiseCipher, file: StaticString = #filePath, line: UInt = #line) {
        guard let ka = o.initiator, let kb = o.responder else { return XCTFail("handshake refused", file: file, line: line) }
        XCTAssertEqual(ka.cipher, cipher, "initiator", file: file, line: line)
        XCTAssertEqual(kb.cipher, cipher, "responder", file: file, line: line)
        XCTAssertEqual(o.response?[1], cipher.rawValue, "the choice is RESP byte 1", file: file, line: line)
        var buf = [UInt8](repeating: 0x5a, count: 100 + 16)
        buf.withUnsafeMutableBytes { ka.send.seal(counter: 3, buffer: $0.baseAddress!, length: 100) }
        XCTAssertTrue(buf.withUnsafeMutableBytes { kb.receive.open(counter: 3, buffer: $0.baseAddress!, length: 116) },
                      file: file, line: line)
        buf.withUnsafeMutableBytes { kb.send.seal(counter: 0, buffer: $0.baseAddress!, length: 100) }
        XCTAssertTrue(buf.withUnsafeMutableBytes { ka.receive.open(counter: 0, buffer: $0.baseAddress!, length: 116) },
                      file: file, line: line)
    }

    func testBothAllowAESGCM() throws {
        try requireAES()
        XCTAssertEqual(InitiatorHandshake.cipherOffer(aesGCM: true), 1)
        assertSession(try handshake(offer: 1, accept: true), .aesGCM)
    }

    func testResponderChaChaOnly() throws {
        assertSession(try handshake(offer: InitiatorHandshake.cipherOffer(aesGCM: true), accept: false), .chachaPoly)
    }

    func testInitiatorChaChaOnly() throws {
        XCTAssertEqual(InitiatorHandshake.cipherOffer(aesGCM: false), 0)
        assertSession(try handshake(offer: 0, accept: true), .chachaPoly)
    }

    /// Offer bits we do not know yet are carried and authenticated, and mean nothing.
    func testUnknownOfferBitsAreIgnored() throws {
        assertSession(try handshake(offer: 0b1111_1110, accept: true), .chachaPoly)
        if aes { assertSession(try handshake(offer: 0xff, accept: true), .aesGCM) }
    }

    /// A peer from before negotiation sends 0 and mixes nothing: its INIT is the one a
    /// plain Noise_IK_25519_ChaChaPoly_BLAKE2b initiator writes, and it gets ChaCha.
    func testOldPeerOfferZeroIsPlainNoiseIK() throws {
        let e = DHKeyPair.generate()
        var macs1 = MacGenerator(peer: b.publicKey)
        let (ours, _) = try XCTUnwrap(InitiatorHandshake.createInitiation(
            identity: a, responder: b.publicKey, senderIndex: 7, timestamp: ts, cipherOffer: 0, macs: &macs1, now: .zero,
            ephemeral: e))
        var plain = try NoiseHandshakeState(protocolName: HandshakeConstants.protocolName, role: .initiator,
                                            prologue: HandshakeConstants.prologue, localStatic: a.staticKeyPair,
                                            remoteStatic: b.publicKey.x25519, psks: [], fixedEphemeral: e)
        let body = try plain.writeMessage(payload: ts + a.publicKey.bytes)
        XCTAssertEqual(Array(ours[8..<148]), body, "offer 0: the transcript of a peer without negotiation")
        XCTAssertEqual(Array(ours[0..<4]), [1, 0, 0, 0])
        assertSession(try handshake(offer: 0, accept: true), .chachaPoly)
    }

    func testOfferFlippedInFlightIsRefused() throws {
        // 1 -> 0 (a downgrade) and 0 -> 1 (an upgrade nobody asked for): the INIT does not decrypt.
        for (offer, flipped) in [(UInt8(1), UInt8(0)), (0, 1), (1, 3)] {
            let o = try handshake(offer: offer, accept: true, onInit: { $0[1] = flipped })
            XCTAssertNil(o.response, "offer \(offer) -> \(flipped): refused")
            XCTAssertNil(openInitiation(identity: b, message: o.initiation), "refused at the first decryption (s)")
        }
    }

    func testChoiceFlippedInFlightIsRefused() throws {
        try requireAES()
        // AES-GCM chosen, rewritten to ChaCha (a downgrade): the RESP does not authenticate.
        let down = try handshake(offer: 1, accept: true, onResp: { $0[1] = 0 })
        XCTAssertEqual(down.responder?.cipher, .aesGCM)
        XCTAssertNil(down.initiator, "choice 1 -> 0: refused")
        // ChaCha chosen, rewritten to AES-GCM: refused too.
        let up = try handshake(offer: 1, accept: false, onResp: { $0[1] = 1 })
        XCTAssertEqual(up.responder?.cipher, .chachaPoly)
        XCTAssertNil(up.initiator, "choice 0 -> 1: refused")
    }

    /// A choice the initiator did not offer is refused before any decryption (header flags,
    /// bit 1, included); an unknown one at parsing.
    func testChoiceNotOfferedIsRefused() throws {
        let o = try handshake(offer: 0, accept: true, onResp: { $0[1] = 1 })
        XCTAssertNil(o.initiator)
        let flags = try handshake(offer: 1, accept: true, onResp: { $0[1] = 2 })
        XCTAssertNil(flags.initiator, "header flags chosen, not offered")
        XCTAssertNotNil(HandshakeResponseMessage(bytes: flags.response!))
        let unknown = try handshake(offer: 1, accept: true, onResp: { $0[1] = 4 })
        XCTAssertNil(unknown.initiator)
        XCTAssertNil(HandshakeResponseMessage(bytes: unknown.response!))
    }

    /// WireGuard's suite has no negotiation: its RESP's byte 1 stays reserved.
    func testWireGuardResponseWithAChoiceIsRefused() throws {
        var macsAB = MacGenerator(wireGuardPeer: PublicKey(bytes: b.staticPublic)!)
        var macsBA = MacGenerator(wireGuardPeer: PublicKey(bytes: a.staticPublic)!)
        let (initiation, initiator) = try XCTUnwrap(WireGuardIK.createInitiation(
            identity: a, responder: PublicKey(bytes: b.staticPublic)!, senderIndex: 1, timestamp: ts, psk: nil,
            macs: &macsAB, now: .zero))
        let opened = try XCTUnwrap(WireGuardIK.openInitiation(identity: b, message: initiation))
        let ss = try XCTUnwrap(staticStatic(identity: b, peerStatic: opened.initiatorStatic))
        let received = try XCTUnwrap(WireGuardIK.authenticate(opened, staticStatic: ss, initiator: PublicKey(bytes: a.staticPublic)!))
        let (response, keysB) = try XCTUnwrap(WireGuardIK.createResponse(to: received, senderIndex: 2, psk: nil, macs: &macsBA, now: .zero))
        XCTAssertEqual(keysB.cipher, .chachaPoly)
        XCTAssertEqual(response[1], 0)
        XCTAssertEqual(WireGuardIK.consumeResponse(response, state: initiator)?.keys.cipher, .chachaPoly)
        var chosen = response
        chosen[1] = 1
        XCTAssertNil(WireGuardIK.consumeResponse(chosen, state: initiator))
    }
}

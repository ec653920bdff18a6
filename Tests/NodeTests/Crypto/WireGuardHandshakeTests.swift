// WireGuard's suite (Crypto/WireGuardHandshake.swift) and BLAKE2s (libb2,
// Crypto/Blake2s.swift). Layers of proof:
//   - BLAKE2s and HMAC-BLAKE2s against published / independently computed values
//     (RFC 7693 Appendix B, the reference blake2s-kat.txt, Python's hashlib + hmac);
//   - the Noise pattern itself: the cacophony Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s
//     vector in NoiseVectorTests runs on the same framework;
//   - a full handshake between two instances of this code, step by step, with a
//     psk, a wrong psk, tampering, mac1 and a cookie round;
//   - and live against wireguard-go in tests/wgcompat.sh (the real proof of the
//     construction and identifier strings).

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto

final class WireGuardHandshakeTests: XCTestCase {
    // MARK: BLAKE2s

    func testBlake2sKnownAnswers() {
        // RFC 7693 Appendix B: BLAKE2s-256("abc").
        XCTAssertEqual(Sodium.blake2s(outputLength: 32, Array("abc".utf8)),
                       [UInt8](cryptoHex: "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"))
        // blake2s-kat.txt, first keyed entry: key 00..1f, empty input.
        XCTAssertEqual(Sodium.blake2s(outputLength: 32, key: Array(0..<32), []),
                       [UInt8](cryptoHex: "48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49"))
        // Multi-part input equals one part.
        XCTAssertEqual(Sodium.blake2s(outputLength: 32, Array("a".utf8), Array("bc".utf8)),
                       Sodium.blake2s(outputLength: 32, Array("abc".utf8)))
    }

    func testHMACBlake2s() {
        // Python: hmac.new(b"key", b"The quick brown fox jumps over the lazy dog", hashlib.blake2s).hexdigest()
        let mac = NoiseHash.blake2s.hmac(key: Array("key".utf8), [Array("The quick brown fox jumps over the lazy dog".utf8)])
        XCTAssertEqual(mac.array, [UInt8](cryptoHex: "f93215bb90d4af4c3061cd932fb169fb8bb8a91d0b4022baea1271e1323cd9a0"))
        // HKDF outputs are HASHLEN (32) and chained: out2 = HMAC(temp, out1 || 2).
        let out = NoiseHash.blake2s.hkdf(chainingKey: [UInt8](repeating: 1, count: 32), inputKeyMaterial: [UInt8](), outputs: 3)
        XCTAssertEqual(out.map(\.count), [32, 32, 32])
        let temp = NoiseHash.blake2s.hmac(key: [UInt8](repeating: 1, count: 32), [[UInt8]()])
        XCTAssertEqual(out[1].array, NoiseHash.blake2s.hmac(key: temp, [out[0], [UInt8(2)]]).array)
    }

    // MARK: Handshake

    private let timestamp: [UInt8] = HandshakeTimestampBytes.sample
    private func identity() -> Identity { Identity(secret: .generate()) }
    private func wgKey(_ id: Identity) -> PublicKey { PublicKey(bytes: id.staticPublic)! }

    func testSizesAndDispatch() {
        XCTAssertEqual(WireGuardIK.initiationSize, 148)
        XCTAssertEqual(WireGuardIK.responseSize, 92)
        XCTAssertEqual(WireGuardIK.cookieReplySize, 64)
        XCTAssertEqual(HandshakeSuites.classify(type: 1, length: 148)?.suite, .wireGuard)
        XCTAssertEqual(HandshakeSuites.classify(type: 1, length: 148)?.message, .initiation)
        XCTAssertEqual(HandshakeSuites.classify(type: 1, length: 180)?.suite, .whalescaleIK)
        XCTAssertNil(HandshakeSuites.classify(type: 1, length: 147))
        XCTAssertNil(HandshakeSuites.classify(type: 1, length: 149))
    }

    /// Initiator and responder, both this code, with a psk: the keys agree crosswise.
    func testFullHandshakeWithPSK() throws {
        let a = identity(), b = identity()
        let psk = PresharedKey(bytes: Array(repeating: 7, count: 32))!
        var macsAB = WireGuardIK.makeMacs(peer: wgKey(b))
        var macsBA = WireGuardIK.makeMacs(peer: wgKey(a))
        let now = Instant.zero
        let (initMsg, initiator) = try XCTUnwrap(WireGuardIK.createInitiation(
            identity: a, responder: wgKey(b), senderIndex: 0x1111, timestamp: timestamp, psk: psk, macs: &macsAB, now: now))
        XCTAssertEqual(initMsg.count, 148)
        XCTAssertEqual(Array(initMsg[0..<4]), [1, 0, 0, 0])

        let checkerB = CookieChecker(wireGuardIdentity: b)
        XCTAssertTrue(checkerB.mac1Valid(initMsg))
        XCTAssertFalse(CookieChecker(identity: b).mac1Valid(initMsg), "a Whalescale checker does not take a WireGuard INIT")
        XCTAssertFalse(CookieChecker(wireGuardIdentity: a).mac1Valid(initMsg), "mac1 is keyed by the responder's static")

        let opened = try XCTUnwrap(WireGuardIK.openInitiation(identity: b, message: initMsg))
        XCTAssertEqual(WireGuardIK.initiatorStatic(of: opened), a.staticPublic)
        XCTAssertEqual(opened.senderIndex, 0x1111)
        let ss = try XCTUnwrap(staticStatic(identity: b, peerStatic: a.staticPublic))
        let received = try XCTUnwrap(WireGuardIK.authenticate(opened, staticStatic: ss, initiator: wgKey(a)))
        XCTAssertEqual(received.timestamp, timestamp)
        let (respMsg, keysB) = try XCTUnwrap(WireGuardIK.createResponse(to: received, senderIndex: 0x2222, psk: psk,
                                                                        macs: &macsBA, now: now))
        XCTAssertEqual(respMsg.count, 92)
        XCTAssertTrue(CookieChecker(wireGuardIdentity: a).mac1Valid(respMsg))
        let (responderIndex, keysA) = try XCTUnwrap(WireGuardIK.consumeResponse(respMsg, state: initiator))
        XCTAssertEqual(responderIndex, 0x2222)
        XCTAssertTrue(roundTrip(from: keysA.send, to: keysB.receive))
        XCTAssertTrue(roundTrip(from: keysB.send, to: keysA.receive))
        XCTAssertFalse(roundTrip(from: keysA.send, to: keysA.receive), "the two directions have different keys")
    }

    func testWrongPSKIsRefusedAtTheResponse() throws {
        let a = identity(), b = identity()
        var macsAB = WireGuardIK.makeMacs(peer: wgKey(b)), macsBA = WireGuardIK.makeMacs(peer: wgKey(a))
        let (initMsg, initiator) = try XCTUnwrap(WireGuardIK.createInitiation(
            identity: a, responder: wgKey(b), senderIndex: 1, timestamp: timestamp,
            psk: PresharedKey(bytes: Array(repeating: 1, count: 32)), macs: &macsAB, now: .zero))
        let opened = try XCTUnwrap(WireGuardIK.openInitiation(identity: b, message: initMsg))
        let ss = try XCTUnwrap(staticStatic(identity: b, peerStatic: a.staticPublic))
        let received = try XCTUnwrap(WireGuardIK.authenticate(opened, staticStatic: ss, initiator: wgKey(a)))
        // psk2 is mixed in at the end of message 2: the INIT authenticates, the RESP does not.
        let (respMsg, _) = try XCTUnwrap(WireGuardIK.createResponse(to: received, senderIndex: 2, psk: nil, macs: &macsBA, now: .zero))
        XCTAssertNil(WireGuardIK.consumeResponse(respMsg, state: initiator))
    }

    func testStrangersAndTamperingAreRefused() throws {
        let a = identity(), b = identity(), c = identity()
        var macs = WireGuardIK.makeMacs(peer: wgKey(b))
        let (initMsg, initiator) = try XCTUnwrap(WireGuardIK.createInitiation(
            identity: a, responder: wgKey(b), senderIndex: 1, timestamp: timestamp, psk: nil, macs: &macs, now: .zero))
        // Addressed to b: c cannot open it.
        XCTAssertNil(WireGuardIK.openInitiation(identity: c, message: initMsg))
        // Any flipped bit in the Noise part fails (e, s or the timestamp's tag).
        for offset in [8, 40, 100] {
            var bad = initMsg
            bad[offset] ^= 1
            let opened = WireGuardIK.openInitiation(identity: b, message: bad)
            if let opened, let ss = staticStatic(identity: b, peerStatic: a.staticPublic) {
                XCTAssertNil(WireGuardIK.authenticate(opened, staticStatic: ss, initiator: wgKey(a)), "offset \(offset)")
            }
        }
        // The right static with the wrong claimed initiator.
        let opened = try XCTUnwrap(WireGuardIK.openInitiation(identity: b, message: initMsg))
        let ss = try XCTUnwrap(staticStatic(identity: b, peerStatic: a.staticPublic))
        XCTAssertNil(WireGuardIK.authenticate(opened, staticStatic: ss, initiator: wgKey(c)))
        // Wrong lengths / reserved bytes are not INITs; a RESP for another index is not ours.
        XCTAssertNil(WireGuardIK.openInitiation(identity: b, message: Array(initMsg.dropLast())))
        var reserved = initMsg
        reserved[1] = 1
        XCTAssertNil(WireGuardIK.openInitiation(identity: b, message: reserved))
        XCTAssertNil(WireGuardIK.consumeResponse([UInt8](repeating: 0, count: 92), state: initiator))
    }

    /// Under load the responder answers with a cookie reply (XChaCha20-Poly1305, AD = mac1);
    /// the initiator's next INIT carries mac2, which the responder accepts for that source only.
    func testCookieRound() throws {
        let a = identity(), b = identity()
        var macs = WireGuardIK.makeMacs(peer: wgKey(b))
        var checker = CookieChecker(wireGuardIdentity: b)
        let source = Endpoint("192.0.2.1:51820")!, other = Endpoint("192.0.2.2:51820")!
        let later = Instant.zero + .seconds(1 as UInt64)
        let (first, _) = try XCTUnwrap(WireGuardIK.createInitiation(
            identity: a, responder: wgKey(b), senderIndex: 5, timestamp: timestamp, psk: nil, macs: &macs, now: .zero))
        XCTAssertFalse(checker.mac2Valid(first, source: source, now: .zero))
        let reply = checker.createCookieReply(to: first, receiverIndex: 5, source: source, now: .zero)
        XCTAssertEqual(reply.count, 64)
        XCTAssertEqual(HandshakeSuites.classify(type: reply[0], length: reply.count)?.message, .cookieReply)
        XCTAssertTrue(macs.consumeCookieReply(reply, now: .zero))
        XCTAssertFalse(macs.consumeCookieReply(reply, now: .zero), "one reply per message")
        let (second, _) = try XCTUnwrap(WireGuardIK.createInitiation(
            identity: a, responder: wgKey(b), senderIndex: 6, timestamp: timestamp, psk: nil, macs: &macs, now: later))
        XCTAssertTrue(checker.mac1Valid(second))
        XCTAssertTrue(checker.mac2Valid(second, source: source, now: later))
        XCTAssertFalse(checker.mac2Valid(second, source: other, now: later), "the cookie is for one source")
        // A Whalescale cookie reply (BLAKE2b-keyed) does not decrypt for a WireGuard peer's macs.
        var wsChecker = CookieChecker(identity: b)
        let (third, _) = try XCTUnwrap(WireGuardIK.createInitiation(
            identity: a, responder: wgKey(b), senderIndex: 7, timestamp: timestamp, psk: nil, macs: &macs, now: later))
        let wsReply = wsChecker.createCookieReply(to: third, receiverIndex: 7, source: source, now: later)
        XCTAssertTrue(wsReply.isEmpty, "a Whalescale checker does not answer a 148-byte INIT")
    }

    func testPresharedKeyText() {
        let text = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
        XCTAssertNotNil(PresharedKey(base64: text))
        XCTAssertNil(PresharedKey(base64: "AQEB"))
        XCTAssertNil(PresharedKey(bytes: [1, 2, 3]))
    }

    private func roundTrip(from send: TransportKey, to receive: TransportKey) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 64 + 16)
        for i in 0..<64 { buffer[i] = UInt8(i) }
        return buffer.withUnsafeMutableBytes { raw in
            send.seal(counter: 3, buffer: raw.baseAddress!, length: 64)
            return receive.open(counter: 3, buffer: raw.baseAddress!, length: 80)
        }
    }
}

/// A fixed TAI64N (2^62 + 10 + 1.7e9 s, 0 ns).
enum HandshakeTimestampBytes {
    static let sample: [UInt8] = [0x40, 0, 0, 0, 0x65, 0x53, 0xf1, 0x0a, 0, 0, 0, 0]
}

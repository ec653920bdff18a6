// The Noise framework's behaviour beyond the vectors: every supported pattern
// completes with random keys, errors are thrown (never a trap) and leave the
// state as it was, names and keys are validated.

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

final class NoiseFrameworkTests: XCTestCase {
    static let suite = "_25519_ChaChaPoly_BLAKE2b"
    static let basePatterns = ["N", "K", "X", "NN", "NK", "NX", "KN", "KK", "KX", "XN", "XK", "XX", "IN", "IK", "IX"]

    /// Both parties for `pattern`, with exactly the keys the pattern needs.
    func parties(_ pattern: String, prologue: [UInt8] = Array("test".utf8)) throws -> (NoiseHandshakeState, NoiseHandshakeState) {
        let name = "Noise_\(pattern)\(Self.suite)"
        let p = try XCTUnwrap(NoisePattern.named(pattern))
        let initiatorStatic = DHKeyPair.generate(), responderStatic = DHKeyPair.generate()
        let psks = (0..<p.pskCount).map { _ in Sodium.randomBytes(32) }
        func sends(_ even: Bool) -> Bool { p.messages.enumerated().contains { ($0.offset % 2 == 0) == even && $0.element.contains(.s) } }
        let iNeedsS = p.initiatorPreMessage.contains(.s) || sends(true)
        let rNeedsS = p.responderPreMessage.contains(.s) || sends(false)
        let initiator = try NoiseHandshakeState(
            protocolName: name, role: .initiator, prologue: prologue, localStatic: iNeedsS ? initiatorStatic : nil,
            remoteStatic: p.responderPreMessage.contains(.s) ? responderStatic.publicKey : nil, psks: psks)
        let responder = try NoiseHandshakeState(
            protocolName: name, role: .responder, prologue: prologue, localStatic: rNeedsS ? responderStatic : nil,
            remoteStatic: p.initiatorPreMessage.contains(.s) ? initiatorStatic.publicKey : nil, psks: psks)
        return (initiator, responder)
    }

    /// Plays the handshake through; returns both completed states.
    func complete(_ i: inout NoiseHandshakeState, _ r: inout NoiseHandshakeState) throws {
        var turn = 0
        while !i.isComplete {
            let payload = Array("message \(turn)".utf8)
            if turn % 2 == 0 {
                XCTAssertEqual(try r.readMessage(try i.writeMessage(payload: payload)), payload)
            } else {
                XCTAssertEqual(try i.readMessage(try r.writeMessage(payload: payload)), payload)
            }
            turn += 1
        }
        XCTAssertTrue(r.isComplete)
    }

    func testEverySupportedPatternAndPSKPositionCompletes() throws {
        for base in Self.basePatterns {
            let count = try XCTUnwrap(NoisePattern.named(base)).messages.count
            for name in [base] + (0...count).map({ "\(base)psk\($0)" }) {
                var (i, r) = try parties(name)
                try complete(&i, &r)
                XCTAssertEqual(i.handshakeHash, r.handshakeHash, name)
                XCTAssertEqual(i.handshakeHash.count, 64, name)
                var (i1, i2) = try i.split()
                var (r1, r2) = try r.split()
                XCTAssertEqual(try r1.decrypt(ciphertext: try i1.encrypt(plaintext: [1, 2, 3])), [1, 2, 3], name)
                if !i.noiseProtocol.pattern.isOneWay {
                    XCTAssertEqual(try i2.decrypt(ciphertext: try r2.encrypt(plaintext: [4, 5])), [4, 5], name)
                }
                // Identities learned match.
                if i.noiseProtocol.pattern.messages.contains(where: { $0.contains(.s) }) || i.noiseProtocol.pattern.responderPreMessage.contains(.s) {
                    XCTAssertNotNil(i.remoteStatic ?? r.remoteStatic, name)
                }
            }
        }
    }

    func testPatternParsing() throws {
        let ik = try XCTUnwrap(NoisePattern.named("IKpsk2"))
        XCTAssertEqual(ik.messages, [[.e, .es, .s, .ss], [.e, .ee, .se, .psk]])
        XCTAssertEqual(ik.responderPreMessage, [.s])
        let xx = try XCTUnwrap(NoisePattern.named("XXpsk0+psk3"))
        XCTAssertEqual(xx.messages, [[.psk, .e], [.e, .ee, .s, .es], [.s, .se, .psk]])
        XCTAssertEqual(xx.pskCount, 2)
        for bad in ["", "ik", "IKK", "XXfallback", "IKpsk3", "IKpsk", "IKpsk-1", "IKpsk01", "IKpsk2+", "NK1", "IKhfs"] {
            XCTAssertNil(NoisePattern.named(bad), bad)
        }
    }

    func testProtocolNames() {
        XCTAssertNoThrow(try NoiseProtocol(name: "Noise_IK_25519_ChaChaPoly_BLAKE2b"))
        // AESGCM: only where libsodium has it (AES-NI); elsewhere an unsupported suite.
        if NoiseCipher.aesGCM.isAvailable {
            XCTAssertEqual(try NoiseProtocol(name: "Noise_IK_25519_AESGCM_BLAKE2b").cipher, .aesGCM)
        } else {
            XCTAssertThrowsError(try NoiseProtocol(name: "Noise_IK_25519_AESGCM_BLAKE2b")) {
                XCTAssertEqual($0 as? NoiseError, .unsupportedSuite("25519_AESGCM_BLAKE2b"))
            }
        }
        for (name, expected) in [
            ("Noise_IK_25519_ChaChaPoly_SHA256", NoiseError.unsupportedSuite("25519_ChaChaPoly_SHA256")),
            ("Noise_IK_25519_AESGCM_SHA512", .unsupportedSuite("25519_AESGCM_SHA512")),
            ("Noise_IK_448_ChaChaPoly_BLAKE2b", .unsupportedSuite("448_ChaChaPoly_BLAKE2b")),
            ("Noise_XXfallback_25519_ChaChaPoly_BLAKE2b", .unsupportedPattern("XXfallback")),
            ("Noise_IK_25519_ChaChaPoly", .unsupportedPattern("Noise_IK_25519_ChaChaPoly")),
            ("Nois_IK_25519_ChaChaPoly_BLAKE2b", .unsupportedPattern("Nois_IK_25519_ChaChaPoly_BLAKE2b")),
        ] {
            XCTAssertThrowsError(try NoiseProtocol(name: name), name) { XCTAssertEqual($0 as? NoiseError, expected, name) }
        }
    }

    func testMissingKeysAndBadPSKsAreRefused() {
        let name = "Noise_IK\(Self.suite)"
        let s = DHKeyPair.generate()
        XCTAssertThrowsError(try NoiseHandshakeState(protocolName: name, role: .initiator, localStatic: s)) {
            XCTAssertEqual($0 as? NoiseError, .missingKey("rs"))
        }
        XCTAssertThrowsError(try NoiseHandshakeState(protocolName: name, role: .initiator, remoteStatic: s.publicKey)) {
            XCTAssertEqual($0 as? NoiseError, .missingKey("s"))
        }
        XCTAssertThrowsError(try NoiseHandshakeState(protocolName: name, role: .initiator, localStatic: s, remoteStatic: [1, 2, 3])) {
            XCTAssertEqual($0 as? NoiseError, .missingKey("rs (32 bytes)"))
        }
        let psk = "Noise_IKpsk2\(Self.suite)"
        XCTAssertThrowsError(try NoiseHandshakeState(protocolName: psk, role: .responder, localStatic: s)) {
            XCTAssertEqual($0 as? NoiseError, .badPSK)
        }
        XCTAssertThrowsError(try NoiseHandshakeState(protocolName: psk, role: .responder, localStatic: s,
                                                     psks: [[UInt8](repeating: 1, count: 31)])) {
            XCTAssertEqual($0 as? NoiseError, .badPSK)
        }
    }

    func testTurnsAndCompletionAreEnforced() throws {
        var (i, r) = try parties("NN")
        XCTAssertThrowsError(try r.writeMessage()) { XCTAssertEqual($0 as? NoiseError, .notOurTurn) }
        XCTAssertThrowsError(try i.readMessage([UInt8](repeating: 0, count: 32))) { XCTAssertEqual($0 as? NoiseError, .notOurTurn) }
        XCTAssertThrowsError(try i.split()) { XCTAssertEqual($0 as? NoiseError, .handshakeNotComplete) }
        try complete(&i, &r)
        XCTAssertThrowsError(try i.writeMessage()) { XCTAssertEqual($0 as? NoiseError, .handshakeAlreadyComplete) }
        XCTAssertThrowsError(try r.readMessage([])) { XCTAssertEqual($0 as? NoiseError, .handshakeAlreadyComplete) }
    }

    /// A bad message throws and leaves the reader exactly as it was: the genuine
    /// message that follows still completes the handshake.
    func testFailedReadDoesNotChangeState() throws {
        var (i, r) = try parties("IKpsk2")
        let m1 = try i.writeMessage(payload: [9, 9, 9])
        for index in m1.indices {
            var tampered = m1
            tampered[index] ^= 0x01
            XCTAssertThrowsError(try r.readMessage(tampered), "byte \(index)")
        }
        XCTAssertThrowsError(try r.readMessage(Array(m1.dropLast()))) { XCTAssertEqual($0 as? NoiseError, .decryptionFailed) }
        XCTAssertThrowsError(try r.readMessage(Array(m1.prefix(40)))) { XCTAssertEqual($0 as? NoiseError, .messageTooShort) }
        XCTAssertThrowsError(try r.readMessage([])) { XCTAssertEqual($0 as? NoiseError, .messageTooShort) }
        XCTAssertEqual(try r.readMessage(m1), [9, 9, 9])
        let m2 = try r.writeMessage()
        XCTAssertEqual(try i.readMessage(m2), [])
        XCTAssertEqual(i.handshakeHash, r.handshakeHash)
    }

    /// A small-order ephemeral makes DH all zeros: refused, not mixed in.
    func testSmallOrderPublicKeyIsRefused() throws {
        var (_, r) = try parties("IK")
        let zeroPoint = [UInt8](repeating: 0, count: 32)
        XCTAssertThrowsError(try r.readMessage(zeroPoint + [UInt8](repeating: 0, count: 100))) {
            XCTAssertEqual($0 as? NoiseError, .invalidPublicKey)
        }
    }

    func testMessageLengthLimit() throws {
        var (i, r) = try parties("NN")
        XCTAssertThrowsError(try i.writeMessage(payload: [UInt8](repeating: 0, count: noiseMaxMessageLength - 31))) {
            XCTAssertEqual($0 as? NoiseError, .messageTooLong)
        }
        // Exactly the limit is fine: e (32) + plaintext payload (no key yet in NN's first message).
        let m = try i.writeMessage(payload: [UInt8](repeating: 7, count: noiseMaxMessageLength - 32))
        XCTAssertEqual(m.count, noiseMaxMessageLength)
        XCTAssertThrowsError(try r.readMessage(m + [0])) { XCTAssertEqual($0 as? NoiseError, .messageTooLong) }
        XCTAssertEqual(try r.readMessage(m).count, noiseMaxMessageLength - 32)
    }

    func testCipherStateNonceRules() throws {
        var (i, r) = try parties("NN")
        try complete(&i, &r)
        var (send, _) = try i.split()
        var (receive, _) = try r.split()
        let c0 = try send.encrypt(plaintext: [1])
        XCTAssertEqual(send.nonce, 1)
        // Failed decryption does not advance the nonce.
        var bad = c0
        bad[0] ^= 1
        XCTAssertThrowsError(try receive.decrypt(ciphertext: bad)) { XCTAssertEqual($0 as? NoiseError, .decryptionFailed) }
        XCTAssertEqual(receive.nonce, 0)
        XCTAssertEqual(try receive.decrypt(ciphertext: c0), [1])
        // 2^64-1 is reserved.
        send.nonce = UInt64.max
        XCTAssertThrowsError(try send.encrypt(plaintext: [1])) { XCTAssertEqual($0 as? NoiseError, .nonceExhausted) }
        receive.nonce = UInt64.max
        XCTAssertThrowsError(try receive.decrypt(ciphertext: c0)) { XCTAssertEqual($0 as? NoiseError, .nonceExhausted) }
    }

    /// HMAC-BLAKE2b against RFC 2104 computed independently (Python: hmac.new(key, msg, 'blake2b')).
    func testHMACBlake2bKnownAnswer() {
        let mac = Sodium.hmacBlake2b(key: Array("key".utf8), [Array("The quick brown fox jumps over the lazy dog".utf8)])
        XCTAssertEqual(mac.array.cryptoHexString,
                       "92294f92c0dfb9b00ec9ae8bd94d7e7d8a036b885a499f149dfe2fd2199394aaaf6b8894a1730cccb2cd050f9bcf5062a38b51b0dab33207f8ef35ae2c9df51b")
    }
}

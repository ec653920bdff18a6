// Keys: base64 text form, Ed25519 → X25519 derivation, signatures.

import CSodium
import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

final class CryptoKeyTests: XCTestCase {
    func testSecretKeyBase64RoundTrip() throws {
        for _ in 0..<20 {
            let key = SecretKey.generate()
            let text = key.base64
            XCTAssertEqual(text.count, 44)
            XCTAssertEqual(text.last, "=")
            XCTAssertEqual(SecretKey(base64: text), key)
            XCTAssertEqual(SecretKey(base64: "  \(text)\n"), key, "surrounding whitespace and newline are trimmed")
            XCTAssertEqual(SecretKey(base64: "\t\(text)\r\n"), key)
        }
        XCTAssertNotEqual(SecretKey.generate(), SecretKey.generate())
    }

    func testPublicKeyBase64RoundTrip() throws {
        let key = SecretKey.generate().publicKey
        XCTAssertEqual(PublicKey(base64: key.base64), key)
        XCTAssertEqual(PublicKey(base64: key.base64 + "\n"), key)
        XCTAssertEqual(PublicKey(bytes: key.bytes), key)
        XCTAssertEqual(key.description, key.base64)
        XCTAssertNil(PublicKey(bytes: Array(key.bytes.dropLast())))
        XCTAssertNil(PublicKey(bytes: key.bytes + [0]))
    }

    func testBadBase64IsRejected() throws {
        let good = SecretKey.generate().base64
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var chars = Array(good)
        // The 43rd character carries 4 data bits and 2 spare bits, which must be zero:
        // setting one gives a second spelling of a key, and it is refused.
        let spare = try XCTUnwrap(alphabet.firstIndex(of: chars[42]))
        chars[42] = alphabet[spare | 1]
        let nonCanonical = String(chars)

        let encode = { (n: Int) in Sodium.base64Encode([UInt8](repeating: 0xab, count: n)) }
        // 0xff bytes encode as "/": the URL-safe spelling uses "_" instead.
        let allOnes = Sodium.base64Encode([UInt8](repeating: 0xff, count: 32))
        XCTAssertNotNil(SecretKey(base64: allOnes))
        let urlSafe = String(allOnes.map { $0 == "/" ? "_" : $0 })
        let cases: [(String, String)] = [
            ("", "empty"),
            ("   \n", "blank"),
            (String(good.dropLast()), "missing padding"),
            (encode(31), "31 bytes"),
            (encode(33), "33 bytes"),
            (encode(64), "64 bytes"),
            (String(good.prefix(20)) + "!" + String(good.dropFirst(21)), "bad character"),
            (urlSafe, "URL-safe alphabet"),
            (String(good.prefix(22)) + " " + String(good.dropFirst(22)), "inner space"),
            (String(good.prefix(22)) + "\n" + String(good.dropFirst(22)), "inner newline"),
            (good + "=", "extra padding"),
            (good + good, "two keys"),
            (nonCanonical, "non-zero spare bits"),
        ]
        for (text, why) in cases {
            XCTAssertNil(SecretKey(base64: text), why)
            XCTAssertNil(PublicKey(base64: text), why)
        }
    }

    func testSecretKeyIsNeverPrinted() {
        let key = SecretKey.generate()
        XCTAssertFalse(String(describing: key).contains(key.base64))
        XCTAssertFalse(String(reflecting: key).contains(key.base64))
    }

    /// RFC 8032 §7.1, TEST 1: seed → public key, and the signature of the empty message.
    func testEd25519KnownAnswer() throws {
        let seed = [UInt8](cryptoHex: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        let identity = Identity(secret: try XCTUnwrap(SecretKey(bytes: seed)))
        XCTAssertEqual(identity.publicKey.bytes.cryptoHexString, "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        XCTAssertEqual(identity.sign([]).cryptoHexString,
                       "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    }

    /// The X25519 public key derived from the converted secret equals the converted
    /// Ed25519 public key: both halves of the Noise static agree.
    func testEd25519ToX25519ConversionIsConsistent() throws {
        for _ in 0..<50 {
            let identity = Identity(secret: SecretKey.generate())
            let converted = try XCTUnwrap(identity.publicKey.x25519)
            XCTAssertEqual(identity.staticPublic, converted)
            let fromPrivate = try XCTUnwrap(DHKeyPair(privateKey: identity.staticPrivate)).publicKey
            XCTAssertEqual(fromPrivate, converted)
            // And independently through libsodium's own scalar multiplication.
            var direct = [UInt8](repeating: 0, count: 32)
            let sk = identity.staticPrivate
            direct.withUnsafeMutableBufferPointer { out in
                sk.withUnsafeBufferPointer { _ = crypto_scalarmult_curve25519_base(out.baseAddress!, $0.baseAddress!) }
            }
            XCTAssertEqual(direct, converted)
        }
    }

    /// Two parties derive the same X25519 shared secret from each other's Ed25519 public keys.
    func testConvertedKeysAgreeOnDH() throws {
        let a = Identity(secret: .generate()), b = Identity(secret: .generate())
        let ab = try XCTUnwrap(Sodium.x25519(a.staticKeyPair.privateKey, try XCTUnwrap(b.publicKey.x25519)))
        let ba = try XCTUnwrap(Sodium.x25519(b.staticKeyPair.privateKey, try XCTUnwrap(a.publicKey.x25519)))
        XCTAssertEqual(ab.array, ba.array)
    }

    func testKeysThatDoNotConvert() {
        // The identity point (small order) and a y that is not on the curve.
        var identityPoint = [UInt8](repeating: 0, count: 32)
        identityPoint[0] = 1
        XCTAssertNil(PublicKey(bytes: identityPoint)!.x25519)
        XCTAssertNil(PublicKey(bytes: [UInt8](repeating: 0, count: 32))!.x25519)
        let notOnCurve = (0..<256).compactMap { b -> [UInt8]? in
            var y = [UInt8](repeating: 0, count: 32)
            y[0] = UInt8(b)
            return crypto_core_ed25519_is_valid_point(y) == 0 ? y : nil
        }
        XCTAssertFalse(notOnCurve.isEmpty)
        for y in notOnCurve.prefix(5) { XCTAssertNil(PublicKey(bytes: y)!.x25519) }
    }

    func testSignAndVerify() throws {
        let identity = Identity(secret: .generate())
        let other = Identity(secret: .generate())
        let message = Array("endpoint record seq=7 203.0.113.5:51820".utf8)
        let signature = identity.sign(message)
        XCTAssertEqual(signature.count, 64)
        XCTAssertTrue(Identity.verify(signature: signature, message: message, key: identity.publicKey))
        XCTAssertFalse(Identity.verify(signature: signature, message: message, key: other.publicKey))
        XCTAssertFalse(Identity.verify(signature: signature, message: message + [0], key: identity.publicKey))
        XCTAssertFalse(Identity.verify(signature: Array(signature.dropLast()), message: message, key: identity.publicKey))
        XCTAssertFalse(Identity.verify(signature: [], message: message, key: identity.publicKey))
        for i in signature.indices {
            var bad = signature
            bad[i] ^= 0x20
            XCTAssertFalse(Identity.verify(signature: bad, message: message, key: identity.publicKey), "byte \(i)")
        }
        XCTAssertTrue(Identity.verify(signature: identity.sign([]), message: [], key: identity.publicKey))
    }
}

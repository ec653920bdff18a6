// The data-path AEAD: in place, with header room, tag tamper detection, and the
// nonce layout checked against a direct libsodium call.

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

final class CryptoTransportKeyTests: XCTestCase {
    let key = TransportKey(bytes: (0..<32).map { UInt8($0) })
    let otherKey = TransportKey(bytes: (0..<32).map { UInt8(255 - $0) })

    func testSealOpenInPlaceWithHeaderRoom() {
        let headerRoom = 16
        for length in [0, 1, 15, 16, 63, 64, 65, 1420, 9000] {
            let plaintext = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let slab = UnsafeMutableRawBufferPointer.allocate(byteCount: headerRoom + length + 16, alignment: 16)
            defer { slab.deallocate() }
            slab.initializeMemory(as: UInt8.self, repeating: 0xee)
            let packet = slab.baseAddress! + headerRoom
            plaintext.withUnsafeBytes { if $0.count > 0 { packet.copyMemory(from: $0.baseAddress!, byteCount: length) } }

            key.seal(counter: 42, buffer: packet, length: length)
            if length >= 8 {
                XCTAssertNotEqual(Array(UnsafeRawBufferPointer(start: packet, count: length)), plaintext, "encrypted in place")
            }
            XCTAssertEqual(Array(slab.prefix(headerRoom)), [UInt8](repeating: 0xee, count: headerRoom), "header room untouched")
            XCTAssertTrue(key.open(counter: 42, buffer: packet, length: length + 16), "length \(length)")
            XCTAssertEqual(Array(UnsafeRawBufferPointer(start: packet, count: length)), plaintext)
        }
    }

    func testTamperWrongCounterWrongKey() {
        var sealed = Array("an inner IPv4 packet, say".utf8) + [UInt8](repeating: 0, count: 16)
        let length = sealed.count - 16
        sealed.withUnsafeMutableBytes { key.seal(counter: 7, buffer: $0.baseAddress!, length: length) }

        for index in sealed.indices {
            for bit in [0x01, 0x80] as [UInt8] {
                var tampered = sealed
                tampered[index] ^= bit
                let ok = tampered.withUnsafeMutableBytes { key.open(counter: 7, buffer: $0.baseAddress!, length: $0.count) }
                XCTAssertFalse(ok, "byte \(index) bit \(bit) (\(index >= length ? "tag" : "body"))")
                // libsodium wipes the body on failure: nothing unauthenticated is left to misuse.
                XCTAssertEqual(Array(tampered.prefix(length)), [UInt8](repeating: 0, count: length), "byte \(index)")
            }
        }
        func open(_ k: TransportKey, counter: UInt64, length: (Int) -> Int) -> Bool {
            var copy = sealed
            return copy.withUnsafeMutableBytes { k.open(counter: counter, buffer: $0.baseAddress!, length: length($0.count)) }
        }
        XCTAssertFalse(open(key, counter: 8) { $0 }, "wrong counter")
        XCTAssertFalse(open(otherKey, counter: 7) { $0 }, "wrong key")
        XCTAssertFalse(open(key, counter: 7) { $0 - 1 }, "one byte short")
        XCTAssertFalse(open(key, counter: 7) { _ in 15 }, "shorter than a tag")
        XCTAssertFalse(open(key, counter: 7) { _ in 0 })
        XCTAssertTrue(open(key, counter: 7) { $0 })
    }

    /// Nonce = 4 zero bytes || counter little-endian, checked with a counter that
    /// uses all eight bytes, against libsodium's combined-mode call.
    func testNonceLayoutMatchesLibsodiumDirectly() {
        let counter: UInt64 = 0x0102_0304_0506_0708
        let keyBytes = (0..<32).map { UInt8($0) }
        let message = Array("nonce layout".utf8)
        let nonce: [UInt8] = [0, 0, 0, 0, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]
        var expected = [UInt8](repeating: 0, count: message.count + 16)
        _ = crypto_aead_chacha20poly1305_ietf_encrypt(&expected, nil, message, UInt64(message.count), nil, 0, nil, nonce, keyBytes)

        var buffer = message + [UInt8](repeating: 0, count: 16)
        buffer.withUnsafeMutableBytes { key.seal(counter: counter, buffer: $0.baseAddress!, length: message.count) }
        XCTAssertEqual(buffer, expected)
    }

    /// The key lives inline: the struct is its 32 key bytes, the cipher (1, padded to 8),
    /// the AES-GCM state's pointer and owner (8 + 8; nil for ChaCha) and the 32 of its
    /// relay-tag key (Crypto/RelayTag.swift; no Array). The AES state itself is one
    /// allocation per keypair direction, made when the handshake completes.
    func testKeyIsStoredInline() {
        XCTAssertEqual(MemoryLayout<TransportKey>.size, 88)
        XCTAssertEqual(MemoryLayout<TransportKeys>.size, 177, "two keys and the negotiated header-flags bit")
    }
}

// Wire/HandshakeMessages.swift and Wire/MessageType.swift: parse ↔ serialize
// round trips, exact lengths, type and reserved bytes.

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

final class HandshakeMessageTests: XCTestCase {
    func bytes(_ count: Int, from start: UInt8) -> [UInt8] { (0..<count).map { start &+ UInt8(truncatingIfNeeded: $0) } }

    func testMessageTypes() {
        XCTAssertEqual(MessageType.allCases.map(\.rawValue), [1, 2, 3, 4, 5, 6, 7])
        XCTAssertNil(MessageType(datagram: [UInt8]()))
        XCTAssertNil(MessageType(datagram: [0]))
        XCTAssertNil(MessageType(datagram: [8, 0, 0, 0]))
        XCTAssertEqual(MessageType(datagram: [3, 9, 9]), .cookieReply)
        [UInt8]([5]).withUnsafeBytes { XCTAssertEqual(MessageType(datagram: $0), .pathProbe) }
    }

    func testInitiationRoundTrip() throws {
        let message = HandshakeInitiationMessage(senderIndex: 0xdead_beef, noise: bytes(140, from: 10),
                                                 mac1: bytes(16, from: 200), mac2: bytes(16, from: 220))
        let wire = message.bytes
        XCTAssertEqual(wire.count, 180)
        XCTAssertEqual(Array(wire.prefix(8)), [1, 0, 0, 0, 0xef, 0xbe, 0xad, 0xde])
        XCTAssertEqual(Array(wire[148..<164]), message.mac1)
        XCTAssertEqual(Array(wire[164..<180]), message.mac2)
        XCTAssertEqual(HandshakeInitiationMessage(bytes: wire), message)
        XCTAssertEqual(HandshakeMACs.mac1Offset(wire), 148)
        // Byte 1 is the cipher offer: any value parses and round-trips; bytes 2, 3 stay reserved.
        assertStrictParsing(wire, reserved: 2..<4) { HandshakeInitiationMessage(bytes: $0) != nil }
        for offer: UInt8 in [1, 2, 0xff] {
            var offered = message
            offered.cipherOffer = offer
            XCTAssertEqual(offered.bytes[1], offer)
            XCTAssertEqual(HandshakeInitiationMessage(bytes: offered.bytes), offered)
        }
    }

    func testResponseRoundTrip() throws {
        let message = HandshakeResponseMessage(senderIndex: 1, receiverIndex: 0x0102_0304, noise: bytes(48, from: 50),
                                               mac1: bytes(16, from: 100), mac2: bytes(16, from: 120))
        let wire = message.bytes
        XCTAssertEqual(wire.count, 92)
        XCTAssertEqual(Array(wire.prefix(12)), [2, 0, 0, 0, 1, 0, 0, 0, 4, 3, 2, 1])
        XCTAssertEqual(Array(wire[12..<60]), message.noise)
        XCTAssertEqual(HandshakeResponseMessage(bytes: wire), message)
        XCTAssertEqual(HandshakeMACs.mac1Offset(wire), 60)
        // Byte 1 is the choice: bit 0 the cipher, bit 1 header flags; 0...3 parse, anything else is refused.
        assertStrictParsing(wire, reserved: 2..<4) { HandshakeResponseMessage(bytes: $0) != nil }
        for choice: UInt8 in 1...3 {
            let m = HandshakeResponseMessage(senderIndex: 1, receiverIndex: 2, noise: bytes(48, from: 50), cipherChoice: choice)
            XCTAssertEqual(m.bytes[1], choice)
            XCTAssertEqual(HandshakeResponseMessage(bytes: m.bytes), m)
        }
        for choice: UInt8 in [4, 7, 0x80, 0xff] {
            var other = wire
            other[1] = choice
            XCTAssertNil(HandshakeResponseMessage(bytes: other), "choice \(choice)")
        }
    }

    func testCookieReplyRoundTrip() throws {
        let message = CookieReplyMessage(receiverIndex: 0xffff_fffe, nonce: bytes(24, from: 1), encryptedCookie: bytes(32, from: 100))
        let wire = message.bytes
        XCTAssertEqual(wire.count, 64)
        XCTAssertEqual(Array(wire.prefix(8)), [3, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff])
        XCTAssertEqual(CookieReplyMessage(bytes: wire), message)
        XCTAssertNil(HandshakeMACs.mac1Offset(wire), "cookie replies carry no macs")
        assertStrictParsing(wire) { CookieReplyMessage(bytes: $0) != nil }
    }

    /// One byte more or less, another type, or any non-zero reserved byte: refused.
    func assertStrictParsing(_ wire: [UInt8], reserved reservedBytes: Range<Int> = 1..<4, file: StaticString = #filePath,
                             line: UInt = #line, _ parses: ([UInt8]) -> Bool) {
        XCTAssertTrue(parses(wire), file: file, line: line)
        XCTAssertFalse(parses(Array(wire.dropLast())), "short", file: file, line: line)
        XCTAssertFalse(parses(wire + [0]), "long", file: file, line: line)
        XCTAssertFalse(parses([]), "empty", file: file, line: line)
        for type: UInt8 in [0, 1, 2, 3, 4, 5, 6, 7, 255] where type != wire[0] {
            var other = wire
            other[0] = type
            XCTAssertFalse(parses(other), "type \(type)", file: file, line: line)
        }
        for reserved in reservedBytes {
            var other = wire
            other[reserved] = 1
            XCTAssertFalse(parses(other), "reserved byte \(reserved)", file: file, line: line)
        }
    }
}

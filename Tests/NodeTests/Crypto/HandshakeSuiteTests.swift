import XCTest
@testable import Support
@testable import Wire
@testable import Crypto

/// Handshake dispatch by (type, length), for both suites.
final class HandshakeSuiteTests: XCTestCase {
    func testClassifyByTypeAndLength() {
        let rows: [(UInt8, Int, HandshakeMessageKind?, HandshakeSuiteID?)] = [
            (1, 180, .initiation, .whalescaleIK),   // Whalescale Noise_IK INIT
            (2, 92, .response, .whalescaleIK),      // RESP and COOKIE: one layout for both suites,
            (3, 64, .cookieReply, .whalescaleIK),   //   the receiver index tells whose
            (1, 148, .initiation, .wireGuard),      // WireGuard's INIT
            (1, 181, nil, nil), (1, 179, nil, nil), (1, 147, nil, nil), (1, 149, nil, nil), (2, 91, nil, nil),
            (3, 65, nil, nil), (4, 180, nil, nil), (5, 180, nil, nil), (7, 92, nil, nil), (0, 180, nil, nil),
        ]
        for (type, length, want, suite) in rows {
            let got = HandshakeSuites.classify(type: type, length: length)
            XCTAssertEqual(got?.message, want, "type \(type), \(length) bytes")
            XCTAssertEqual(got?.suite, suite, "type \(type), \(length) bytes")
        }
        XCTAssertEqual((0...255).filter { HandshakeSuites.isHandshakeType(UInt8($0)) }, [1, 2, 3])
    }

    func testWhalescaleSizesAreTheWireSizes() {
        XCTAssertEqual(WhalescaleIK.initiationSize, 180)
        XCTAssertEqual(WhalescaleIK.responseSize, HandshakeResponseMessage.size)
        XCTAssertEqual(WhalescaleIK.cookieReplySize, CookieReplyMessage.size)
        XCTAssertEqual(WhalescaleIK.protocolName, "Noise_IK_25519_ChaChaPoly_BLAKE2b")
    }

    /// The suite's verbs, in the order the session layer calls them, give both ends the same keys.
    func testVerbsInOrder() {
        let a = Identity(secret: SecretKey.generate()), b = Identity(secret: SecretKey.generate())
        var macsAB = WhalescaleIK.makeMacs(peer: b.publicKey)
        var macsBA = WhalescaleIK.makeMacs(peer: a.publicKey)
        let ts = [UInt8](repeating: 1, count: HandshakeConstants.timestampLength)
        guard let (initiation, state) = WhalescaleIK.createInitiation(identity: a, responder: b.publicKey, senderIndex: 7,
                                                                      timestamp: ts, macs: &macsAB, now: .zero),
              let opened = WhalescaleIK.openInitiation(identity: b, message: initiation),
              WhalescaleIK.initiatorStatic(of: opened) == a.publicKey.x25519,
              let ss = staticStatic(identity: b, peerStatic: WhalescaleIK.initiatorStatic(of: opened)),
              let received = WhalescaleIK.authenticate(opened, staticStatic: ss, initiator: a.publicKey),
              let (response, keysB) = WhalescaleIK.createResponse(to: received, senderIndex: 9, macs: &macsBA, now: .zero),
              let (responderIndex, keysA) = WhalescaleIK.consumeResponse(response, state: state) else {
            return XCTFail("handshake did not complete")
        }
        XCTAssertEqual(initiation.count, WhalescaleIK.initiationSize)
        XCTAssertEqual(response.count, WhalescaleIK.responseSize)
        XCTAssertEqual(responderIndex, 9)
        // What A seals, B opens.
        var buf = [UInt8](repeating: 0, count: 8 + 16)
        buf.withUnsafeMutableBytes { keysA.send.seal(counter: 0, buffer: $0.baseAddress!, length: 8) }
        XCTAssertTrue(buf.withUnsafeMutableBytes { keysB.receive.open(counter: 0, buffer: $0.baseAddress!, length: 24) })
    }
}

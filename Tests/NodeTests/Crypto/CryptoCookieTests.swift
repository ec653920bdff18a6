// mac1 / mac2 and cookie replies with a virtual clock.

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

final class CryptoCookieTests: XCTestCase {
    let alice = cryptoTestIdentity(0xa1)
    let bob = cryptoTestIdentity(0xb0)
    let carol = cryptoTestIdentity(0xc0)
    let aliceAt = Endpoint.v4(198, 51, 100, 7, port: 40000)
    let t0 = Instant(ns: 5_000_000_000)

    func initiation(_ macs: inout MacGenerator, at now: Instant, seconds: UInt64 = 1) -> [UInt8] {
        InitiatorHandshake.createInitiation(identity: alice, responder: bob.publicKey, senderIndex: 7,
                                            timestamp: cryptoTestTimestamp(seconds), macs: &macs, now: now)!.message
    }

    func testMac1() {
        var macs = MacGenerator(peer: bob.publicKey)
        let message = initiation(&macs, at: t0)
        XCTAssertTrue(CookieChecker(identity: bob).mac1Valid(message))
        XCTAssertFalse(CookieChecker(identity: carol).mac1Valid(message), "keyed by the receiver's static")
        XCTAssertFalse(CookieChecker(identity: alice).mac1Valid(message))
        XCTAssertFalse(CookieChecker(identity: bob).mac1Valid(Array(message.dropLast())))
        XCTAssertFalse(CookieChecker(identity: bob).mac1Valid([]))
        var asResponse = message
        asResponse[0] = MessageType.handshakeResp.rawValue
        XCTAssertFalse(CookieChecker(identity: bob).mac1Valid(asResponse), "wrong type for its length")
        var data = [UInt8](repeating: 0, count: 180)
        data[0] = MessageType.data.rawValue
        XCTAssertFalse(CookieChecker(identity: bob).mac1Valid(data))
    }

    func testCookieReplyRoundTrip() throws {
        var bobChecker = CookieChecker(identity: bob)
        var macs = MacGenerator(peer: bob.publicKey)
        let first = initiation(&macs, at: t0)
        XCTAssertFalse(macs.hasFreshCookie(now: t0))
        XCTAssertFalse(bobChecker.mac2Valid(first, source: aliceAt, now: t0), "no cookie: mac2 is zeros")

        // bob is under load: he answers with a cookie reply instead of consuming.
        let reply = bobChecker.createCookieReply(to: first, receiverIndex: 7, source: aliceAt, now: t0)
        XCTAssertEqual(reply.count, CookieReplyMessage.size)
        let parsed = try XCTUnwrap(CookieReplyMessage(bytes: reply))
        XCTAssertEqual(parsed.receiverIndex, 7)
        XCTAssertTrue(macs.consumeCookieReply(reply, now: t0 + .seconds(0.1)))
        XCTAssertTrue(macs.hasFreshCookie(now: t0 + .seconds(1 as UInt64)))
        XCTAssertFalse(macs.consumeCookieReply(reply, now: t0), "a reply answers one message only")

        // The retry carries mac2, valid from alice's address only.
        let retry = initiation(&macs, at: t0 + .seconds(1 as UInt64), seconds: 2)
        XCTAssertNotEqual(Array(retry.suffix(16)), [UInt8](repeating: 0, count: 16))
        XCTAssertTrue(bobChecker.mac1Valid(retry))
        XCTAssertTrue(bobChecker.mac2Valid(retry, source: aliceAt, now: t0 + .seconds(1 as UInt64)))
        XCTAssertFalse(bobChecker.mac2Valid(retry, source: .v4(198, 51, 100, 7, port: 40001), now: t0 + .seconds(1 as UInt64)))
        XCTAssertFalse(bobChecker.mac2Valid(retry, source: .v4(198, 51, 100, 8, port: 40000), now: t0 + .seconds(1 as UInt64)))
        let v6 = try XCTUnwrap(Endpoint("[2001:db8::7]:40000"))
        XCTAssertFalse(bobChecker.mac2Valid(retry, source: v6, now: t0 + .seconds(1 as UInt64)))
        XCTAssertNotNil(consumeInitiation(identity: bob, message: retry))
    }

    func testCookieReplyOverIPv6() throws {
        var bobChecker = CookieChecker(identity: bob)
        var macs = MacGenerator(peer: bob.publicKey)
        let v6 = try XCTUnwrap(Endpoint("[2001:db8::7]:40000"))
        let reply = bobChecker.createCookieReply(to: initiation(&macs, at: t0), receiverIndex: 7, source: v6, now: t0)
        XCTAssertTrue(macs.consumeCookieReply(reply, now: t0))
        let retry = initiation(&macs, at: t0, seconds: 2)
        XCTAssertTrue(bobChecker.mac2Valid(retry, source: v6, now: t0))
        XCTAssertFalse(bobChecker.mac2Valid(retry, source: try XCTUnwrap(Endpoint("[2001:db8::8]:40000")), now: t0))
    }

    func testCookieReplyMustAnswerTheLastMessage() {
        var bobChecker = CookieChecker(identity: bob)
        var macs = MacGenerator(peer: bob.publicKey)
        let old = initiation(&macs, at: t0, seconds: 1)
        _ = initiation(&macs, at: t0, seconds: 2)  // a newer message was sent since
        let reply = bobChecker.createCookieReply(to: old, receiverIndex: 7, source: aliceAt, now: t0)
        XCTAssertFalse(macs.consumeCookieReply(reply, now: t0), "AD is the mac1 of the message answered")

        var fresh = MacGenerator(peer: bob.publicKey)
        XCTAssertFalse(fresh.consumeCookieReply(reply, now: t0), "nothing sent yet")
    }

    func testCookieReplyFromTheWrongResponderIsRefused() {
        var carolChecker = CookieChecker(identity: carol)
        var macs = MacGenerator(peer: bob.publicKey)
        let message = initiation(&macs, at: t0)
        // carol saw alice's message to bob and tries to plant her own cookie.
        let reply = carolChecker.createCookieReply(to: message, receiverIndex: 7, source: aliceAt, now: t0)
        XCTAssertFalse(macs.consumeCookieReply(reply, now: t0))
    }

    func testTamperedCookieReplyIsRefusedAtEveryByte() {
        var bobChecker = CookieChecker(identity: bob)
        var macs = MacGenerator(peer: bob.publicKey)
        let reply = bobChecker.createCookieReply(to: initiation(&macs, at: t0), receiverIndex: 7, source: aliceAt, now: t0)
        for index in reply.indices where !(4..<8).contains(index) {  // receiver_index routes; the caller checks it
            var tampered = reply
            tampered[index] ^= 0x10
            var copy = macs
            XCTAssertFalse(copy.consumeCookieReply(tampered, now: t0), "byte \(index)")
        }
        XCTAssertFalse(macs.consumeCookieReply(Array(reply.dropLast()), now: t0))
        XCTAssertTrue(macs.consumeCookieReply(reply, now: t0))
    }

    func testCookieExpiresAfter120Seconds() {
        var bobChecker = CookieChecker(identity: bob)
        var macs = MacGenerator(peer: bob.publicKey)
        let reply = bobChecker.createCookieReply(to: initiation(&macs, at: t0), receiverIndex: 7, source: aliceAt, now: t0)
        XCTAssertTrue(macs.consumeCookieReply(reply, now: t0))
        XCTAssertTrue(macs.hasFreshCookie(now: t0 + .seconds(119 as UInt64)))
        XCTAssertFalse(macs.hasFreshCookie(now: t0 + .seconds(120 as UInt64)))
        let late = initiation(&macs, at: t0 + .seconds(121 as UInt64), seconds: 3)
        XCTAssertEqual(Array(late.suffix(16)), [UInt8](repeating: 0, count: 16), "a stale cookie is not used")
    }

    func testCheckerSecretRotatesEvery120Seconds() {
        var bobChecker = CookieChecker(identity: bob)
        var macs = MacGenerator(peer: bob.publicKey)
        // Secret born at t0; cookie given at t0 + 100 s.
        XCTAssertFalse(bobChecker.mac2Valid(initiation(&macs, at: t0), source: aliceAt, now: t0))
        let at100 = t0 + .seconds(100 as UInt64)
        let reply = bobChecker.createCookieReply(to: initiation(&macs, at: at100, seconds: 2), receiverIndex: 7, source: aliceAt, now: at100)
        XCTAssertTrue(macs.consumeCookieReply(reply, now: at100))
        let at110 = t0 + .seconds(110 as UInt64)
        XCTAssertTrue(bobChecker.mac2Valid(initiation(&macs, at: at110, seconds: 3), source: aliceAt, now: at110))
        // At t0 + 120 s the secret is replaced: alice's (still fresh) cookie stops working...
        let at130 = t0 + .seconds(130 as UInt64)
        let stale = initiation(&macs, at: at130, seconds: 4)
        XCTAssertTrue(macs.hasFreshCookie(now: at130))
        XCTAssertFalse(bobChecker.mac2Valid(stale, source: aliceAt, now: at130))
        // ... and a new cookie reply fixes it.
        XCTAssertTrue(macs.consumeCookieReply(
            bobChecker.createCookieReply(to: stale, receiverIndex: 7, source: aliceAt, now: at130), now: at130))
        XCTAssertTrue(bobChecker.mac2Valid(initiation(&macs, at: at130, seconds: 5), source: aliceAt, now: at130))
    }

    func testCookieReplyToGarbageIsEmpty() {
        var bobChecker = CookieChecker(identity: bob)
        XCTAssertEqual(bobChecker.createCookieReply(to: [1, 2, 3], receiverIndex: 1, source: aliceAt, now: t0), [])
    }
}

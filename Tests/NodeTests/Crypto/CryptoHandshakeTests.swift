// Whalescale's handshake, step by step between two parties, and what it refuses.

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

final class CryptoHandshakeTests: XCTestCase {
    let alice = cryptoTestIdentity(0xa1)
    let bob = cryptoTestIdentity(0xb0)
    let carol = cryptoTestIdentity(0xc0)
    let t0 = Instant(ns: 1_000_000_000)
    let aliceIndex: UInt32 = 0x1122_3344
    let bobIndex: UInt32 = 0x5566_7788

    /// alice → bob initiation with fresh generators.
    func initiation(timestamp: [UInt8] = cryptoTestTimestamp(1000))
        -> (message: [UInt8], state: InitiatorHandshake, macs: MacGenerator) {
        var macs = MacGenerator(peer: bob.publicKey)
        let (message, state) = InitiatorHandshake.createInitiation(
            identity: alice, responder: bob.publicKey, senderIndex: aliceIndex, timestamp: timestamp, macs: &macs, now: t0)!
        return (message, state, macs)
    }

    func testTwoPartyHandshakeStepByStep() throws {
        // 1. alice creates the initiation.
        let timestamp = cryptoTestTimestamp(1_700_000_000)
        var aliceMacs = MacGenerator(peer: bob.publicKey)
        let created = InitiatorHandshake.createInitiation(
            identity: alice, responder: bob.publicKey, senderIndex: aliceIndex, timestamp: timestamp, macs: &aliceMacs, now: t0)
        let (initMessage, aliceState) = try XCTUnwrap(created)
        XCTAssertEqual(initMessage.count, HandshakeInitiationMessage.size)
        XCTAssertEqual(Array(initMessage.prefix(8)), [1, 0, 0, 0, 0x44, 0x33, 0x22, 0x11])
        XCTAssertEqual(Array(initMessage.suffix(16)), [UInt8](repeating: 0, count: 16), "no cookie yet: mac2 is zeros")
        XCTAssertEqual(aliceState.senderIndex, aliceIndex)
        XCTAssertEqual(aliceState.responder, bob.publicKey)
        XCTAssertEqual(aliceState.createdAt, t0)

        // 2. bob checks mac1 (cheap), then consumes.
        let bobChecker = CookieChecker(identity: bob)
        XCTAssertTrue(bobChecker.mac1Valid(initMessage))
        let received = try XCTUnwrap(consumeInitiation(identity: bob, message: initMessage))
        XCTAssertEqual(received.initiator, alice.publicKey)
        XCTAssertEqual(received.senderIndex, aliceIndex)
        XCTAssertEqual(received.timestamp, timestamp)

        // 3. bob responds.
        var bobMacs = MacGenerator(peer: alice.publicKey)
        let (respMessage, bobKeys) = try XCTUnwrap(received.createResponse(senderIndex: bobIndex, macs: &bobMacs, now: t0))
        XCTAssertEqual(respMessage.count, HandshakeResponseMessage.size)
        XCTAssertEqual(Array(respMessage.prefix(12)), [2, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])

        // 4. alice checks mac1 with her own checker, then consumes.
        XCTAssertTrue(CookieChecker(identity: alice).mac1Valid(respMessage))
        let (responderIndex, aliceKeys) = try XCTUnwrap(aliceState.consumeResponse(respMessage))
        XCTAssertEqual(responderIndex, bobIndex)

        // 5. The keys match across: alice's send is bob's receive and vice versa.
        assertSealOpen(aliceKeys.send, bobKeys.receive, "alice → bob")
        assertSealOpen(bobKeys.send, aliceKeys.receive, "bob → alice")
        XCTAssertFalse(sealThenOpen(aliceKeys.send, aliceKeys.receive), "the two directions have different keys")
        XCTAssertFalse(sealThenOpen(aliceKeys.send, bobKeys.send))
    }

    /// Whalescale's handshake is plain Noise IK with prologue "whalescale v1": the
    /// general framework, given the same keys, ephemerals and payload, writes the
    /// very same Noise bytes.
    func testMessagesAreStandardNoiseIK() throws {
        let ei = cryptoTestKeyPair(0x11), er = cryptoTestKeyPair(0x22)
        let timestamp = cryptoTestTimestamp(5)
        var macs = MacGenerator(peer: bob.publicKey)
        let (initMessage, state) = try XCTUnwrap(InitiatorHandshake.createInitiation(
            identity: alice, responder: bob.publicKey, senderIndex: 1, timestamp: timestamp, macs: &macs, now: t0, ephemeral: ei))
        let received = try XCTUnwrap(consumeInitiation(identity: bob, message: initMessage, ephemeral: er))
        var bobMacs = MacGenerator(peer: alice.publicKey)
        let (respMessage, bobKeys) = try XCTUnwrap(received.createResponse(senderIndex: 2, macs: &bobMacs, now: t0))
        let aliceKeys = try XCTUnwrap(state.consumeResponse(respMessage)).keys

        var i = try NoiseHandshakeState(protocolName: "Noise_IK_25519_ChaChaPoly_BLAKE2b", role: .initiator,
                                        prologue: Array("whalescale v1".utf8), localStatic: alice.staticKeyPair,
                                        remoteStatic: bob.staticPublic, psks: [], fixedEphemeral: ei)
        var r = try NoiseHandshakeState(protocolName: "Noise_IK_25519_ChaChaPoly_BLAKE2b", role: .responder,
                                        prologue: Array("whalescale v1".utf8), localStatic: bob.staticKeyPair,
                                        remoteStatic: nil, psks: [], fixedEphemeral: er)
        let m1 = try i.writeMessage(payload: timestamp + alice.publicKey.bytes)
        XCTAssertEqual(Array(initMessage[8..<148]), m1)
        XCTAssertEqual(try r.readMessage(m1), timestamp + alice.publicKey.bytes)
        let m2 = try r.writeMessage()
        XCTAssertEqual(Array(respMessage[12..<60]), m2)
        _ = try i.readMessage(m2)
        XCTAssertEqual(r.remoteStatic, alice.staticPublic)

        // And the session keys are Split()'s: initiator sends with c1.
        let (c1, c2) = try i.split()
        var plain = [UInt8](repeating: 7, count: 40)
        var viaNoise = c1
        let expected = try viaNoise.encrypt(plaintext: plain)
        plain += [UInt8](repeating: 0, count: 16)
        plain.withUnsafeMutableBytes { aliceKeys.send.seal(counter: 0, buffer: $0.baseAddress!, length: 40) }
        XCTAssertEqual(plain, expected)
        var viaNoise2 = c2
        var back = [UInt8](repeating: 3, count: 8)
        let expected2 = try viaNoise2.encrypt(plaintext: back)
        back += [UInt8](repeating: 0, count: 16)
        back.withUnsafeMutableBytes { bobKeys.send.seal(counter: 0, buffer: $0.baseAddress!, length: 8) }
        XCTAssertEqual(back, expected2)
    }

    func testInitiationForSomeoneElseIsRefused() {
        let (message, _, _) = initiation()
        XCTAssertNil(consumeInitiation(identity: carol, message: message))
        XCTAssertFalse(CookieChecker(identity: carol).mac1Valid(message))
    }

    /// A member table's precomputed static is only a shortcut: the initiator's
    /// proven static must still equal it, so a table with a wrong entry refuses.
    func testKnownStaticsSaveTheConversionButStillBind() {
        let (message, _, _) = initiation()
        let aliceStatic = alice.publicKey.x25519!
        let received = consumeInitiation(identity: bob, message: message) { $0 == self.alice.publicKey ? aliceStatic : nil }
        XCTAssertEqual(received?.initiator, alice.publicKey)
        XCTAssertNil(consumeInitiation(identity: bob, message: message) { _ in self.carol.publicKey.x25519 })
        XCTAssertNotNil(consumeInitiation(identity: bob, message: message) { _ in nil }, "an unknown key is converted")
    }

    /// Every single-bit change of an INIT is caught: in the Noise part by Noise
    /// itself; in the header by mac1; in mac2 by mac2 (checked under load).
    func testTamperedInitiationIsRejectedAtEveryByte() throws {
        let source = Endpoint.v4(198, 51, 100, 7, port: 40000)
        var bobChecker = CookieChecker(identity: bob)
        var (message, _, macs) = initiation()
        // Get a cookie so that mac2 is meaningful.
        let reply = bobChecker.createCookieReply(to: message, receiverIndex: aliceIndex, source: source, now: t0)
        XCTAssertTrue(macs.consumeCookieReply(reply, now: t0))
        message = try XCTUnwrap(InitiatorHandshake.createInitiation(
            identity: alice, responder: bob.publicKey, senderIndex: aliceIndex, timestamp: cryptoTestTimestamp(1001), macs: &macs, now: t0)).message
        XCTAssertTrue(bobChecker.mac1Valid(message))
        XCTAssertTrue(bobChecker.mac2Valid(message, source: source, now: t0))
        XCTAssertNotNil(consumeInitiation(identity: bob, message: message))

        for index in message.indices {
            for bit in [0x01, 0x80] as [UInt8] {
                var tampered = message
                tampered[index] ^= bit
                let accepted = bobChecker.mac1Valid(tampered) && bobChecker.mac2Valid(tampered, source: source, now: t0)
                    && consumeInitiation(identity: bob, message: tampered) != nil
                XCTAssertFalse(accepted, "byte \(index) bit \(bit)")
                if (HandshakeInitiationMessage.noiseOffset..<HandshakeInitiationMessage.mac1Offset).contains(index) || index < 4 {
                    XCTAssertNil(consumeInitiation(identity: bob, message: tampered), "Noise/type byte \(index)")
                }
            }
        }
        XCTAssertNil(consumeInitiation(identity: bob, message: Array(message.dropLast())))
        XCTAssertNil(consumeInitiation(identity: bob, message: message + [0]))
        XCTAssertNil(consumeInitiation(identity: bob, message: []))
    }

    func testTamperedResponseIsRejectedAtEveryByte() throws {
        let source = Endpoint.v4(203, 0, 113, 9, port: 51820)
        let (initMessage, state, _) = initiation()
        let received = try XCTUnwrap(consumeInitiation(identity: bob, message: initMessage))
        var aliceChecker = CookieChecker(identity: alice)
        var bobMacs = MacGenerator(peer: alice.publicKey)
        // bob, under alice's load, first gets a cookie from her.
        let probe = try XCTUnwrap(received.createResponse(senderIndex: bobIndex, macs: &bobMacs, now: t0)).message
        XCTAssertTrue(bobMacs.consumeCookieReply(
            aliceChecker.createCookieReply(to: probe, receiverIndex: bobIndex, source: source, now: t0), now: t0))
        let message = try XCTUnwrap(received.createResponse(senderIndex: bobIndex, macs: &bobMacs, now: t0)).message
        XCTAssertTrue(aliceChecker.mac1Valid(message))
        XCTAssertTrue(aliceChecker.mac2Valid(message, source: source, now: t0))
        XCTAssertNotNil(state.consumeResponse(message))

        for index in message.indices {
            var tampered = message
            tampered[index] ^= 0x04
            let accepted = aliceChecker.mac1Valid(tampered) && aliceChecker.mac2Valid(tampered, source: source, now: t0)
                && state.consumeResponse(tampered) != nil
            XCTAssertFalse(accepted, "byte \(index)")
            // receiver_index and the Noise part are checked by consumeResponse itself.
            if index < 4 || (8..<HandshakeResponseMessage.mac1Offset).contains(index) {
                XCTAssertNil(state.consumeResponse(tampered), "byte \(index)")
            }
        }
        // A tampered response did not spoil the handshake state: the genuine one still works.
        XCTAssertNotNil(state.consumeResponse(message))
    }

    func testResponseForAnotherHandshakeIsRefused() throws {
        let (initMessage, _, _) = initiation()
        let (_, otherState, _) = initiation()
        let received = try XCTUnwrap(consumeInitiation(identity: bob, message: initMessage))
        var bobMacs = MacGenerator(peer: alice.publicKey)
        let response = try XCTUnwrap(received.createResponse(senderIndex: bobIndex, macs: &bobMacs, now: t0)).message
        // Same sender index, different ephemeral: Noise refuses it.
        XCTAssertNil(otherState.consumeResponse(response))
    }

    /// The session layer's replay defence needs the timestamp: a replayed INIT
    /// decrypts again with the same timestamp (it is that check which refuses it).
    func testReplayedInitiationExposesTheSameTimestamp() throws {
        let (message, _, _) = initiation(timestamp: cryptoTestTimestamp(42))
        let first = try XCTUnwrap(consumeInitiation(identity: bob, message: message))
        let replay = try XCTUnwrap(consumeInitiation(identity: bob, message: message))
        XCTAssertEqual(first.timestamp, replay.timestamp)
        let newer = try XCTUnwrap(consumeInitiation(identity: bob, message: initiation(timestamp: cryptoTestTimestamp(43)).message))
        // TAI64N compares as its big-endian bytes do.
        XCTAssertTrue(first.timestamp.lexicographicallyPrecedes(newer.timestamp))
    }

    func testCreateInitiationRefusesBadArguments() {
        var macs = MacGenerator(peer: bob.publicKey)
        XCTAssertNil(InitiatorHandshake.createInitiation(identity: alice, responder: bob.publicKey, senderIndex: 1,
                                                         timestamp: [1, 2, 3], macs: &macs, now: t0), "timestamp length")
        var carolMacs = MacGenerator(peer: carol.publicKey)
        XCTAssertNil(InitiatorHandshake.createInitiation(identity: alice, responder: bob.publicKey, senderIndex: 1,
                                                         timestamp: cryptoTestTimestamp(1), macs: &carolMacs, now: t0), "macs for another peer")
        var point = [UInt8](repeating: 0, count: 32)
        point[0] = 1
        let unusable = PublicKey(bytes: point)!
        var unusableMacs = MacGenerator(peer: unusable)
        XCTAssertNil(InitiatorHandshake.createInitiation(identity: alice, responder: unusable, senderIndex: 1,
                                                         timestamp: cryptoTestTimestamp(1), macs: &unusableMacs, now: t0), "no X25519 form")
    }

    /// The Ed25519 key an initiator names must be the one behind its Noise static:
    /// alice cannot claim to be carol, even inside a perfectly valid Noise message.
    func testInitiatorCannotClaimAnotherIdentity() throws {
        for (claimed, payloadTail) in [("carol", carol.publicKey.bytes), ("short payload", Array(carol.publicKey.bytes.prefix(31))),
                                       ("long payload", carol.publicKey.bytes + [0])] {
            var noise = try NoiseHandshakeState(protocolName: HandshakeConstants.protocolName, role: .initiator,
                                                prologue: HandshakeConstants.prologue, localStatic: alice.staticKeyPair,
                                                remoteStatic: bob.staticPublic, psks: [], fixedEphemeral: nil)
            let body = try noise.writeMessage(payload: cryptoTestTimestamp(1) + payloadTail)
            var message: [UInt8] = [1, 0, 0, 0, 1, 0, 0, 0] + body + [UInt8](repeating: 0, count: 32)
            if claimed == "carol" {
                var macs = MacGenerator(peer: bob.publicKey)
                macs.stamp(&message, now: t0)
            }
            XCTAssertNil(consumeInitiation(identity: bob, message: message), claimed)
        }
    }

    // MARK: Helpers

    func sealThenOpen(_ sender: TransportKey, _ receiver: TransportKey, counter: UInt64 = 0) -> Bool {
        var buffer = Array("ping over the tunnel".utf8) + [UInt8](repeating: 0, count: 16)
        let length = buffer.count - 16
        return buffer.withUnsafeMutableBytes { raw -> Bool in
            sender.seal(counter: counter, buffer: raw.baseAddress!, length: length)
            return receiver.open(counter: counter, buffer: raw.baseAddress!, length: raw.count)
        }
    }

    func assertSealOpen(_ sender: TransportKey, _ receiver: TransportKey, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        for counter: UInt64 in [0, 1, 1 << 40] {
            XCTAssertTrue(sealThenOpen(sender, receiver, counter: counter), "\(what) counter \(counter)", file: file, line: line)
        }
    }
}

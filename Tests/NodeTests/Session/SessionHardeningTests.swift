import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
import Reactor

/// Regression tests for the security review's M1 and M2 (security-review-60ee9cd.md):
/// what a refused initiation costs, what counts as handshake load, and the
/// retry a cookie reply triggers.
final class SessionHardeningTests: XCTestCase {
    let t0 = Instant(ns: 5_000_000_000)
    let aAddr = Endpoint.v4(192, 0, 2, 1, port: 51820)
    let bAddr = Endpoint.v4(198, 51, 100, 2, port: 51820)
    let elsewhere = Endpoint.v4(203, 0, 113, 66, port: 4000)

    func wall(_ now: Instant) -> HandshakeTimestamp {
        HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000, nanoseconds: UInt32(now.ns % 1_000_000_000))
    }

    func deliver(_ t: inout Tunnels, _ bytes: [UInt8], from: Endpoint, now: Instant, underLoad: Bool = false) -> Inbound {
        var buf = bytes
        return buf.withUnsafeMutableBytes { t.receive($0, length: bytes.count, from: from, now: now, underLoad: underLoad) }
    }

    func drainTransmits(_ t: inout Tunnels) -> [Transmit] {
        var out: [Transmit] = []
        while let x = t.pollTransmit() { out.append(x) }
        return out
    }

    /// An initiation from `from` to `to` (a fresh Tunnels each time: a new ephemeral, and `wallSeconds` as timestamp).
    func initiation(from: Identity, to: PublicKey, wallSeconds: UInt64) -> [UInt8] {
        var t = Tunnels(identity: from, peers: [PeerSpec(publicKey: to, endpoint: bAddr)], seed: wallSeconds)
        t.connect(PeerID(rawValue: 0), now: t0)
        t.handleTimeout(now: t0, wallClock: HandshakeTimestamp(unixSeconds: wallSeconds, nanoseconds: 0))
        return t.pollTransmit()?.bytes ?? []
    }

    func parties() -> (a: Identity, b: Identity, stranger: Identity, tb: Tunnels) {
        var rng = SessionRandom(seed: 11)
        let a = SessionSim.identity(&rng), b = SessionSim.identity(&rng), stranger = SessionSim.identity(&rng)
        let tb = Tunnels(identity: b, peers: [PeerSpec(publicKey: a.publicKey)], seed: 2)
        return (a, b, stranger, tb)
    }

    // MARK: M1: refuse before the expensive curve work

    func testANonMembersInitiationCostsOnlyTheEsDHAndGetsNoAnswer() {
        var (_, b, stranger, tb) = parties()
        let message = initiation(from: stranger, to: b.publicKey, wallSeconds: 100)
        XCTAssertEqual(message.count, HandshakeInitiationMessage.size)
        let before = CurveOperations.snapshot
        XCTAssertEqual(deliver(&tb, message, from: elsewhere, now: t0), .drop(.notMember))
        let cost = CurveOperations.snapshot - before
        // es only: no ss, no key conversion, no ephemeral, no ee/se.
        XCTAssertEqual(cost, CurveOperations.Snapshot(dh: 1, base: 0, conversions: 0), "\(cost)")
        XCTAssertTrue(drainTransmits(&tb).isEmpty, "a stranger is never answered")
    }

    func testAReplayedOrFloodedInitiationCostsOnlyTheEsDH() {
        var (a, b, _, tb) = parties()
        let first = initiation(from: a, to: b.publicKey, wallSeconds: 100)
        XCTAssertEqual(deliver(&tb, first, from: aAddr, now: t0), .control)
        XCTAssertEqual(drainTransmits(&tb).count, 1, "the response")

        // A replay, a second later (past INITIATION_MIN_INTERVAL): stale timestamp.
        var before = CurveOperations.snapshot
        XCTAssertEqual(deliver(&tb, first, from: aAddr, now: t0 + .seconds(1 as UInt64)), .drop(.staleTimestamp))
        var cost = CurveOperations.snapshot - before
        XCTAssertEqual(cost, CurveOperations.Snapshot(dh: 1, base: 0, conversions: 0), "replay: \(cost)")

        // A genuine, newer initiation within 20 ms of the last one accepted: flood.
        let accepted = t0 + .seconds(2 as UInt64)
        XCTAssertEqual(deliver(&tb, initiation(from: a, to: b.publicKey, wallSeconds: 101), from: aAddr, now: accepted), .control)
        _ = drainTransmits(&tb)
        let fresh = initiation(from: a, to: b.publicKey, wallSeconds: 102)
        before = CurveOperations.snapshot
        XCTAssertEqual(deliver(&tb, fresh, from: aAddr, now: accepted + .milliseconds(5)), .drop(.handshakeFlood))
        cost = CurveOperations.snapshot - before
        XCTAssertEqual(cost, CurveOperations.Snapshot(dh: 1, base: 0, conversions: 0), "flood: \(cost)")
        XCTAssertTrue(drainTransmits(&tb).isEmpty)

        // And an accepted one pays for its response: es + ephemeral + ee + se (ss was computed once, at the first).
        before = CurveOperations.snapshot
        XCTAssertEqual(deliver(&tb, fresh, from: aAddr, now: accepted + .milliseconds(30)), .control)
        cost = CurveOperations.snapshot - before
        XCTAssertEqual(cost, CurveOperations.Snapshot(dh: 3, base: 1, conversions: 0), "accepted: \(cost)")
    }

    // MARK: M2: what counts as load

    /// The old engine counted any datagram whose first byte was 1 or 2. The
    /// meter now lives in Tunnels, after the length, type-word and mac1 checks.
    func testJunkStartingWithAHandshakeTypeIsNotLoad() {
        var (a, b, _, tb) = parties()
        let genuine = initiation(from: a, to: b.publicKey, wallSeconds: 100)
        var badMac1 = genuine
        badMac1[HandshakeInitiationMessage.mac1Offset] ^= 1
        for i in 0..<300 {
            _ = deliver(&tb, [UInt8(1 + i % 2)], from: elsewhere, now: t0)
            _ = deliver(&tb, genuine + [0], from: elsewhere, now: t0)          // one byte too long
            _ = deliver(&tb, [1, 0, 0, 1] + genuine[4...], from: elsewhere, now: t0)  // reserved byte set
            XCTAssertEqual(deliver(&tb, badMac1, from: elsewhere, now: t0), .drop(.mac1))
        }
        XCTAssertEqual(deliver(&tb, genuine, from: aAddr, now: t0), .control, "not under load: answered without a cookie")
    }

    func testMac1ValidHandshakesCountAsLoad() {
        var (a, b, stranger, tb) = parties()
        // A stranger's initiation has a valid mac1 (our key is public): it counts, then is refused.
        let strangers = initiation(from: stranger, to: b.publicKey, wallSeconds: 100)
        for _ in 0...SessionConstants.underLoadHandshakesPerSecond {
            _ = deliver(&tb, strangers, from: elsewhere, now: t0)
        }
        _ = drainTransmits(&tb)
        let genuine = initiation(from: a, to: b.publicKey, wallSeconds: 100)
        XCTAssertEqual(deliver(&tb, genuine, from: aAddr, now: t0 + .milliseconds(500)), .drop(.cookieRequired))
        let cookie = drainTransmits(&tb)
        XCTAssertEqual(cookie.map(\.to), [aAddr])
        XCTAssertEqual(cookie.first?.peer, nil, "a direct handshake's cookie answers the address")
        // Sticky for UNDER_LOAD_AFTER_TIME after the last message over the threshold (that one), then off.
        XCTAssertEqual(deliver(&tb, genuine, from: aAddr, now: t0 + .milliseconds(501) + SessionConstants.underLoadAfterTime),
                       .control)
    }

    // MARK: M2: a cookie reply expedites the retry

    func testACookieReplyBringsTheRetryForwardButKeepsTheSpacing() {
        let (a, b, _, _) = parties()
        for (arrival, expected) in [(Span.milliseconds(10), Span.milliseconds(250)), (.milliseconds(400), .milliseconds(400))] {
            var ta = Tunnels(identity: a, peers: [PeerSpec(publicKey: b.publicKey, endpoint: bAddr)], seed: 1)
            var tb = Tunnels(identity: b, peers: [PeerSpec(publicKey: a.publicKey)], seed: 2)
            let p = PeerID(rawValue: 0)
            ta.connect(p, now: t0)
            ta.handleTimeout(now: t0, wallClock: wall(t0))
            let init1 = drainTransmits(&ta).first?.bytes ?? []
            XCTAssertEqual(deliver(&tb, init1, from: aAddr, now: t0, underLoad: true), .drop(.cookieRequired))
            let cookie = drainTransmits(&tb).first?.bytes ?? []
            XCTAssertEqual(deliver(&ta, cookie, from: bAddr, now: t0 + arrival), .control)
            let next = ta.pollTimeout()
            XCTAssertEqual(next?.reason, .handshakeExpedite, "cookie at +\(arrival)")
            XCTAssertEqual(next?.deadline, t0 + expected, "cookie at +\(arrival)")
            // The retry carries mac2 and is answered while B stays under load.
            let at = t0 + expected
            ta.handleTimeout(now: at, wallClock: wall(at))
            let init2 = drainTransmits(&ta).first?.bytes ?? []
            XCTAssertEqual(deliver(&tb, init2, from: aAddr, now: at, underLoad: true), .control)
        }
    }
}

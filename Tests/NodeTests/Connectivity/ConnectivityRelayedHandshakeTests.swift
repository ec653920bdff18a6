import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
import Reactor

/// Regression tests for the security review's H1: a HANDSHAKE_INIT inside a
/// RELAY meets the same defences as a direct one (load meter, mac2 keyed to
/// the anchor's endpoint and the relaying member, the cookie reply back
/// through the anchor, a per-member budget under load).
final class ConnectivityRelayedHandshakeTests: XCTestCase {
    let t0 = Instant(ns: 5_000_000_000)
    let anchorAddr = Endpoint.v4(203, 0, 113, 10, port: 51820)
    let bAddr = Endpoint.v4(198, 51, 100, 2, port: 51820)
    /// The anchor's relay-tag key toward b (a RELAY from the anchor is tagged under their session).
    var hop: RelayTagKey?

    func wall(_ now: Instant) -> HandshakeTimestamp {
        HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000, nanoseconds: UInt32(now.ns % 1_000_000_000))
    }

    /// b: a NodeCore with member a and an anchor; a: the member's session layer, which reaches b through the anchor.
    func world(sessionTimings: SessionTimings = .default)
        -> (b: NodeCore, a: Tunnels, idA: MemberID, idB: MemberID, stranger: Identity) {
        var rng = SessionRandom(seed: 21)
        let a = SessionSim.identity(&rng), b = SessionSim.identity(&rng), anchor = SessionSim.identity(&rng)
        let stranger = SessionSim.identity(&rng)
        let core = NodeCore(identity: b, members: [
            MemberSpec(publicKey: b.publicKey, name: "b"),
            MemberSpec(publicKey: a.publicKey, name: "a"),
            MemberSpec(publicKey: anchor.publicKey, name: "anchor-1", endpoint: anchorAddr, isAnchor: true),
        ], isAnchor: false, sessionTimings: sessionTimings, seed: 1)
        let ta = Tunnels(identity: a, peers: [PeerSpec(publicKey: b.publicKey, endpoint: anchorAddr)],
                         timings: sessionTimings, seed: 3)
        var nb = core
        hop = anchorSession(&nb, anchor: anchor, timings: sessionTimings)
        return (nb, ta, MemberID(publicKey: a.publicKey), MemberID(publicKey: b.publicKey), stranger)
    }

    /// b's session with the anchor (before t0, not under load): the anchor's relay-tag key toward b.
    func anchorSession(_ b: inout NodeCore, anchor: Identity, timings: SessionTimings) -> RelayTagKey? {
        var tA = Tunnels(identity: anchor, peers: [PeerSpec(publicKey: b.publicKey, endpoint: bAddr)], timings: timings, seed: 5)
        var now = Instant(ns: 1_000_000_000)
        tA.connect(PeerID(rawValue: 0), now: now)
        for _ in 0..<4 {
            tA.handleTimeout(now: now, wallClock: wall(now))
            while let t = tA.pollTransmit() { _ = deliver(&b, t.bytes, from: anchorAddr, now: now) }
            for t in transmits(&b) where t.to == anchorAddr {
                var buf = t.bytes + [UInt8](repeating: 0, count: 32)
                _ = buf.withUnsafeMutableBytes { tA.receive($0, length: t.bytes.count, from: bAddr, now: now, underLoad: false, roam: false) }
            }
            now = now + .milliseconds(10)
        }
        _ = transmits(&b)
        XCTAssertTrue(tA.isEstablished(PeerID(rawValue: 0), now: now), "the anchor's session with b")
        return tA.relayHop(of: PeerID(rawValue: 0)).send
    }

    /// What the anchor delivers to b: the inner datagram behind a RELAY header naming the sender, tagged by the anchor.
    func relayed(_ inner: [UInt8], from sender: MemberID) -> [UInt8] {
        var out = RelayMessage.wrap(inner, for: sender)
        if let hop { out.withUnsafeMutableBytes { RelayTag.seal($0.baseAddress!, length: $0.count, key: hop) } }
        return out
    }

    func deliver(_ core: inout NodeCore, _ bytes: [UInt8], from: Endpoint, now: Instant) -> NodeInbound {
        var buf = bytes + [UInt8](repeating: 0, count: 32)
        return buf.withUnsafeMutableBytes { core.receive($0, length: bytes.count, from: from, now: now) }
    }

    func transmits(_ core: inout NodeCore) -> [Transmit] {
        var out: [Transmit] = []
        while let t = core.pollTransmit() { out.append(t) }
        return out
    }

    func nextInitiation(_ a: inout Tunnels, now: Instant) -> [UInt8] {
        a.handleTimeout(now: now, wallClock: wall(now))
        var last: [UInt8] = []
        while let t = a.pollTransmit() {
            if t.bytes.first == MessageType.handshakeInit.rawValue { last = t.bytes }
        }
        return last
    }

    /// Puts b under load with relayed initiations from a stranger (valid mac1, no member):
    /// counted although they come inside RELAY.
    func load(_ b: inout NodeCore, stranger: Identity, sender: MemberID, now: Instant) {
        var ts = Tunnels(identity: stranger, peers: [PeerSpec(publicKey: b.publicKey, endpoint: anchorAddr)], seed: 9)
        ts.connect(PeerID(rawValue: 0), now: now)
        let message = nextInitiation(&ts, now: now)
        for _ in 0...SessionConstants.underLoadHandshakesPerSecond {
            _ = deliver(&b, relayed(message, from: sender), from: anchorAddr, now: now)
        }
        _ = transmits(&b)
    }

    func testRelayedInitiationsCountAsLoadAndThenNeedACookieThatComesBackThroughTheAnchor() throws {
        var (b, a, idA, _, stranger) = world()
        // No load forced anywhere: relayed handshakes alone put b under load.
        load(&b, stranger: stranger, sender: idA, now: t0)

        a.connect(PeerID(rawValue: 0), now: t0)
        let init1 = nextInitiation(&a, now: t0)
        XCTAssertEqual(init1.count, HandshakeInitiationMessage.size)
        XCTAssertEqual(deliver(&b, relayed(init1, from: idA), from: anchorAddr, now: t0), .drop(.session(.cookieRequired)))

        // The cookie reply goes to the anchor wrapped in RELAY, naming a: the anchor forwards it to a.
        let out = transmits(&b)
        XCTAssertEqual(out.count, 1)
        let reply = try XCTUnwrap(out.first)
        XCTAssertEqual(reply.to, anchorAddr)
        XCTAssertEqual(reply.bytes.first, RelayMessage.type, "wrapped, not raw (the anchor drops a raw cookie reply)")
        XCTAssertEqual(reply.bytes.withUnsafeBytes { RelayMessage.parseHeader($0, length: reply.bytes.count) }, idA)
        let cookie = Array(reply.bytes[RelayMessage.headerSize...])
        XCTAssertEqual(cookie.count, CookieReplyMessage.size)

        // a takes it (the anchor delivered it, from b) and retries early with mac2; b answers through the anchor.
        var buf = cookie
        XCTAssertEqual(buf.withUnsafeMutableBytes { a.receive($0, length: cookie.count, from: anchorAddr, now: t0, underLoad: false, roam: false) },
                       .control)
        let retryAt = try XCTUnwrap(a.pollTimeout()).deadline
        XCTAssertEqual(retryAt, t0 + a.timings.expediteMinInterval)
        load(&b, stranger: stranger, sender: idA, now: retryAt)  // still under load
        let init2 = nextInitiation(&a, now: retryAt)
        XCTAssertEqual(deliver(&b, relayed(init2, from: idA), from: anchorAddr, now: retryAt), .consumed)
        let response = transmits(&b).filter { $0.bytes.count == RelayMessage.headerSize + HandshakeResponseMessage.size }
        XCTAssertEqual(response.map(\.to), [anchorAddr])

        // The cookie is for (anchor, a): the same initiation sent directly from the anchor's address,
        // or relayed naming another member, needs a cookie of its own.
        let other = MemberID(publicKey: stranger.publicKey)
        XCTAssertEqual(deliver(&b, init2, from: anchorAddr, now: retryAt), .drop(.session(.cookieRequired)))
        XCTAssertEqual(deliver(&b, relayed(init2, from: other), from: anchorAddr, now: retryAt), .drop(.relayUnknownTarget),
                       "a stranger's id is no member: refused before the session layer")
    }

    func testARelayFromAForgedAnchorSourceIsDroppedBeforeTheSessionLayer() throws {
        // H1 vector (a): the anchor's address is public, its session with b is not.
        var (b, a, idA, _, _) = world()
        a.connect(PeerID(rawValue: 0), now: t0)
        let init1 = nextInitiation(&a, now: t0)
        var garbage = RelayMessage.wrap(init1, for: idA)
        garbage.replaceSubrange(1..<8, with: [9, 8, 7, 6, 5, 4, 3])
        for forged in [RelayMessage.wrap(init1, for: idA), garbage] {
            XCTAssertEqual(deliver(&b, forged, from: anchorAddr, now: t0), .drop(.relayBadTag))
        }
        XCTAssertTrue(transmits(&b).isEmpty, "no response, no cookie: nothing was opened")
        XCTAssertEqual(b.status(now: t0).counters["relay_bad_tag"], 2)
        XCTAssertEqual(deliver(&b, relayed(init1, from: idA), from: anchorAddr, now: t0), .consumed, "tagged by the anchor")
    }

    func testUnderLoadEachRelayingMemberHasItsOwnHandshakeBudget() throws {
        var timings = SessionTimings.default
        timings.initiationMinInterval = .zero
        timings.rekeyTimeoutMax = .seconds(5 as UInt64)  // retries every 5 s, all within the cookie's life
        var (b, a, idA, _, stranger) = world(sessionTimings: timings)
        load(&b, stranger: stranger, sender: idA, now: t0)
        a.connect(PeerID(rawValue: 0), now: t0)
        let init1 = nextInitiation(&a, now: t0)
        XCTAssertEqual(deliver(&b, relayed(init1, from: idA), from: anchorAddr, now: t0), .drop(.session(.cookieRequired)))
        let cookie = Array((transmits(&b).first?.bytes ?? [])[RelayMessage.headerSize...])
        var buf = cookie
        XCTAssertEqual(buf.withUnsafeMutableBytes { a.receive($0, length: cookie.count, from: anchorAddr, now: t0, underLoad: false, roam: false) },
                       .control)
        // Eight initiations with mac2, all reaching b at one instant (under load): a burst of 5.
        var messages: [[UInt8]] = []
        var now = t0
        for _ in 0..<8 {
            now = try XCTUnwrap(a.pollTimeout()).deadline
            messages.append(nextInitiation(&a, now: now))
        }
        let at = t0 + .seconds(60 as UInt64)
        load(&b, stranger: stranger, sender: idA, now: at)
        var results: [NodeInbound] = []
        for m in messages {
            results.append(deliver(&b, relayed(m, from: idA), from: anchorAddr, now: at))
            _ = transmits(&b)
        }
        XCTAssertEqual(results.filter { $0 == .consumed }.count, 5, "\(results)")
        XCTAssertEqual(results.filter { $0 == .drop(.session(.rateLimited)) }.count, 3, "\(results)")
    }
}

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// Two `Tunnels` driven by hand, datagram by datagram, on a virtual clock.
final class SessionHandshakeTests: XCTestCase {
    let t0 = Instant(ns: 5_000_000_000)
    let aAddr = Endpoint.v4(192, 0, 2, 1, port: 51820)
    let bAddr = Endpoint.v4(198, 51, 100, 2, port: 51820)

    func wall(_ now: Instant) -> HandshakeTimestamp {
        HandshakeTimestamp(unixSeconds: 1_700_000_000 + now.ns / 1_000_000_000, nanoseconds: UInt32(now.ns % 1_000_000_000))
    }

    /// Sends `payload` through `t` to `peer`; returns the datagram if it left at once.
    func seal(_ t: inout Tunnels, _ peer: PeerID, _ payload: [UInt8], now: Instant) -> (Outbound, [UInt8]?) {
        var buf = [UInt8](repeating: 0, count: 16 + payload.count + 16)
        buf.replaceSubrange(16..<(16 + payload.count), with: payload)
        let r = buf.withUnsafeMutableBytes { t.send(to: peer, $0, payloadOffset: 16, payloadLength: payload.count, now: now) }
        if case .send(_, let off, let len) = r { return (r, Array(buf[off..<(off + len)])) }
        return (r, nil)
    }

    func deliver(_ t: inout Tunnels, _ bytes: [UInt8], from: Endpoint, now: Instant, underLoad: Bool = false) -> (Inbound, [UInt8]?) {
        var buf = bytes
        let r = buf.withUnsafeMutableBytes { t.receive($0, length: bytes.count, from: from, now: now, underLoad: underLoad) }
        if case .data(_, let off, let len) = r { return (r, Array(buf[off..<(off + len)])) }
        return (r, nil)
    }

    func drainTransmits(_ t: inout Tunnels) -> [Transmit] {
        var out: [Transmit] = []
        while let x = t.pollTransmit() { out.append(x) }
        return out
    }

    func drainEvents(_ t: inout Tunnels) -> [TunnelEvent] {
        var out: [TunnelEvent] = []
        while let e = t.pollEvent() { out.append(e) }
        return out
    }

    struct Pair {
        var a: Tunnels
        var b: Tunnels
        let idA: Identity
        let idB: Identity
        let init1: [UInt8]
    }

    /// A knows B's endpoint; B learns A's from the handshake.
    func establish(file: StaticString = #filePath, line: UInt = #line) -> Pair {
        let idA = Identity(secret: SecretKey.generate()), idB = Identity(secret: SecretKey.generate())
        var a = Tunnels(identity: idA, peers: [PeerSpec(publicKey: idB.publicKey, endpoint: bAddr)], seed: 1)
        var b = Tunnels(identity: idB, peers: [PeerSpec(publicKey: idA.publicKey)], seed: 2)
        let p = PeerID(rawValue: 0)

        // 1. A has a packet for B and no keys: it is queued, a handshake is wanted now.
        XCTAssertEqual(seal(&a, p, Array("hello".utf8), now: t0).0, .queued, file: file, line: line)
        XCTAssertTrue(drainTransmits(&a).isEmpty, "the initiation waits for handleTimeout (it needs the wall clock)", file: file, line: line)
        XCTAssertEqual(a.pollTimeout()?.deadline, t0, file: file, line: line)
        XCTAssertEqual(a.pollTimeout()?.reason, .handshakeInitiation, file: file, line: line)
        XCTAssertEqual(a.peerStatus(p, now: t0)?.state, .handshaking, file: file, line: line)

        // 2. The timer fires: HANDSHAKE_INIT to B; a retry is armed 5 s + jitter later.
        a.handleTimeout(now: t0, wallClock: wall(t0))
        let initTx = drainTransmits(&a)
        XCTAssertEqual(initTx.count, 1, file: file, line: line)
        XCTAssertEqual(initTx.first?.to, bAddr, file: file, line: line)
        XCTAssertEqual(initTx.first?.bytes.count, HandshakeInitiationMessage.size, file: file, line: line)
        XCTAssertEqual(a.pollTimeout()?.reason, .handshakeRetry, file: file, line: line)
        let init1 = initTx.first?.bytes ?? []

        // 3. B consumes it: learns A's endpoint, answers, holds the keys as `next`.
        let t1 = t0 + .milliseconds(10)
        XCTAssertEqual(deliver(&b, init1, from: aAddr, now: t1).0, .control, file: file, line: line)
        XCTAssertEqual(drainEvents(&b), [.endpointChanged(p, aAddr)], file: file, line: line)
        let respTx = drainTransmits(&b)
        XCTAssertEqual(respTx.count, 1, file: file, line: line)
        XCTAssertEqual(respTx.first?.to, aAddr, file: file, line: line)
        XCTAssertEqual(respTx.first?.bytes.count, HandshakeResponseMessage.size, file: file, line: line)
        XCTAssertEqual(b.peerStatus(p, now: t1)?.state, .awaitingConfirmation, file: file, line: line)

        // 4. A consumes the response: established; the queued packet leaves at once.
        let t2 = t1 + .milliseconds(10)
        XCTAssertEqual(deliver(&a, respTx.first?.bytes ?? [], from: bAddr, now: t2).0, .control, file: file, line: line)
        XCTAssertEqual(drainEvents(&a), [.established(p)], file: file, line: line)
        let flushed = drainTransmits(&a)
        XCTAssertEqual(flushed.count, 1, file: file, line: line)
        XCTAssertEqual(flushed.first?.bytes.count, 5 + DataMessage.overhead, file: file, line: line)
        XCTAssertEqual(a.peerStatus(p, now: t2)?.state, .established, file: file, line: line)
        XCTAssertNotEqual(a.pollTimeout()?.reason, .handshakeRetry, "retry cancelled", file: file, line: line)

        // 5. B receives it under `next`: confirmed, established, payload delivered.
        let t3 = t2 + .milliseconds(10)
        let (r, payload) = deliver(&b, flushed.first?.bytes ?? [], from: aAddr, now: t3)
        XCTAssertEqual(r, .data(p, payloadOffset: 16, payloadLength: 5), file: file, line: line)
        XCTAssertEqual(payload, Array("hello".utf8), file: file, line: line)
        XCTAssertEqual(drainEvents(&b), [.established(p)], file: file, line: line)
        XCTAssertEqual(b.peerStatus(p, now: t3)?.state, .established, file: file, line: line)
        return Pair(a: a, b: b, idA: idA, idB: idB, init1: init1)
    }

    func testTwoPartyHandshakeStepByStep() {
        var pair = establish()
        let p = PeerID(rawValue: 0)
        let t = t0 + .seconds(1 as UInt64)
        // B answers directly now: sealed in place, to A's learned endpoint.
        let (r, bytes) = seal(&pair.b, p, Array("world".utf8), now: t)
        XCTAssertEqual(r, .send(aAddr, offset: 0, length: 5 + 32))
        let (r2, payload) = deliver(&pair.a, bytes ?? [], from: bAddr, now: t + .milliseconds(10))
        XCTAssertEqual(r2, .data(p, payloadOffset: 16, payloadLength: 5))
        XCTAssertEqual(payload, Array("world".utf8))
        let sa = pair.a.peerStatus(p, now: t), sb = pair.b.peerStatus(p, now: t)
        XCTAssertEqual(sa?.counters.handshakesCompleted, 1)
        XCTAssertEqual(sb?.counters.handshakesCompleted, 1)
        XCTAssertEqual(sa?.sendCounter, 1, "one packet sent under A's keys")
        XCTAssertEqual(sb?.endpoint, aAddr)
        XCTAssertNil(pair.a.peerStatus(PeerID(rawValue: 1), now: t))
    }

    func testReplayedInitiationDoesNotResetTheSession() {
        var pair = establish()
        let p = PeerID(rawValue: 0)
        let t = t0 + .seconds(2 as UInt64)
        let before = pair.b.peerStatus(p, now: t)
        // The captured initiation, replayed from A's address and from elsewhere.
        let elsewhere = Endpoint.v4(203, 0, 113, 66, port: 4444)
        XCTAssertEqual(deliver(&pair.b, pair.init1, from: aAddr, now: t).0, .drop(.staleTimestamp))
        XCTAssertEqual(deliver(&pair.b, pair.init1, from: elsewhere, now: t + .seconds(1 as UInt64)).0, .drop(.staleTimestamp))
        XCTAssertTrue(drainTransmits(&pair.b).isEmpty, "never answered")
        XCTAssertTrue(drainEvents(&pair.b).isEmpty, "endpoint not moved")
        let after = pair.b.peerStatus(p, now: t)
        XCTAssertEqual(after?.endpoint, aAddr)
        XCTAssertEqual(after?.lastHandshake, before?.lastHandshake)
        XCTAssertEqual(after?.state, .established)
        // Data keeps flowing both ways with the same keys.
        for i in 0..<10 {
            let (_, ab) = seal(&pair.a, p, .tagged(i), now: t + .seconds(3 as UInt64))
            XCTAssertEqual(deliver(&pair.b, ab ?? [], from: aAddr, now: t + .seconds(3 as UInt64)).1, .tagged(i))
            let (_, ba) = seal(&pair.b, p, .tagged(100 + i), now: t + .seconds(3 as UInt64))
            XCTAssertEqual(deliver(&pair.a, ba ?? [], from: bAddr, now: t + .seconds(3 as UInt64)).1, .tagged(100 + i))
        }
        XCTAssertEqual(pair.b.peerStatus(p, now: t)?.counters.handshakesCompleted, 1)
    }

    func testReplayedDataIsRejectedAndDoesNotMoveTheEndpoint() {
        var pair = establish()
        let p = PeerID(rawValue: 0)
        let t = t0 + .seconds(1 as UInt64)
        let (_, bytes) = seal(&pair.a, p, .tagged(1), now: t)
        XCTAssertEqual(deliver(&pair.b, bytes ?? [], from: aAddr, now: t).1, .tagged(1))
        let attacker = Endpoint.v4(203, 0, 113, 9, port: 666)
        XCTAssertEqual(deliver(&pair.b, bytes ?? [], from: attacker, now: t).0, .drop(.replay))
        XCTAssertEqual(deliver(&pair.b, bytes ?? [], from: aAddr, now: t).0, .drop(.replay))
        XCTAssertTrue(drainEvents(&pair.b).isEmpty)
        XCTAssertEqual(pair.b.peerStatus(p, now: t)?.endpoint, aAddr)
        // A forged packet (valid index, garbage ciphertext) from a new address: no move either.
        var forged = bytes ?? []
        forged[20] ^= 1
        forged[8] &+= 1  // a fresh counter, so it passes the replay pre-check
        XCTAssertEqual(deliver(&pair.b, forged, from: attacker, now: t).0, .drop(.authFailed))
        XCTAssertEqual(pair.b.peerStatus(p, now: t)?.endpoint, aAddr)
        XCTAssertTrue(drainEvents(&pair.b).isEmpty)
    }

    func testAuthenticatedDataFromANewAddressMovesTheEndpoint() {
        var pair = establish()
        let p = PeerID(rawValue: 0)
        let t = t0 + .seconds(1 as UInt64)
        let roamed = Endpoint.v4(100, 64, 7, 7, port: 40000)
        let (_, bytes) = seal(&pair.a, p, .tagged(1), now: t)
        XCTAssertEqual(deliver(&pair.b, bytes ?? [], from: roamed, now: t).1, .tagged(1))
        XCTAssertEqual(drainEvents(&pair.b), [.endpointChanged(p, roamed)])
        XCTAssertEqual(pair.b.peerStatus(p, now: t)?.endpoint, roamed)
        // B now sends there.
        XCTAssertEqual(seal(&pair.b, p, .tagged(2), now: t).0, .send(roamed, offset: 0, length: 24 + 32))
    }

    func testNonMemberIsNeverAnswered() {
        let idB = Identity(secret: SecretKey.generate()), idC = Identity(secret: SecretKey.generate())
        let idA = Identity(secret: SecretKey.generate())
        var b = Tunnels(identity: idB, peers: [PeerSpec(publicKey: idA.publicKey)], seed: 2)
        // C knows B's key (so mac1 is right) but is not in B's config.
        var c = Tunnels(identity: idC, peers: [PeerSpec(publicKey: idB.publicKey, endpoint: bAddr)], seed: 3)
        _ = seal(&c, PeerID(rawValue: 0), [1, 2, 3], now: t0)
        c.handleTimeout(now: t0, wallClock: wall(t0))
        let initC = drainTransmits(&c).first?.bytes ?? []
        XCTAssertEqual(deliver(&b, initC, from: aAddr, now: t0).0, .drop(.notMember))
        XCTAssertTrue(drainTransmits(&b).isEmpty)
        XCTAssertTrue(drainEvents(&b).isEmpty)
    }

    func testMalformedInputIsDropped() {
        var pair = establish()
        let p = PeerID(rawValue: 0)
        let t = t0 + .seconds(1 as UInt64)
        let table: [([UInt8], DropReason)] = [
            ([4], .badLength),
            ([UInt8](repeating: 0, count: 31).with(0, 4), .badLength),
            ([UInt8](repeating: 0, count: 40).with(0, 4).with(1, 2), .unknownType),
            ([UInt8](repeating: 0, count: 40).with(0, 4).with(2, 1), .unknownType),
            ([UInt8](repeating: 0, count: 40).with(0, 4), .unknownIndex),
            ([UInt8](repeating: 0, count: 40).with(0, 9), .unknownType),
            ([UInt8](repeating: 0, count: 40).with(0, 5), .unknownType),
            ([UInt8](repeating: 0, count: 100).with(0, 1), .badLength),
            ([UInt8](repeating: 0, count: HandshakeInitiationMessage.size).with(0, 1), .mac1),
            ([UInt8](repeating: 0, count: HandshakeResponseMessage.size).with(0, 2), .mac1),
            ([UInt8](repeating: 0, count: CookieReplyMessage.size).with(0, 3), .unknownIndex),
        ]
        for (bytes, reason) in table {
            XCTAssertEqual(deliver(&pair.b, bytes, from: aAddr, now: t).0, .drop(reason), "\(bytes.prefix(4)) len \(bytes.count)")
        }
        var empty = [UInt8](repeating: 0, count: 8)
        XCTAssertEqual(empty.withUnsafeMutableBytes { pair.b.receive($0, length: 0, from: aAddr, now: t, underLoad: false) }, .drop(.badLength))
        XCTAssertEqual(empty.withUnsafeMutableBytes { pair.b.receive($0, length: 9, from: aAddr, now: t, underLoad: false) }, .drop(.badLength))
        // Send geometry: header room, tail room, known peer.
        var buf = [UInt8](repeating: 0, count: 64)
        buf.withUnsafeMutableBytes { b in
            XCTAssertEqual(pair.a.send(to: p, b, payloadOffset: 15, payloadLength: 8, now: t), .drop(.badLength))
            XCTAssertEqual(pair.a.send(to: p, b, payloadOffset: 16, payloadLength: 33, now: t), .drop(.badLength))
            XCTAssertEqual(pair.a.send(to: p, b, payloadOffset: 16, payloadLength: -1, now: t), .drop(.badLength))
            XCTAssertEqual(pair.a.send(to: PeerID(rawValue: 3), b, payloadOffset: 16, payloadLength: 8, now: t), .drop(.unknownPeer))
            XCTAssertEqual(pair.a.send(to: p, b, payloadOffset: 16, payloadLength: 32, now: t), .send(bAddr, offset: 0, length: 64))
        }
        // The state survived all of it.
        let (_, bytes) = seal(&pair.a, p, .tagged(7), now: t)
        XCTAssertEqual(deliver(&pair.b, bytes ?? [], from: aAddr, now: t).1, .tagged(7))
    }

    func testNoEndpointDrops() {
        let idA = Identity(secret: SecretKey.generate()), idB = Identity(secret: SecretKey.generate())
        var a = Tunnels(identity: idA, peers: [PeerSpec(publicKey: idB.publicKey)], seed: 1)
        XCTAssertEqual(seal(&a, PeerID(rawValue: 0), [1], now: t0).0, .drop(.noEndpoint))
        XCTAssertNil(a.pollTimeout())
    }

    func testQueueIsBoundedAndKeepsTheNewest() {
        let idA = Identity(secret: SecretKey.generate()), idB = Identity(secret: SecretKey.generate())
        var timings = SessionTimings.default
        timings.handshakeQueueLimit = 8
        var a = Tunnels(identity: idA, peers: [PeerSpec(publicKey: idB.publicKey, endpoint: bAddr)], timings: timings, seed: 1)
        var b = Tunnels(identity: idB, peers: [PeerSpec(publicKey: idA.publicKey)], timings: timings, seed: 2)
        let p = PeerID(rawValue: 0)
        for i in 0..<20 { XCTAssertEqual(seal(&a, p, .tagged(i), now: t0).0, .queued) }
        XCTAssertEqual(a.peerStatus(p, now: t0)?.queuedPackets, 8)
        XCTAssertEqual(a.peerStatus(p, now: t0)?.counters.queueDropped, 12)
        XCTAssertEqual(a.queueDropped, 12, "summed over peers: the status counter queue_dropped")
        a.handleTimeout(now: t0, wallClock: wall(t0))
        let initiation = drainTransmits(&a)
        XCTAssertEqual(initiation.count, 1)
        _ = deliver(&b, initiation.first?.bytes ?? [], from: aAddr, now: t0)
        let resp = drainTransmits(&b)
        _ = deliver(&a, resp.first?.bytes ?? [], from: bAddr, now: t0)
        let flushed = drainTransmits(&a)
        XCTAssertEqual(flushed.count, 8)
        let tags = flushed.compactMap { deliver(&b, $0.bytes, from: aAddr, now: t0).1?.tag }
        XCTAssertEqual(tags, Array(12..<20), "in order, newest kept")
    }

    func testSendingNeverPassesRejectAfterMessages() {
        // Tiny counter limits, and B never answers a new handshake: after the
        // 10th packet A must stop sealing (queue instead), never reuse a counter.
        var timings = SessionTimings.default
        timings.rekeyAfterMessages = 5
        timings.rejectAfterMessages = 10
        let idA = Identity(secret: SecretKey.generate()), idB = Identity(secret: SecretKey.generate())
        var a = Tunnels(identity: idA, peers: [PeerSpec(publicKey: idB.publicKey, endpoint: bAddr)], timings: timings, seed: 1)
        var b = Tunnels(identity: idB, peers: [PeerSpec(publicKey: idA.publicKey)], timings: timings, seed: 2)
        let p = PeerID(rawValue: 0)
        _ = seal(&a, p, [0], now: t0)
        a.handleTimeout(now: t0, wallClock: wall(t0))
        _ = deliver(&b, drainTransmits(&a).first?.bytes ?? [], from: aAddr, now: t0)
        _ = deliver(&a, drainTransmits(&b).first?.bytes ?? [], from: bAddr, now: t0)
        var counters: [UInt64] = drainTransmits(&a).compactMap { x in x.bytes.withUnsafeBytes { DataMessage.parseHeader($0, length: x.bytes.count)?.counter } }
        var results: [Outbound] = []
        for i in 0..<20 {
            let (r, bytes) = seal(&a, p, .tagged(i), now: t0)
            results.append(r)
            if let bytes { counters.append(bytes.withUnsafeBytes { DataMessage.parseHeader($0, length: bytes.count)?.counter } ?? 0) }
        }
        XCTAssertEqual(counters, Array(0..<10), "counters 0...9 then nothing")
        XCTAssertEqual(results.filter { $0 == .queued }.count, 11)
        XCTAssertEqual(a.pollTimeout()?.reason, .handshakeInitiation, "a rekey was asked for at the 5th packet")
        XCTAssertEqual(a.peerStatus(p, now: t0)?.state, .handshaking, "keys used up: no usable session")
    }

    func testCookieUnderLoadThenRetryWithMac2Succeeds() {
        let idA = Identity(secret: SecretKey.generate()), idB = Identity(secret: SecretKey.generate())
        var a = Tunnels(identity: idA, peers: [PeerSpec(publicKey: idB.publicKey, endpoint: bAddr)], seed: 1)
        var b = Tunnels(identity: idB, peers: [PeerSpec(publicKey: idA.publicKey)], seed: 2)
        let p = PeerID(rawValue: 0)
        XCTAssertEqual(seal(&a, p, .tagged(1), now: t0).0, .queued)
        a.handleTimeout(now: t0, wallClock: wall(t0))
        let init1 = drainTransmits(&a).first?.bytes ?? []

        // B is under load: no mac2 -> a cookie reply to the source, no DH, no state.
        XCTAssertEqual(deliver(&b, init1, from: aAddr, now: t0, underLoad: true).0, .drop(.cookieRequired))
        let cookie = drainTransmits(&b)
        XCTAssertEqual(cookie.count, 1)
        XCTAssertEqual(cookie.first?.to, aAddr)
        XCTAssertEqual(cookie.first?.bytes.count, CookieReplyMessage.size)
        XCTAssertEqual(b.peerStatus(p, now: t0)?.state, .idle)
        XCTAssertTrue(drainEvents(&b).isEmpty, "a cookie exchange moves nothing")

        // A takes the cookie; a replay of the same reply is refused.
        XCTAssertEqual(deliver(&a, cookie.first?.bytes ?? [], from: bAddr, now: t0).0, .control)
        XCTAssertEqual(deliver(&a, cookie.first?.bytes ?? [], from: bAddr, now: t0).0, .drop(.authFailed))

        // A retries at once (the cookie says B is under load), not at REKEY_TIMEOUT,
        // but no sooner than expediteMinInterval after init1; it carries mac2 and gets through.
        guard let retry = a.pollTimeout() else { return XCTFail("retry armed") }
        XCTAssertEqual(retry.reason, .handshakeExpedite)
        XCTAssertEqual(retry.deadline, t0 + a.timings.expediteMinInterval)
        a.handleTimeout(now: retry.deadline, wallClock: wall(retry.deadline))
        let init2 = drainTransmits(&a).first?.bytes ?? []
        XCTAssertEqual(deliver(&b, init2, from: aAddr, now: retry.deadline, underLoad: true).0, .control)
        let resp = drainTransmits(&b).first?.bytes ?? []
        XCTAssertEqual(resp.count, HandshakeResponseMessage.size)
        XCTAssertEqual(deliver(&a, resp, from: bAddr, now: retry.deadline).0, .control)
        XCTAssertEqual(drainEvents(&a), [.established(p)])
        let data = drainTransmits(&a).first?.bytes ?? []
        XCTAssertEqual(deliver(&b, data, from: aAddr, now: retry.deadline, underLoad: true).1, .tagged(1), "DATA needs no cookie")
        // A cookie for the wrong source does not help: from another address, B asks again.
        let other = Endpoint.v4(192, 0, 2, 200, port: 1)
        XCTAssertEqual(deliver(&b, init2, from: other, now: retry.deadline, underLoad: true).0, .drop(.cookieRequired))
    }

    func testUnderLoadPerAddressRateLimit() {
        // With a valid cookie, one address still gets only its burst of handshakes.
        var timings = SessionTimings.default
        timings.initiationMinInterval = .zero
        timings.rekeyTimeoutMax = .seconds(5 as UInt64)  // retries every 5 s, all within the cookie's life
        let idA = Identity(secret: SecretKey.generate()), idB = Identity(secret: SecretKey.generate())
        var a = Tunnels(identity: idA, peers: [PeerSpec(publicKey: idB.publicKey, endpoint: bAddr)], timings: timings, seed: 1)
        var b = Tunnels(identity: idB, peers: [PeerSpec(publicKey: idA.publicKey)], timings: timings, seed: 2)
        let p = PeerID(rawValue: 0)
        _ = seal(&a, p, [1], now: t0)
        a.handleTimeout(now: t0, wallClock: wall(t0))
        let first = drainTransmits(&a).first?.bytes ?? []
        _ = deliver(&b, first, from: aAddr, now: t0, underLoad: true)
        _ = deliver(&a, drainTransmits(&b).first?.bytes ?? [], from: bAddr, now: t0)
        var results: [Inbound] = []
        var now = t0
        for _ in 0..<8 {
            // The first comes early (a cookie came), the rest on the retry timer.
            guard let retry = a.pollTimeout(), retry.reason == .handshakeRetry || retry.reason == .handshakeExpedite else {
                return XCTFail("retry")
            }
            now = retry.deadline
            a.handleTimeout(now: now, wallClock: wall(now))
            let m = drainTransmits(&a).first?.bytes ?? []
            // All at one instant at B: a burst from one address.
            results.append(deliver(&b, m, from: aAddr, now: t0 + .seconds(1 as UInt64), underLoad: true).0)
            _ = drainTransmits(&b)
        }
        XCTAssertEqual(results.filter { $0 == .control }.count, 5, "burst of 5")
        XCTAssertEqual(results.filter { $0 == .drop(.rateLimited) }.count, 3)
    }
}

extension Array where Element == UInt8 {
    func with(_ i: Int, _ v: UInt8) -> [UInt8] {
        var c = self
        c[i] = v
        return c
    }
}

/// Commands and the responder's flood limit.
final class SessionCommandTests: XCTestCase {
    func testSetEndpointAndConnect() {
        let sim = SessionSim(count: 2, knowEndpoints: false)
        XCTAssertEqual(sim.send(from: 0, to: 1, [1]), .drop(.noEndpoint))
        XCTAssertNil(sim.nodes[0].tunnels.pollTimeout())
        // The path manager finds B; connect brings the session up without traffic.
        sim.nodes[0].tunnels.setEndpoint(sim.nodes[1].address, for: sim.pid(0, 1))
        sim.nodes[0].tunnels.connect(sim.pid(0, 1), now: sim.now)
        XCTAssertEqual(sim.nodes[0].tunnels.pollTimeout()?.reason, .handshakeInitiation)
        sim.drive(for: .milliseconds(100))
        XCTAssertEqual(sim.status(0, 1)?.state, .established, "confirmed by A's keepalive")
        XCTAssertEqual(sim.status(1, 0)?.state, .established)
        XCTAssertEqual(sim.status(1, 0)?.endpoint, sim.nodes[0].address, "B learned A's address from the handshake")
        // connect on a live session does nothing.
        sim.nodes[0].tunnels.connect(sim.pid(0, 1), now: sim.now)
        sim.drive(for: .milliseconds(100))
        XCTAssertEqual(sim.status(0, 1)?.counters.initiationsSent, 1)
    }

    func testPersistentKeepaliveWaitsForAnEndpoint() {
        let sim = SessionSim(count: 2, knowEndpoints: false, persistentKeepalive: .seconds(25 as UInt64))
        XCTAssertNil(sim.nodes[0].tunnels.pollTimeout())
        sim.nodes[0].tunnels.setEndpoint(sim.nodes[1].address, for: sim.pid(0, 1))
        XCTAssertEqual(sim.nodes[0].tunnels.pollTimeout()?.reason, .persistentKeepalive)
        sim.drive(for: .milliseconds(100))
        XCTAssertEqual(sim.status(0, 1)?.state, .established)
    }

    func testInitiationFloodFromOnePeer() {
        // Two genuine, fresh initiations from A within 20 ms: the second is refused
        // after the es DH that reveals who sent it (ss is precomputed per member;
        // no ephemeral, ee or se); after 20 ms a fresh one is answered again.
        let sim = SessionSim(count: 2)
        let idA = sim.nodes[0].identity
        let bKey = sim.nodes[1].tunnels.publicKey
        func initiation(at wall: UInt64) -> [UInt8] {
            var a = Tunnels(identity: idA, peers: [PeerSpec(publicKey: bKey, endpoint: sim.nodes[1].address)], seed: wall)
            a.connect(PeerID(rawValue: 0), now: sim.now)
            a.handleTimeout(now: sim.now, wallClock: HandshakeTimestamp(unixSeconds: wall, nanoseconds: 0))
            return a.pollTransmit()?.bytes ?? []
        }
        let from = sim.nodes[0].address
        XCTAssertEqual(sim.inject(initiation(at: 100), to: 1, from: from), .control)
        sim.now = sim.now + .milliseconds(10)
        let second = initiation(at: 101)
        let before = CurveOperations.snapshot
        XCTAssertEqual(sim.inject(second, to: 1, from: from), .drop(.handshakeFlood))
        XCTAssertEqual(CurveOperations.snapshot - before, CurveOperations.Snapshot(dh: 1, base: 0, conversions: 0))
        sim.now = sim.now + .milliseconds(15)
        XCTAssertEqual(sim.inject(initiation(at: 102), to: 1, from: from), .control)
        XCTAssertEqual(sim.inject(initiation(at: 99), to: 1, from: from), .drop(.staleTimestamp))
        XCTAssertEqual(sim.status(1, 0)?.counters.initiationsAccepted, 2)
    }
}

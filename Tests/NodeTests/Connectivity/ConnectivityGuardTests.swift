import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// What NodeCore refuses: the probe responder (members only, never more bytes
/// than the probe, rate-limited) and the relay (never an open relay).
final class ConnectivityGuardTests: XCTestCase {
    let source = Endpoint.v4(198, 51, 100, 50, port: 40000)

    func node() -> (NodeCore, member: Identity, stranger: Identity) {
        var rng = SessionRandom(seed: 3)
        let me = SessionSim.identity(&rng), member = SessionSim.identity(&rng), stranger = SessionSim.identity(&rng)
        let core = NodeCore(identity: me, members: [
            MemberSpec(publicKey: me.publicKey, name: "me"),
            MemberSpec(publicKey: member.publicKey, name: "member"),
        ], isAnchor: false, seed: 1)
        return (core, member, stranger)
    }

    func probe(_ core: inout NodeCore, from key: PublicKey, at src: Endpoint, txid: UInt64, now: Instant) -> (NodeInbound, [UInt8]) {
        var buffer = PathProbe(txid: txid, sender: key).bytes + [UInt8](repeating: 0xEE, count: 64)
        let r = buffer.withUnsafeMutableBytes { core.receive($0, length: PathProbe.size, from: src, now: now) }
        return (r, buffer)
    }

    func testProbeResponderAnswersMembersOnlyNeverLargerAndRateLimits() {
        var (core, member, stranger) = node()
        let t = Instant(ns: 5_000_000_000)
        let (r, buffer) = probe(&core, from: member.publicKey, at: source, txid: 42, now: t)
        XCTAssertEqual(r, .transmit(source, offset: 0, length: PathProbeReply.size))
        XCTAssertLessThanOrEqual(PathProbeReply.size, PathProbe.size)
        let reply = buffer.withUnsafeBytes { PathProbeReply($0, length: PathProbeReply.size) }
        XCTAssertEqual(reply, PathProbeReply(txid: 42, observed: source, responder: core.publicKey))

        XCTAssertEqual(probe(&core, from: stranger.publicKey, at: source, txid: 1, now: t).0, .drop(.probeNotMember))
        XCTAssertEqual(probe(&core, from: core.publicKey, at: source, txid: 1, now: t).0, .drop(.probeNotMember), "not ourselves either")

        // A flood from one address: the burst is answered, then nothing until the bucket refills.
        var answered = 1, limited = 0
        for k in 0..<100 {
            switch probe(&core, from: member.publicKey, at: source, txid: UInt64(k), now: t).0 {
            case .transmit: answered += 1
            case .drop(.probeRateLimited): limited += 1
            default: XCTFail("unexpected")
            }
        }
        XCTAssertEqual(answered, ConnectivityTimings.default.probeReplyBurst)
        XCTAssertEqual(limited, 101 - answered)
        // Another address is not affected; the flooded one recovers with time.
        if case .transmit = probe(&core, from: member.publicKey, at: .v4(198, 51, 100, 51, port: 1), txid: 7, now: t).0 {} else { XCTFail() }
        if case .transmit = probe(&core, from: member.publicKey, at: source, txid: 8, now: t + .seconds(1 as UInt64)).0 {} else { XCTFail() }

        let counters = core.status(now: t).counters
        XCTAssertEqual(counters["probe_not_member"], 2)
        XCTAssertEqual(counters["probe_rate_limited"], UInt64(limited))
        // Malformed or unexpected: dropped and counted.
        var short = [UInt8](PathProbe(txid: 1, sender: member.publicKey).bytes.prefix(63)) + [0]
        XCTAssertEqual(short.withUnsafeMutableBytes { core.receive($0, length: 63, from: source, now: t) }, .drop(.badLength))
        var unsolicited = PathProbeReply(txid: 5, observed: source, responder: member.publicKey).bytes
        XCTAssertEqual(unsolicited.withUnsafeMutableBytes { core.receive($0, length: $0.count, from: source, now: t) },
                       .drop(.probeUnexpectedReply))
    }

    func testANonAnchorRefusesToRelay() {
        var (core, member, _) = node()
        var relay = RelayMessage.wrap([4] + [UInt8](repeating: 0, count: 31), for: MemberID(publicKey: member.publicKey))
        let r = relay.withUnsafeMutableBytes { core.receive($0, length: $0.count, from: source, now: Instant(ns: 1)) }
        XCTAssertEqual(r, .drop(.relayNotAnchor))
    }

    /// `from`'s relay-tag key toward `to`: the session between the two hops.
    func hopKey(_ sim: NetSim, from: Int, to: Int) -> RelayTagKey? {
        sim.hosts[from].core.shardKeys(of: sim.pid(to)).relayHop.send
    }

    /// `m` tagged under `key` (as the sending hop does).
    func tagged(_ m: [UInt8], _ key: RelayTagKey?) -> [UInt8] {
        var m = m
        if let key { m.withUnsafeMutableBytes { RelayTag.seal($0.baseAddress!, length: $0.count, key: key) } }
        return m
    }

    /// anchor-1 with two members that have sessions with it.
    func relayWorld(timings: ConnectivityTimings = .default) -> (NetSim, anchor: Int, a: Int, b: Int) {
        let sim = NetSim(timings: timings)
        let n1 = sim.addNAT(.independent, .independent)
        let n2 = sim.addNAT(.independent, .independent)
        sim.build([.init(name: "anchor-1", anchor: true), .init(name: "a", nat: n1), .init(name: "b", nat: n2)])
        sim.drive(for: .seconds(12 as UInt64))
        return (sim, 0, 1, 2)
    }

    func testTheAnchorRelaysOnlyBetweenMembersCurrentEndpointsWithinBudget() {
        // relay_rate_mbit = 20: 2.5 MB/s, a 1 MiB burst.
        let (sim, anchor, a, b) = relayWorld(timings: ConnectivityTimings.default.withRelayRate(mbit: 20))
        guard let aEndpoint = sim.activePath(anchor, a)?.remote, let bEndpoint = sim.activePath(anchor, b)?.remote else {
            return XCTFail("members have sessions with the anchor")
        }
        let inner = [4] + [UInt8](repeating: 0xAB, count: 1199)  // looks like DATA; the anchor never opens it
        let idB = MemberID(publicKey: sim.hosts[b].identity.publicKey)
        let idA = MemberID(publicKey: sim.hosts[a].identity.publicKey)

        let aKey = hopKey(sim, from: a, to: anchor)
        XCTAssertNotNil(aKey)
        // A member's current endpoint, tagged under its session, a member target: forwarded in
        // place, the id rewritten to name the sender and re-tagged under the anchor's session with b.
        var ok = tagged(RelayMessage.wrap(inner, for: idB), aKey)
        let r = ok.withUnsafeMutableBytes { sim.hosts[anchor].core.receive($0, length: $0.count, from: aEndpoint, now: sim.now) }
        XCTAssertEqual(r, .transmit(bEndpoint, offset: 0, length: ok.count))
        XCTAssertEqual(ok.withUnsafeBytes { RelayMessage.parseHeader($0, length: ok.count) }, idA)
        XCTAssertEqual(Array(ok[RelayMessage.headerSize...]), inner, "the inner datagram is untouched")
        let bHop = sim.hosts[b].core.shardKeys(of: sim.pid(anchor)).relayHop
        XCTAssertTrue(ok.withUnsafeBytes { bHop.check($0.baseAddress!, length: ok.count) }, "b takes the anchor's tag")
        XCTAssertFalse(ok.withUnsafeBytes { sim.hosts[anchor].core.shardKeys(of: sim.pid(a)).relayHop.check($0.baseAddress!, length: ok.count) },
                       "not a's tag any more")

        // table: (source, target id, expected drop)
        let stranger = Endpoint.v4(203, 0, 113, 99, port: 4444)
        let spoofed = Endpoint(family: .v4, address: aEndpoint.address, port: aEndpoint.port &+ 1)
        let cases: [(Endpoint, MemberID, NodeDropReason)] = [
            (stranger, idB, .relaySourceNotMember),
            (spoofed, idB, .relaySourceNotMember),
            (aEndpoint, MemberID(rawValue: 12345), .relayUnknownTarget),
            (aEndpoint, idA, .relayUnknownTarget),
            (aEndpoint, MemberID(publicKey: sim.hosts[anchor].identity.publicKey), .relayUnknownTarget),
        ]
        for (src, id, reason) in cases {
            var m = tagged(RelayMessage.wrap(inner, for: id), aKey)
            let got = m.withUnsafeMutableBytes { sim.hosts[anchor].core.receive($0, length: $0.count, from: src, now: sim.now) }
            XCTAssertEqual(got, .drop(reason), "\(src) -> \(id)")
        }
        // The security review's M4: a forgery of a's exact address and port is not a's session.
        // Untagged, a garbage tag, b's tag (another session), a's tag over other bytes: refused, counted, not forwarded.
        var garbage = RelayMessage.wrap(inner, for: idB)
        garbage.replaceSubrange(1..<8, with: [0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03])
        var grown = tagged(RelayMessage.wrap(inner, for: idB), aKey)
        grown.append(0)  // the tag covers the inner length
        var otherCounter = tagged(RelayMessage.wrap(inner, for: idB), aKey)
        otherCounter[RelayMessage.headerSize + 8] ^= 1  // the inner counter
        let forgeries = [RelayMessage.wrap(inner, for: idB), garbage,
                         tagged(RelayMessage.wrap(inner, for: idB), hopKey(sim, from: b, to: anchor)), grown, otherCounter]
        for (k, f) in forgeries.enumerated() {
            var m = f
            let got = m.withUnsafeMutableBytes { sim.hosts[anchor].core.receive($0, length: $0.count, from: aEndpoint, now: sim.now) }
            XCTAssertEqual(got, .drop(.relayBadTag), "forgery \(k) from a's exact endpoint")
        }

        // Over the budget: the burst passes, the rest is refused and counted; the rate refills it.
        let t = sim.now
        var forwarded = 1, limited = 0
        for _ in 0..<1000 {
            var m = tagged(RelayMessage.wrap(inner, for: idB), aKey)
            switch m.withUnsafeMutableBytes({ sim.hosts[anchor].core.receive($0, length: $0.count, from: aEndpoint, now: t) }) {
            case .transmit: forwarded += 1
            case .drop(.relayRateLimited): limited += 1
            default: XCTFail("unexpected")
            }
        }
        let size = UInt64(inner.count + RelayMessage.headerSize)
        let burst = sim.hosts[anchor].core.timings.relayBurstBytes
        XCTAssertEqual(burst, 1 << 20)
        XCTAssertLessThanOrEqual(UInt64(forwarded) * size, burst + size)
        XCTAssertGreaterThan(limited, 0)
        var later = tagged(RelayMessage.wrap(inner, for: idB), aKey)
        let t2 = t + .milliseconds(100)  // 250 kB of budget back
        if case .transmit = later.withUnsafeMutableBytes({ sim.hosts[anchor].core.receive($0, length: $0.count, from: aEndpoint, now: t2) }) {} else {
            XCTFail("budget refills")
        }
        let counters = sim.hosts[anchor].core.status(now: t2).counters
        XCTAssertEqual(counters["relay_source_not_member"], 2)
        XCTAssertEqual(counters["relay_bad_tag"], 5)
        XCTAssertEqual(counters["relay_unknown_target"], 3)
        XCTAssertEqual(counters["relay_rate_limited"], UInt64(limited))
        XCTAssertEqual(counters["relay_forwarded_packets"], UInt64(forwarded + 1))
    }

    func testRelayRateZeroMeansNoLimitButEveryOtherCheckStays() {
        let (sim, anchor, a, b) = relayWorld(timings: ConnectivityTimings.default.withRelayRate(mbit: 0))
        guard let aEndpoint = sim.activePath(anchor, a)?.remote, let bEndpoint = sim.activePath(anchor, b)?.remote else {
            return XCTFail("members have sessions with the anchor")
        }
        let inner = [4] + [UInt8](repeating: 0xAB, count: 1399)
        let idB = MemberID(publicKey: sim.hosts[b].identity.publicKey)
        let t = sim.now
        let aKey = hopKey(sim, from: a, to: anchor)
        for _ in 0..<5000 {  // 7 MB at one instant: far over any burst
            var m = tagged(RelayMessage.wrap(inner, for: idB), aKey)
            let r = m.withUnsafeMutableBytes { sim.hosts[anchor].core.receive($0, length: $0.count, from: aEndpoint, now: t) }
            guard r == .transmit(bEndpoint, offset: 0, length: m.count) else { return XCTFail("refused: \(r)") }
        }
        // Not an open relay: a stranger's source is still refused.
        var stranger = RelayMessage.wrap(inner, for: idB)
        let from = Endpoint(family: .v4, address: IPAddressBytes(v4: (198, 51, 100, 1)), port: 4000)
        let r = stranger.withUnsafeMutableBytes { sim.hosts[anchor].core.receive($0, length: $0.count, from: from, now: t) }
        XCTAssertEqual(r, .drop(.relaySourceNotMember))
        XCTAssertNil(sim.hosts[anchor].core.status(now: t).counters["relay_rate_limited"])
    }

    func testAMemberTakesRelayedDatagramsOnlyFromAnAnchorAndOnlyAsTheNamedMember() {
        let (sim, anchor, a, b) = relayWorld()
        // Let a and b talk (through the anchor first).
        sim.sendIP(from: a, to: b, 1)
        sim.drive(for: .seconds(1 as UInt64))
        XCTAssertTrue(sim.delivered(b, from: a, number: 1))
        // Seal a packet from a to b, and wrap it naming the wrong sender (the anchor itself).
        let payload = NetSim.ipPayload(from: a, to: b, 2)
        var buffer = [UInt8](repeating: 0, count: 64 + payload.count + 32)
        buffer.replaceSubrange(64..<(64 + payload.count), with: payload)
        let now = sim.now
        guard case .send(_, let off, let len) = buffer.withUnsafeMutableBytes({
            sim.hosts[a].core.sendPacket(to: sim.pid(b), $0, payloadOffset: 64, payloadLength: payload.count, now: now)
        }) else { return XCTFail() }
        var sealed = Array(buffer[off..<(off + len)])
        if sealed[0] == RelayMessage.type { sealed.removeFirst(RelayMessage.headerSize) }
        let anchorKey = hopKey(sim, from: anchor, to: b)
        let wrongName = tagged(RelayMessage.wrap(sealed, for: MemberID(publicKey: sim.hosts[anchor].identity.publicKey)), anchorKey)
        XCTAssertEqual(sim.deliver(wrongName, to: b, from: sim.hosts[anchor].local), .drop(.relayMismatch))
        // From the anchor's exact address but not tagged under the anchor's session with b (H1 vector (a),
        // a forged anchor source): dropped before anything is opened.
        let aName = MemberID(publicKey: sim.hosts[a].identity.publicKey)
        XCTAssertEqual(sim.deliver(RelayMessage.wrap(sealed, for: aName), to: b, from: sim.hosts[anchor].local), .drop(.relayBadTag))
        XCTAssertEqual(sim.deliver(tagged(RelayMessage.wrap(sealed, for: aName), hopKey(sim, from: a, to: anchor)), to: b,
                                   from: sim.hosts[anchor].local), .drop(.relayBadTag), "another session's tag")
        XCTAssertNotEqual(sim.deliver(tagged(RelayMessage.wrap(sealed, for: aName), anchorKey), to: b, from: sim.hosts[anchor].local),
                          .drop(.relayBadTag), "the anchor's own tag: opened (a replay by now)")
        // From somewhere that is not an anchor: refused before any decryption.
        let right = RelayMessage.wrap(sealed, for: MemberID(publicKey: sim.hosts[a].identity.publicKey))
        XCTAssertEqual(sim.deliver(right, to: b, from: .v4(198, 51, 100, 77, port: 9)), .drop(.relayNotAnchor))
    }
}

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// Regression tests for the security review's H2, M3, M6 and M8: the probe
/// responder under a many-source flood, /64 keying, unpredictable probe txids,
/// unauthenticated observations, and members' candidates.
final class ConnectivityLimitTests: XCTestCase {
    let t0 = Instant(ns: 5_000_000_000)

    /// me, a member, and (optionally) two anchors with static endpoints.
    func world(isAnchor: Bool = false, anchors: Bool = false, seed: UInt64 = 1)
        -> (NodeCore, member: Identity, anchorIDs: [Identity]) {
        var rng = SessionRandom(seed: 3)
        let me = SessionSim.identity(&rng), member = SessionSim.identity(&rng)
        let a1 = SessionSim.identity(&rng), a2 = SessionSim.identity(&rng)
        var specs = [MemberSpec(publicKey: me.publicKey, name: "me", isAnchor: isAnchor),
                     MemberSpec(publicKey: member.publicKey, name: "member")]
        if anchors {
            specs.append(MemberSpec(publicKey: a1.publicKey, name: "a1", endpoint: .v4(192, 0, 2, 1, port: 51820), isAnchor: true))
            specs.append(MemberSpec(publicKey: a2.publicKey, name: "a2", endpoint: .v4(192, 0, 2, 2, port: 51820), isAnchor: true))
        }
        let core = NodeCore(identity: me, members: specs, isAnchor: isAnchor, seed: seed)
        return (core, member, anchors ? [a1, a2] : [])
    }

    func probe(_ core: inout NodeCore, from key: PublicKey, at src: Endpoint, txid: UInt64, now: Instant) -> NodeInbound {
        var buffer = PathProbe(txid: txid, sender: key).bytes
        return buffer.withUnsafeMutableBytes { core.receive($0, length: PathProbe.size, from: src, now: now) }
    }

    func isTransmit(_ r: NodeInbound) -> Bool { if case .transmit = r { true } else { false } }

    // MARK: H2

    /// 10,000 distinct sources in one second: the responder keeps answering
    /// new sources (no lockout once a table is full), a member whose address we
    /// know is answered after the flood, and the flood's replies are capped.
    func testProbeFloodFromManySourcesStillAnswersAMember() {
        var (core, member, _) = world(isAnchor: true)
        let p = core.peerID(for: member.publicKey)!
        let memberEP = Endpoint.v4(203, 0, 113, 9, port: 51820)
        core.activate(p, core.addPath(p, kind: .direct, remote: memberEP, via: nil), now: t0)
        var answered = 0
        for k in 0..<10_000 {
            let src = Endpoint.v4(10, UInt8(k >> 16), UInt8((k >> 8) & 0xff), UInt8(k & 0xff), port: 4000)
            if isTransmit(probe(&core, from: member.publicKey, at: src, txid: UInt64(k), now: t0 + Span(ns: UInt64(k) * 100_000))) {
                answered += 1
            }
        }
        XCTAssertTrue(isTransmit(probe(&core, from: member.publicKey, at: memberEP, txid: 1, now: t0 + .seconds(1 as UInt64))),
                      "a member's probe is answered during a many-source flood")
        XCTAssertLessThan(answered, 4096, "replies to a many-source flood are capped globally")
        // The global budget: its burst plus one second of its rate (the flood lasted 1 s).
        let t = ConnectivityTimings.default
        XCTAssertLessThanOrEqual(answered, t.probeRepliesTotalBurst + t.probeRepliesTotalPerSecond)
        XCTAssertGreaterThanOrEqual(answered, t.probeRepliesTotalBurst)
        // O(1) per probe: one set of the fixed table per call, never a rebuild.
        XCTAssertEqual(core.anchorTracker.probeLimiter.slotsVisited, 10_001 * HandshakeRateLimiter.ways)
    }

    // MARK: M3

    /// One IPv6 /64 is one budget (as in WireGuard); IPv4 addresses are not grouped.
    func testProbeLimiterKeysIPv6BySlash64() {
        var (core, member, _) = world()
        let burst = ConnectivityTimings.default.probeReplyBurst
        var answered = 0
        for k in 0..<(burst + 10) {
            var a = IPAddressBytes(v6: "2001:db8:1:2::1")!
            a.lo = UInt64(k) &* 0x9E37_79B9_7F4A_7C15 | 1
            if isTransmit(probe(&core, from: member.publicKey, at: Endpoint(family: .v6, address: a, port: 1000), txid: UInt64(k), now: t0)) {
                answered += 1
            }
        }
        XCTAssertEqual(answered, burst, "every address of a /64 shares one bucket")
        let other = Endpoint(family: .v6, address: IPAddressBytes(v6: "2001:db8:1:3::1")!, port: 1000)
        XCTAssertTrue(isTransmit(probe(&core, from: member.publicKey, at: other, txid: 99, now: t0)), "another /64 is not affected")
        for k in 0..<(burst + 5) {
            XCTAssertTrue(isTransmit(probe(&core, from: member.publicKey, at: .v4(198, 51, 100, UInt8(k), port: 1), txid: UInt64(k), now: t0)),
                          "IPv4: one budget per full address")
        }
    }

    // MARK: M6

    func sentProbeTxids(_ core: inout NodeCore) -> [UInt64] {
        var out: [UInt64] = []
        while let tx = core.pollTransmit() {
            guard let probe = tx.bytes.withUnsafeBytes({ PathProbe($0, length: tx.bytes.count) }) else { continue }
            out.append(probe.txid)
        }
        return out
    }

    /// Two nodes built with the same seed (jitter and indices are seeded) still
    /// draw different probe txids: they come from libsodium, not the seeded PRNG.
    func testProbeTxidsAreNotDerivedFromTheSeed() {
        var (c1, _, _) = world(anchors: true, seed: 7)
        var (c2, _, _) = world(anchors: true, seed: 7)
        c1.addressProbeRound(now: t0)
        c2.addressProbeRound(now: t0)
        let x1 = sentProbeTxids(&c1), x2 = sentProbeTxids(&c2)
        XCTAssertEqual(x1.count, 2)
        XCTAssertEqual(x2.count, 2)
        XCTAssertNotEqual(x1, x2)
        // Tests may still inject a seeded source and get the same txids twice.
        var rng = SessionRandom(seed: 3)
        let me = SessionSim.identity(&rng)
        func seededCore() -> NodeCore {
            NodeCore(identity: me, members: [
                MemberSpec(publicKey: me.publicKey, name: "me"),
                MemberSpec(publicKey: SessionSim.identity(&rng).publicKey, name: "a", endpoint: .v4(192, 0, 2, 1, port: 1), isAnchor: true),
            ], isAnchor: false, seed: 7, txids: .seeded(11))
        }
        var s1 = seededCore(), s2 = seededCore()
        s1.addressProbeRound(now: t0)
        s2.addressProbeRound(now: t0)
        XCTAssertEqual(sentProbeTxids(&s1), sentProbeTxids(&s2))
    }

    /// A single PATH_PROBE_REPLY (its only authenticator is the txid) does not
    /// move the observed endpoint, the announced candidates or the NAT class.
    func testOneProbeReplyAloneDoesNotMoveObservationOrNAT() {
        var (core, _, anchors) = world(anchors: true)
        let a1 = core.peerID(for: anchors[0].publicKey)!, a2 = core.peerID(for: anchors[1].publicKey)!
        let good = Endpoint.v4(203, 0, 113, 7, port: 40000), forged = Endpoint.v4(198, 18, 0, 66, port: 666)
        // Authenticated observations (PATH_PONG / OBSERVED) from both anchors: endpoint-independent.
        core.recordObservation(a1, good, now: t0)
        core.recordObservation(a2, good, now: t0)
        XCTAssertEqual(core.anchorTracker.nat, .endpointIndependent)
        let announcedBefore = core.book.announced

        core.addressProbeRound(now: t0 + .seconds(1 as UInt64))
        let sent = core.anchorTracker.probes
        XCTAssertEqual(sent.count, 2)
        var reply = PathProbeReply(txid: sent[0].txid, observed: forged, responder: anchors[0].publicKey).bytes
        let r = reply.withUnsafeMutableBytes { core.receive($0, length: $0.count, from: sent[0].to, now: t0 + .seconds(1 as UInt64)) }
        XCTAssertEqual(r, .consumed)
        XCTAssertEqual(core.anchorTracker.state(a1)?.observed, good, "one probe reply does not override an authenticated observation")
        XCTAssertEqual(core.anchorTracker.nat, .endpointIndependent)
        XCTAssertEqual(core.book.announced, announcedBefore)
        XCTAssertFalse(core.isOwnEndpoint(forged))

        // A second, independent probe (another txid, later) that agrees: the
        // NAT really moved (no session to ask here), so it counts now.
        let t2 = t0 + .seconds(9 as UInt64)
        core.addressProbeRound(now: t2)
        let again = core.anchorTracker.probes.first { $0.target == a1 }!
        var reply2 = PathProbeReply(txid: again.txid, observed: forged, responder: anchors[0].publicKey).bytes
        _ = reply2.withUnsafeMutableBytes { core.receive($0, length: $0.count, from: again.to, now: t2) }
        XCTAssertEqual(core.anchorTracker.state(a1)?.observed, forged)
        XCTAssertEqual(core.anchorTracker.nat, .endpointDependent)
        // And an authenticated observation settles it whatever probes said.
        core.recordObservation(a1, good, now: t2)
        XCTAssertEqual(core.anchorTracker.nat, .endpointIndependent)
    }

    // MARK: M8

    func candidates(_ n: Int, base: UInt8) -> [Candidate] {
        (0..<n).map { Candidate(.v4(198, 51, base, UInt8(1 + $0), port: 51820), .local) }
    }

    /// A member's CANDIDATES at an anchor are rate-limited: a member cannot
    /// churn what the anchor hands out.
    func testCandidateUpdatesAreRateLimited() {
        var (core, member, _) = world(isAnchor: true)
        let p = core.peerID(for: member.publicKey)!
        let src = Endpoint.v4(203, 0, 113, 9, port: 51820)
        var accepted = 0
        for k in 0..<50 {
            let list = candidates(2, base: UInt8(k))
            _ = core.handleControl(.candidates(list), from: p, source: src, via: nil, now: t0)
            if core.book.candidates(p) == list { accepted += 1 }
        }
        XCTAssertLessThan(accepted, 50)
        XCTAssertEqual(accepted, ConnectivityTimings.default.candidateUpdateBurst)
        XCTAssertEqual(core.status(now: t0).counters["candidates_rate_limited"], UInt64(50 - accepted))
        // An anchor keeps a member's list as announced (it hands it out, never punches it).
        let sixteen = candidates(16, base: 200)
        _ = core.handleControl(.candidates(sixteen), from: p, source: src, via: nil, now: t0 + .seconds(10 as UInt64))
        XCTAssertEqual(core.book.candidates(p), sixteen)
    }

    /// Addresses no member attested (announced, not observed by an anchor,
    /// never heard from) are punched within a budget per member and window,
    /// however many rendezvous come.
    func testPunchingUnattestedAddressesIsBudgeted() {
        var (core, member, anchors) = world(anchors: true)
        let p = core.peerID(for: member.publicKey)!, a1 = core.peerID(for: anchors[0].publicKey)!
        let observed = Candidate(.v4(203, 0, 113, 9, port: 51820), .observed)
        var targets = Set<Endpoint>()
        for round in 0..<5 {
            core.receiveRendezvous(p, from: a1, candidates: [observed] + candidates(15, base: UInt8(round)), now: t0 + .seconds(Double(round)))
            targets.formUnion(core.punchTargets(p, now: t0 + .seconds(Double(round))))
        }
        XCTAssertTrue(targets.contains(observed.endpoint), "the anchor's observation is always punched")
        XCTAssertLessThanOrEqual(targets.count, 1 + 8, "at most 8 unattested targets per member and window")
        XCTAssertEqual(targets.count, 1 + ConnectivityTimings.default.unattestedPunchTargets)
        // Addresses vouched for otherwise (heard from) are not counted; a new window has a new budget.
        let heard = Endpoint.v4(203, 0, 113, 10, port: 4444)
        core.noteRx(p, source: heard, via: nil, traffic: true, now: t0 + .seconds(5 as UInt64))
        core.receiveRendezvous(p, from: a1, candidates: [observed, Candidate(heard, .local)] + candidates(3, base: 99),
                               now: t0 + .seconds(6 as UInt64))
        XCTAssertEqual(core.book.candidates(p).map(\.endpoint), [observed.endpoint, heard])
        let later = t0 + ConnectivityTimings.default.unattestedPunchWindow + .seconds(1 as UInt64)
        core.receiveRendezvous(p, from: a1, candidates: [observed] + candidates(3, base: 99), now: later)
        XCTAssertEqual(core.book.candidates(p).count, 4)
    }
}

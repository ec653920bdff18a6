import XCTest
@testable import Support
@testable import Wire
@testable import Protocol

/// NodeCore's machines on their own, without NodeCore: each takes values and
/// `now`, and says what to do (Recovery.swift, RelayService.swift).
final class NodeCoreMachineTests: XCTestCase {
    private func t(_ ms: UInt64) -> Instant { Instant(ns: ms * 1_000_000) }
    private let a = PeerID(rawValue: 1), m = PeerID(rawValue: 2), h = PeerID(rawValue: 3)
    private let epA = Endpoint("192.0.2.1:51820")!, epM = Endpoint("198.51.100.7:40001")!

    // MARK: Recovery

    func testRecoveryPhasesAndAttempts() {
        var timings = ConnectivityTimings.default
        timings.recoveryPartitionAfter = 3
        timings.recoveryJitterPercent = 0
        var r = Recovery(timings: timings)
        var rng = SessionRandom(seed: 1)
        XCTAssertNil(r.evaluate(pathsUp: true, now: t(0)), "up and idle: nothing")
        XCTAssertEqual(r.evaluate(pathsUp: false, now: t(0)), .started)
        XCTAssertNil(r.evaluate(pathsUp: false, now: t(1)), "already recovering")
        XCTAssertEqual(r.pollEvent(), .recoveryStarted)
        XCTAssertNil(r.pollEvent())
        // attempt: (members probed?, targets, next after (ms), partitioned event?)
        let table: [(Bool, Int, UInt64, Bool)] = [
            (false, 1, 1000, false),  // attempt 1: anchors only
            (true, 2, 2000, false),   // attempt 2: anchors, then members
            (true, 2, 4000, true),    // attempt 3 = recoveryPartitionAfter: partitioned
            (true, 2, 8000, false),   // said once
        ]
        var now = t(0)
        for (n, (members, count, delay, partitioned)) in table.enumerated() {
            XCTAssertEqual(r.probesMembers, members, "attempt \(n + 1)")
            let (targets, next) = r.attempt(anchors: [(a, [epA])], members: r.probesMembers ? [(m, [epM])] : [], now: now, rng: &rng)
            XCTAssertEqual(targets.count, count, "attempt \(n + 1)")
            XCTAssertEqual(targets.first, Recovery.Target(peer: a, endpoint: epA), "anchors first")
            XCTAssertEqual(next, now + Span.milliseconds(delay), "attempt \(n + 1)")
            XCTAssertEqual(r.pollEvent() == .partitioned, partitioned, "attempt \(n + 1)")
            now = next
        }
        XCTAssertTrue(r.isPartitioned)
        XCTAssertEqual(r.evaluate(pathsUp: true, now: now), .recovered)
        XCTAssertEqual(r.pollEvent(), .recovered)
        XCTAssertFalse(r.isActive)
        XCTAssertFalse(r.isPartitioned)
    }

    func testRecoveryWithNothingToProbeIsPartitionedOnTheSecondAttempt() {
        var r = Recovery(timings: .default)
        var rng = SessionRandom(seed: 1)
        _ = r.evaluate(pathsUp: false, now: t(0))
        _ = r.pollEvent()
        _ = r.attempt(anchors: [], members: [], now: t(0), rng: &rng)
        XCTAssertNil(r.pollEvent())
        _ = r.attempt(anchors: [], members: [], now: t(1000), rng: &rng)
        XCTAssertEqual(r.pollEvent(), .partitioned)
    }

    // MARK: RelayService

    func testRelayForwardingDecisions() {
        var timings = ConnectivityTimings.default
        timings.relayBytesPerSecond = 1000
        timings.relayBurstBytes = 1500
        var relay = RelayService(members: 4, timings: timings)
        typealias R = RelayService.Request
        let table: [(R, Int, RelayService.Forward)] = [
            (R(sender: nil, target: m, targetRemote: epM), 100, .refuse(.relaySourceNotMember)),
            (R(sender: h, target: nil, targetRemote: nil), 100, .refuse(.relayUnknownTarget)),
            (R(sender: h, target: m, targetRemote: nil), 100, .refuse(.relayTargetUnreachable)),
            (R(sender: h, target: m, targetRemote: epM), 1000, .forward(epM)),
            (R(sender: h, target: m, targetRemote: epM), 1000, .refuse(.relayRateLimited)),  // burst spent
            (R(sender: a, target: m, targetRemote: epM), 1000, .forward(epM)),  // another sender's budget
        ]
        for (n, (request, length, expected)) in table.enumerated() {
            XCTAssertEqual(relay.forward(request, length: length, now: t(0)), expected, "row \(n)")
        }
        XCTAssertEqual(relay.counters.packets, 2)
        XCTAssertEqual(relay.counters.bytes, 2000)
        XCTAssertEqual(relay.forward(R(sender: h, target: m, targetRemote: epM), length: 1000, now: t(1000)), .forward(epM),
                       "the budget refills at its rate")
    }

    func testHeldIntroductions() {
        var timings = ConnectivityTimings.default
        timings.introductionHold = .seconds(30 as UInt64)
        var relay = RelayService(members: 4, timings: timings)
        relay.hold(requester: h, target: m, now: t(0))
        relay.hold(requester: h, target: m, now: t(10))  // again: one entry
        relay.hold(requester: a, target: m, now: t(20))
        XCTAssertEqual(relay.held.count, 2)
        XCTAssertEqual(relay.takeHeld(for: h, now: t(100)), [], "nobody waits for h")
        XCTAssertEqual(relay.takeHeld(for: m, now: t(30_015)), [a], "h's request expired at 30.01 s")
        XCTAssertTrue(relay.held.isEmpty, "answered ones are forgotten")
        for _ in 0..<(RelayService.maxHeldIntroductions + 5) { relay.hold(requester: h, target: m, now: t(0)) }
        XCTAssertEqual(relay.held.count, 1)
    }

    // MARK: EndpointBook

    func testEndpointBookSourcesAndAges() throws {
        let keys = (0..<3).map { PublicKey(bytes: [UInt8](repeating: UInt8($0 + 1), count: 32))! }
        let members = [MemberSpec(publicKey: keys[0], name: "us"),
                       MemberSpec(publicKey: keys[1], name: "anchor", endpoint: epA, isAnchor: true),
                       MemberSpec(publicKey: keys[2], name: "m")]
        var book = EndpointBook(members: members, timings: .default)
        let lan = Endpoint("192.168.1.7:51820")!, pub = Endpoint("203.0.113.9:40000")!
        XCTAssertTrue(book.allowUpdate(from: m, now: t(0)))
        book.setCandidates(m, [Candidate(lan, .local), Candidate(pub, .observed)], now: t(5))
        XCTAssertTrue(book.recordWorking(m, epM))
        XCTAssertFalse(book.recordWorking(m, epM), "already the most recent")
        XCTAssertEqual(book.entries(for: m), [
            .init(endpoint: lan, source: .announced(.local), since: t(5)),
            .init(endpoint: pub, source: .announced(.observed), since: t(5)),
            .init(endpoint: epM, source: .cache, since: nil),
        ])
        XCTAssertEqual(book.entries(for: a), [.init(endpoint: epA, source: .config, since: nil)])
        XCTAssertEqual(book.directKind(m, for: lan), .lan, "the member said local")
        XCTAssertEqual(book.directKind(m, for: pub), .direct)
        XCTAssertEqual(book.punchable(m), [lan, pub, epM])
        // Reloaded from the bytes the engine persists.
        var again = EndpointBook(members: members, timings: .default)
        XCTAssertTrue(again.loadCache(book.cache.bytes) { $0 == keys[2] })
        XCTAssertEqual(again.cached(m), [epM])
    }

    /// A member's gossip record: entries of source gossip, punch targets after
    /// its candidates, and vouched for (outside the unattested-address budget).
    func testEndpointBookTakesGossipRecords() throws {
        let keys = (0..<3).map { PublicKey(bytes: [UInt8](repeating: UInt8($0 + 1), count: 32))! }
        let members = [MemberSpec(publicKey: keys[0], name: "us"),
                       MemberSpec(publicKey: keys[1], name: "anchor", endpoint: epA, isAnchor: true),
                       MemberSpec(publicKey: keys[2], name: "m")]
        var timings = ConnectivityTimings.default
        timings.unattestedPunchTargets = 0
        var book = EndpointBook(members: members, timings: timings)
        let lan = Endpoint("192.168.1.7:51820")!, moved = Endpoint("100.64.0.77:40001")!
        book.setGossiped(m, [Candidate(lan, .local), Candidate(moved, .observed)], sequence: 4, now: t(9))
        XCTAssertEqual(book.gossipSequence(m), 4)
        XCTAssertEqual(book.entries(for: m), [
            .init(endpoint: lan, source: .gossip(.local), since: t(9)),
            .init(endpoint: moved, source: .gossip(.observed), since: t(9)),
        ])
        XCTAssertEqual(book.directKind(m, for: lan), .lan)
        XCTAssertEqual(book.punchable(m), [lan, moved])
        // An anchor's introduction naming the signed endpoint: taken even with no unattested budget.
        let stranger = Endpoint("198.51.100.99:1")!
        XCTAssertEqual(book.admit(m, [Candidate(moved, .observed), Candidate(stranger, .observed)], attested: nil, heard: [], now: t(10)),
                       [Candidate(moved, .observed)])
        // A newer record replaces the old one.
        book.setGossiped(m, [Candidate(stranger, .observed)], sequence: 5, now: t(20))
        XCTAssertEqual(book.punchable(m), [stranger])
    }

    /// Site to site: the other site's LAN (in a member's `address`) is routed
    /// into the tunnel, so its edge router's LAN address, announced as a local
    /// candidate, gossiped or cached, is never punched, probed or cached.
    func testEndpointBookNeverTargetsTunnelledAddresses() throws {
        let keys = (0..<3).map { PublicKey(bytes: [UInt8](repeating: UInt8($0 + 1), count: 32))! }
        let siteLAN = Endpoint("192.168.20.1:51820")!, overlay = Endpoint("10.77.0.2:51820")!
        let wan = Endpoint("11.0.0.2:51820")!
        let members = [MemberSpec(publicKey: keys[0], name: "us"),
                       MemberSpec(publicKey: keys[1], name: "anchor", endpoint: epA, isAnchor: true),
                       MemberSpec(publicKey: keys[2], name: "edge2")]
        var book = EndpointBook(members: members, timings: .default)
        // Before the prefixes are known, the LAN address is a target like any other: the test can tell.
        book.setCandidates(m, [Candidate(siteLAN, .local), Candidate(overlay, .local), Candidate(wan, .observed)], now: t(1))
        XCTAssertEqual(book.punchable(m), [siteLAN, overlay, wan])
        book.tunnelled = [CIDR("10.77.0.0/24")!, CIDR("10.77.0.2/32")!, CIDR("192.168.20.0/24")!]
        XCTAssertTrue(book.isTunnelled(siteLAN))
        XCTAssertTrue(book.isTunnelled(overlay))
        XCTAssertFalse(book.isTunnelled(wan))
        XCTAssertEqual(book.punchable(m), [wan], "candidates inside the tunnelled prefixes are not punched")
        book.setGossiped(m, [Candidate(siteLAN, .local), Candidate(wan, .observed)], sequence: 2, now: t(2))
        XCTAssertEqual(book.punchable(m), [wan], "nor the same from a signed gossip record")
        XCTAssertFalse(book.recordWorking(m, siteLAN), "never cached as a working endpoint")
        XCTAssertTrue(book.recordWorking(m, wan))
        XCTAssertEqual(book.cached(m), [wan])
        // A cache written before (or by a build without the filter) holding one: not used.
        var old = EndpointBook(members: members, timings: .default)
        XCTAssertTrue(old.recordWorking(m, siteLAN))
        var again = EndpointBook(members: members, timings: .default)
        again.tunnelled = book.tunnelled
        XCTAssertTrue(again.loadCache(old.cache.bytes) { $0 == keys[2] })
        XCTAssertEqual(again.cached(m), [])
        XCTAssertEqual(again.punchable(m), [])
    }

    func testEndpointBookOwnCandidates() {
        var book = EndpointBook(members: [], timings: .default)
        let local = Endpoint("192.168.1.2:51820")!, loopback = Endpoint("127.0.0.1:51820")!
        let mapped = Endpoint("203.0.113.1:40000")!, observed = Endpoint("198.51.100.1:6000")!
        book.setLocals([local, loopback])
        XCTAssertTrue(book.addMapped(Candidate(mapped, .upnp)))
        XCTAssertFalse(book.addMapped(Candidate(mapped, .upnp)))
        let list = book.ownCandidates(observed: [observed, mapped])
        XCTAssertEqual(list, [Candidate(local, .local), Candidate(mapped, .upnp), Candidate(observed, .observed)],
                       "local, mapped, observed; loopback never; each address once")
        XCTAssertTrue(book.announce(list))
        XCTAssertFalse(book.announce(list), "unchanged: nothing to announce")
        XCTAssertTrue(book.isOwn(observed, observed: [observed]))
        book.removeMapped(mapped)
        XCTAssertFalse(book.isOwn(mapped, observed: []))
    }

    // MARK: AnchorTracker

    private func tracker(anchors: [PeerID] = [PeerID(rawValue: 1), PeerID(rawValue: 3)], selfIsAnchor: Bool = false) -> AnchorTracker {
        AnchorTracker(anchors: anchors, members: 4, selfIsAnchor: selfIsAnchor, timings: .default, txids: .seeded(3))
    }

    func testAnchorReachabilityFromSessionPingsAndProbes() {
        var tr = tracker()
        let a2 = PeerID(rawValue: 3)
        XCTAssertTrue(tr.tracks(a))
        XCTAssertFalse(tr.tracks(m), "a member, not an anchor")
        XCTAssertNil(tr.updateReachability(a, established: false, keepalivePending: false), "down, and it was")
        XCTAssertEqual(tr.updateReachability(a, established: true, keepalivePending: false), true)
        XCTAssertEqual(tr.pollEvent(), .anchorReachable(a))
        XCTAssertTrue(tr.pingLost(a), "one lost ping: ping again soon")
        XCTAssertNil(tr.updateReachability(a, established: true, keepalivePending: false), "still reachable")
        XCTAssertTrue(tr.pingLost(a), "two: ping again soon (under 1% loss two in a row happen)")
        XCTAssertNil(tr.updateReachability(a, established: true, keepalivePending: false), "still reachable")
        XCTAssertFalse(tr.pingLost(a), "three: written off")
        XCTAssertEqual(tr.updateReachability(a, established: true, keepalivePending: false), false)
        XCTAssertEqual(tr.pollEvent(), .anchorUnreachable(a))
        XCTAssertEqual(tr.keepalive(a, established: true), .rehandshake, "live keys, no answer: the anchor lost them")
        tr.ponged(a, now: t(0))
        XCTAssertEqual(tr.keepalive(a, established: true), .ping)
        XCTAssertEqual(tr.keepalive(a, established: false), .connect)
        // Missed probes write an anchor off only without a pong since the last miss.
        _ = tr.updateReachability(a2, established: true, keepalivePending: false)
        for k in 0..<3 { _ = tr.probeMissed(a2, now: t(UInt64(k) * 1000)) }
        XCTAssertNil(tr.updateReachability(a2, established: true, keepalivePending: true), "a keepalive is out: it decides")
        XCTAssertEqual(tr.updateReachability(a2, established: true, keepalivePending: false), false)
        tr.ponged(a2, now: t(5000))
        XCTAssertEqual(tr.updateReachability(a2, established: true, keepalivePending: false), true, "a pong after the misses")
    }

    func testAnchorWarnings() {
        let table: [(selfIsAnchor: Bool, reachable: Int, expected: WarningState)] = [
            (false, 0, .noAnchor), (false, 1, .onlyOne), (false, 2, .none), (true, 0, .onlyOne), (true, 1, .none),
        ]
        for (n, row) in table.enumerated() {
            var tr = tracker(selfIsAnchor: row.selfIsAnchor)
            for p in [a, PeerID(rawValue: 3)].prefix(row.reachable) {
                _ = tr.updateReachability(p, established: true, keepalivePending: false)
            }
            tr.updateWarnings(startedAt: t(0), now: t(1))
            XCTAssertEqual(tr.warning, .none, "row \(n): within the grace period")
            tr.updateWarnings(startedAt: t(0), now: t(0) + ConnectivityTimings.default.warningGrace)
            XCTAssertEqual(tr.warning, row.expected, "row \(n)")
        }
    }

    func testProbeObservationsNeedAgreementOrAuthentication() {
        var tr = tracker()
        let first = Endpoint("203.0.113.5:40000")!, forged = Endpoint("203.0.113.66:1")!
        XCTAssertNil(tr.observe(a, first, now: t(0)), "the first observation moves nothing")
        XCTAssertTrue(tr.observeByProbe(a, first), "agrees with what we hold: a refresh")
        XCTAssertFalse(tr.observeByProbe(a, forged), "differs: a hint only")
        XCTAssertEqual(tr.state(a)?.observed, first)
        XCTAssertTrue(tr.observeByProbe(a, forged), "a second probe reply agrees with the hint")
        XCTAssertEqual(tr.observe(a, forged, now: t(1)), first, "moved: the old one back (NodeCore heals)")
        XCTAssertEqual(tr.pollEvent(), .observedEndpointChanged(anchor: a, old: first, new: forged))
        XCTAssertEqual(tr.observed, [forged])
        XCTAssertTrue(tr.mayHeal(now: t(1)))
        XCTAssertFalse(tr.mayHeal(now: t(2)), "at most once per probe timeout")
    }

    func testProbesAreAnsweredOnceAndExpire() {
        var tr = tracker()
        let key = PublicKey(bytes: [UInt8](repeating: 9, count: 32))!
        XCTAssertNotNil(tr.makeProbe(to: a, at: epA, recovery: false, from: key, now: t(0)))
        XCTAssertNil(tr.makeProbe(to: a, at: epA, recovery: false, from: key, now: t(1)), "one out there already")
        XCTAssertNotNil(tr.makeProbe(to: a, at: epA, recovery: true, from: key, now: t(2)), "recovery probes anew")
        XCTAssertEqual(tr.probes.count, 1)
        let txid = tr.probes[0].txid
        XCTAssertNotNil(tr.probe(txid: txid))
        XCTAssertNil(tr.expireProbe(now: t(2)))
        let late = t(2) + ConnectivityTimings.default.probeTimeout
        XCTAssertEqual(tr.expireProbe(now: late)?.txid, txid)
        XCTAssertNil(tr.probe(txid: txid), "expired: its reply is unexpected now")
    }

    // MARK: HolePunch

    func testPunchSchedule() {
        let tm = ConnectivityTimings.default
        var hp = HolePunch(members: 4, timings: tm)
        XCTAssertEqual(hp.round(m, established: true, handshaking: false, now: t(0)), .end, "not punching")
        hp.start(m, now: t(0))
        XCTAssertTrue(hp.isPunching(m))
        XCTAssertEqual(hp.round(m, established: false, handshaking: true, now: t(0)),
                       .wait(until: t(0) + tm.punchFirstRound, prepare: true), "no keys yet: bring a session up, look again soon")
        let late = t(0) + tm.punchDuration
        XCTAssertEqual(hp.round(m, established: false, handshaking: true, now: late),
                       .wait(until: late + tm.punchMaxRound, prepare: false), "window over, a handshake under way: slow looks")
        XCTAssertEqual(hp.round(m, established: false, handshaking: false, now: late), .end)
        // Keys at last: the window counts from this first round.
        let k = late + Span.milliseconds(1)
        XCTAssertEqual(hp.round(m, established: true, handshaking: false, now: k), .punch(first: true, until: k + tm.punchDuration))
        // Rounds 100, 200, 400 ms ... capped at punchMaxRound; a direct path ends it after 4.
        var now = k
        var gaps: [Span] = []
        for n in 1...4 {
            guard case .punch(let first, let until) = hp.round(m, established: true, handshaking: false, now: now) else {
                return XCTFail("round \(n)")
            }
            XCTAssertEqual(first, n == 1)
            let (next, end) = hp.roundDone(m, until: until, directActive: true, now: now)
            XCTAssertEqual(end, n == 4, "round \(n)")
            gaps.append(next - now)
            now = next
        }
        XCTAssertEqual(gaps, [1, 2, 4, 8].map { min(tm.punchFirstRound * $0, tm.punchMaxRound) })
        let (was, retry) = hp.end(m, relayed: true, now: now)
        XCTAssertTrue(was)
        XCTAssertEqual(retry, now + directRetryDelay(attempt: 0, timings: tm))
        XCTAssertEqual(hp.end(m, relayed: true, now: now).wasPunching, false, "ended once")
        XCTAssertEqual(hp.retryAt(m, now: now), now + directRetryDelay(attempt: 1, timings: tm), "the backoff grew")
        hp.resetRetry(m)
        XCTAssertEqual(hp.retryAt(m, now: now), now + directRetryDelay(attempt: 0, timings: tm))
    }

    func testRendezvousAnchorsAreAskedOncePerAttempt() {
        var hp = HolePunch(members: 4, timings: .default)
        let a2 = PeerID(rawValue: 3)
        hp.beginAttempt(m)
        XCTAssertEqual(hp.chooseRendezvousAnchor(m, options: [a2, a, a2]), a2, "the preferred one first")
        XCTAssertEqual(hp.chooseRendezvousAnchor(m, options: [a2, a, a2]), a)
        XCTAssertNil(hp.chooseRendezvousAnchor(m, options: [a2, a]), "every anchor asked")
        XCTAssertNil(hp.rendezvousAnchor(m))
        hp.beginAttempt(m)
        XCTAssertEqual(hp.chooseRendezvousAnchor(m, options: [a2, a]), a2, "a new attempt asks again")
        hp.rendezvousAnswered(m)
        XCTAssertNil(hp.rendezvousAnchor(m))
    }

    // MARK: PathManager

    func testPathActivationAndDirectOwner() {
        var pm = PathManager(members: 4, timings: .default)
        let (d, _) = pm.addPath(m, kind: .direct, remote: epM, via: nil)
        let (r, _) = pm.addPath(m, kind: .relay, remote: epA, via: a)
        XCTAssertEqual(pm.addPath(m, kind: .direct, remote: epM, via: nil).index, d, "found, not added twice")
        XCTAssertNil(pm.activate(m, r))
        XCTAssertNil(pm.directOwner[epA], "a relay's endpoint is the anchor's, nobody's own")
        XCTAssertEqual(pm.activate(m, d)?.via, a, "the old active path comes back")
        XCTAssertEqual(pm.directOwner[epM], m)
        pm.deactivate(m)
        XCTAssertNil(pm.directOwner[epM])
        XCTAssertNil(pm[m].active)
        // The anchor moved: relay paths through it follow.
        _ = pm.activate(m, r)
        let moved = Endpoint("192.0.2.99:51820")!
        XCTAssertEqual(pm.anchorMoved(a, from: epA, to: moved), [m])
        XCTAssertEqual(pm[m].activePath?.remote, moved)
    }

    func testRoamingRule() {
        let tm = ConnectivityTimings.default
        // (active kind, new kind, relayed, active heard ms ago, roams)
        let table: [(PathKind, PathKind, Bool, UInt64?, Bool)] = [
            (.direct, .direct, false, 0, true),       // same class: at once
            (.direct, .lan, false, 0, true),          // better: at once
            (.lan, .direct, false, 0, false),         // worse: only once quiet
            (.lan, .direct, false, tm.pathQuiet.ns / 1_000_000, true),
            (.direct, .relay, true, 0, false),        // a relay: only once quiet
            (.direct, .relay, true, nil, true),       // never heard: quiet
        ]
        for (n, (activeKind, newKind, relayed, ago, roams)) in table.enumerated() {
            var pm = PathManager(members: 4, timings: tm)
            let now = t(100_000)
            let (act, _) = pm.addPath(m, kind: activeKind, remote: epM, via: nil)
            _ = pm.activate(m, act)
            if let ago { pm.heard(m, act, traffic: true, now: now - Span.milliseconds(ago)) }
            let (new, _) = pm.addPath(m, kind: newKind, remote: relayed ? epA : Endpoint("203.0.113.3:9")!, via: relayed ? a : nil)
            XCTAssertEqual(pm.roams(m, to: new, relayed: relayed, now: now), roams, "row \(n)")
        }
    }

    func testPingsValidationAndLoss() {
        let tm = ConnectivityTimings.default
        var pm = PathManager(members: 4, timings: tm)
        let (d, _) = pm.addPath(m, kind: .direct, remote: epM, via: nil)
        _ = pm.activate(m, d)
        pm.addPing(m, PendingPing(txid: 1, remote: epM, via: nil, sentAt: t(0), purpose: .check))
        pm.addPing(m, PendingPing(txid: 2, remote: epM, via: nil, sentAt: t(10), purpose: .check))
        XCTAssertEqual(pm.pingDeadline(m), t(0) + tm.probeTimeout)
        XCTAssertNil(pm.checkWanted(m, now: t(20_000)), "a check ping is out already")
        XCTAssertEqual(pm.takePing(m, txid: 1)?.txid, 1)
        XCTAssertNil(pm.takePing(m, txid: 1), "answered once")
        pm.validated(m, d, rtt: Span.milliseconds(20), now: t(30))
        XCTAssertTrue(pm.view(m, d, now: t(40), anchorUp: { _ in false }).usable)
        XCTAssertEqual(pm.expirePing(m, now: t(10) + tm.probeTimeout)?.txid, 2)
        XCTAssertEqual(pm.lost(m, d), 1)
        XCTAssertEqual(pm.lost(m, d), 2)
        pm.markDead(m, d, now: t(50))
        XCTAssertFalse(pm.view(m, d, now: t(60), anchorUp: { _ in true }).usable)
        XCTAssertEqual(pm[m].activePath?.loss, 2.0 / 3.0)
        XCTAssertEqual(pm.checkWanted(m, now: t(60) + tm.pathQuiet)?.remote, epM, "quiet and no ping out: check it")
    }
}

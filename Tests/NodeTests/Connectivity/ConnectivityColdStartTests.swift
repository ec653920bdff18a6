import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// Cold start in the simulated internet: every daemon starting at once, so
/// that a member's first packet can reach an anchor before the anchor knows
/// the target (perf/lab-connectivity's "cold" rows, issue 4: "every pair of
/// hosts reaches every other within 5 s of start").
///
///   a1, a2 (public)    e1 (EIM/APDF)    e2 (EIM/APDF), started `lateBy` after the others
///                      d1 (EDM/APDF, symmetric: relayed)
///
/// The race: e1's first handshake initiation goes through an anchor that has
/// no session with the target yet; the anchor refuses to relay it
/// (`relay_target_unreachable`). The anchor's session with the target comes
/// up a few hundred ms later; the pair must connect then, not at the
/// session layer's 5 s handshake retry or the 2 s rendezvous timeout.
final class ConnectivityColdStartTests: XCTestCase {
    static var seed: UInt64 { ProcessInfo.processInfo.environment["WS_SIM_SEED"].flatMap { UInt64($0) } ?? 1 }

    struct World {
        let sim: NetSim
        let a1 = 0, a2 = 1, e1 = 2, e2 = 3, d1 = 4
    }

    func world(sessionTimings: SessionTimings = .default) -> World {
        let sim = NetSim(sessionTimings: sessionTimings)
        sim.rng = SessionRandom(seed: 77 &+ Self.seed)
        let n1 = sim.addNAT(.independent, .addressAndPort)
        let n2 = sim.addNAT(.independent, .addressAndPort)
        let nd = sim.addNAT(.dependent, .addressAndPort)
        sim.build([
            .init(name: "a1", anchor: true),
            .init(name: "a2", anchor: true),
            .init(name: "e1", nat: n1),
            .init(name: "e2", nat: n2),
            .init(name: "d1", nat: nd),
        ], seed: Self.seed)
        return World(sim: sim)
    }

    /// The host's anchors reachable, as its status says.
    func reachable(_ sim: NetSim, _ i: Int) -> [String] {
        sim.status(i).anchors.filter(\.reachable).map(\.name)
    }

    func refusals(_ sim: NetSim) -> UInt64 {
        (0...1).reduce(0) { $0 + (sim.status($1).counters["relay_target_unreachable"] ?? 0) }
    }

    /// e1 sends to e2 and d1 as soon as one anchor is reachable; e2 and d1
    /// start `lateBy` later. Both first packets must arrive well within 1.5 s
    /// of their start (without the fix: the 5 s handshake retry).
    func firstPacketsArriveSoonAfterALateTarget(lateBy: Span, file: StaticString = #filePath, line: UInt = #line) {
        let w = world()
        let sim = w.sim
        sim.stop(w.e2)
        sim.stop(w.d1)
        sim.drive(until: { !self.reachable(sim, w.e1).isEmpty }, within: .seconds(1 as UInt64), file: file, line: line)
        // The first packets leave now, as a ping would: each is queued behind its handshake.
        let t0 = sim.now
        sim.sendIP(from: w.e1, to: w.e2, 1)
        sim.sendIP(from: w.e1, to: w.d1, 1)
        sim.drive(until: t0 + lateBy, file: file, line: line)
        XCTAssertGreaterThan(refusals(sim), 0, "the race happened: an anchor refused a relayed datagram for an unknown target",
                             file: file, line: line)
        sim.restart(w.e2, seed: Self.seed &+ 3)
        sim.restart(w.d1, seed: Self.seed &+ 4)
        let started = sim.now

        sim.drive(until: { sim.delivered(w.e2, from: w.e1, number: 1) && sim.delivered(w.d1, from: w.e1, number: 1) },
                  within: .seconds(6 as UInt64), file: file, line: line)
        let e2At = sim.hosts[w.e2].received.first { $0.from == w.e1 }.map { $0.at - started }
        let d1At = sim.hosts[w.d1].received.first { $0.from == w.e1 }.map { $0.at - started }
        for (name, at) in [("e2", e2At), ("d1", d1At)] {
            guard let at else { XCTFail("e1 -> \(name): never delivered", file: file, line: line); continue }
            XCTAssertLessThan(at, .milliseconds(1500), "e1 -> \(name): first packet \(at.milliseconds) ms after \(name) started",
                              file: file, line: line)
        }
        // Each side's data flows back too, at once.
        sim.sendIP(from: w.e2, to: w.e1, 2)
        sim.sendIP(from: w.d1, to: w.e1, 2)
        sim.drive(for: .milliseconds(200), file: file, line: line)
        XCTAssertTrue(sim.delivered(w.e1, from: w.e2, number: 2) && sim.delivered(w.e1, from: w.d1, number: 2), file: file, line: line)
        print("cold start: the targets started \(lateBy.milliseconds) ms after e1's first packets left; delivered to e2 after "
              + "\(e2At.map { "\($0.milliseconds) ms" } ?? "-"), to d1 after \(d1At.map { "\($0.milliseconds) ms" } ?? "-") "
              + "(virtual); anchors refused \(refusals(sim)) relayed datagrams")
    }

    /// The lab's case: the anchor's session with the target comes up a few
    /// tens of ms after e1's initiation (its re-send waits for the 250 ms spacing).
    func testTargetStartingJustAfterTheFirstRelayedInitiation() {
        firstPacketsArriveSoonAfterALateTarget(lateBy: .milliseconds(30))
    }

    func testFirstRelayedInitiationRefusedByAnAnchorThatDoesNotKnowTheTargetYet() {
        firstPacketsArriveSoonAfterALateTarget(lateBy: .milliseconds(300))
    }

    /// Later than e1's rendezvous timeout (2 s): the introduction comes from
    /// the next anchor asked, and e1's relay follows it there.
    func testTargetStartingAfterTheRendezvousTimeout() {
        firstPacketsArriveSoonAfterALateTarget(lateBy: .milliseconds(2500))
    }

    /// A member that starts long after the others asked for it (the laptop
    /// opened later): the anchors hold the requests for `introductionHold`
    /// (30 s), so its first packets do not wait for the requester's next
    /// handshake retry (5, 10, 20 s apart).
    func testTargetStartingLongAfterTheFirstPackets() {
        firstPacketsArriveSoonAfterALateTarget(lateBy: .seconds(12 as UInt64))
    }

    /// A packet sent before any anchor is reachable (the first ping of a cold
    /// start) waits for the first anchor's session, instead of being dropped
    /// for want of a path (the application would resend it a second later).
    func testPacketSentBeforeAnyAnchorIsReachableWaitsForThePath() {
        let w = world()
        let sim = w.sim
        XCTAssertEqual(reachable(sim, w.e1), [])
        XCTAssertEqual(sim.sendIP(from: w.e1, to: w.e2, 1), .queued)
        XCTAssertEqual(sim.sendIP(from: w.e1, to: w.d1, 1), .queued)
        let took = sim.drive(until: { sim.delivered(w.e2, from: w.e1, number: 1) && sim.delivered(w.d1, from: w.e1, number: 1) },
                             within: .seconds(1 as UInt64))
        XCTAssertNotNil(took)
        print("cold start: packets sent before any anchor was reachable delivered after \(took.map { "\($0.milliseconds) ms" } ?? "-") (virtual)")
        // An anchor with no path to a member still drops (nothing would give it one).
        XCTAssertEqual(sim.hosts[w.a1].core.awaitsAnchor(sim.pid(w.e1)), false)
    }

    /// The lab's asymmetric start: e1 reaches one anchor 400 ms later than
    /// the other, and that late one is the pair's hashed anchor. e1 relays
    /// e1 -> e2 through the other (the only one it can reach), e2 relays
    /// e2 -> e1 through the hashed one, which does not know e1 yet. The two
    /// sides need not agree, and nothing waits for them to.
    func testTheTwoSidesMayRelayThroughDifferentAnchors() {
        let w = world()
        let sim = w.sim
        let ids = [w.a1, w.a2].map { (id: MemberID(publicKey: sim.hosts[$0].identity.publicKey), peer: sim.pid($0)) }
        let e1ID = MemberID(publicKey: sim.hosts[w.e1].identity.publicKey), e2ID = MemberID(publicKey: sim.hosts[w.e2].identity.publicKey)
        guard let hashed = relayAnchor(for: e1ID, e2ID, among: ids) else { return XCTFail("no anchor") }
        let other = hashed == sim.pid(w.a1) ? sim.pid(w.a2) : sim.pid(w.a1)
        let late = sim.hosts[hashed.rawValue].local
        let t0 = sim.now
        sim.lose = { host, to, _ in host == w.e1 && to == late && sim.now < t0 + .milliseconds(400) }
        sim.drive(until: { self.reachable(sim, w.e1).count == 1 && self.reachable(sim, w.e2).count == 2 }, within: .seconds(1 as UInt64))
        let t1 = sim.now
        sim.sendIP(from: w.e1, to: w.e2, 1)
        sim.sendIP(from: w.e2, to: w.e1, 1)
        sim.drive(until: { sim.delivered(w.e2, from: w.e1, number: 1) && sim.delivered(w.e1, from: w.e2, number: 1) },
                  within: .seconds(1 as UInt64))
        func firstRelay(_ i: Int, _ j: Int) -> PeerID? {
            for e in sim.hosts[i].events {
                if case .pathChanged(let p, .relay, _, let via) = e.event, p == sim.pid(j) { return via }
            }
            return nil
        }
        XCTAssertEqual(firstRelay(w.e1, w.e2), other)
        XCTAssertEqual(firstRelay(w.e2, w.e1), hashed)
        print("cold start: e1 relaying via \(sim.hosts[other.rawValue].name), e2 via \(sim.hosts[hashed.rawValue].name): "
              + "both first packets after \((sim.now - t1).milliseconds) ms (virtual); anchors refused \(refusals(sim))")
    }

    /// Punching needs keys: its 5 s window counts from the first round that
    /// can ping, so a pair whose handshake took longer than the window still
    /// punches as soon as the session is up, instead of staying relayed until
    /// the direct retry 10 s later. Here every relayed datagram of the pair is
    /// lost for 6 s, and the first handshake retry comes after 7 s.
    func testPunchWindowCountsFromTheSession() {
        let w = world(sessionTimings: SessionTimings(rekeyTimeout: .seconds(7 as UInt64)))
        let sim = w.sim
        sim.drive(for: .seconds(1 as UInt64))
        let t0 = sim.now
        let members = [w.e1, w.e2]
        sim.lose = { host, _, type in members.contains(host) && type == MessageType.relay.rawValue && sim.now < t0 + .seconds(6 as UInt64) }
        var n = 1
        let established = sim.drive(until: {
            sim.sendIP(from: w.e1, to: w.e2, n)
            n += 1
            return sim.hosts[w.e1].core.tunnels.isEstablished(sim.pid(w.e2), now: sim.now)
        }, within: .seconds(20 as UInt64), slice: .milliseconds(250))
        XCTAssertGreaterThan(established ?? .zero, .seconds(6 as UInt64), "the handshake outlasted the punch window")
        guard let up = sim.hosts[w.e1].events.last(where: { $0.event == .session(.established(sim.pid(w.e2))) })?.at else {
            return XCTFail("no established event")
        }
        let direct = sim.drive(until: {
            sim.sendIP(from: w.e1, to: w.e2, n)
            n += 1
            return sim.activePath(w.e1, w.e2)?.kind == .direct && sim.activePath(w.e2, w.e1)?.kind == .direct
        }, within: .seconds(3 as UInt64), slice: .milliseconds(100))
        XCTAssertNotNil(direct)
        let directAt = sim.hosts[w.e1].events.first { if case .pathChanged(_, .direct, _, _) = $0.event { $0.at >= up } else { false } }?.at
        XCTAssertLessThan((directAt ?? sim.now) - up, .seconds(1 as UInt64))
        print("cold start: session up after \((up - t0).milliseconds) ms, e1 direct \(directAt.map { "\(($0 - up).milliseconds) ms" } ?? "-") later (virtual)")
    }
}

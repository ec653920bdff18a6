import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// The expedited handshake retry (`Tunnels.expediteHandshake`): an unanswered
/// initiation goes again as soon as a path to the peer opens, not at the
/// 5 s retry, never sooner than `expediteMinInterval` after the previous
/// one, and without advancing the backoff.
final class SessionExpediteTests: XCTestCase {
    func initiations(_ sim: SessionSim, from i: Int) -> [SessionSim.Packet] {
        sim.wire.filter { $0.from == sim.nodes[i].address && $0.type == MessageType.handshakeInit.rawValue }
    }

    func sentAt(_ p: SessionSim.Packet) -> Instant { p.deliverAt - .milliseconds(5) }

    func testExpeditedRetryIsSpacedKeepsTheAttemptAndUsesAFreshInitiation() {
        let sim = SessionSim(count: 2)
        let a = sim.nodes[0].address
        let t0 = sim.now
        let p = sim.pid(0, 1)
        XCTAssertFalse(sim.nodes[0].tunnels.expediteHandshake(p, now: t0), "nothing in flight: nothing to expedite")

        // A's first initiation is lost (an anchor refused to relay it).
        sim.filter = { !($0.from == a && $0.type == MessageType.handshakeInit.rawValue) }
        sim.send(from: 0, to: 1, .tagged(1))
        sim.drive(for: .milliseconds(50))
        XCTAssertEqual(initiations(sim, from: 0).count, 1)
        sim.filter = { _ in true }

        // 50 ms later a path opens: the new initiation waits for the spacing (250 ms after the first).
        XCTAssertTrue(sim.nodes[0].tunnels.expediteHandshake(p, now: sim.now))
        XCTAssertEqual(sim.nodes[0].tunnels.pollTimeout(for: p)?.reason, .handshakeExpedite)
        XCTAssertEqual(sim.nodes[0].tunnels.pollTimeout(for: p)?.deadline, t0 + .milliseconds(250))
        sim.drive(until: t0 + .milliseconds(249))
        XCTAssertEqual(initiations(sim, from: 0).count, 1)
        sim.drive(for: .milliseconds(100))
        let sent = initiations(sim, from: 0)
        XCTAssertEqual(sent.count, 2)
        XCTAssertEqual(sent.last.map(sentAt), t0 + .milliseconds(250))
        XCTAssertNotEqual(Array(sent[0].bytes[4..<8]), Array(sent[1].bytes[4..<8]), "a new sender index")
        XCTAssertNotEqual(Array(sent[0].bytes[8..<40]), Array(sent[1].bytes[8..<40]), "a new ephemeral")
        XCTAssertEqual(sim.nodes[1].received.map(\.payload), [.tagged(1)])
        XCTAssertEqual(sim.status(0, 1)?.state, .established)
        XCTAssertEqual(sim.status(0, 1)?.counters.initiationsSent, 2)
        XCTAssertFalse(sim.nodes[0].tunnels.expediteHandshake(p, now: sim.now), "established: nothing to expedite")
    }

    func testExpediteDoesNotAdvanceTheBackoffAndNeverDelaysTheRetry() {
        let sim = SessionSim(count: 2)
        let a = sim.nodes[0].address
        sim.filter = { $0.from != a }  // everything A sends is lost
        let t0 = sim.now
        let p = sim.pid(0, 1)
        sim.send(from: 0, to: 1, .tagged(1))
        sim.drive(for: .milliseconds(400))
        XCTAssertTrue(sim.nodes[0].tunnels.expediteHandshake(p, now: sim.now))
        sim.drive(for: .milliseconds(1))
        XCTAssertEqual(initiations(sim, from: 0).map(sentAt), [t0, t0 + .milliseconds(400)])
        XCTAssertEqual(sim.status(0, 1)?.handshakeAttempt, 1, "the same attempt")
        // The retry after it: attempt 1's delay (5 s + jitter), not attempt 2's (10 s).
        guard let retry = sim.nodes[0].tunnels.pollTimeout(for: p) else { return XCTFail("no retry armed") }
        XCTAssertEqual(retry.reason, .handshakeRetry)
        XCTAssertGreaterThanOrEqual(retry.deadline, t0 + .milliseconds(400) + .seconds(5 as UInt64))
        XCTAssertLessThan(retry.deadline, t0 + .milliseconds(400) + .seconds(5 as UInt64) + .milliseconds(333))
        // An expedite that would come after the retry changes nothing.
        XCTAssertFalse(sim.nodes[0].tunnels.expediteHandshake(p, now: retry.deadline))
        XCTAssertEqual(sim.nodes[0].tunnels.pollTimeout(for: p)?.reason, .handshakeRetry)
    }

    /// Crossing initiations: the tie-break winner ignores the loser's
    /// initiation because its own should be answered. If its own was lost,
    /// the loser's initiation is the news that the peer is there and waits:
    /// the winner sends again soon, instead of both waiting for the 5 s retry.
    func testTieWinnerWhoseInitiationWasLostSendsAgainSoon() {
        let sim = SessionSim(count: 2)
        let (w, l) = PeerSession.winsTie(sim.nodes[0].identity.publicKey, over: sim.nodes[1].identity.publicKey) ? (0, 1) : (1, 0)
        let winner = sim.nodes[w].address
        let t0 = sim.now
        sim.filter = { !($0.from == winner && $0.type == MessageType.handshakeInit.rawValue && $0.deliverAt < t0 + .milliseconds(100)) }
        sim.send(from: w, to: l, .tagged(1))
        sim.drive(for: .milliseconds(100))
        sim.send(from: l, to: w, .tagged(2))  // the loser initiates; its initiation reaches the winner
        sim.drive(for: .milliseconds(20))
        XCTAssertTrue(sim.nodes[w].drops.contains(.simultaneousInitiation))
        sim.drive(until: t0 + .seconds(1 as UInt64))
        XCTAssertEqual(sim.status(w, l)?.state, .established)
        XCTAssertEqual(sim.status(l, w)?.state, .established)
        XCTAssertEqual(sim.nodes[l].received.map(\.payload), [.tagged(1)])
        XCTAssertEqual(sim.nodes[w].received.map(\.payload), [.tagged(2)])
        XCTAssertEqual(initiations(sim, from: w).count, 2, "one lost, one expedited 250 ms after it")
    }
}

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// Timers and rekeying, in the simulated network (`SessionSim`).
final class SessionTimerBehaviourTests: XCTestCase {
    func initiations(_ sim: SessionSim, from i: Int) -> [Instant] {
        sim.wire.filter { $0.from == sim.nodes[i].address && $0.type == MessageType.handshakeInit.rawValue }
            .map { $0.deliverAt - .milliseconds(5) }
    }

    func dataFrom(_ sim: SessionSim, _ i: Int, size: Int? = nil) -> [SessionSim.Packet] {
        sim.wire.filter { $0.from == sim.nodes[i].address && $0.type == DataMessage.type && (size == nil || $0.bytes.count == size) }
    }

    func testKeepaliveAfterReceivingWithoutSending() {
        let sim = SessionSim(count: 2)
        let t0 = sim.now
        sim.send(from: 0, to: 1, .tagged(1))
        sim.drive(for: .milliseconds(100))
        XCTAssertEqual(sim.nodes[1].received.map(\.payload), [.tagged(1)])
        // init at t0, response at +5 ms, data at +10 ms arrives at +15 ms:
        // B has received data and sent none, so it owes a keepalive at +10 s.
        let received = t0 + .milliseconds(15)
        let timer = sim.nodes[1].tunnels.pollTimeout(for: sim.pid(1, 0))
        XCTAssertEqual(timer?.reason, .keepalive)
        XCTAssertEqual(timer?.deadline, received + .seconds(10 as UInt64))
        sim.drive(until: received + .seconds(10 as UInt64) - .milliseconds(1))
        XCTAssertEqual(dataFrom(sim, 1).count, 0)
        sim.drive(until: received + .seconds(10 as UInt64))
        XCTAssertEqual(dataFrom(sim, 1, size: 32).count, 1, "one keepalive")
        sim.drive(for: .seconds(60 as UInt64))
        XCTAssertEqual(dataFrom(sim, 1, size: 32).count, 1, "and no more: nothing else was received")
        XCTAssertEqual(sim.nodes[0].keepalivesReceived, 1)
        XCTAssertEqual(initiations(sim, from: 0).count, 1, "the keepalive answered A's data: no new handshake")
    }

    func testSendingDataCancelsTheKeepalive() {
        let sim = SessionSim(count: 2)
        sim.send(from: 0, to: 1, .tagged(1))
        sim.drive(for: .seconds(5 as UInt64))
        sim.send(from: 1, to: 0, .tagged(2))  // B answers with data before its keepalive is due
        sim.drive(for: .seconds(6 as UInt64))
        XCTAssertEqual(dataFrom(sim, 1, size: 32).count, 0, "no keepalive: B sent data")
        // A received B's data at ~5 s and sent nothing since: A owes one.
        sim.drive(for: .seconds(10 as UInt64))
        XCTAssertEqual(dataFrom(sim, 0, size: 32).count, 1)
    }

    func testRetryBackoffJitterBoundsAndGiveUp() {
        let sim = SessionSim(count: 2)
        let a = sim.nodes[0].address
        sim.filter = { $0.from != a }  // everything A sends is lost
        let t0 = sim.now
        sim.send(from: 0, to: 1, .tagged(1))
        sim.send(from: 0, to: 1, .tagged(2))
        sim.drive(for: .seconds(200 as UInt64))
        let times = initiations(sim, from: 0)
        XCTAssertEqual(times.first, t0)
        // 5, 10, 20, 20, 20 s (+ up to 333 ms each), then the 90 s budget is spent.
        let bases: [UInt64] = [5, 10, 20, 20, 20]
        XCTAssertEqual(times.count, bases.count + 1)
        for (k, base) in bases.enumerated() where k + 1 < times.count {
            let gap = times[k + 1] - times[k]
            XCTAssertGreaterThanOrEqual(gap, .seconds(base), "retry \(k + 1)")
            XCTAssertLessThan(gap, .seconds(base) + .milliseconds(333), "retry \(k + 1)")
        }
        XCTAssertEqual(sim.nodes[0].events, [.handshakeFailed(sim.pid(0, 1))])
        let s = sim.status(0, 1)
        XCTAssertEqual(s?.state, .idle)
        XCTAssertEqual(s?.queuedPackets, 0)
        XCTAssertEqual(s?.counters.queueDropped, 2)
        XCTAssertLessThanOrEqual(times.last ?? t0, t0 + .seconds(90 as UInt64))
        XCTAssertNil(sim.nodes[0].tunnels.pollTimeout(), "nothing left to do")

        // A new packet starts a new handshake at once, and the path works now.
        sim.filter = { _ in true }
        sim.send(from: 0, to: 1, .tagged(3))
        sim.drive(for: .seconds(1 as UInt64))
        XCTAssertEqual(sim.nodes[1].received.map(\.payload), [.tagged(3)])
        XCTAssertEqual(sim.status(0, 1)?.state, .established)
    }

    func testJitterDiffersBetweenSeeds() {
        var gaps: Set<UInt64> = []
        for seed: UInt64 in 1...4 {
            let sim = SessionSim(count: 2, seed: seed)
            let a = sim.nodes[0].address
            sim.filter = { $0.from != a }
            sim.send(from: 0, to: 1, [1])
            sim.drive(for: .seconds(6 as UInt64))
            let t = initiations(sim, from: 0)
            if t.count == 2 { gaps.insert((t[1] - t[0]).ns) }
        }
        XCTAssertEqual(gaps.count, 4, "jitter comes from the seeded generator")
    }

    func testPersistentKeepaliveStartsASessionAndKeepsItUp() {
        // Both sides have persistent keepalive: both initiate at start (a
        // crossing), one handshake wins, then idle keepalives hold the session
        // up and rekeys happen on time, across several REKEY_AFTER_TIMEs.
        let sim = SessionSim(count: 2, persistentKeepalive: .seconds(25 as UInt64))
        let t0 = sim.now
        sim.drive(for: .seconds(1 as UInt64))
        XCTAssertEqual(sim.status(0, 1)?.state, .established)
        XCTAssertEqual(sim.status(1, 0)?.state, .established)
        XCTAssertEqual(sim.status(0, 1)?.counters.handshakesCompleted, 1, "the crossing resolved to one handshake")
        XCTAssertEqual(sim.status(1, 0)?.counters.handshakesCompleted, 1)
        XCTAssertTrue(sim.nodes[0].drops.contains(.simultaneousInitiation) || sim.nodes[1].drops.contains(.simultaneousInitiation))

        var t = sim.now
        while t < t0 + .seconds(600 as UInt64) {
            t = t + .seconds(5 as UInt64)
            sim.drive(until: t)
            XCTAssertEqual(sim.status(0, 1)?.state == .established || sim.status(0, 1)?.state == .rekeying, true, "at \(t)")
        }
        // Idle traffic is keepalives only, never more than 25 s (+ latency) apart.
        let keepalives = (dataFrom(sim, 0, size: 32) + dataFrom(sim, 1, size: 32)).map(\.deliverAt).sorted()
        XCTAssertGreaterThan(keepalives.count, 20)
        for (x, y) in zip(keepalives, keepalives.dropFirst()) {
            XCTAssertLessThanOrEqual(y - x, .seconds(25 as UInt64) + .milliseconds(10))
        }
        let rekeys = sim.nodes[0].events.filter { if case .rekeyed = $0 { true } else { false } }.count
        XCTAssertGreaterThanOrEqual(rekeys, 3, "REKEY_AFTER_TIME 120 s over 600 s")
        XCTAssertFalse(sim.nodes[0].events.contains(.expired(sim.pid(0, 1))))
        XCTAssertFalse(sim.nodes[1].events.contains(.expired(sim.pid(1, 0))))
    }

    func testNoReplyToDataTriggersANewHandshake() {
        // A's data gets no answer for KEEPALIVE + REKEY_TIMEOUT (B lost its
        // state: here, B's keepalives are lost): A re-handshakes.
        let sim = SessionSim(count: 2)
        sim.send(from: 0, to: 1, .tagged(1))
        sim.drive(for: .seconds(12 as UInt64))  // B's keepalive answered the first packet
        let b = sim.nodes[1].address
        sim.filter = { !($0.from == b && $0.type == DataMessage.type) }
        let t1 = sim.now
        sim.send(from: 0, to: 1, .tagged(2))
        sim.drive(for: .seconds(16 as UInt64))
        let inits = initiations(sim, from: 0)
        XCTAssertEqual(inits.count, 2)
        if inits.count == 2 {
            XCTAssertGreaterThanOrEqual(inits[1] - t1, .seconds(15 as UInt64))
            XCTAssertLessThan(inits[1] - t1, .seconds(15 as UInt64) + .milliseconds(333))
        }
    }

    func testKeysExpireAfterRejectAfterTime() {
        // No traffic after the first packet, no persistent keepalive: at
        // REJECT_AFTER_TIME the keys are dropped and the peer goes idle.
        let sim = SessionSim(count: 2)
        let t0 = sim.now
        sim.send(from: 0, to: 1, .tagged(1))
        sim.drive(until: t0 + .seconds(179 as UInt64))
        XCTAssertEqual(sim.status(0, 1)?.state, .established)
        sim.drive(until: t0 + .seconds(181 as UInt64))
        XCTAssertEqual(sim.status(0, 1)?.state, .idle)
        XCTAssertEqual(sim.status(1, 0)?.state, .idle)
        XCTAssertTrue(sim.nodes[0].events.contains(.expired(sim.pid(0, 1))))
        XCTAssertNil(sim.nodes[0].tunnels.pollTimeout())
        // And a new packet brings it back.
        sim.send(from: 0, to: 1, .tagged(2))
        sim.drive(for: .seconds(1 as UInt64))
        XCTAssertEqual(sim.nodes[1].received.map(\.payload), [.tagged(1), .tagged(2)])
    }
}

/// Thousands of packets both ways across many rekeys, by count and by time,
/// with reordering: zero loss, counters strictly increasing per keypair.
final class SessionRekeyTests: XCTestCase {
    static let timings = SessionTimings(
        rekeyAfterTime: .seconds(2 as UInt64), rejectAfterTime: .seconds(3 as UInt64),
        rekeyAttemptTime: .milliseconds(900), rekeyTimeout: .milliseconds(200),
        rekeyTimeoutJitterMax: .milliseconds(20), rekeyTimeoutMax: .milliseconds(400),
        keepaliveTimeout: .milliseconds(500), rekeyAfterMessages: 400, rejectAfterMessages: 800)

    func run(seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let sim = SessionSim(count: 2, timings: Self.timings, seed: seed)
        sim.rng = SessionRandom(seed: seed)
        sim.latency = { rng in .milliseconds(5 + rng.next() % 20) }  // 5..24 ms: reorders
        var sent = [0, 0]
        // Phase 1, 10 s at 500 packets/s each way: rekeys by count (every 0.8 s).
        // Phase 2, 10 s at 50 packets/s: rekeys by time (every 2 s).
        for (duration, interval) in [(10_000, 2), (10_000, 20)] {
            var t = 0
            while t < duration {
                for (i, j) in [(0, 1), (1, 0)] {
                    let r = sim.send(from: i, to: j, .tagged(sent[i], size: 40))
                    XCTAssertNotEqual(r, .drop(.noEndpoint), file: file, line: line)
                    if case .drop = r { XCTFail("dropped on send: \(r)", file: file, line: line) }
                    sent[i] += 1
                }
                t += interval
                sim.drive(until: sim.now + .milliseconds(UInt64(interval)), file: file, line: line)
            }
        }
        sim.drive(for: .seconds(1 as UInt64), file: file, line: line)

        for (i, j) in [(0, 1), (1, 0)] {
            let got = sim.nodes[j].received.map(\.payload.tag)
            XCTAssertEqual(got.count, sent[i], "node \(j) got every packet once", file: file, line: line)
            XCTAssertEqual(Set(got), Set(0..<sent[i]), "no loss, no duplicate", file: file, line: line)
            // Counters: per keypair strictly increasing from 0, never at REJECT_AFTER_MESSAGES.
            var last: [UInt32: UInt64] = [:]
            for (index, counter) in sim.nodes[i].sealed {
                if let prev = last[index] { XCTAssertEqual(counter, prev + 1, file: file, line: line) }
                else { XCTAssertEqual(counter, 0, file: file, line: line) }
                XCTAssertLessThan(counter, Self.timings.rejectAfterMessages, file: file, line: line)
                last[index] = counter
            }
            XCTAssertGreaterThanOrEqual(last.count, 15, "keypairs used by node \(i)", file: file, line: line)
            XCTAssertEqual(sim.nodes[j].dataDrops, [], "no DATA dropped", file: file, line: line)
            // Stale handshake responses are benign but mean wasted handshakes: there should be none.
            XCTAssertEqual(sim.nodes[j].drops.filter { $0 == .unknownIndex }, [], "\(sim.nodes[j].dropLog)", file: file, line: line)
            XCTAssertFalse(sim.nodes[i].events.contains(.handshakeFailed(sim.pid(i, j))), file: file, line: line)
        }
        let rekeys = sim.nodes.map { $0.events.filter { if case .rekeyed = $0 { true } else { false } }.count }
        XCTAssertGreaterThanOrEqual(rekeys.reduce(0, +), 2 * 15, "rekeys: \(rekeys)", file: file, line: line)
    }

    func testRekeyUnderContinuousTrafficLosesNothing() { run(seed: 11) }

    func testRekeyUnderContinuousTrafficOtherSeeds() {
        for seed: UInt64 in [2, 3, 4] { run(seed: seed) }
    }
}

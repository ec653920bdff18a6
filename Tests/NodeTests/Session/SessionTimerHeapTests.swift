import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// The session layer's timers in one heap (Tunnels' `DenseDeadlineHeap`, one
/// entry per member): `pollTimeout` is the heap's top, `handleTimeout` visits
/// only the members that are due, and both say what a scan of every member's
/// `TimerTable` would say.
final class SessionTimerHeapTests: XCTestCase {
    private func t(_ ms: UInt64) -> Instant { Instant(ns: ms * 1_000_000) }
    private let wall = HandshakeTimestamp(unixSeconds: 1_700_000_000, nanoseconds: 0)

    func testDenseHeapAgreesWithAReference() {
        var heap = DenseDeadlineHeap(capacity: 64)
        var reference: [Int: Instant] = [:]
        var rng = SessionRandom(seed: 7)
        for step in 0..<5000 {
            let key = Int(rng.next() % 64)
            if rng.next() % 4 == 0 {
                heap.cancel(key)
                reference[key] = nil
            } else {
                let d = t(rng.next() % 50)  // many ties on purpose
                heap.set(key, at: d)
                reference[key] = d
            }
            let want = reference.min { $0.value < $1.value || ($0.value == $1.value && $0.key < $1.key) }
            XCTAssertEqual(heap.earliest?.key, want?.key, "step \(step)")
            XCTAssertEqual(heap.earliest?.deadline, want?.value, "step \(step)")
            XCTAssertEqual(heap.count, reference.count)
            XCTAssertEqual(heap[key], reference[key])
        }
        var due: [Int] = []
        heap.due(now: t(20), into: &due)
        XCTAssertEqual(Set(due), Set(reference.filter { $0.value <= t(20) }.keys))
        XCTAssertEqual(due.count, Set(due).count, "each once")
    }

    func testTimerTableKeepsItsMinimum() {
        var table = TimerTable()
        var rng = SessionRandom(seed: 3)
        for step in 0..<3000 {
            let r = TimerReason.allCases[Int(rng.next() % UInt64(TimerReason.allCases.count))]
            table[r] = rng.next() % 3 == 0 ? nil : t(rng.next() % 20)
            var want: (deadline: Instant, reason: TimerReason)?
            for reason in TimerReason.allCases {
                guard let d = table[reason] else { continue }
                if let w = want, w.deadline <= d { continue }
                want = (d, reason)
            }
            XCTAssertEqual(table.next?.deadline, want?.deadline, "step \(step)")
            XCTAssertEqual(table.next?.reason, want?.reason, "step \(step)")
            if step % 50 == 0 {
                _ = table.takeDue(now: t(10))
                XCTAssertTrue(table.next.map { $0.deadline > t(10) } ?? true)
            }
        }
    }

    /// 1000 members, three with something to do: the next deadline is read
    /// off the heap and a timeout visits the three, not the thousand.
    func testAThousandMembersCostWhatIsDue() {
        let me = Identity(secret: SecretKey.generate())
        let specs = (0..<1000).map { _ in PeerSpec(publicKey: Identity(secret: SecretKey.generate()).publicKey) }
        var tun = Tunnels(identity: me, peers: specs, seed: 1)
        XCTAssertNil(tun.pollTimeout(), "nothing armed")
        tun.handleTimeout(now: t(0), wallClock: wall)
        XCTAssertEqual(tun.lastTimeoutVisits, 0)

        for i in [999, 10, 500] { tun.connect(PeerID(rawValue: i), now: t(5)) }
        XCTAssertEqual(tun.pollTimeout()?.deadline, t(5))
        XCTAssertEqual(tun.pollTimeout()?.reason, .handshakeInitiation)
        XCTAssertEqual(tun.pollTimeoutPeer()?.peer, PeerID(rawValue: 10), "equal deadlines: the lowest PeerID, as a scan finds")
        tun.handleTimeout(now: t(5), wallClock: wall)
        XCTAssertEqual(tun.lastTimeoutVisits, 3, "only the members that were due")
        // No destination: each initiation waits REKEY_TIMEOUT and asks again.
        XCTAssertEqual(tun.pollTimeout()?.deadline, t(5) + tun.timings.rekeyTimeout)
        XCTAssertEqual(brute(tun)?.deadline, tun.pollTimeout()?.deadline)

        // Give one member an address: its initiation leaves at once, the others keep waiting.
        tun.setEndpoint(Endpoint.v4(192, 0, 2, 9, port: 51820), for: PeerID(rawValue: 500))
        XCTAssertEqual(tun.pollTimeoutPeer()?.peer, PeerID(rawValue: 500))
        XCTAssertEqual(tun.pollTimeout()?.deadline, .zero, "now")
        tun.handleTimeout(now: t(6), wallClock: wall)
        XCTAssertEqual(tun.lastTimeoutVisits, 1)
        XCTAssertNotNil(tun.pollTransmit())
        XCTAssertEqual(brute(tun)?.deadline, tun.pollTimeout()?.deadline)
        XCTAssertEqual(brute(tun)?.reason, tun.pollTimeout()?.reason)

        // Past the give-up: every handshake is dropped and nothing is left armed.
        var now = t(6)
        for _ in 0..<100 {
            guard let next = tun.pollTimeout() else { break }
            now = max(now, next.deadline)
            tun.handleTimeout(now: now, wallClock: wall)
            while tun.pollTransmit() != nil {}
            XCTAssertLessThanOrEqual(tun.lastTimeoutVisits, 3)
            XCTAssertEqual(brute(tun)?.deadline, tun.pollTimeout()?.deadline)
        }
        XCTAssertNil(tun.pollTimeout(), "all gave up")
        XCTAssertFalse(tun.isHandshaking(PeerID(rawValue: 10)))
    }

    /// What a scan over every member finds (the old `pollTimeout`).
    private func brute(_ tun: Tunnels) -> (deadline: Instant, reason: TimerReason)? {
        var best: (deadline: Instant, reason: TimerReason)?
        for i in 0..<tun.peerCount {
            guard let n = tun.pollTimeout(for: PeerID(rawValue: i)) else { continue }
            if let b = best, b.deadline <= n.deadline { continue }
            best = n
        }
        return best
    }
}

import XCTest
@testable import Support
@testable import Wire
@testable import Protocol

/// NodeCore's one timer table through a simulated life (start, punching,
/// traffic, every path lost, recovery, partition, recovered): every deadline
/// it holds is the one its machine's state implies, nothing due is left
/// behind after a wake-up, and `pollTimeout` is the table's minimum.
final class NodeCoreTimerInvariantTests: XCTestCase {
    private func violations(_ core: NodeCore, now: Instant, name: String) -> [String] {
        var out: [String] = []
        for i in core.entries.indices where !core.entries[i].isSelf {
            let p = PeerID(rawValue: i)
            if core.deadline(.pingTimeout(p)) != core.tunnels.paths.pingDeadline(p) {
                out.append("\(name) \(p): ping timeout \(String(describing: core.deadline(.pingTimeout(p)))) != oldest ping's")
            }
            if core.deadline(.punch(p)) != nil, !core.holePunch.isPunching(p) {
                out.append("\(name) \(p): a punch round armed with no punch open")
            }
            if core.deadline(.anchorKeepalive(p)) != nil, !core.anchorTracker.tracks(p) {
                out.append("\(name) \(p): a keepalive for a member that is not an anchor")
            }
        }
        var oldestProbe: Instant?
        for probe in core.anchorTracker.probes where oldestProbe.map({ probe.sentAt < $0 }) ?? true { oldestProbe = probe.sentAt }
        if core.deadline(.probeTimeout) != oldestProbe.map({ $0 + core.timings.probeTimeout }) {
            out.append("\(name): probe timeout does not follow the oldest probe")
        }
        if (core.timers[.recovery] != nil) != core.recovery.isActive {
            out.append("\(name): the recovery timer is armed iff recovery runs")
        }
        if !core.parkedTimers.isEmpty, !core.recovery.isActive { out.append("\(name): timers parked outside recovery") }
        if core.recovery.isActive, core.timers.entries.contains(where: { $0.key.pausedByRecovery }) {
            out.append("\(name): a timer recovery pauses is armed during recovery")
        }
        if let e = core.timers.earliest, let t = core.pollTimeout(), t.deadline > e.deadline {
            out.append("\(name): pollTimeout \(t.deadline) later than the table's minimum \(e.deadline)")
        }
        return out
    }

    func testTimersFollowTheMachinesThroughASimulatedLife() {
        let sim = NetSim()
        let nat = sim.addNAT(.independent, .addressAndPort)
        let sym = sim.addNAT(.dependent, .addressAndPort)
        sim.build([
            .init(name: "anchor-1", anchor: true),
            .init(name: "anchor-2", anchor: true),
            .init(name: "host", nat: nat),
            .init(name: "sym", nat: sym),
            .init(name: "peer"),
        ])
        let (h, s, p) = (2, 3, 4)
        var found: [String] = []
        func check(_ what: String) {
            for i in sim.hosts.indices where sim.hosts[i].up {
                found += violations(sim.hosts[i].core, now: sim.now, name: "\(what): \(sim.hosts[i].name)")
            }
        }
        // Start, anchors, observations, then traffic: relay first, punching, direct.
        for k in 0..<80 {
            if k % 4 == 0 {
                _ = sim.sendIP(from: h, to: p, k)
                _ = sim.sendIP(from: s, to: h, k)
                _ = sim.sendIP(from: p, to: s, k)
            }
            sim.drive(for: .milliseconds(250))
            check("t=\(sim.now)")
        }
        // Every path of the host lost: recovery, partition, then the anchors come back.
        sim.stop(0)
        sim.stop(1)
        sim.stop(p)
        sim.stop(s)
        for _ in 0..<120 {
            sim.drive(for: .seconds(5 as UInt64))
            check("lost, t=\(sim.now)")
        }
        XCTAssertTrue(sim.events(h).contains(.recoveryStarted))
        XCTAssertTrue(sim.events(h).contains(.partitioned))
        sim.restart(0)
        sim.restart(1)
        for _ in 0..<160 {
            sim.drive(for: .milliseconds(500))
            check("back, t=\(sim.now)")
        }
        XCTAssertTrue(sim.events(h).contains(.recovered), "the anchors answer a recovery attempt (60 s apart by then)")
        XCTAssertEqual(found.prefix(10), [], "\(found.count) violations")
    }
}

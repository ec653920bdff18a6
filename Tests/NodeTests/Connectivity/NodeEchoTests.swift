import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// `wsctl ping`'s core side (Protocol/Connectivity/Echo.swift): an
/// ECHO_REQUEST answered by the peer's NodeCore on the path it came, the reply
/// naming that path; late replies counted; the table bounded.
final class NodeEchoTests: XCTestCase {
    func echoes(_ sim: NetSim, _ i: Int) -> [EchoResult] {
        sim.events(i).compactMap { if case .echoReply(let r) = $0 { return r } else { return nil } }
    }

    func ping(_ sim: NetSim, from i: Int, to j: Int) -> UInt64? {
        let txid = sim.hosts[i].core.startEcho(to: sim.pid(j), now: sim.now)
        sim.drain(i)
        return txid
    }

    func testDirectAndRelayedPairsAnswerOnTheirPath() throws {
        for owners in [1, 2] {
            let sim = ConnectivityDataPathTests.makeWorld(owners: owners)
            XCTAssertEqual(sim.activePath(2, 3)?.kind, .direct)
            let relay = try XCTUnwrap(sim.activePath(4, 5))
            XCTAssertEqual(relay.kind, .relay)

            let direct = try XCTUnwrap(ping(sim, from: 2, to: 3))
            let relayed = try XCTUnwrap(ping(sim, from: 4, to: 5))
            sim.drive(for: .seconds(1 as UInt64))

            let d = try XCTUnwrap(echoes(sim, 2).first { $0.txid == direct }, "owners \(owners)")
            XCTAssertEqual(d.peer, sim.pid(3))
            XCTAssertEqual(d.kind, .direct)
            XCTAssertNil(d.via)
            XCTAssertEqual(d.remote, sim.activePath(2, 3)?.remote)
            // 10 ms each way on the simulated internet, plus the NAT hops.
            XCTAssertGreaterThanOrEqual(d.rtt, .milliseconds(20))
            XCTAssertLessThan(d.rtt, .milliseconds(100))
            // cone-1's NAT address, as cone-2 saw it.
            XCTAssertEqual(d.observed, sim.activePath(3, 2)?.remote)

            let r = try XCTUnwrap(echoes(sim, 4).first { $0.txid == relayed }, "owners \(owners)")
            XCTAssertEqual(r.kind, .relay)
            XCTAssertEqual(r.via, relay.via)
            XCTAssertEqual(r.remote, relay.remote)
            XCTAssertEqual(sim.hosts[2].core.echoesInFlight, 0)
            XCTAssertNil(sim.status(2).counters["echo_unexpected_reply"])
        }
    }

    func testCancelledRequestMakesTheReplyACountedDrop() throws {
        let sim = ConnectivityDataPathTests.makeWorld()
        let txid = try XCTUnwrap(ping(sim, from: 2, to: 3))
        sim.hosts[2].core.cancelEcho(txid)
        sim.drive(for: .seconds(1 as UInt64))
        XCTAssertTrue(echoes(sim, 2).isEmpty)
        XCTAssertEqual(sim.status(2).counters["echo_unexpected_reply"], 1)
    }

    func testNotAPeerAndBoundedTable() {
        let sim = ConnectivityDataPathTests.makeWorld()
        XCTAssertNil(sim.hosts[2].core.startEcho(to: sim.pid(2), now: sim.now), "ourselves")
        XCTAssertNil(sim.hosts[2].core.startEcho(to: PeerID(rawValue: 99), now: sim.now), "no such member")
        for _ in 0..<(EchoTable.capacity + 10) { XCTAssertNotNil(sim.hosts[2].core.startEcho(to: sim.pid(3), now: sim.now)) }
        XCTAssertEqual(sim.hosts[2].core.echoesInFlight, EchoTable.capacity)
        sim.drain(2)
        sim.drive(for: .seconds(1 as UInt64))
        // The oldest ten were forgotten: their replies are unexpected; the rest answered.
        XCTAssertEqual(echoes(sim, 2).count, EchoTable.capacity)
        XCTAssertEqual(sim.status(2).counters["echo_unexpected_reply"], 10)
    }
}

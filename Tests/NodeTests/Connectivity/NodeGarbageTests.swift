import XCTest

@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// Bad input never crashes a node and never costs it state: real datagrams of
/// every kind, captured in flight in a running mesh, are mutated (bit flips,
/// truncation, extension, another type byte, another relay target) and thrown
/// at an anchor and at members from the real senders' endpoints and from
/// strangers, with random datagrams of every type besides. Each must be
/// dropped and counted, answered as any probe is, or be harmless; afterwards
/// every session is still up and carries new traffic.
final class NodeGarbageTests: XCTestCase {
    func state(_ sim: NetSim, _ i: Int, _ j: Int) -> PeerStatus.State? {
        sim.status(i).peers.first { $0.id.rawValue == j }?.session?.state
    }

    func testMutatedAndRandomDatagramsAreDroppedAndTheMeshCarriesOn() {
        let sim = NetSim()
        let n1 = sim.addNAT(.independent, .independent)
        let n2 = sim.addNAT(.dependent, .addressAndPort)
        let n3 = sim.addNAT(.dependent, .addressAndPort)
        sim.build([.init(name: "anchor-1", anchor: true), .init(name: "anchor-2", anchor: true),
                   .init(name: "a", nat: n1), .init(name: "b", nat: n2), .init(name: "c", nat: n3)])
        let members = [2, 3, 4]
        // Every datagram of the start and of traffic of every kind: handshakes, probes,
        // rendezvous, punching, data both ways (b <-> c is relayed), keepalives.
        var captured: [NetSim.Packet] = []
        var seen = Set<Int>()
        func capture(for span: Span) {
            let end = sim.now + span
            while sim.now < end {
                sim.drive(for: .milliseconds(2))
                for p in sim.inFlight where seen.insert(p.seq).inserted { captured.append(p) }
            }
        }
        capture(for: .seconds(5 as UInt64))
        var number = 1
        for _ in 0..<10 {
            for i in members { for j in members where j != i { _ = sim.sendIP(from: i, to: j, number); number += 1 } }
            capture(for: .milliseconds(200))
        }
        sim.drive(for: .seconds(30 as UInt64))  // through rekeys and probes, to a quiet state
        for i in members { for j in members where j != i { XCTAssertEqual(state(sim, i, j), .established) } }
        let types = Set(captured.map { $0.bytes.first ?? 0 })
        XCTAssertTrue(types.isSuperset(of: [1, 2, 4, MessageType.relay.rawValue, MessageType.pathProbe.rawValue]),
                      "captured every kind (got \(types.sorted()))")

        var rng = SessionRandom(seed: 2024)
        func r(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        let stranger = Endpoint(family: .v4, address: IPAddressBytes(v4: (198, 51, 100, 77)), port: 4242)
        var outcomes: [String: Int] = [:]
        for k in 0..<20_000 {
            var bytes: [UInt8]
            if k % 4 == 3 {
                // Random bytes under a plausible type byte.
                bytes = (0..<r(1500)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if !bytes.isEmpty { bytes[0] = UInt8(1 + r(9)) }
            } else {
                bytes = captured[r(captured.count)].bytes
                switch r(5) {
                case 0: for _ in 0...r(4) where !bytes.isEmpty { bytes[r(bytes.count)] ^= UInt8(1 << r(8)) }
                case 1: bytes = Array(bytes.prefix(r(bytes.count + 1)))
                case 2: bytes += (0..<(1 + r(64))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                case 3: if !bytes.isEmpty { bytes[0] = UInt8(1 + r(9)) }
                default:
                    // A relay frame naming someone else (or a DATA packet made to look like one).
                    bytes = [MessageType.relay.rawValue, 0, 0, 0] + (0..<8).map { _ in UInt8(truncatingIfNeeded: rng.next()) } + bytes
                }
            }
            let to = r(sim.hosts.count)
            let from = r(3) == 0 ? stranger : captured[r(captured.count)].from
            switch sim.deliver(bytes, to: to, from: from) {
            case .drop: outcomes["drop", default: 0] += 1
            case .packet: outcomes["packet", default: 0] += 1
            case .transmit: outcomes["transmit", default: 0] += 1
            case .consumed: outcomes["consumed", default: 0] += 1
            case .handoff: XCTFail("NetSim delivers to the owner; a handoff never comes out")
            }
        }
        // Nothing a mutation made authenticated as data, and most of it was refused and counted.
        XCTAssertNil(outcomes["packet"], "\(outcomes)")
        XCTAssertGreaterThan(outcomes["drop", default: 0], 15_000, "\(outcomes)")
        for i in sim.hosts.indices {
            let counted = sim.status(i).counters.values.reduce(0, +)
            XCTAssertGreaterThan(counted, 0, "host \(i) counted its drops")
        }

        // The mesh carries on: every session up, new traffic delivered both ways.
        sim.drive(for: .seconds(2 as UInt64))
        for i in members {
            for j in members where j != i {
                _ = sim.sendIP(from: i, to: j, 100_000 + i * 10 + j)
            }
        }
        sim.drive(for: .seconds(2 as UInt64))
        for i in members {
            for j in members where j != i {
                XCTAssertTrue(sim.delivered(j, from: i, number: 100_000 + i * 10 + j), "\(i) -> \(j) after the garbage")
                XCTAssertEqual(state(sim, i, j), .established)
            }
        }
    }
}

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol
@testable import Config
@testable import Control
@testable import Engine
import Reactor

/// The session layer's hooks for a path manager (NodeCore): `receive(roam: false)`,
/// `seal`, and `Transmit.peer`.
final class SessionPathHookTests: XCTestCase {
    let anchor = Endpoint.v4(203, 0, 113, 1, port: 51820)

    /// Two established nodes (SessionSim: node 0 at 10.0.0.1, node 1 at 10.0.0.2).
    func established() -> SessionSim {
        let sim = SessionSim(count: 2)
        sim.send(from: 0, to: 1, .tagged(0))
        sim.drive(for: .milliseconds(100))
        XCTAssertEqual(sim.status(0, 1)?.state, .established)
        XCTAssertEqual(sim.status(1, 0)?.state, .established)
        return sim
    }

    func sealed(_ sim: SessionSim, from i: Int, to j: Int, _ payload: [UInt8]) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 16 + payload.count + 16)
        buf.replaceSubrange(16..<(16 + payload.count), with: payload)
        let now = sim.now
        let peer = sim.pid(i, j)
        guard case .send(_, let off, let len) = buf.withUnsafeMutableBytes({
            sim.nodes[i].tunnels.send(to: peer, $0, payloadOffset: 16, payloadLength: payload.count, now: now)
        }) else { XCTFail("no keys"); return [] }
        return Array(buf[off..<(off + len)])
    }

    func testNoRoamKeepsTheEndpoint() {
        let sim = established()
        var bytes = sealed(sim, from: 0, to: 1, .tagged(1))
        let now = sim.now
        let r = bytes.withUnsafeMutableBytes {
            sim.nodes[1].tunnels.receive($0, length: $0.count, from: anchor, now: now, underLoad: false, roam: false)
        }
        XCTAssertEqual(r, .data(sim.pid(1, 0), payloadOffset: 16, payloadLength: 24), "authenticated and delivered")
        XCTAssertNil(sim.nodes[1].tunnels.pollEvent())
        XCTAssertEqual(sim.nodes[1].tunnels.endpoint(of: sim.pid(1, 0)), sim.nodes[0].address, "but the endpoint did not move")
    }

    func testNoRoamSetsAnEndpointWhenThereIsNoneAndAnswersTheWayItCame() {
        let sim = SessionSim(count: 2, knowEndpoints: false)
        let p = PeerID(rawValue: 0)
        sim.nodes[0].tunnels.setEndpoint(anchor, for: p)  // node 0 reaches node 1 "through the anchor"
        sim.nodes[0].tunnels.connect(p, now: sim.now)
        sim.nodes[0].tunnels.handleTimeout(now: sim.now, wallClock: sim.wallClock)
        let initiation = sim.nodes[0].tunnels.pollTransmit()
        XCTAssertEqual(initiation?.peer, p, "every session transmit names its peer")
        XCTAssertEqual(initiation?.to, anchor)
        var buf = initiation?.bytes ?? []
        let now = sim.now
        let r = buf.withUnsafeMutableBytes {
            sim.nodes[1].tunnels.receive($0, length: $0.count, from: anchor, now: now, underLoad: false, roam: false)
        }
        XCTAssertEqual(r, .control)
        XCTAssertEqual(sim.nodes[1].tunnels.pollEvent(), .endpointChanged(p, anchor), "a first contact sets the endpoint")
        let response = sim.nodes[1].tunnels.pollTransmit()
        XCTAssertEqual(response?.to, anchor, "the response goes back the way the initiation came")
        XCTAssertEqual(response?.peer, p)
    }

    func testSealNeedsKeysAndDoesNotExpectAnAnswer() {
        let fresh = SessionSim(count: 2)
        var buf = [UInt8](repeating: 0, count: 64)
        let now0 = fresh.now
        XCTAssertNil(buf.withUnsafeMutableBytes { fresh.nodes[0].tunnels.seal(for: PeerID(rawValue: 0), $0, payloadOffset: 16, payloadLength: 9, now: now0) })
        XCTAssertNil(fresh.nodes[0].tunnels.pollTimeout(), "no handshake asked for")

        let sim = established()
        sim.drive(for: .seconds(30 as UInt64))  // let the keepalives settle: no timer but key expiry
        let p = sim.pid(0, 1)
        let now = sim.now
        XCTAssertNotEqual(sim.nodes[0].tunnels.pollTimeout(for: p)?.reason, .newHandshake)
        let ping = ControlMessage.pathPing(txid: 9, onActivePath: false).bytes
        buf.replaceSubrange(16..<(16 + ping.count), with: ping)
        let s = buf.withUnsafeMutableBytes { sim.nodes[0].tunnels.seal(for: p, $0, payloadOffset: 16, payloadLength: ping.count, now: now) }
        XCTAssertEqual(s, Sealed(offset: 0, length: ping.count + 32))
        XCTAssertNotEqual(sim.nodes[0].tunnels.pollTimeout(for: p)?.reason, .newHandshake,
                          "a probe that is never answered must not cause a re-handshake")
        XCTAssertNil(sim.nodes[0].tunnels.pollTransmit(), "sealed in place, nothing queued")
        // The peer opens it as ordinary session data.
        var packet = Array(buf[0..<(ping.count + 32)])
        let r = packet.withUnsafeMutableBytes {
            sim.nodes[1].tunnels.receive($0, length: $0.count, from: sim.nodes[0].address, now: now, underLoad: false)
        }
        XCTAssertEqual(r, .data(sim.pid(1, 0), payloadOffset: 16, payloadLength: ping.count))
        XCTAssertEqual(Array(packet[16..<(16 + ping.count)]), ping)
        // Geometry is checked.
        XCTAssertNil(buf.withUnsafeMutableBytes { sim.nodes[0].tunnels.seal(for: p, $0, payloadOffset: 15, payloadLength: 9, now: now) })
        XCTAssertNil(buf.withUnsafeMutableBytes { sim.nodes[0].tunnels.seal(for: p, $0, payloadOffset: 16, payloadLength: 40, now: now) })
        XCTAssertNil(buf.withUnsafeMutableBytes { sim.nodes[0].tunnels.seal(for: PeerID(rawValue: 3), $0, payloadOffset: 16, payloadLength: 9, now: now) })
        XCTAssertTrue(sim.nodes[0].tunnels.isEstablished(p, now: now))
        XCTAssertFalse(sim.nodes[0].tunnels.isEstablished(PeerID(rawValue: 3), now: now))
    }
}

import XCTest
@testable import Support
@testable import Wire
@testable import Crypto
@testable import Protocol

/// The rules between lanes that the daemon and NetSim both run.
final class LaneRouterTests: XCTestCase {
    func testAHandedOverDatagramIsNeverHandedOnAgain() {
        let r = LaneRouter(lanes: 3, isAnchor: false)
        XCTAssertEqual(r.afterShard(.elsewhere(2), handedOver: false), .handTo(2))
        XCTAssertEqual(r.afterShard(.elsewhere(2), handedOver: true), .loop)
        XCTAssertEqual(r.toCore(at: 1, handedOver: false), .handTo(0))
        XCTAssertEqual(r.toCore(at: 1, handedOver: true), .loop)
        XCTAssertEqual(r.toCore(at: 0, handedOver: true), .core)
        XCTAssertEqual(r.afterCoreHandoff(to: 2, at: 0, handedOver: false), .handTo(2))
        XCTAssertEqual(r.afterCoreHandoff(to: 2, at: 0, handedOver: true), .loop)
        XCTAssertEqual(r.afterCoreHandoff(to: 0, at: 0, handedOver: false), .done)
        let p = PeerID(rawValue: 4)
        XCTAssertEqual(r.afterShard(.packet(p, offset: 16, length: 100), handedOver: true), .deliver(p, offset: 16, length: 100))
        XCTAssertEqual(r.afterShard(.drop(.relayNotAnchor), handedOver: false), .done)
    }

    func testOneLaneIsTheSameRulesWithOneLane() {
        let r = LaneRouter(lanes: 1, isAnchor: true)
        var d = [UInt8](repeating: 0, count: 48)
        d[0] = MessageType.data.rawValue
        d[4] = 0xFF
        XCTAssertEqual(d.withUnsafeBytes { r.steer($0, length: d.count) }, 0)
        XCTAssertEqual(r.owner(of: PeerID(rawValue: 7)), 0)
    }

    /// Steering is the kernel's BPF rule: DATA by its receiver index; a RELAY carrying DATA by
    /// its inner index: on a member by its low byte (the owner), on an anchor by its second
    /// byte (the pair bit's: the anchor forwards on the lane it lands on); a RELAY carrying
    /// a handshake on lane 0.
    func testSteeringIsByReceiverIndexAndAnchorsSpreadRelayOverTheLanes() {
        var relay = [UInt8](repeating: 0, count: 60)
        relay[0] = MessageType.relay.rawValue
        relay[RelayMessage.headerSize] = MessageType.data.rawValue  // 16
        relay[RelayMessage.headerSize + 4] = 5
        relay[RelayMessage.headerSize + 5] = 7
        let member = LaneRouter(lanes: 3, isAnchor: false), anchor = LaneRouter(lanes: 3, isAnchor: true)
        XCTAssertEqual(relay.withUnsafeBytes { member.steer($0, length: relay.count) }, 2)
        XCTAssertEqual(relay.withUnsafeBytes { anchor.steer($0, length: relay.count) }, 1)
        relay[RelayMessage.headerSize] = 1  // HANDSHAKE_INIT inside
        XCTAssertEqual(relay.withUnsafeBytes { anchor.steer($0, length: relay.count) }, 0)
        // A RELAY the shard forwarded is sent from where it lies, on that lane.
        let to = Endpoint.v4(198, 51, 100, 9, port: 51820)
        XCTAssertEqual(anchor.afterShard(.forward(to, offset: 0, length: 60), handedOver: false), .transmit(to, offset: 0, length: 60))
    }
}

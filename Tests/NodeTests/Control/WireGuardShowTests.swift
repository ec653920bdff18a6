import Foundation
import XCTest
@testable import Control

/// `wsctl show-wg`: `wg show`'s layout for the WireGuard peers only.
final class WireGuardShowTests: XCTestCase {
    func testLayout() {
        let report = StatusReport(
            node: StatusReport.Node(publicKey: "ED25519KEY", interface: "ws0", address: "10.77.0.1/24", listenPort: 51820,
                                    wireGuardPublicKey: "X25519KEY"),
            anchors: [],
            peers: [
                StatusReport.Peer(name: "router", publicKey: "ROUTERKEY", address: ["10.77.0.20/32"], state: .up,
                                  endpoint: "198.51.100.7:51820", lastHandshakeSecondsAgo: 65, rxBytes: 1536, txBytes: 100,
                                  kind: "wireguard", persistentKeepaliveS: 25,
                                  roam: StatusReport.Roam(newSources: 2, taken: 1, lastSource: "198.51.100.8:51820",
                                                          roamedFrom: "198.51.100.7:51820")),
                StatusReport.Peer(name: "laptop", publicKey: "LAPTOPKEY", address: ["10.77.0.21/32"], state: .up),
            ],
            warnings: [], counters: [:])
        let text = renderWireGuardShow(report)
        XCTAssertEqual(text, """
            interface: ws0
              public key: X25519KEY
              private key: (hidden)
              listening port: 51820

            peer: ROUTERKEY
              endpoint: 198.51.100.7:51820
              allowed ips: 10.77.0.20/32
              latest handshake: 1 minute, 5 seconds ago
              transfer: 1.50 KiB received, 100 B sent
              persistent keepalive: every 25 seconds
              roaming (monitored): 2 packets from a new source, 1 taken; last 198.51.100.8:51820

            """)
        XCTAssertFalse(text.contains("LAPTOPKEY"), "Whalescale peers are not WireGuard peers")
        XCTAssertEqual(WireGuardShowText.bytes(5 << 30), "5.00 GiB")
        XCTAssertEqual(WireGuardShowText.ago(3600), "1 hour ago")
    }

    func testKindRoundTripsAndDefaults() throws {
        let peer = StatusReport.Peer(name: "r", publicKey: "K", address: [], state: .idle, kind: "wireguard")
        let data = try JSONEncoder().encode(peer)
        XCTAssertEqual(try JSONDecoder().decode(StatusReport.Peer.self, from: data), peer)
        // An older daemon's peer has no kind: whalescale.
        let old = #"{"name":"r","public_key":"K","address":[],"state":"idle","rx_bytes":0,"tx_bytes":0,"paths":[]}"#
        XCTAssertEqual(try JSONDecoder().decode(StatusReport.Peer.self, from: Data(old.utf8)).kind, "whalescale")
    }
}

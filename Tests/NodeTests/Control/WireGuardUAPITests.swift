import XCTest

@testable import Support
@testable import Wire
@testable import Crypto
@testable import Control

/// WireGuard's cross-platform UAPI (Control/WireGuardUAPI.swift): reading
/// requests, applying `set` lines, rendering `get`.
final class WireGuardUAPITests: XCTestCase {
    static let k1 = [UInt8](repeating: 0x11, count: 32)
    static let k2 = [UInt8](repeating: 0x22, count: 32)
    static let k3 = [UInt8](repeating: 0x33, count: 32)
    static let psk = [UInt8](repeating: 0x44, count: 32)
    static let priv = [UInt8](repeating: 0x55, count: 32)
    static let zero = String(repeating: "0", count: 64)
    var h1: String { WireGuardUAPI.hex(Self.k1) }
    var h2: String { WireGuardUAPI.hex(Self.k2) }
    var h3: String { WireGuardUAPI.hex(Self.k3) }

    /// The lines after "set=1" as the reader parses them.
    func lines(_ text: String) -> [(key: String, value: String?)] {
        var r = UAPIRequestReader()
        guard case .request(.set(let l)) = r.append(Array(("set=1\n" + text + "\n\n").utf8)) else {
            XCTFail("not a set request")
            return []
        }
        return l
    }

    func apply(_ text: String, to d: WireGuardDevice = WireGuardDevice()) -> Result<WireGuardDevice, UAPIError> {
        WireGuardUAPI.apply(lines(text), to: d)
    }

    func applied(_ text: String, to d: WireGuardDevice = WireGuardDevice(), file: StaticString = #filePath, line: UInt = #line) -> WireGuardDevice {
        switch apply(text, to: d) {
        case .success(let d): return d
        case .failure(let e):
            XCTFail("refused: \(e)", file: file, line: line)
            return d
        }
    }

    func refused(_ text: String, _ errno: UAPIErrno, to d: WireGuardDevice = WireGuardDevice(), file: StaticString = #filePath, line: UInt = #line) {
        switch apply(text, to: d) {
        case .success: XCTFail("accepted: \(text)", file: file, line: line)
        case .failure(let e): XCTAssertEqual(e.errno, errno, "\(text): \(e)", file: file, line: line)
        }
    }

    // MARK: reading requests

    func testReaderWaitsForTheEmptyLineInAnySplit() {
        let text = Array("set=1\nlisten_port=51820\n\n".utf8)
        for cut in 0..<text.count {
            var r = UAPIRequestReader()
            XCTAssertEqual(r.append(text[..<cut]), .needMore, "cut at \(cut)")
            guard case .request(.set(let l)) = r.append(text[cut...]) else { return XCTFail("cut at \(cut)") }
            XCTAssertEqual(l.count, 1)
            XCTAssertEqual(l[0].key, "listen_port")
            XCTAssertEqual(l[0].value, "51820")
        }
    }

    func testGetUnknownAndMalformed() {
        var r = UAPIRequestReader()
        XCTAssertEqual(r.append(Array("get=1\n\n".utf8)), .request(.get))
        r = UAPIRequestReader()
        XCTAssertEqual(r.append(Array("frob=1\n\n".utf8)), .request(.unknown("frob=1")))
        r = UAPIRequestReader()
        XCTAssertEqual(r.append([0x73, 0x65, 0x74, 0x3D, 0x31, 0x0A, 0xFF, 0xFE, 0x0A, 0x0A]), .malformed)
        r = UAPIRequestReader()
        XCTAssertEqual(r.append(Array("set=1\na=\u{0}\n\n".utf8)), .malformed)
    }

    func testOversizedRequestIsRefusedNotBuffered() {
        var r = UAPIRequestReader()
        let line = Array("allowed_ip=10.0.0.0/8\n".utf8)
        var outcome = r.append(Array("set=1\n".utf8))
        var sent = 6
        while outcome == .needMore && sent <= WireGuardUAPI.maxRequestBytes + line.count {
            outcome = r.append(line)
            sent += line.count
        }
        XCTAssertEqual(outcome, .tooLong)
        XCTAssertEqual(WireGuardUAPI.errnoAnswer(.tooLong), "errno=90\n\n")
    }

    // MARK: device keys

    func testDeviceKeys() {
        let d = applied("private_key=\(WireGuardUAPI.hex(Self.priv))\nlisten_port=51820\nfwmark=7")
        XCTAssertEqual(d.privateKey, Self.priv)
        XCTAssertEqual(d.listenPort, 51820)
        XCTAssertEqual(d.fwmark, 7)
        XCTAssertEqual(d.publicKey, Identity.wireGuardPublicKey(privateKey: Self.priv))
        // An all-zero key clears it; an empty fwmark is 0.
        let cleared = applied("private_key=\(Self.zero)\nfwmark=", to: d)
        XCTAssertNil(cleared.privateKey)
        XCTAssertEqual(cleared.fwmark, 0)
        XCTAssertEqual(cleared.listenPort, 51820)
    }

    func testBadDeviceValues() {
        refused("private_key=abc", .invalid)
        refused("private_key=\(String(repeating: "g", count: 64))", .invalid)
        refused("listen_port=65536", .invalid)
        refused("listen_port=-1", .invalid)
        refused("listen_port=", .invalid)
        refused("fwmark=4294967296", .invalid)
        refused("replace_peers=yes", .invalid)
        refused("frobnicate=1", .invalid)
        refused("no equals sign", .protocolError)
    }

    func testKeysAcceptEitherCase() {
        XCTAssertEqual(WireGuardUAPI.hexKey(WireGuardUAPI.hex(Self.k3).uppercased()), Self.k3)
        XCTAssertEqual(WireGuardUAPI.hex([0x00, 0xAB, 0xFF]), "00abff")
    }

    // MARK: peers

    func testPeerKeysAndOrder() {
        let d = applied("""
            public_key=\(h1)
            preshared_key=\(WireGuardUAPI.hex(Self.psk))
            endpoint=192.0.2.1:51820
            persistent_keepalive_interval=25
            allowed_ip=10.0.0.1/32
            allowed_ip=10.1.0.7/16
            protocol_version=1
            public_key=\(h2)
            endpoint=[2001:db8::1]:4500
            allowed_ip=fd00::/64
            """)
        XCTAssertEqual(d.peers.map(\.publicKey), [Self.k1, Self.k2])
        XCTAssertEqual(d.peers[0].presharedKey, Self.psk)
        XCTAssertEqual(d.peers[0].endpoint, Endpoint("192.0.2.1:51820"))
        XCTAssertEqual(d.peers[0].persistentKeepalive, 25)
        // Host bits are cleared, as wireguard-go masks the prefix.
        XCTAssertEqual(d.peers[0].allowedIPs.map(\.description), ["10.0.0.1/32", "10.1.0.0/16"])
        XCTAssertEqual(d.peers[1].endpoint?.family, .v6)
        XCTAssertEqual(d.peers[1].endpoint?.port, 4500)
        XCTAssertEqual(d.peers[1].endpoint?.description, "[2001:db8::1]:4500")
        XCTAssertEqual(d.peers[1].allowedIPs.map(\.description), ["fd00::/64"])
    }

    func testExistingPeerIsUpdatedInPlace() {
        let d0 = applied("public_key=\(h1)\nallowed_ip=10.0.0.1/32\npublic_key=\(h2)\nallowed_ip=10.0.0.2/32")
        let d = applied("public_key=\(h1)\nallowed_ip=10.0.0.11/32\npersistent_keepalive_interval=5", to: d0)
        XCTAssertEqual(d.peers.map(\.publicKey), [Self.k1, Self.k2])
        XCTAssertEqual(d.peers[0].allowedIPs.map(\.description), ["10.0.0.1/32", "10.0.0.11/32"])
        XCTAssertEqual(d.peers[0].persistentKeepalive, 5)
        let replaced = applied("public_key=\(h1)\nreplace_allowed_ips=true\nallowed_ip=10.0.0.12/32", to: d)
        XCTAssertEqual(replaced.peers[0].allowedIPs.map(\.description), ["10.0.0.12/32"])
        // A zero psk clears it.
        let p = applied("public_key=\(h2)\npreshared_key=\(WireGuardUAPI.hex(Self.psk))", to: d)
        XCTAssertEqual(applied("public_key=\(h2)\npreshared_key=\(Self.zero)", to: p).peers[1].presharedKey, nil)
    }

    func testAPrefixHasOneOwner() {
        let d0 = applied("public_key=\(h1)\nallowed_ip=10.0.0.0/24\npublic_key=\(h2)\nallowed_ip=10.0.1.0/24")
        let d = applied("public_key=\(h2)\nallowed_ip=10.0.0.0/24", to: d0)
        XCTAssertEqual(d.peers[0].allowedIPs, [])
        XCTAssertEqual(d.peers[1].allowedIPs.map(\.description), ["10.0.1.0/24", "10.0.0.0/24"])
    }

    func testRemoveUpdateOnlyReplacePeers() {
        let d0 = applied("public_key=\(h1)\nallowed_ip=10.0.0.1/32\npublic_key=\(h2)\nallowed_ip=10.0.0.2/32")
        // remove: the peer and its routes go; the lines after it (until the next public_key) are skipped.
        let removed = applied("public_key=\(h1)\nremove=true\nallowed_ip=10.9.9.9/32\npublic_key=\(h2)\nendpoint=192.0.2.2:1", to: d0)
        XCTAssertEqual(removed.peers.map(\.publicKey), [Self.k2])
        XCTAssertEqual(removed.peers[0].allowedIPs.map(\.description), ["10.0.0.2/32"])
        XCTAssertEqual(removed.peers[0].endpoint, Endpoint("192.0.2.2:1"))
        // Removing a peer that does not exist is not an error.
        XCTAssertEqual(applied("public_key=\(h3)\nremove=true", to: d0), d0)
        // update_only: changes an existing peer, never creates one.
        let updated = applied("public_key=\(h3)\nupdate_only=true\nallowed_ip=10.0.0.3/32\npublic_key=\(h1)\nupdate_only=true\npersistent_keepalive_interval=9", to: d0)
        XCTAssertEqual(updated.peers.map(\.publicKey), [Self.k1, Self.k2])
        XCTAssertEqual(updated.peers[0].persistentKeepalive, 9)
        // replace_peers: only what follows remains.
        let replaced = applied("replace_peers=true\npublic_key=\(h3)\nallowed_ip=10.0.0.3/32", to: d0)
        XCTAssertEqual(replaced.peers.map(\.publicKey), [Self.k3])
    }

    func testOwnKeyIsNeverAPeer() {
        let own = Identity.wireGuardPublicKey(privateKey: Self.priv)!
        let d = applied("private_key=\(WireGuardUAPI.hex(Self.priv))\npublic_key=\(WireGuardUAPI.hex(own))\nallowed_ip=10.0.0.1/32\npublic_key=\(h1)")
        XCTAssertEqual(d.peers.map(\.publicKey), [Self.k1])
        // Setting a private key whose public key is a peer's removes that peer.
        let d2 = applied("public_key=\(WireGuardUAPI.hex(own))\npublic_key=\(h1)")
        XCTAssertEqual(d2.peers.count, 2)
        XCTAssertEqual(applied("private_key=\(WireGuardUAPI.hex(Self.priv))", to: d2).peers.map(\.publicKey), [Self.k1])
    }

    func testBadPeerValuesRefuseTheWholeRequest() {
        let d0 = applied("listen_port=1\npublic_key=\(h1)")
        refused("listen_port=2\npublic_key=\(h2)\nendpoint=host.example:51820", .invalid, to: d0)
        refused("public_key=\(h1)\nendpoint=192.0.2.1", .invalid, to: d0)
        refused("public_key=\(h1)\nendpoint=[2001:db8::1:51820", .invalid, to: d0)
        refused("public_key=\(h1)\nendpoint=[fe80::1%eth0]:51820", .invalid, to: d0)
        refused("public_key=\(h1)\nendpoint=300.1.1.1:1", .invalid, to: d0)
        refused("public_key=\(h1)\nallowed_ip=10.0.0.1", .invalid, to: d0)
        refused("public_key=\(h1)\nallowed_ip=10.0.0.0/33", .invalid, to: d0)
        refused("public_key=\(h1)\nallowed_ip=fd00::/129", .invalid, to: d0)
        refused("public_key=\(h1)\npersistent_keepalive_interval=65536", .invalid, to: d0)
        refused("public_key=\(h1)\nprotocol_version=2", .invalid, to: d0)
        refused("public_key=\(h1)\nremove=false", .invalid, to: d0)
        refused("public_key=\(h1)\nupdate_only=1", .invalid, to: d0)
        refused("public_key=\(h1)\nreplace_allowed_ips=no", .invalid, to: d0)
        refused("public_key=\(h1)\npreshared_key=00", .invalid, to: d0)
        refused("public_key=\(h1)\nfrob=1", .invalid, to: d0)
        refused("public_key=short", .invalid, to: d0)
        // A device key after a peer began is a peer key there: unknown.
        refused("public_key=\(h1)\nlisten_port=5", .invalid, to: d0)
        // A skipped (removed) peer's bad value is still refused.
        refused("public_key=\(h3)\nremove=true\nendpoint=nonsense", .invalid, to: d0)
    }

    // MARK: get

    func testGetOutput() {
        var d = applied("""
            private_key=\(WireGuardUAPI.hex(Self.priv))
            listen_port=51820
            public_key=\(h1)
            preshared_key=\(WireGuardUAPI.hex(Self.psk))
            persistent_keepalive_interval=25
            allowed_ip=10.0.0.1/32
            allowed_ip=fd00::1/128
            public_key=\(h2)
            endpoint=[2001:db8::2]:51820
            """)
        d.fwmark = 0
        let live: [[UInt8]: WireGuardPeerLive] = [
            Self.k1: WireGuardPeerLive(endpoint: Endpoint("192.0.2.9:40000"), lastHandshake: (1_700_000_000, 123), rxBytes: 10, txBytes: 20)
        ]
        XCTAssertEqual(WireGuardUAPI.render(d, listenPort: 51820, live: live), """
            private_key=\(WireGuardUAPI.hex(Self.priv))
            listen_port=51820
            public_key=\(h1)
            preshared_key=\(WireGuardUAPI.hex(Self.psk))
            protocol_version=1
            endpoint=192.0.2.9:40000
            last_handshake_time_sec=1700000000
            last_handshake_time_nsec=123
            tx_bytes=20
            rx_bytes=10
            persistent_keepalive_interval=25
            allowed_ip=10.0.0.1/32
            allowed_ip=fd00::1/128
            public_key=\(h2)
            preshared_key=\(Self.zero)
            protocol_version=1
            endpoint=[2001:db8::2]:51820
            last_handshake_time_sec=0
            last_handshake_time_nsec=0
            tx_bytes=0
            rx_bytes=0
            persistent_keepalive_interval=0
            errno=0


            """)
    }

    func testGetOfAFreshDeviceAndFwmark() {
        var d = WireGuardDevice()
        XCTAssertEqual(WireGuardUAPI.render(d, listenPort: nil, live: [:]), "errno=0\n\n")
        XCTAssertEqual(WireGuardUAPI.render(d, listenPort: 40001, live: [:]), "listen_port=40001\nerrno=0\n\n")
        d.fwmark = 51820
        XCTAssertEqual(WireGuardUAPI.render(d, listenPort: 40001, live: [:]), "listen_port=40001\nfwmark=51820\nerrno=0\n\n")
    }

    /// What `get` prints, `set` reads back to the same device (the `wg showconf | wg setconf` round trip).
    func testGetSetRoundTrip() {
        let d = applied("""
            private_key=\(WireGuardUAPI.hex(Self.priv))
            listen_port=51820
            fwmark=3
            public_key=\(h1)
            preshared_key=\(WireGuardUAPI.hex(Self.psk))
            endpoint=192.0.2.1:51820
            persistent_keepalive_interval=25
            allowed_ip=10.0.0.0/24
            public_key=\(h2)
            endpoint=[2001:db8::2]:51820
            allowed_ip=fd00::/64
            """)
        let text = WireGuardUAPI.render(d, listenPort: nil, live: [:])
        // Drop the read-only lines and the errno, as `wg showconf` does.
        let readOnly = ["last_handshake_time_sec", "last_handshake_time_nsec", "tx_bytes", "rx_bytes", "errno"]
        let settable = text.split(separator: "\n").filter { l in !readOnly.contains { l.hasPrefix($0 + "=") } }
        let back = applied("replace_peers=true\n" + settable.joined(separator: "\n"), to: WireGuardDevice())
        XCTAssertEqual(back, d)
    }
}
